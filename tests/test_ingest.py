"""kvcy.TableWriter and Connection.ingest (kvcy/table_writer.py, kvcy/ingest.py)."""
import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor

import pytest

import kvcy
from kvcy.errors import CorruptionError, NotSupportedError, ProgrammingError

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TESTS_DIR)


def write_table(path, pairs):
    with kvcy.TableWriter(path) as writer:
        writer.add_many(pairs)
    return writer.info


def key(i):
    return b"k%06d" % i


def table_files(dbpath):
    return sorted(n for n in os.listdir(dbpath) if n.endswith(".sst"))


def level_files(conn):
    return [level["files"] for level in conn.stats()["levels"]]


# -- TableWriter ------------------------------------------------------------

def test_table_writer_reports_range_and_count(tmp_path):
    info = write_table(tmp_path / "t", ((key(i), b"v%d" % i) for i in range(500)))
    assert (info.smallest, info.largest, info.count) == (key(0), key(499), 500)
    assert info.file_size == os.path.getsize(tmp_path / "t")


@pytest.mark.parametrize("second, what", [(b"a", "key out of order"), (b"b", "duplicate key")])
def test_table_writer_refuses_bad_order_naming_both_keys(tmp_path, second, what):
    path = tmp_path / "t"
    with pytest.raises(ProgrammingError) as info:
        with kvcy.TableWriter(path) as writer:
            writer.add(b"b", b"1")
            writer.add(second, b"2")
    message = str(info.value)
    assert what in message and repr(second) in message and "b'b'" in message
    assert not path.exists()          # an abandoned table leaves no file


def test_table_writer_refuses_options_without_effect(tmp_path):
    with pytest.raises(NotSupportedError, match="memtable_max_bytes"):
        kvcy.TableWriter(tmp_path / "t", memtable_max_bytes=1 << 20)
    with pytest.raises(ProgrammingError, match="block_size"):
        kvcy.TableWriter(tmp_path / "t", block_size=-1)


def test_table_writer_add_after_finish_refused(tmp_path):
    writer = kvcy.TableWriter(tmp_path / "t")
    writer.add(b"a", b"1")
    writer.finish()
    with pytest.raises(ProgrammingError, match="finished"):
        writer.add(b"b", b"2")


# -- ingest -----------------------------------------------------------------

def test_ingest_shadows_older_values_but_not_for_an_earlier_snapshot(tmp_path):
    with kvcy.connect(tmp_path / "db") as conn:
        conn.put(key(5), b"old")
        conn.put(key(7), b"old")
        conn.flush()
        conn.put(key(6), b"in the memtable")
        snap = conn.snapshot()
        write_table(tmp_path / "t", ((key(i), b"new") for i in range(10)))
        sequence = conn.ingest(tmp_path / "t")
        assert sequence == conn.stats()["last_sequence"]
        assert [conn.get(key(i)) for i in (5, 6, 7, 9)] == [b"new"] * 4
        assert [snap.get(key(i)) for i in (5, 6, 7, 9)] == [b"old", b"in the memtable",
                                                           b"old", None]
        assert level_files(conn)[0] == 3      # overlaps level 0: goes there
        conn.put(key(5), b"newer")            # later writes shadow the ingested pairs
        assert conn.get(key(5)) == b"newer"
    with kvcy.connect(tmp_path / "db") as conn:
        assert conn.get(key(5)) == b"newer" and conn.get(key(9)) == b"new"
        assert conn.check().ok


def test_ingest_overlapping_nothing_goes_to_the_last_level(tmp_path):
    with kvcy.connect(tmp_path / "db") as conn:
        conn.put(b"a", b"1")
        write_table(tmp_path / "t", ((key(i), b"v") for i in range(100)))
        conn.ingest([tmp_path / "t"])
        levels = level_files(conn)
        assert levels[-1] == 1 and levels[0] == 1     # the flushed memtable holds b"a"
        assert list(conn.scan())[:2] == [(b"a", b"1"), (key(0), b"v")]


def test_snapshot_does_not_see_a_file_that_overlaps_nothing(tmp_path):
    # Without a snapshot such a file is copied unchanged (sequence 0); with
    # one it must be rewritten at a sequence the snapshot does not see.
    with kvcy.connect(tmp_path / "db") as conn:
        conn.put(b"a", b"1")
        snap = conn.snapshot()
        with conn.transaction() as txn:
            assert txn.get(key(3)) is None
            write_table(tmp_path / "t", ((key(i), b"v") for i in range(10)))
            conn.ingest(tmp_path / "t")
            assert snap.get(key(3)) is None and conn.get(key(3)) == b"v"
            txn.put(key(3), b"from the transaction")
            with pytest.raises(kvcy.ConflictError):
                txn.commit()
        assert len(list(snap.scan())) == 1
        assert level_files(conn)[-1] == 1


def test_ingest_goes_just_above_the_shallowest_overlapping_level(tmp_path):
    with kvcy.connect(tmp_path / "db") as conn:
        conn.put(key(50), b"old")
        conn.compact_range()                  # into level 1
        assert level_files(conn)[1] == 1
        write_table(tmp_path / "t", ((key(i), b"new") for i in range(100)))
        conn.ingest(tmp_path / "t")
        assert level_files(conn)[0] == 1      # above level 1, which it overlaps
        assert conn.get(key(50)) == b"new"


def test_ingest_several_disjoint_files_in_one_step(tmp_path):
    paths = []
    for part in range(3):
        path = tmp_path / ("t%d" % part)
        write_table(path, ((key(i), b"p%d" % part) for i in range(part * 100, part * 100 + 100)))
        paths.append(path)
    with kvcy.connect(tmp_path / "db") as conn:
        conn.ingest(reversed(paths), move=True)
        assert conn.get(key(150)) == b"p1" and len(list(conn.scan())) == 300
    assert not any(p.exists() for p in paths)     # move=True deletes the sources


def test_ingest_refuses_overlapping_files(tmp_path):
    write_table(tmp_path / "a", [(b"a", b"1"), (b"m", b"1")])
    write_table(tmp_path / "b", [(b"k", b"2"), (b"z", b"2")])
    with kvcy.connect(tmp_path / "db") as conn:
        with pytest.raises(ProgrammingError, match="key ranges overlap"):
            conn.ingest([tmp_path / "a", tmp_path / "b"])
        assert conn.get(b"a") is None


def test_corrupt_file_refused_with_nothing_ingested(tmp_path):
    write_table(tmp_path / "good", ((key(i), b"v") for i in range(100)))
    write_table(tmp_path / "bad", ((key(i), b"v" * 50) for i in range(100, 2000)))
    with open(tmp_path / "bad", "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0x40]))
    with kvcy.connect(tmp_path / "db") as conn:
        before = table_files(tmp_path / "db")
        with pytest.raises(CorruptionError, match="bad"):
            conn.ingest([tmp_path / "good", tmp_path / "bad"], move=True)
        assert conn.get(key(0)) is None
        assert table_files(tmp_path / "db") == before
    assert (tmp_path / "good").exists() and (tmp_path / "bad").exists()


def test_ingest_refuses_a_missing_file_and_a_database_table(tmp_path):
    with kvcy.connect(tmp_path / "db") as conn:
        with pytest.raises(ProgrammingError, match="no such file"):
            conn.ingest(tmp_path / "missing")
        conn.put(b"x", b"1")
        conn.flush()
        own = os.path.join(tmp_path / "db", table_files(tmp_path / "db")[0])
        with pytest.raises(ProgrammingError, match="not a kvcy.TableWriter file"):
            conn.ingest(own)


def test_ingest_of_empty_files_changes_nothing(tmp_path):
    write_table(tmp_path / "empty", [])
    with kvcy.connect(tmp_path / "db") as conn:
        last = conn.stats()["last_sequence"]
        assert conn.ingest(tmp_path / "empty") is None
        assert conn.stats()["last_sequence"] == last


# -- crash safety -----------------------------------------------------------

_CRASH_CHILD = r"""
import os, signal, sys
sys.path.insert(0, {repo!r})
import kvcy, kvcy.ingest as ingest
point = {point!r}
def die(*args, **kw):
    os.kill(os.getpid(), signal.SIGKILL)
rewrite = ingest.rewrite_with_sequence
def rewrite_then_maybe_die(*args):
    out = rewrite(*args)
    if point == "after first copy":
        die()
    return out
ingest.rewrite_with_sequence = rewrite_then_maybe_die
conn = kvcy.connect({db!r})
if point == "before record":
    conn._engine.versions.log_and_apply = die
if point == "after record":
    conn._engine._after_version_change = die
conn.ingest({paths!r})
die()
"""


@pytest.mark.parametrize("point", ["after first copy", "before record", "after record"])
def test_kill_during_ingest_leaves_all_or_none(tmp_path, point):
    db = str(tmp_path / "db")
    with kvcy.connect(db) as conn:
        conn.put_many([(key(i), b"old") for i in range(0, 400, 7)])
    paths = []
    for part in range(2):
        path = str(tmp_path / ("t%d" % part))
        write_table(path, ((key(i), b"new") for i in range(part * 200, part * 200 + 200)))
        paths.append(path)
    script = _CRASH_CHILD.format(repo=REPO_DIR, point=point, db=db, paths=paths)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with kvcy.connect(db) as conn:
        values = {conn.get(key(i)) for i in range(400)}
        if point == "after record":
            assert values == {b"new"}
        else:
            assert values == {b"old", None}
        assert conn.check().ok
        live = len(table_files(db))
        assert live == sum(level_files(conn))    # the unrecorded copies were deleted


# -- the several-processes recipe (docs/guide.md, "Bulk loading") ------------

def build_range(args):
    """Write the table of keys [start, stop) to path; return the path."""
    path, start, stop = args
    with kvcy.TableWriter(path) as writer:
        writer.add_many((key(i), b"value %d" % i) for i in range(start, stop))
    return path


def test_tables_built_in_several_processes_ingested_together(tmp_path):
    ranges = [(str(tmp_path / ("part%d.kvt" % n)), n * 2500, (n + 1) * 2500) for n in range(4)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        paths = list(pool.map(build_range, ranges))
    with kvcy.connect(tmp_path / "db") as conn:
        conn.ingest(paths, move=True)
        assert len(list(conn.scan())) == 10000
        assert conn.get(key(7777)) == b"value 7777"


def test_parallel_checks_report_the_first_bad_file_in_order(tmp_path):
    # Several files are checked by threads; the error is still the first
    # failing path's, as a check one by one would give.
    names = ["f0", "f1", "f2", "f3"]
    for n, name in enumerate(names):
        write_table(tmp_path / name, ((key(i), b"v" * 50) for i in range(n * 1000, n * 1000 + 900)))
    for name in ("f1", "f3"):
        with open(tmp_path / name, "r+b") as f:
            f.seek(200)
            byte = f.read(1)
            f.seek(200)
            f.write(bytes([byte[0] ^ 0x01]))
    with kvcy.connect(tmp_path / "db") as conn:
        with pytest.raises(CorruptionError, match=r"cannot ingest \S*f1"):
            conn.ingest([tmp_path / name for name in names])
        assert conn.get(key(0)) is None
