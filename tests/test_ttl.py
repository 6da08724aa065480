"""Time to live: put(..., ttl=) with a controllable clock (kvcy/_expiry.pyx).

An expired pair must be invisible to every read at once and hide the older
versions of its key as a tombstone would; a plain value must read exactly
as before.  Compaction: tests/test_expiry_compaction.py.
"""
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kvcy
import kvcy.dbm
from kvcy._merge import MergingIterator
from kvcy._write_batch import iterate_batch
from kvcy.dbformat import KIND_EXPIRING_VALUE, encode_internal_key
from kvcy.errors import CorruptionError, ProgrammingError

from fake_clock import T0, FakeClock


@pytest.fixture
def clock():
    return FakeClock()


def reads(conn, key):
    """What every read path says about key: its value or None."""
    out = {"get": conn.get(key), "get_many": conn.get_many([key])[0]}
    out["scan"] = dict(conn.scan()).get(key)
    out["scan_reverse"] = dict(conn.scan(reverse=True)).get(key)
    out["scan_prefix"] = dict(conn.scan(prefix=key)).get(key)
    cur = conn.cursor().scan()
    cur.seek(key)
    row = cur.fetchone()
    out["cursor_seek"] = row[1] if row is not None and row[0] == key else None
    cur.close()
    it = conn.scan()
    it.seek(key)
    out["iterator_seek"] = it.value() if it.valid() and it.key() == key else None
    it.seek_for_prev(key)
    out["iterator_seek_for_prev"] = it.value() if it.valid() and it.key() == key else None
    it.close()
    with conn.snapshot() as snap:
        out["snapshot_get"] = snap.get(key)
        out["snapshot_scan"] = dict(snap.scan()).get(key)
    with conn.transaction() as txn:
        out["transaction_get"] = txn.get(key)
        out["transaction_get_many"] = txn.get_many([key])[0]
        out["transaction_scan"] = dict(txn.scan()).get(key)
    return out


def assert_everywhere(conn, key, want):
    got = reads(conn, key)
    assert got == {name: want for name in got}


STAGES = ["memtable", "flushed", "compacted", "reopened"]


def move_to(stage, conn, path, clock):
    """Move what conn holds to the given stage; returns the connection to read."""
    if stage in ("flushed", "reopened"):
        conn.flush()
    elif stage == "compacted":
        conn.flush()
        conn.compact_range()
    if stage == "reopened":
        conn.close()
        conn = kvcy.connect(path, clock=clock)
    return conn


# -- visibility ---------------------------------------------------------------

@pytest.mark.parametrize("stage", STAGES)
def test_visible_before_expiry_invisible_after(tmp_path, clock, stage):
    conn = kvcy.connect(tmp_path / "db", clock=clock)
    try:
        conn.put(b"plain", b"p")
        conn.put(b"session", b"s1", ttl=60)
        conn.put_many([(b"m1", b"1"), (b"m2", b"2")], ttl=30)
        conn = move_to(stage, conn, tmp_path / "db", clock)
        assert_everywhere(conn, b"session", b"s1")
        assert_everywhere(conn, b"m1", b"1")
        clock.advance(29.999)
        assert conn.get(b"m2") == b"2"
        clock.advance(0.001)                       # expiry <= now: expired
        assert_everywhere(conn, b"m1", None)
        assert_everywhere(conn, b"m2", None)
        assert_everywhere(conn, b"session", b"s1")
        clock.advance(30)
        assert_everywhere(conn, b"session", None)
        assert_everywhere(conn, b"plain", b"p")
        assert list(conn.scan()) == [(b"plain", b"p")]
        assert list(conn.scan(reverse=True)) == [(b"plain", b"p")]
    finally:
        conn.close()


@pytest.mark.parametrize("stage", STAGES)
def test_expired_value_hides_an_older_plain_value(tmp_path, clock, stage):
    conn = kvcy.connect(tmp_path / "db", clock=clock)
    try:
        conn.put(b"k", b"forever")
        if stage != "memtable":
            conn.flush()
            conn.compact_range()                   # the old value deep down, the new above it
        conn.put(b"k", b"brief", ttl=5)
        conn = move_to(stage, conn, tmp_path / "db", clock)
        assert_everywhere(conn, b"k", b"brief")
        clock.advance(5)
        assert_everywhere(conn, b"k", None)        # not b"forever": no resurrection
    finally:
        conn.close()


def test_a_newer_put_replaces_an_expiring_value(tmp_path, clock):
    with kvcy.connect(tmp_path / "db", clock=clock) as conn:
        conn.put(b"k", b"brief", ttl=5)
        conn.flush()
        conn.put(b"k", b"kept")
        clock.advance(10)
        assert_everywhere(conn, b"k", b"kept")
        conn.put(b"j", b"plain")
        conn.put(b"j", b"longer", ttl=100)         # a ttl put replaces a plain one too
        clock.advance(50)
        assert conn.get(b"j") == b"longer"
        clock.advance(50)
        assert conn.get(b"j") is None


def test_scan_skips_expired_pairs_among_live_ones(tmp_path, clock):
    with kvcy.connect(tmp_path / "db", clock=clock) as conn:
        for i in range(20):
            conn.put(b"k%02d" % i, b"v%d" % i, ttl=None if i % 3 else 6)
        conn.flush()
        for i in range(0, 20, 4):
            conn.put(b"k%02d" % i, b"w%d" % i, ttl=5)
        clock.advance(7)
        live = [(b"k%02d" % i, b"v%d" % i) for i in range(20) if i % 3 and i % 4]
        assert b"k02" in dict(live) and b"k03" not in dict(live) and b"k04" not in dict(live)
        assert list(conn.scan()) == live
        assert list(conn.scan(reverse=True)) == live[::-1]
        assert list(conn.scan(b"k05", b"k15")) == [kv for kv in live if b"k05" <= kv[0] < b"k15"]
        it = conn.scan()
        it.seek(b"k00")
        assert it.key() == live[0][0]              # k00 expired: seek lands on the next
        it.seek_for_prev(b"k12")
        assert it.key() == b"k11"
        it.next()
        assert it.key() == b"k13"
        it.prev()
        it.prev()
        assert it.key() == b"k10"
        it.close()
        cur = conn.cursor().scan(b"k00")
        assert cur.fetchall() == live


def test_an_iterator_reads_the_clock_on_each_call(tmp_path, clock):
    with kvcy.connect(tmp_path / "db", clock=clock) as conn:
        conn.put(b"a", b"1")
        conn.put(b"b", b"2", ttl=5)
        conn.put(b"c", b"3")
        it = conn.scan()
        assert next(it) == (b"a", b"1")
        clock.advance(5)
        assert next(it) == (b"c", b"3")            # b expired between two steps
        it.close()


def test_plain_reads_never_call_the_clock(tmp_path, clock):
    with kvcy.connect(tmp_path / "db", clock=clock) as conn:
        conn.put_many([(b"%03d" % i, b"v") for i in range(100)])
        conn.flush()
        conn.put(b"mem", b"v")
        clock.calls = 0
        for i in range(100):
            conn.get(b"%03d" % i)
        conn.get(b"mem")
        conn.get_many([b"000", b"mem", b"absent"])
        assert len(list(conn.scan())) == 101
        assert clock.calls == 0
        conn.put(b"exp", b"v", ttl=1)
        clock.calls = 0
        conn.get(b"exp")
        assert clock.calls == 1
        clock.calls = 0
        assert len(list(conn.scan())) == 102       # one reading per step that meets it
        assert clock.calls == 1


def test_snapshot_hides_expired_pairs_too(tmp_path, clock):
    with kvcy.connect(tmp_path / "db", clock=clock) as conn:
        conn.put(b"k", b"v", ttl=5)
        with conn.snapshot() as snap:
            assert snap.get(b"k") == b"v"
            clock.advance(5)
            assert snap.get(b"k") is None
            assert list(snap.scan()) == []


def test_row_cache_never_serves_an_expired_value(tmp_path, clock):
    with kvcy.connect(tmp_path / "db", clock=clock, row_cache_bytes=1 << 20) as conn:
        conn.put(b"k", b"v", ttl=5)
        conn.put(b"plain", b"p")
        conn.flush()
        for _ in range(3):
            assert conn.get(b"k") == b"v"
            assert conn.get(b"plain") == b"p"
        assert conn.stats()["row_cache_hits"] > 0
        clock.advance(5)
        assert conn.get(b"k") is None
        assert conn.get(b"plain") == b"p"


# -- transactions and batches ----------------------------------------------------

def test_transaction_put_with_ttl(tmp_path, clock):
    with kvcy.connect(tmp_path / "db", clock=clock) as conn:
        conn.put(b"old", b"o")
        with conn.transaction() as txn:
            txn.put(b"k", b"v", ttl=10)
            txn.put_many({b"a": b"1", b"old": b"new"}, ttl=20)
            assert txn.get(b"k") == b"v"
            assert dict(txn.scan()) == {b"k": b"v", b"a": b"1", b"old": b"new"}
            clock.advance(10)
            assert txn.get(b"k") is None           # its own write expired too
            assert txn.get_many([b"k", b"a"]) == [None, b"1"]
            assert dict(txn.scan()) == {b"a": b"1", b"old": b"new"}
        assert conn.get(b"k") is None
        assert conn.get(b"a") == b"1"
        clock.advance(10)
        assert conn.get(b"a") is None
        assert conn.get(b"old") is None            # the expiring write hides the plain one


def test_write_batch_ttl_and_transaction_write(tmp_path, clock):
    with kvcy.connect(tmp_path / "db", clock=clock) as conn:
        batch = kvcy.WriteBatch(clock=conn.clock)
        batch.put(b"a", b"1", ttl=5)
        batch.put(b"b", b"2")
        conn.write(batch)
        with conn.transaction() as txn:
            txn.write(batch)                       # expiring records stay expiring
            assert txn.get(b"a") == b"1"
        clock.advance(5)
        assert conn.get_many([b"a", b"b"]) == [None, b"2"]


def test_autocommit_false_routes_ttl_through_the_implicit_transaction(tmp_path, clock):
    with kvcy.connect(tmp_path / "db", clock=clock, autocommit=False) as conn:
        conn.put(b"k", b"v", ttl=5)
        conn.put_many([(b"m", b"w")], ttl=5)
        conn.commit()
        assert conn.get(b"k") == b"v"
        clock.advance(5)
        assert conn.get_many([b"k", b"m"]) == [None, None]


def test_expiry_is_fixed_at_put_time_and_survives_the_wal(tmp_path, clock):
    conn = kvcy.connect(tmp_path / "db", clock=clock)
    conn.put(b"k", b"v", ttl=2.5)
    conn.close()                                   # the memtable lives on in the WAL only
    clock.advance(2)
    with kvcy.connect(tmp_path / "db", clock=clock) as conn:
        assert conn.get(b"k") == b"v"
        clock.advance(0.5)
        assert conn.get(b"k") is None


# -- argument checks ----------------------------------------------------------

BAD_TTLS = [0, -1, -0.5, float("nan"), float("-inf"), True, False, "5", b"5", [5]]


@pytest.mark.parametrize("ttl", BAD_TTLS)
def test_bad_ttl_is_refused_before_anything_is_written(tmp_path, ttl):
    with kvcy.connect(tmp_path / "db") as conn:
        with pytest.raises(ProgrammingError, match="ttl"):
            conn.put(b"k", b"v", ttl=ttl)
        with pytest.raises(ProgrammingError, match="ttl"):
            conn.put_many([(b"k", b"v")], ttl=ttl)
        with conn.transaction() as txn:
            with pytest.raises(ProgrammingError, match="ttl"):
                txn.put(b"k", b"v", ttl=ttl)
            with pytest.raises(ProgrammingError, match="ttl"):
                txn.put_many([(b"k", b"v")], ttl=ttl)
        assert conn.get(b"k") is None
        assert conn.stats()["puts"] == 0


def test_ttl_none_means_no_expiry_and_tiny_ttls_round_up(tmp_path, clock):
    with kvcy.connect(tmp_path / "db", clock=clock) as conn:
        conn.put(b"k", b"v", ttl=None)
        conn.put(b"tiny", b"t", ttl=1e-9)          # at least one microsecond
        conn.put(b"huge", b"h", ttl=1e300)         # capped: never expires in practice
        conn.put(b"never", b"n", ttl=float("inf"))   # math.inf: never expires
        assert conn.get(b"tiny") == b"t"
        clock.advance(1e-6)
        assert conn.get(b"tiny") is None
        clock.advance(1e9)
        assert conn.get_many([b"k", b"huge", b"never"]) == [b"v", b"h", b"n"]


@pytest.mark.parametrize("clock_arg, message", [
    (5, "clock must be a callable"),
    (lambda: "now", "clock\\(\\) must return"),
    (lambda: float("nan"), "finite"),
])
def test_bad_clock_is_refused_at_connect(tmp_path, clock_arg, message):
    with pytest.raises(ProgrammingError, match=message):
        kvcy.connect(tmp_path / "db", clock=clock_arg)


def test_default_clock_is_real_time(tmp_path):
    import time
    with kvcy.connect(tmp_path / "db") as conn:
        assert conn.clock is time.time
        conn.put(b"k", b"v", ttl=3600)
        assert conn.get(b"k") == b"v"
    # Written by a clock 11 days after the epoch: long expired in real time.
    with kvcy.connect(tmp_path / "db", clock=lambda: T0) as conn:
        conn.put(b"old", b"v", ttl=1)
    with kvcy.connect(tmp_path / "db", clock=time.time) as conn:
        assert conn.get(b"old") is None
        assert conn.get(b"k") == b"v"


def test_dbm_does_not_see_expired_pairs(tmp_path):
    path = tmp_path / "db"
    with kvcy.connect(path, clock=lambda: T0) as conn:
        conn.put(b"gone", b"1", ttl=1)             # expired long ago in real time
    with kvcy.connect(path) as conn:
        conn.put(b"kept", b"2", ttl=3600)
    with kvcy.dbm.open(str(path), "r") as db:
        assert db.get(b"gone") is None
        assert b"gone" not in db
        assert db[b"kept"] == b"2"
        assert list(db.keys()) == [b"kept"]
        assert len(db) == 1


# -- corruption ---------------------------------------------------------------------

def short_expiring_table(tmp_path, value):
    from kvcy._table_builder import TableBuilder
    from kvcy.env import PosixEnv
    from kvcy.options import Options
    path = str(tmp_path / "000001.sst")
    file = PosixEnv().new_writable_file(path)
    builder = TableBuilder(file, Options(), path)
    builder.add(encode_internal_key(b"a", 1, 1), b"fine")
    builder.add(encode_internal_key(b"k", 2, KIND_EXPIRING_VALUE), value)
    builder.finish()
    file.close()
    return path


@pytest.mark.parametrize("value", [b"", b"1234567"])
def test_short_expiring_value_in_a_table_is_corruption(tmp_path, value):
    import os
    from kvcy._table_scan import TableRun
    from kvcy._db_iter import DBIterator
    from kvcy.check import check_table
    from kvcy.env import PosixEnv
    from kvcy.table import Table
    path = short_expiring_table(tmp_path, value)
    env = PosixEnv()

    def table():
        return Table.open(env.new_random_access_file(path), os.path.getsize(path), 1, None,
                          None)
    with pytest.raises(CorruptionError, match="shorter than its 8-byte expiry"):
        table().get(b"k", 10)
    assert table().get(b"a", 10) == b"fine"
    with pytest.raises(CorruptionError, match="shorter than its 8-byte expiry"):
        TableRun([table()]).entries()
    for reverse in (False, True):
        it = DBIterator(MergingIterator([table().iterator()]), 10, reverse=reverse)
        with pytest.raises(CorruptionError, match="shorter than its 8-byte expiry"):
            list(it)
        with pytest.raises(CorruptionError):
            list(it)                                   # sticky
    report = check_table(env.new_random_access_file(path), os.path.getsize(path), path)
    assert not report.ok
    assert any("shorter than its 8-byte expiry" in str(p) for p in report.problems)


def test_stored_form_is_expiry_then_value(tmp_path, clock):
    with kvcy.connect(tmp_path / "db", clock=clock) as conn:
        batch = kvcy.WriteBatch(clock=conn.clock)
        batch.put(b"k", b"value", ttl=1.5)
        [(kind, key, stored)] = iterate_batch(batch.data())
        assert kind == KIND_EXPIRING_VALUE == 2
        assert stored == struct.pack("<Q", int(T0 * 1e6) + 1_500_000) + b"value"


# -- model test with a moving clock ---------------------------------------------------

KEYS = [b"a", b"b", b"c", b"d"]
OPS = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.binary(max_size=4),
              st.one_of(st.none(), st.integers(1, 5))),
    st.tuples(st.just("delete"), st.sampled_from(KEYS)),
    st.tuples(st.just("advance"), st.integers(0, 4)),
    st.tuples(st.just("flush")),
    st.tuples(st.just("compact")),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, max_size=25))
def test_model_with_a_moving_clock(tmp_path_factory, ops):
    clock = FakeClock(T0)
    model = {}                                     # key -> (value, expiry in µs or None)
    path = tmp_path_factory.mktemp("ttl")

    def visible():
        now = int(clock.now * 1e6)
        return {k: v for k, (v, exp) in model.items() if exp is None or exp > now}

    with kvcy.connect(path, clock=clock, memtable_max_bytes=4096, memtable_min_bytes=0) as conn:
        for op in ops:
            if op[0] == "put":
                _, key, value, ttl = op
                conn.put(key, value, ttl=ttl)
                model[key] = (value, None if ttl is None else int(clock.now * 1e6) + ttl * 10**6)
            elif op[0] == "delete":
                conn.delete(op[1])
                model.pop(op[1], None)
            elif op[0] == "advance":
                clock.advance(op[1])
            elif op[0] == "flush":
                conn.flush()
            else:
                conn.compact_range()
            want = visible()
            assert dict(conn.scan()) == want
            assert list(conn.scan(reverse=True)) == sorted(want.items(), reverse=True)
            assert conn.get_many(KEYS) == [want.get(k) for k in KEYS]


# -- worker pools and asyncio ----------------------------------------------------

def test_write_pool_and_aio_take_ttl(tmp_path, clock):
    import asyncio
    import kvcy.aio
    with kvcy.connect(tmp_path / "db", clock=clock, write_threads=1) as conn:
        conn.submit(conn.put, b"a", b"1", ttl=5).result()
        conn.submit(conn.put_many, [(b"b", b"2"), (b"c", b"3")], ttl=10).result()
        conn.submit(conn.put, b"plain", b"p").result()
        with pytest.raises(ProgrammingError, match="ttl"):
            conn.submit(conn.put, b"x", b"x", ttl=-1)
        clock.advance(5)
        assert conn.get_many([b"a", b"b", b"plain"]) == [None, b"2", b"p"]

    async def main():
        async with kvcy.aio.connect(tmp_path / "db", clock=clock) as db:
            await db.put(b"d", b"4", ttl=5)
            await db.put_many([(b"e", b"5")], ttl=5)
            async with db.transaction() as txn:
                await txn.put(b"f", b"6", ttl=5)
            assert await db.get(b"d") == b"4"
            clock.advance(5)
            return [await db.get(k) for k in (b"d", b"e", b"f", b"plain")]
    assert asyncio.run(main()) == [None, None, None, b"p"]


def test_dbm_len_is_not_kept_while_pairs_can_expire(tmp_path):
    import time
    path = tmp_path / "db"
    with kvcy.connect(path) as conn:
        conn.put(b"brief", b"1", ttl=0.05)
        conn.put(b"plain", b"2")
    with kvcy.dbm.open(str(path), "w") as db:
        assert len(db) in (1, 2)                # 2 unless the machine was slow
        time.sleep(0.06)
        assert len(db) == 1                      # counted again, not a stale kept count
        db[b"new"] = b"3"
        assert len(db) == 2


def test_short_expiring_record_in_the_wal_is_corruption(tmp_path):
    import glob
    import os
    from kvcy.env import PosixEnv
    from kvcy.log_writer import LogWriter
    path = str(tmp_path / "db")
    with kvcy.connect(path) as conn:
        conn.put(b"a", b"1")                       # sequence 1, in the live log
    [log] = glob.glob(os.path.join(path, "*.log"))
    writer = LogWriter(PosixEnv().new_appendable_file(log))
    # A well-framed batch at sequence 2 whose kind-2 value lacks its expiry.
    rep = struct.pack("<QI", 2, 1) + bytes([KIND_EXPIRING_VALUE, 1]) + b"k" + bytes([3]) + b"abc"
    writer.add_record(rep, sync=True)
    writer.close()
    with pytest.raises(CorruptionError, match="shorter than its 8-byte expiry"):
        kvcy.connect(path)


@pytest.mark.parametrize("stage", ["memtable", "flushed", "compacted", "reopened"])
def test_expiring_values_and_range_tombstones_together(tmp_path, clock, stage):
    """A range tombstone hides expiring values under it; an expiring value
    written after it is visible until its expiry; a plain value below an
    expired one stays hidden (the expired entry is a tombstone)."""
    path = str(tmp_path / "db")
    conn = kvcy.connect(path, clock=clock)
    conn.put(b"a", b"old")
    conn.put(b"a", b"short", ttl=10)              # expires at T0 + 10
    conn.put(b"b", b"covered", ttl=1000)
    conn.put(b"c", b"plain")
    conn.delete_range(b"b", b"d")                  # hides b and c
    conn.put(b"c", b"after", ttl=1000)             # newer than the tombstone
    if stage != "memtable":
        conn.flush()
    if stage == "compacted":
        conn.compact_range()
    if stage == "reopened":
        conn.close()
        conn = kvcy.connect(path, clock=clock)
    assert conn.get_many([b"a", b"b", b"c"]) == [b"short", None, b"after"]
    assert list(conn.scan()) == [(b"a", b"short"), (b"c", b"after")]
    assert list(conn.scan(reverse=True)) == [(b"c", b"after"), (b"a", b"short")]
    clock.advance(20)
    assert conn.get(b"a") is None                  # expired: "old" stays hidden
    assert list(conn.scan()) == [(b"c", b"after")]
    conn.compact_range()
    assert conn.get_many([b"a", b"b", b"c"]) == [None, None, b"after"]
    conn.close()
