"""Compaction and expiring values: expired pairs leave the disk
(kvcy/_compaction_loop.pyx, kvcy/expiry_compaction.py), with a fake clock."""
import pytest

import kvcy
from kvcy._merge import MergingIterator
from kvcy.dbformat import KIND_DELETE

from fake_clock import T0, FakeClock


@pytest.fixture
def clock():
    return FakeClock()


def table_entries(conn):
    """(user key, sequence, kind) of every entry in the connection's tables."""
    engine = conn._engine
    version = engine.versions.current
    children = [engine.table_cache.iterator(meta) for files in version.files for meta in files]
    it = MergingIterator(children)
    it.seek_to_first()
    out = []
    while it.valid():
        out.append((it.user_key(), it.sequence(), it.kind()))
        it.next()
    return out


def test_compaction_drops_expired_entries(tmp_path, clock):
    with kvcy.connect(tmp_path / "db", clock=clock) as conn:
        conn.put(b"k", b"old")
        conn.put(b"k", b"v", ttl=5)
        conn.put_many([(b"x%d" % i, b"x") for i in range(10)], ttl=5)
        conn.put(b"plain", b"p")
        conn.flush()
        conn.compact_range()
        assert conn.stats()["compaction_entries_expired"] == 0    # nothing expired yet
        assert {k for k, _, _ in table_entries(conn)} >= {b"k", b"x0", b"plain"}
        clock.advance(5)
        conn.compact_range()
        assert table_entries(conn) == [(b"plain", 1 + 1 + 10 + 1, 1)]
        assert conn.stats()["compaction_entries_expired"] == 11
        assert list(conn.scan()) == [(b"plain", b"p")]


def test_tables_record_their_earliest_expiry(tmp_path, clock):
    with kvcy.connect(tmp_path / "db", clock=clock) as conn:
        conn.put(b"plain", b"p")
        conn.flush()
        conn.put(b"a", b"1", ttl=30)
        conn.put(b"b", b"2", ttl=10)
        conn.flush()
        engine = conn._engine
        props = [engine.table_cache.find_table(m.number, m.file_size).properties
                 for m in engine.versions.current.files[0]]
        assert sorted(p.earliest_expiry for p in props) == [0, int(T0 * 1e6) + 10_000_000]


def test_compact_range_rewrites_the_deepest_level_in_place(tmp_path, clock):
    # Expired values in a table that nothing above overlaps are still removed.
    with kvcy.connect(tmp_path / "db", clock=clock) as conn:
        conn.put_many([(b"k%02d" % i, b"v") for i in range(20)], ttl=5)
        conn.put(b"keep", b"p")
        conn.flush()
        conn.compact_range()
        levels_before = [len(files) for files in conn._engine.versions.current.files]
        clock.advance(5)
        conn.compact_range()
        assert [len(files) for files in conn._engine.versions.current.files] == levels_before
        assert table_entries(conn) == [(b"keep", 21, 1)]
        assert conn.stats()["compaction_entries_expired"] == 20


def test_compaction_keeps_an_expired_entry_as_a_tombstone_while_a_snapshot_needs_it(
        tmp_path, clock):
    with kvcy.connect(tmp_path / "db", clock=clock) as conn:
        conn.put(b"k", b"old")
        snap = conn.snapshot()                     # sees b"old"
        conn.put(b"k", b"new", ttl=5)
        conn.flush()
        clock.advance(5)
        conn.compact_range()
        kinds = [(seq, kind) for key, seq, kind in table_entries(conn) if key == b"k"]
        assert kinds == [(2, KIND_DELETE), (1, 1)]  # the expired value became a tombstone
        assert conn.stats()["compaction_entries_expired"] == 1
        assert conn.get(b"k") is None               # the tombstone still hides b"old"
        assert snap.get(b"k") == b"old"
        snap.close()
        conn.put_many([(b"a", b"1"), (b"z", b"2")])  # a level-0 table whose range covers k
        conn.flush()
        conn.compact_range()                         # no snapshot needs the tombstone now
        assert [key for key, _, _ in table_entries(conn)] == [b"a", b"z"]


def test_compaction_reads_the_clock_once_not_per_entry(tmp_path, clock):
    with kvcy.connect(tmp_path / "db", clock=clock) as conn:
        conn.put_many([(b"%03d" % i, b"v") for i in range(50)], ttl=5)
        conn.flush()
        clock.advance(5)
        clock.calls = 0
        conn.compact_range()
        # Once by the L0 -> L1 compaction, once to look for expired tables.
        assert clock.calls == 2
        assert conn.stats()["compaction_entries_expired"] == 50


def test_the_background_worker_rewrites_tables_whose_values_expired(tmp_path, clock,
                                                                     monkeypatch):
    # No compact_range: the worker's idle check finds the table and rewrites
    # it in place (kvcy/background.py, expiry_compaction.EXPIRY_CHECK_SECONDS).
    from kvcy import expiry_compaction
    monkeypatch.setattr(expiry_compaction, "EXPIRY_CHECK_SECONDS", 0.0)
    with kvcy.connect(tmp_path / "db", clock=clock) as conn:
        conn.put_many([(b"k%02d" % i, b"v") for i in range(20)], ttl=5)
        conn.put(b"keep", b"p")
        conn.flush()
        conn.compact_range()                     # into level 1 and beyond
        for meta in [m for files in conn._engine.versions.current.files[1:] for m in files]:
            conn._engine.table_cache.find_table(meta.number, meta.file_size)   # open
        assert len(table_entries(conn)) == 21
        clock.advance(5)
        conn.put(b"wake", b"1")
        conn.flush()                             # a round of background work
        engine = conn._engine
        assert engine.background.wait_for(
            lambda: conn.stats()["compaction_entries_expired"] == 20, timeout=30)
        assert [k for k, _, _ in table_entries(conn)] == [b"keep", b"wake"]
        assert list(conn.scan()) == [(b"keep", b"p"), (b"wake", b"1")]
