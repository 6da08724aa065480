"""Tests for kvcy._wal_writer: WAL appends through a shared mapping of the
file (and write(2) where it cannot be mapped).

The mapped file is grown a window (WAL_MAP_BYTES) at a time with
fallocate, so while it is open, and after a kill -9, it ends in reserved
zeros; a clean close cuts them off, and recovery reads them as the end of
the log.  A full disk shows up as an error from fallocate, and a file cut
behind kvcy's back as an error from the copy's SIGBUS guard: never a crash.
(The crash, power-loss and group-commit tests of test_crash.py,
test_write_path.py and test_flush_crash.py run through this path too.)
"""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import kvcy
from kvcy._wal_writer import set_mapped_appends
from kvcy.errors import OperationalError
from kvcy.log_reader import LogReader

from test_crash import child_env

WINDOW = 1 << 20                 # WAL_MAP_BYTES
BIG_MEMTABLE = dict(memtable_max_bytes=64 << 20)


def live_log(conn):
    return conn._engine.log.file.path


def connect_unmapped(path, **options):
    """A connection whose WAL is appended to with write(2), not a mapping."""
    previous = set_mapped_appends(False)
    try:
        conn = kvcy.connect(path, **options)
    finally:
        set_mapped_appends(previous)
    assert not conn._engine.writer.wal.mapped_appends
    return conn


def test_an_open_log_is_mapped_and_cut_to_its_records_on_close(db_path):
    conn = kvcy.connect(db_path, **BIG_MEMTABLE)
    assert conn._engine.writer.wal.mapped_appends
    for i in range(1000):
        conn.put(b"k%04d" % i, b"v%d" % i)
    path = live_log(conn)
    written = conn.stats()["log_bytes"]
    assert 0 < written < WINDOW
    # Open: the file holds the reserved window; what the reader sees stops at the records.
    assert os.path.getsize(path) == WINDOW
    with open(path, "rb") as f:
        reader = LogReader(f.read(), path)
        records = list(reader)
    assert len(records) == 1000 and reader.end_offset == written
    conn.close()
    assert os.path.getsize(path) == written
    with kvcy.connect(db_path) as conn:
        assert conn.get(b"k0999") == b"v999"
        assert conn.stats()["torn_tail_bytes"] == 0


def test_appends_cross_windows_and_a_batch_larger_than_one(db_path):
    conn = kvcy.connect(db_path, **BIG_MEMTABLE)
    for i in range(300):                                   # ~1.2 MiB: a second window
        conn.put(b"a%04d" % i, os.urandom(4000))
    big = [(b"b%05d" % i, b"%05d" % i * 300) for i in range(800)]   # one 1.2 MB record
    conn.put_many(big)
    conn.put(b"after", b"1")
    expected = {k: conn.get(k) for k in [b"a%04d" % i for i in range(300)]}
    written = conn.stats()["log_bytes"]
    assert written > 2 * WINDOW
    assert os.path.getsize(live_log(conn)) == -(-written // WINDOW) * WINDOW
    conn.close()
    with kvcy.connect(db_path) as conn:
        assert all(conn.get(k) == v for k, v in expected.items())
        assert all(conn.get(k) == v for k, v in big)
        assert conn.get(b"after") == b"1"


def test_appends_without_a_mapping_use_write(db_path):
    conn = connect_unmapped(db_path, **BIG_MEMTABLE)
    conn.put(b"k", b"v")
    assert os.path.getsize(live_log(conn)) == conn.stats()["log_bytes"]   # nothing reserved
    conn.close()
    with kvcy.connect(db_path) as conn:
        assert conn.get(b"k") == b"v"


KILLED_CHILD = textwrap.dedent('''
    import os, sys
    import kvcy
    conn = kvcy.connect(sys.argv[1], memtable_max_bytes=64 << 20)
    for i in range(int(sys.argv[2])):
        conn.put(b"k%06d" % i, b"v%d" % i)
    print(conn.stats()["log_bytes"], flush=True)
    os.kill(os.getpid(), 9)
''')


def test_kill_9_leaves_reserved_zeros_that_recovery_reads_as_the_end(db_path):
    n = 20000                                              # ~0.6 MiB of log
    proc = subprocess.run([sys.executable, "-c", KILLED_CHILD, db_path, str(n)],
                          env=child_env(), capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    written = int(proc.stdout)
    logs = sorted(f for f in os.listdir(db_path) if f.endswith(".log"))
    path = os.path.join(db_path, logs[-1])
    with open(path, "rb") as f:
        data = f.read()
    assert len(data) == WINDOW and not any(data[written:])   # the reserve, zero-filled
    with kvcy.connect(db_path) as conn:
        stats = conn.stats()
        assert stats["recovered_records"] == n
        assert stats["torn_tail_bytes"] == 0                 # reserved space, not a torn tail
        assert all(conn.get(b"k%06d" % i) == b"v%d" % i for i in range(0, n, 97))
        assert conn.get(b"k%06d" % (n - 1)) == b"v%d" % (n - 1)
    with open(os.path.join(db_path, "LOG")) as f:
        assert "bytes of reserved space after offset %d" % written in f.read()


def test_a_torn_record_in_the_reserved_space_is_a_torn_tail(db_path):
    proc = subprocess.run([sys.executable, "-c", KILLED_CHILD, db_path, "100"],
                          env=child_env(), capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    written = int(proc.stdout)
    path = os.path.join(db_path, sorted(f for f in os.listdir(db_path) if f.endswith(".log"))[-1])
    with open(path, "r+b") as f:                 # half a header: a record cut by the crash
        f.seek(written)
        f.write(b"\x12\x34\x56")
    with kvcy.connect(db_path) as conn:
        assert conn.stats()["torn_tail_bytes"] == WINDOW - written
        assert conn.get(b"k%06d" % 99) == b"v99"


def test_a_reused_log_is_mapped_from_its_end(db_path):
    # A clean close cuts the log to its records; the next open appends to
    # it (LevelDB's reuse_logs) through a window that starts inside it.
    with kvcy.connect(db_path, **BIG_MEMTABLE) as conn:
        for i in range(3000):
            conn.put(b"a%05d" % i, b"x" * 300)               # ~0.9 MiB: the next window is near
        first_log = live_log(conn)
    proc = subprocess.run([sys.executable, "-c", KILLED_CHILD, db_path, "5000"],
                          env=child_env(), capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    logs = sorted(f for f in os.listdir(db_path) if f.endswith(".log"))
    assert os.path.join(db_path, logs[-1]) == first_log       # it was reused
    with kvcy.connect(db_path) as conn:
        assert all(conn.get(b"a%05d" % i) == b"x" * 300 for i in range(0, 3000, 7))
        assert all(conn.get(b"k%06d" % i) == b"v%d" % i for i in range(0, 5000, 7))
        assert conn.stats()["torn_tail_bytes"] == 0


FULL_DISK_CHILD = textwrap.dedent('''
    import resource, signal, sys
    import kvcy
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (3 << 20, 3 << 20))
    conn = kvcy.connect(sys.argv[1], memtable_max_bytes=64 << 20)
    acked = 0
    try:
        for i in range(100):
            conn.put(b"k%03d" % i, b"x" * 100000)
            acked += 1
    except kvcy.OperationalError as exc:
        print(acked, exc, flush=True)
    try:
        conn.put(b"later", b"1")
        print("not latched")
    except kvcy.OperationalError:
        pass
    conn.close()
''')


def test_a_full_disk_at_a_new_window_is_an_error_not_a_crash(db_path):
    # RLIMIT_FSIZE makes fallocate past 3 MiB fail (EFBIG), as a full disk
    # makes it fail with ENOSPC: before any byte of the group is copied.
    proc = subprocess.run([sys.executable, "-c", FULL_DISK_CHILD, db_path],
                          env=child_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    acked, message = proc.stdout.split(" ", 1)
    acked = int(acked)
    assert 25 <= acked <= 31          # the fourth window, [3 MiB, 4 MiB), is refused
    assert ".log" in message and "EFBIG" in message
    assert "not latched" not in proc.stdout
    with kvcy.connect(db_path) as conn:
        assert [conn.get(b"k%03d" % i) is not None for i in range(acked + 1)] == \
            [True] * acked + [False]


def test_a_log_cut_behind_our_back_is_an_error_not_a_crash(db_path):
    conn = kvcy.connect(db_path, **BIG_MEMTABLE)
    conn.put(b"before", b"1")
    os.truncate(live_log(conn), 0)                         # the mapped pages go: SIGBUS
    with pytest.raises(OperationalError, match="EIO"):
        conn.put(b"k", b"v")
    with pytest.raises(OperationalError):
        conn.put(b"later", b"2")                           # latched until reopen
    conn.close()
    with kvcy.connect(db_path) as conn:
        assert conn.get(b"k") is None and conn.get(b"later") is None


def test_wal_sync_bench_runs_both_ways(capsys):
    # bench/wal_sync.py, tiny: both append paths fsync every synced put.
    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
    sys.path.insert(0, bench)
    try:
        import wal_sync
        medians = wal_sync.main(["--puts", "50", "--repeat", "1"])
    finally:
        sys.path.remove(bench)
        sys.modules.pop("wal_sync", None)
    assert medians[True] > 0 and medians[False] > 0
    assert "mapped / write(2)" in capsys.readouterr().out
