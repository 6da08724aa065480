"""Read-only connections beside a writer (readonly=True; kvcy/recovery.py,
kvcy/table_cache.py, Connection.refresh).

A read-only connection serves the state it opened (or last refreshed to):
its tables stay readable, through files it holds open, after the writer's
compactions delete them; refresh() moves it to the writer's latest state;
an open that races the writer's MANIFEST switch, log deletion or table
deletion starts again; real damage still raises.  The last tests run real
writer and reader processes (tests/readers_beside_writer.py).
"""
import os
import time

import pytest

import kvcy
from kvcy import CorruptionError, OperationalError, ProgrammingError
from kvcy.env import PosixEnv
from kvcy.recovery import READONLY_OPEN_ATTEMPTS
from kvcy.version_edit import VersionEdit

import readers_beside_writer as stress

# No background compaction: the tests decide when tables are replaced.
QUIET = dict(memtable_max_bytes=64 * 1024, level0_compaction_trigger=100,
             level0_slowdown_trigger=100, level0_stop_trigger=100)


def table_numbers(path):
    return {int(name[:-4]) for name in os.listdir(path) if name.endswith(".sst")}


def fill(conn, version, count=3000):
    conn.put_many([(b"k%05d" % i, b"v%d-%05d" % (version, i)) for i in range(count)])


# --- opening beside a writer ------------------------------------------------

def test_readonly_open_while_writer_holds_the_lock(db_path):
    with kvcy.connect(db_path) as writer:
        writer.put(b"a", b"1")
        writer.put_many([(b"b", b"2"), (b"c", b"3")])
        writer.delete(b"c")
        ro = kvcy.connect(db_path, readonly=True)
        try:
            assert ro.get_many([b"a", b"b", b"c"]) == [b"1", b"2", None]
            for call in (lambda: ro.put(b"x", b"y"), lambda: ro.delete(b"a"),
                         lambda: ro.put_many([(b"x", b"y")]),
                         lambda: ro.delete_many([b"a"]),
                         lambda: ro.write(kvcy.WriteBatch())):
                with pytest.raises(OperationalError, match="read-only"):
                    call()
            assert ro.get(b"a") == b"1"
        finally:
            ro.close()
        # Closing the read-only connection left the writer's lock alone.
        with pytest.raises(OperationalError, match="locked"):
            kvcy.connect(db_path)
        writer.put(b"d", b"4")
        assert writer.get(b"d") == b"4"
    with kvcy.connect(db_path) as conn:
        assert conn.get_many([b"a", b"b", b"c", b"d"]) == [b"1", b"2", None, b"4"]


def test_readonly_open_does_not_write(db_path):
    with kvcy.connect(db_path) as conn:
        conn.put(b"a", b"1")
    before = {p.name: p.read_bytes() for p in db_path.iterdir()}
    with kvcy.connect(db_path, readonly=True) as ro:
        assert ro.get(b"a") == b"1"
        ro.refresh()
        assert ro.get(b"a") == b"1"
    after = {p.name: p.read_bytes() for p in db_path.iterdir()}
    assert after == before


def test_readonly_on_missing_database_raises(db_path):
    with pytest.raises(OperationalError):
        kvcy.connect(db_path, readonly=True)
    assert not db_path.exists()


# --- serving one state until refresh() ----------------------------------------

def test_reader_keeps_its_state_after_the_writer_deletes_its_tables(db_path):
    with kvcy.connect(db_path, **QUIET) as writer:
        fill(writer, 1)
        writer.flush()
        ro = kvcy.connect(db_path, readonly=True)
        try:
            opened_with = table_numbers(db_path)
            fill(writer, 2)
            writer.put(b"new", b"1")
            writer.compact_range()
            assert not opened_with & table_numbers(db_path)   # every one deleted
            # Point reads, get_many and scans all read the state it opened.
            assert ro.get(b"k00007") == b"v1-00007"
            assert ro.get_many([b"k00001", b"k02999", b"new"]) == [
                b"v1-00001", b"v1-02999", None]
            assert list(ro.scan()) == [(b"k%05d" % i, b"v1-%05d" % i) for i in range(3000)]
            assert [k for k, _ in ro.scan(reverse=True, prefix=b"k0299")][:2] == [
                b"k02999", b"k02998"]
            ro.refresh()
            assert ro.get(b"k00007") == b"v2-00007"
            assert ro.get(b"new") == b"1"
            assert len(list(ro.scan())) == 3001
            assert ro.stats()["last_sequence"] == writer.stats()["last_sequence"]
        finally:
            ro.close()
        writer.refresh()                         # a writable connection is always current
        assert writer.get(b"new") == b"1"
    with pytest.raises(ProgrammingError):
        ro.refresh()


def test_iterator_and_snapshot_outlive_a_refresh_and_the_deleted_tables(db_path):
    with kvcy.connect(db_path, **QUIET) as writer:
        fill(writer, 1)
        writer.flush()
        with kvcy.connect(db_path, readonly=True) as ro:
            it = ro.scan(start=b"k01000")
            assert next(it) == (b"k01000", b"v1-01000")   # it has read a table
            snap = ro.snapshot()
            fill(writer, 2)
            writer.compact_range()
            ro.refresh()
            fill(writer, 3)
            writer.compact_range()               # the refreshed state's tables go too
            assert [kv for _, kv in zip(range(3), it)] == [
                (b"k%05d" % i, b"v1-%05d" % i) for i in (1001, 1002, 1003)]
            assert snap.get(b"k00005") == b"v1-00005"
            assert snap.get_many([b"k00006"]) == [b"v1-00006"]
            assert len([kv for kv in snap.scan() if kv[1].startswith(b"v1-")]) == 3000
            assert ro.get(b"k00005") == b"v2-00005"
            snap.close()
            it.close()
            ro.refresh()
            assert ro.get(b"k00005") == b"v3-00005"


def test_reader_with_more_tables_than_max_open_files(db_path):
    # Its parsed tables are capped by max_open_files; their files stay open,
    # so a table dropped from the cache is parsed again from the open file
    # after the writer deleted it.
    with kvcy.connect(db_path, target_file_bytes=1024, compression="none", **QUIET) as writer:
        fill(writer, 1, 10000)
        writer.compact_range()
        tables = table_numbers(db_path)
        assert len(tables) > 32
        with kvcy.connect(db_path, readonly=True, max_open_files=16) as ro:
            cache = ro._engine.table_cache
            assert set(cache.pinned) == tables
            fill(writer, 2, 10000)
            writer.compact_range()
            assert not tables & table_numbers(db_path)
            for _ in range(2):
                assert [ro.get(b"k%05d" % i) for i in range(0, 10000, 7)] == [
                    b"v1-%05d" % i for i in range(0, 10000, 7)]
            assert len(cache) <= cache.capacity == 16
            assert cache.opens > 16
            assert len(list(ro.scan())) == 10000


def test_refresh_keeps_open_files_and_caches_of_tables_still_live(db_path):
    with kvcy.connect(db_path, **QUIET) as writer:
        fill(writer, 1)
        writer.flush()
        with kvcy.connect(db_path, readonly=True) as ro:
            assert ro.get(b"k00001") == b"v1-00001"
            old = ro._engine
            old_table = old.table_cache.find_table(*next(
                (f.number, f.file_size) for f in old.versions.current.files[0]))
            writer.put(b"k00001", b"new")
            writer.flush()
            ro.refresh()
            new = ro._engine
            assert new is not old and old.closed
            assert new.block_cache is old.block_cache
            assert new.row_cache is old.row_cache
            assert set(new.table_cache.pinned) > set(old.table_cache.pinned)
            for number, file in old.table_cache.pinned.items():
                assert new.table_cache.pinned[number] is file     # shared, not reopened
            assert new.table_cache.find_table(old_table.number, 0) is old_table
            assert ro.get(b"k00001") == b"new"


def _state_of(conn):
    engine = conn._engine
    vset = engine.versions
    return ([[(f.number, f.file_size, f.smallest, f.largest) for f in level]
             for level in vset.current.files],
            vset.log_number, vset.last_sequence, vset.next_file_number,
            sorted(vset.compact_pointers.items()), engine.last_sequence)


def test_refresh_reads_only_the_new_manifest_edits(db_path, monkeypatch):
    decoded = []
    real_decode = VersionEdit.decode.__func__
    monkeypatch.setattr(VersionEdit, "decode",
                        classmethod(lambda cls, data: decoded.append(1) or real_decode(cls, data)))
    with kvcy.connect(db_path, **QUIET) as writer:
        for version in range(5):
            fill(writer, version, 500)
            writer.flush()
        with kvcy.connect(db_path, readonly=True) as ro:
            at_open = len(decoded)
            assert at_open >= 5
            fill(writer, 9, 500)
            writer.flush()                       # one more edit
            writer.compact_range()               # and a few for the compaction
            del decoded[:]
            ro.refresh()
            assert 0 < len(decoded) < at_open
            with kvcy.connect(db_path, readonly=True) as fresh:
                assert _state_of(ro) == _state_of(fresh)
                assert list(ro.scan()) == list(fresh.scan())
    # The writer's next open starts a new MANIFEST: a refresh reads it whole.
    with kvcy.connect(db_path, readonly=True) as ro:
        with kvcy.connect(db_path, **QUIET) as writer:
            fill(writer, 10, 500)
            writer.flush()
            old_manifest = ro._engine.versions.manifest_number
            ro.refresh()
            assert ro._engine.versions.manifest_number != old_manifest
            with kvcy.connect(db_path, readonly=True) as fresh:
                assert _state_of(ro) == _state_of(fresh)
            assert ro.get(b"k00001") == b"v10-00001"


# --- opens that race the writer -----------------------------------------------

class RacingEnv(PosixEnv):
    """Runs `action` once, just before the read-only open reads the first
    file whose name ends with `suffix`: the writer moves on right then."""

    def __init__(self, suffix, action):
        self.suffix = suffix
        self.action = action
        self.opened = []

    def _maybe_race(self, path):
        self.opened.append(os.path.basename(path))
        if self.action is not None and path.endswith(self.suffix):
            action, self.action = self.action, None
            action()

    def new_sequential_file(self, path):
        self._maybe_race(path)
        return super().new_sequential_file(path)

    def new_random_access_file(self, path):
        self._maybe_race(path)
        return super().new_random_access_file(path)


@pytest.mark.parametrize("paranoid_checks", [True, False])
def test_open_retries_when_the_writer_deletes_the_log_it_is_about_to_read(
        db_path, paranoid_checks):
    with kvcy.connect(db_path, **QUIET) as writer:
        fill(writer, 1, 500)
        log = "%06d.log" % writer.stats()["log_number"]

        def flush_and_delete_the_log():             # the log becomes a table and goes
            writer.flush()
            assert _wait_for(lambda: not os.path.exists(db_path / log))

        env = RacingEnv(".log", flush_and_delete_the_log)
        with kvcy.connect(db_path, readonly=True, env=env,
                          paranoid_checks=paranoid_checks) as ro:
            assert env.opened.count(log) == 1 and env.action is None
            assert ro.get(b"k00499") == b"v1-00499"
            assert ro.stats()["last_sequence"] == writer.stats()["last_sequence"]


def test_open_retries_when_the_writer_deletes_a_table_it_is_about_to_open(db_path):
    with kvcy.connect(db_path, **QUIET) as writer:
        fill(writer, 1)
        writer.flush()
        fill(writer, 2)
        writer.flush()
        before = table_numbers(db_path)
        env = RacingEnv(".sst", writer.compact_range)
        with kvcy.connect(db_path, readonly=True, env=env) as ro:
            assert env.action is None
            assert not before & set(ro._engine.table_cache.pinned)
            assert ro.get(b"k00001") == b"v2-00001"


def test_a_table_missing_for_good_still_raises(db_path):
    with kvcy.connect(db_path, **QUIET) as writer:
        fill(writer, 1)
        writer.flush()
    victim = min(table_numbers(db_path))
    os.remove(db_path / ("%06d.sst" % victim))
    env = RacingEnv(".never", None)
    with pytest.raises(CorruptionError, match="%06d.sst" % victim):
        kvcy.connect(db_path, readonly=True, env=env)
    # Nothing moved, so it gave up after READONLY_OPEN_ATTEMPTS reads of CURRENT.
    assert env.opened.count("CURRENT") >= READONLY_OPEN_ATTEMPTS


def test_refresh_after_close_in_another_thread_leaves_nothing_open(db_path):
    with kvcy.connect(db_path) as writer:
        writer.put(b"a", b"1")
        ro = kvcy.connect(db_path, readonly=True)
        ro.close()
        with pytest.raises(ProgrammingError):
            ro.refresh()
        with pytest.raises(ProgrammingError):
            ro.get(b"a")


# --- real processes -----------------------------------------------------------

def _check_stress(result):
    writer = result["writer"]
    assert writer["compactions"] > 0 and writer["flushes"] > 0
    for reader in result["readers"]:
        assert reader["failures"] == 0, reader["errors"]
        assert reader["wrong"] == 0, reader["errors"]
        assert reader["reads"] > 1000
    assert result["readers"][1]["refreshes"] > 0


def test_readers_beside_a_busy_writer(tmp_path):
    _check_stress(stress.run(str(tmp_path / "db"), seconds=4, readers=2))


@pytest.mark.slow
def test_readers_beside_a_busy_writer_for_30_seconds(tmp_path):
    _check_stress(stress.run(str(tmp_path / "db"), seconds=30, readers=2))


# --- refresh_interval ---------------------------------------------------------

def _wait_for(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_refresh_interval_moves_the_reader_forward_by_itself(db_path):
    with kvcy.connect(db_path) as writer:
        writer.put(b"a", b"1")
        with kvcy.connect(db_path, readonly=True, refresh_interval=0.05) as ro:
            assert ro.get(b"a") == b"1"
            writer.put(b"a", b"2")
            assert _wait_for(lambda: ro.get(b"a") == b"2")
            assert ro._refresher.refreshes >= 1 and ro._refresher.failures == 0
            thread = ro._refresher._thread
        assert not thread.is_alive()             # close() stopped it
    with kvcy.connect(db_path, readonly=True, refresh_interval=3600) as ro:
        with kvcy.connect(db_path) as writer:
            writer.put(b"a", b"3")
        time.sleep(0.1)
        assert ro.get(b"a") == b"2"              # not before the interval
        assert ro._refresher.refreshes == 0
    with pytest.raises(ProgrammingError, match="refresh_interval"):
        kvcy.connect(db_path, refresh_interval=1)


def test_refresh_interval_keeps_the_old_state_when_a_refresh_fails(db_path):
    with kvcy.connect(db_path) as writer:
        writer.put(b"a", b"1")
    with kvcy.connect(db_path, readonly=True, refresh_interval=0.02) as ro:
        current = db_path / "CURRENT"
        saved = current.read_bytes()
        current.write_bytes(b"garbage\n")        # every refresh now fails
        try:
            assert _wait_for(lambda: ro._refresher.failures >= 1)
            assert isinstance(ro._refresher.last_error, CorruptionError)
            assert ro.get(b"a") == b"1"
        finally:
            current.write_bytes(saved)
        assert _wait_for(lambda: ro._refresher.refreshes >= 1)
        assert ro.get(b"a") == b"1"
