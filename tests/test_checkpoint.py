"""conn.checkpoint, kvcy.destroy, conn.approximate_size and kvcy backup/restore."""
import os
import threading

import pytest

import kvcy
from kvcy.cli import main


def _key(i):
    return b"k%08d" % i


def _contents(path):
    with kvcy.connect(path, create_if_missing=False) as conn:
        return dict(conn.scan())


def test_checkpoint_while_another_thread_writes_matches_model_at_its_sequence(tmp_path):
    # Small memtables: flushes and compactions run while the checkpoint is taken.
    conn = kvcy.connect(str(tmp_path / "db"), memtable_max_bytes=64 * 1024)
    history = []            # (key, value) in write order: write n gets sequence n
    stop = threading.Event()
    started = threading.Event()

    def write():
        i = 0
        while not stop.is_set():
            key, value = _key(i % 3000), b"v%d" % i
            conn.put(key, value)
            history.append((key, value))
            i += 1
            if i == 2000:
                started.set()

    thread = threading.Thread(target=write)
    thread.start()
    started.wait(30)
    sequence = conn.checkpoint(str(tmp_path / "copy"))
    stop.set()
    thread.join()
    switches = conn.stats()["memtable_switches"]
    conn.close()
    # One writer: write number n got sequence n, so the model is the first `sequence` writes.
    model = {}
    for key, value in history[:sequence]:
        model[key] = value
    assert 2000 <= sequence < len(history)
    assert switches > 0      # tables, not only logs, were in play
    assert _contents(str(tmp_path / "copy")) == model


def test_checkpoint_keeps_flushed_tables_and_unflushed_log(tmp_path):
    with kvcy.connect(str(tmp_path / "db")) as conn:
        conn.put_many((_key(i), b"x" * 100) for i in range(500))
        conn.flush()
        conn.put(b"late", b"in the log only")
        conn.delete(_key(3))
        sequence = conn.checkpoint(tmp_path / "copy")
        conn.put(b"after", b"not in the copy")
    assert sequence == 502
    copy = _contents(str(tmp_path / "copy"))
    assert copy[b"late"] == b"in the log only"
    assert _key(3) not in copy and b"after" not in copy
    assert len(copy) == 500
    # The copy is a database of its own: writes to it leave the original alone.
    with kvcy.connect(str(tmp_path / "copy")) as copy_conn:
        copy_conn.put(b"only-copy", b"1")
    assert b"only-copy" not in _contents(str(tmp_path / "db"))


def test_checkpoint_of_an_empty_database(tmp_path):
    with kvcy.connect(str(tmp_path / "db")) as conn:
        assert conn.checkpoint(str(tmp_path / "copy")) == 0
    assert _contents(str(tmp_path / "copy")) == {}


def test_checkpoint_refuses_an_existing_destination(tmp_path):
    (tmp_path / "there").mkdir()
    with kvcy.connect(str(tmp_path / "db")) as conn:
        with pytest.raises(kvcy.ProgrammingError, match="already exists"):
            conn.checkpoint(str(tmp_path / "there"))
    assert os.listdir(tmp_path / "there") == []
    assert sorted(os.listdir(tmp_path)) == ["db", "there"]   # no temporary left behind


def test_checkpoint_refuses_a_read_only_connection(tmp_path):
    kvcy.connect(str(tmp_path / "db")).close()
    with kvcy.connect(str(tmp_path / "db"), readonly=True) as conn:
        with pytest.raises(kvcy.OperationalError, match="open read-only"):
            conn.checkpoint(str(tmp_path / "copy"))
    assert not os.path.exists(tmp_path / "copy")


def test_checkpoint_reports_progress_in_table_bytes(tmp_path):
    calls = []
    with kvcy.connect(str(tmp_path / "db")) as conn:
        conn.put_many((_key(i), b"y" * 50) for i in range(300))
        conn.flush()
        conn.checkpoint(str(tmp_path / "copy"), progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1] > 0


def test_destroy_removes_a_closed_database(tmp_path):
    path = str(tmp_path / "db")
    with kvcy.connect(path) as conn:
        conn.put(b"a", b"1")
        conn.flush()
    kvcy.destroy(path)
    assert not os.path.exists(path)


def test_destroy_keeps_foreign_files_and_the_directory_holding_them(tmp_path):
    path = tmp_path / "db"
    kvcy.connect(str(path)).close()
    (path / "notes.txt").write_text("mine")
    kvcy.destroy(str(path))
    assert os.listdir(path) == ["notes.txt"]


def test_destroy_refuses_an_open_database(tmp_path):
    path = str(tmp_path / "db")
    with kvcy.connect(path) as conn:
        conn.put(b"a", b"1")
        with pytest.raises(kvcy.OperationalError, match="locked by pid=%d" % os.getpid()):
            kvcy.destroy(path)
        assert conn.get(b"a") == b"1"
    assert _contents(path) == {b"a": b"1"}


def test_destroy_refuses_a_directory_that_is_not_a_database(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "000001.log").write_bytes(b"")
    with pytest.raises(kvcy.ProgrammingError, match="not a kvcy database"):
        kvcy.destroy(str(tmp_path / "plain"))
    assert os.listdir(tmp_path / "plain") == ["000001.log"]
    with pytest.raises(kvcy.ProgrammingError, match="no such directory"):
        kvcy.destroy(str(tmp_path / "missing"))


def test_approximate_size_is_monotone_and_bounded_by_disk_size(tmp_path):
    path = str(tmp_path / "db")
    with kvcy.connect(path, compression=None) as conn:
        conn.put_many((_key(i), os.urandom(200)) for i in range(20000))
        conn.flush()
        tables = sum(os.path.getsize(os.path.join(path, n))
                     for n in os.listdir(path) if n.endswith(".sst"))
        whole = conn.approximate_size()
        assert whole == tables
        previous = 0
        for end in range(0, 20001, 2000):
            size = conn.approximate_size(None, _key(end))
            assert previous <= size <= whole
            previous = size
        half = conn.approximate_size(_key(0), _key(10000))
        assert 0.3 * whole < half < 0.7 * whole          # pro rata, not whole files
        assert conn.approximate_size(b"zzz", None) == 0
        assert conn.approximate_size(_key(5), _key(5)) <= whole // 10
        assert conn.approximate_size(_key(9000), _key(1000)) == 0      # empty range
        with pytest.raises(TypeError, match="start must be bytes-like"):
            conn.approximate_size(1, 2)


def test_cli_backup_and_restore_round_trip(tmp_path, capsys):
    src, backup, restored = (str(tmp_path / n) for n in ("db", "backup", "restored"))
    with kvcy.connect(src) as conn:
        conn.put_many((_key(i), b"v%d" % i) for i in range(1000))
        conn.flush()
        conn.put(b"tail", b"log")
    assert main(["backup", src, backup]) == 0
    assert main(["restore", backup, restored]) == 0
    expected = _contents(src)
    assert _contents(restored) == expected and len(expected) == 1001


def test_cli_backup_says_who_holds_the_lock_and_restore_refuses_a_non_empty_dest(tmp_path, capsys):
    src = str(tmp_path / "db")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with kvcy.connect(src):
        assert main(["backup", src, str(tmp_path / "b")]) == 1
        assert "locked by pid=%d" % os.getpid() in capsys.readouterr().err
    assert main(["backup", src, str(tmp_path / "b")]) == 0
    assert main(["restore", str(tmp_path / "b"), str(tmp_path / "full")]) == 1
    assert "not empty" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "full"), str(tmp_path / "r")]) == 1
    assert "not a kvcy database" in capsys.readouterr().err


_CHECKPOINT_CHILD = r"""
import os, sys, threading
import kvcy
db, out = sys.argv[1], sys.argv[2]
conn = kvcy.connect(db, memtable_max_bytes=64 * 1024)
def write():
    i = 0
    while True:
        conn.put(b"k%08d" % (i % 2000), b"v%d" % i)
        i += 1
threading.Thread(target=write, daemon=True).start()
n = 0
while True:
    sequence = conn.checkpoint(os.path.join(out, "cp%04d" % n))
    # Written aside and renamed: a kill mid-write must not leave a partial number.
    with open(os.path.join(out, "cp%04d.tmp" % n), "w") as f:
        f.write("%d" % sequence)
    os.rename(os.path.join(out, "cp%04d.tmp" % n), os.path.join(out, "cp%04d.seq" % n))
    print(n, flush=True)
    n += 1
"""


def test_checkpoints_killed_midway_leave_whole_copies_or_none(tmp_path):
    """kill -9 while a process checkpoints in a loop under writes: every
    checkpoint directory that exists opens, holds exactly its sequence's
    writes (key k gets value v<i> for its last write i <= sequence), and the
    database itself reopens."""
    import subprocess
    import sys
    import time
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", _CHECKPOINT_CHILD, str(tmp_path / "db"),
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline(), proc.stderr.read()   # one checkpoint done
        time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    copies = sorted(p for p in out.iterdir() if p.is_dir() and p.name.startswith("cp"))
    assert copies
    checked = 0
    for copy in copies:
        contents = _contents(str(copy))
        seq_file = out / (copy.name + ".seq")
        if not seq_file.exists():
            continue        # renamed into place just before the kill; opened above
        sequence = int(seq_file.read_text())
        # Write i (from 0) has sequence i + 1; the model at `sequence`:
        expected = {}
        for i in range(max(0, sequence - 2000), sequence):
            expected[b"k%08d" % (i % 2000)] = b"v%d" % i
        assert contents == expected, copy.name
        checked += 1
    assert checked >= 1
    with kvcy.connect(str(tmp_path / "db")) as conn:
        assert conn.stats()["last_sequence"] >= 1


def test_cli_restore_refuses_database_options(tmp_path, capsys):
    src = str(tmp_path / "db")
    kvcy.connect(src).close()
    assert main(["backup", src, str(tmp_path / "b"), "--block-cache-bytes", "1MiB"]) == 0
    assert main(["restore", str(tmp_path / "b"), str(tmp_path / "r"), "--sync"]) == 1
    assert "--sync has no effect here" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "r")


def test_checkpoint_removes_work_left_by_a_dead_checkpoint_but_not_a_live_one(tmp_path):
    import fcntl
    path = str(tmp_path / "db")
    dead = tmp_path / ".kvcy-checkpoint-dead"
    dead.mkdir()
    (dead / "000005.sst").write_bytes(b"half a copy")
    (tmp_path / ".kvcy-checkpoint-dead.lock").write_bytes(b"")
    live = tmp_path / ".kvcy-checkpoint-live"
    live.mkdir()
    (tmp_path / ".kvcy-checkpoint-live.lock").write_bytes(b"")
    held = os.open(tmp_path / ".kvcy-checkpoint-live.lock", os.O_RDWR)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        with kvcy.connect(path) as conn:
            conn.put(b"a", b"1")
            conn.checkpoint(str(tmp_path / "copy"))
    finally:
        os.close(held)
    assert not dead.exists() and not (tmp_path / ".kvcy-checkpoint-dead.lock").exists()
    assert live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".kvcy-checkpoint-live", ".kvcy-checkpoint-live.lock", "copy", "db"]
    assert _contents(str(tmp_path / "copy")) == {b"a": b"1"}


def test_destroy_cut_short_refuses_to_open_and_finishes_when_run_again(tmp_path, monkeypatch):
    path = str(tmp_path / "db")
    with kvcy.connect(path) as conn:
        conn.put(b"a", b"1")
        conn.flush()
        conn.put(b"b", b"2")
    real_remove = os.remove
    removed = []

    def crash_after_one(name):
        if removed:
            raise OSError("simulated crash")
        removed.append(name)
        real_remove(name)
    monkeypatch.setattr(os, "remove", crash_after_one)
    with pytest.raises(OSError, match="simulated crash"):
        kvcy.destroy(path)
    monkeypatch.setattr(os, "remove", real_remove)
    assert "CURRENT" not in os.listdir(path)
    with pytest.raises(kvcy.OperationalError, match="interrupted kvcy.destroy"):
        kvcy.connect(path)
    kvcy.destroy(path)
    assert not os.path.exists(path)
