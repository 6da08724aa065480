"""Snapshots: conn.snapshot() reads the database as it was when taken.

get, get_many and scan through a snapshot ignore every later put, delete,
put_many, delete_many and WriteBatch, and keep doing so across flushes,
background compactions and compact_range() (which must keep every version
a live snapshot can see, tombstones included).  Several snapshots taken at
different times each see their own state.  A snapshot is released by
close() (alias release()) or its with block; after that, and after the
connection closes (snapshots do not survive a reopen), using it raises
ProgrammingError.  Releasing lets compaction drop what only it needed.
"""
import random

import pytest

import kvcy
from kvcy import ProgrammingError

SMALL = dict(memtable_max_bytes=64 * 1024, target_file_bytes=64 * 1024,
             level1_max_bytes=256 * 1024)


# -- helpers ---------------------------------------------------------------------

def flush_all(conn):
    """conn.flush(), checking that it left nothing in the memtables."""
    conn.flush()
    stats = conn.stats()
    assert (stats["memtable_entries"], stats["immutable_memtables"]) == (0, 0)


def expected(model, start=None, stop=None, prefix=None, reverse=False):
    rows = sorted((k, v) for k, v in model.items()
                  if (start is None or k >= start) and (stop is None or k < stop)
                  and (prefix is None or k.startswith(prefix)))
    return rows[::-1] if reverse else rows


def check_view(view, model, keys):
    """view (a snapshot or connection) shows exactly model for keys."""
    for key in keys:
        assert view.get(key) == model.get(key), key
    assert view.get_many(keys) == [model.get(k) for k in keys]
    assert list(view.scan()) == expected(model)
    assert list(view.scan(reverse=True)) == expected(model, reverse=True)


def total_table_bytes(conn):
    stats = conn.stats()
    return sum(v for k, v in stats.items() if k.startswith("level") and k.endswith("_bytes"))


@pytest.fixture
def conn(db_path):
    c = kvcy.connect(db_path)
    yield c
    c.close()


# -- isolation from later writes ---------------------------------------------------

def test_get_ignores_later_puts_and_deletes(conn):
    conn.put(b"a", b"1")
    conn.put(b"b", b"2")
    with conn.snapshot() as snap:
        conn.put(b"a", b"changed")
        conn.delete(b"b")
        conn.put(b"c", b"new")
        assert snap.get(b"a") == b"1"
        assert snap.get(b"b") == b"2"
        assert snap.get(b"c") is None
        assert snap.get(b"c", b"dflt") == b"dflt"
        assert b"b" in snap and b"c" not in snap
        assert conn.get(b"a") == b"changed" and conn.get(b"b") is None


def test_later_batches_are_invisible(conn):
    conn.put_many([(b"k%d" % i, b"v%d" % i) for i in range(10)])
    model = {b"k%d" % i: b"v%d" % i for i in range(10)}
    snap = conn.snapshot()
    conn.put_many([(b"k1", b"x"), (b"k10", b"y")])
    conn.delete_many([b"k2", b"k3"])
    batch = kvcy.WriteBatch()
    batch.put(b"k4", b"batched")
    batch.delete(b"k5")
    batch.put(b"", b"empty key")
    conn.write(batch)
    keys = list(model) + [b"k10", b""]
    assert snap.get_many(keys) == [model.get(k) for k in keys]
    assert snap.get_many([b"k10", b"k1"], b"d") == [b"d", b"v1"]
    assert list(snap.scan()) == expected(model)
    snap.close()


def test_scan_with_bounds_prefix_and_reverse(conn):
    model = {b"%s%d" % (p, i): b"%d" % i for p in (b"a", b"b", b"c") for i in range(5)}
    conn.put_many(model.items())
    snap = conn.snapshot()
    conn.delete_many([b"a1", b"b1", b"c1"])
    conn.put_many([(b"a1x", b"new"), (b"b0", b"changed"), (b"b\xff", b"new")])
    for kw in (dict(), dict(reverse=True), dict(start=b"a3", stop=b"b2"),
               dict(start=b"b", reverse=True), dict(stop=b"b1", reverse=True),
               dict(prefix=b"b"), dict(prefix=b"b", reverse=True),
               dict(prefix=b"a", start=b"a1", stop=b"a4"), dict(prefix=b"")):
        assert list(snap.scan(**kw)) == expected(model, **kw), kw
    snap.close()


def test_a_scan_started_before_the_writes_and_one_started_after(conn):
    conn.put_many([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])
    snap = conn.snapshot()
    early = snap.scan()
    assert next(early) == (b"a", b"1")
    conn.delete(b"b")
    conn.put(b"bb", b"new")
    late = snap.scan()
    assert list(early) == [(b"b", b"2"), (b"c", b"3")]
    assert list(late) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
    snap.close()


# -- across flushes, compactions and levels ------------------------------------------

@pytest.mark.parametrize("row_cache", [0, 1 << 20])
def test_versions_in_every_place_of_the_tree(db_path, row_cache):
    # One key, five versions: level 1+, level 0, immutable/flushed, memtable.
    with kvcy.connect(db_path, row_cache_bytes=row_cache) as conn:
        snaps, states = [], []

        def take(value):
            snaps.append(conn.snapshot())
            states.append(value)

        take(None)
        conn.put(b"k", b"v1")
        conn.put(b"other", b"o")
        conn.compact_range()
        take(b"v1")
        conn.delete(b"k")
        flush_all(conn)
        take(None)
        conn.put(b"k", b"v3")
        flush_all(conn)
        take(b"v3")
        conn.put(b"k", b"v4")
        take(b"v4")
        conn.delete(b"k")
        take(None)
        for _ in range(2):
            for snap, value in zip(snaps, states):
                assert snap.get(b"k") == value
                assert snap.get_many([b"k", b"other"])[0] == value
                want = [(b"k", value)] if value is not None else []
                assert [r for r in snap.scan() if r[0] == b"k"] == want
                assert [r for r in snap.scan(reverse=True) if r[0] == b"k"] == want
            conn.compact_range()                     # everything merged into one level
        assert conn.get(b"k") is None
        for snap in snaps:
            snap.close()


def test_tombstone_stays_visible_to_its_snapshot_after_compaction(conn):
    conn.put(b"k", b"v1")
    conn.put(b"z", b"z")
    s1 = conn.snapshot()
    conn.delete(b"k")
    s2 = conn.snapshot()
    conn.put(b"k", b"v3")
    s3 = conn.snapshot()
    conn.compact_range()
    assert (s1.get(b"k"), s2.get(b"k"), s3.get(b"k")) == (b"v1", None, b"v3")
    s3.close()
    conn.delete(b"k")                                # now the newest entry is a tombstone too
    conn.compact_range()
    assert (s1.get(b"k"), s2.get(b"k")) == (b"v1", None)
    assert list(s2.scan()) == [(b"z", b"z")]
    s1.close()
    conn.compact_range()
    assert s2.get(b"k") is None and conn.get(b"k") is None
    assert list(s2.scan()) == [(b"z", b"z")] == list(conn.scan())
    s2.close()


@pytest.mark.parametrize("row_cache", [0, 1 << 20])
def test_snapshots_survive_flushes_and_compactions(db_path, row_cache):
    rng = random.Random(3)
    key_space = 2000
    keys = [b"key%05d" % i for i in range(key_space)]
    model = {}
    snaps = []
    with kvcy.connect(db_path, row_cache_bytes=row_cache, **SMALL) as conn:
        for phase in range(5):
            for i in range(2500):
                key = keys[rng.randrange(key_space)]
                if i % 5 == 0:
                    conn.delete(key)
                    model.pop(key, None)
                else:
                    value = rng.randbytes(rng.randrange(30, 200))
                    conn.put(key, value)
                    model[key] = value
            snaps.append((conn.snapshot(), dict(model)))
            if phase == 2:
                conn.compact_range(keys[500], keys[1500])
            elif phase == 3:
                flush_all(conn)
        stats = conn.stats()
        assert stats["compactions"] > 0 and stats["flushes"] > 0       # the premise
        conn.compact_range()
        sample = keys[::7] + [b"", b"key", b"zzz"]
        for snap, state in snaps:
            check_view(snap, state, sample)
            assert list(snap.scan(keys[100], keys[900])) == expected(state, keys[100],
                                                                     keys[900])
            assert (list(snap.scan(prefix=b"key01", reverse=True))
                    == expected(state, prefix=b"key01", reverse=True))
        check_view(conn, model, sample)
        for snap, _ in snaps:
            snap.close()


def test_several_snapshots_each_see_their_own_state(conn):
    rng = random.Random(5)
    keys = [b"k%02d" % i for i in range(30)]
    model = {}
    taken = []
    for step in range(12):
        for _ in range(20):
            key = rng.choice(keys)
            if rng.random() < 0.3:
                conn.delete(key)
                model.pop(key, None)
            else:
                model[key] = b"%d:%d" % (step, rng.randrange(1000))
                conn.put(key, model[key])
        taken.append((conn.snapshot(), dict(model)))
        if step % 4 == 3:
            flush_all(conn)
        if step % 6 == 5:
            conn.compact_range()
    for snap, state in taken:
        check_view(snap, state, keys + [b"zz"])
    # Releasing some leaves the others' views intact.
    for snap, _ in taken[::2]:
        snap.close()
    conn.compact_range()
    for snap, state in taken[1::2]:
        check_view(snap, state, keys)
        snap.close()
    check_view(conn, model, keys)


def test_releasing_a_snapshot_lets_compaction_drop_old_versions(db_path):
    n, size = 300, 1000
    rng = random.Random(9)
    keys = [b"k%04d" % i for i in range(n)]

    def overwrite(conn, tag):
        values = {k: tag + rng.randbytes(size) for k in keys}
        conn.put_many(values.items())
        return values

    with kvcy.connect(db_path, **SMALL) as conn:
        v1 = overwrite(conn, b"1")
        snap = conn.snapshot()
        overwrite(conn, b"2")
        conn.compact_range()
        assert total_table_bytes(conn) > 1.8 * n * size     # v1 kept for the snapshot
        assert snap.get_many(keys) == [v1[k] for k in keys]
        snap.close()
        v3 = overwrite(conn, b"3")
        conn.compact_range()
        assert total_table_bytes(conn) < 1.5 * n * size     # only v3 left
        assert conn.get_many(keys) == [v3[k] for k in keys]


# -- release and lifetime --------------------------------------------------------------

def test_close_and_with_release_the_snapshot(conn):
    conn.put(b"a", b"1")
    snap = conn.snapshot()
    assert not snap.closed
    snap.close()
    assert snap.closed
    snap.close()                                      # idempotent
    with conn.snapshot() as snap2:
        assert snap2.get(b"a") == b"1"
        assert not snap2.closed
    assert snap2.closed
    snap3 = conn.snapshot()
    snap3.release()
    assert snap3.closed


def test_release_on_error_in_with_block(conn):
    with pytest.raises(KeyError):
        with conn.snapshot() as snap:
            raise KeyError("boom")
    assert snap.closed


_USES = {
    "get": lambda s: s.get(b"a"),
    "get_default": lambda s: s.get(b"zz", b"d"),
    "get_many": lambda s: s.get_many([b"a"]),
    "scan": lambda s: s.scan(),
    "scan_bounds": lambda s: s.scan(b"a", b"b", prefix=b"a", reverse=True),
    "contains": lambda s: b"a" in s,
    "with": lambda s: s.__enter__(),
}


@pytest.mark.parametrize("use", sorted(_USES))
def test_a_released_snapshot_raises_programming_error(conn, use):
    conn.put(b"a", b"1")
    snap = conn.snapshot()
    snap.close()
    with pytest.raises(ProgrammingError):
        _USES[use](snap)
    assert conn.get(b"a") == b"1"


@pytest.mark.parametrize("use", sorted(_USES))
def test_snapshot_after_connection_close_raises_programming_error(db_path, use):
    conn = kvcy.connect(db_path)
    conn.put(b"a", b"1")
    snap = conn.snapshot()
    conn.close()
    with pytest.raises(ProgrammingError):
        _USES[use](snap)
    snap.close()                                      # releasing is still fine


def test_snapshot_iterators_are_closed_with_the_connection(db_path):
    conn = kvcy.connect(db_path)
    conn.put_many([(b"a", b"1"), (b"b", b"2")])
    snap = conn.snapshot()
    it = snap.scan()
    assert next(it) == (b"a", b"1")
    conn.close()
    with pytest.raises(ProgrammingError):
        next(it)


def test_snapshots_do_not_survive_a_reopen(db_path):
    conn = kvcy.connect(db_path)
    conn.put(b"a", b"old")
    snap = conn.snapshot()
    conn.put(b"a", b"new")
    conn.delete(b"gone")
    conn.close()
    with kvcy.connect(db_path) as conn2:
        with pytest.raises(ProgrammingError):
            snap.get(b"a")
        with pytest.raises(ProgrammingError):
            snap.scan()
        assert conn2.get(b"a") == b"new"
        with conn2.snapshot() as fresh:
            conn2.put(b"a", b"newer")
            assert fresh.get(b"a") == b"new"
        assert conn2.get(b"a") == b"newer"


def test_snapshot_on_a_closed_connection_raises(db_path):
    conn = kvcy.connect(db_path)
    conn.close()
    with pytest.raises(ProgrammingError):
        conn.snapshot()


def test_snapshot_sequence_orders_snapshots(conn):
    s1 = conn.snapshot()
    conn.put(b"a", b"1")
    s2 = conn.snapshot()
    s3 = conn.snapshot()
    assert s1.sequence < s2.sequence == s3.sequence
    for s in (s1, s2, s3):
        s.close()


@pytest.mark.parametrize("call", [lambda s: s.get("a"), lambda s: s.get_many(["a"]),
                                  lambda s: s.scan("a"), lambda s: s.scan(prefix="a")])
def test_str_keys_raise_type_error(conn, call):
    with conn.snapshot() as snap:
        with pytest.raises(TypeError):
            call(snap)
