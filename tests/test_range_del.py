"""conn.delete_range: range tombstones through every read path, flush,
compaction, recovery, checkpoints, transactions and kill -9.

Each test writes keys, deletes a range, and checks get/get_many/scans
(forward, reverse, bounded)/cursor seeks against the expected dict, with the
tombstone in the memtable, in the Version after a flush, after a
compaction, and after reopening (replayed from the WAL, or read from the
MANIFEST).  A hypothesis state machine mixes puts, deletes, range deletes,
flushes, compactions, snapshots and reopens against a dict model.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, \
    run_state_machine_as_test

import kvcy
from kvcy._range_del import RangeTombstones
from kvcy._write_batch import WriteBatch, iterate_batch
from kvcy.dbformat import KIND_RANGE_DELETE
from kvcy.errors import ConflictError, DataError, ProgrammingError
from kvcy.options import MAX_KEY_BYTES
from kvcy.version_edit import VersionEdit


def key(i):
    return b"k%04d" % i


def fill(conn, n=100, tag=b"v"):
    conn.put_many([(key(i), tag + b"%d" % i) for i in range(n)])
    return {key(i): tag + b"%d" % i for i in range(n)}


def check_reads(conn, expected, probe=range(0, 110)):
    """Every read path of conn agrees with the dict expected."""
    keys = [key(i) for i in probe]
    for k in keys:
        assert conn.get(k) == expected.get(k), k
    assert conn.get_many(keys) == [expected.get(k) for k in keys]
    items = sorted(expected.items())
    assert list(conn.scan()) == items
    assert list(conn.scan(reverse=True)) == items[::-1]
    lo, hi = key(5), key(60)
    bounded = [(k, v) for k, v in items if lo <= k < hi]
    assert list(conn.scan(lo, hi)) == bounded
    assert list(conn.scan(lo, hi, reverse=True)) == bounded[::-1]
    cur = conn.cursor().scan()
    for probe_key in (key(0), key(10), key(15), key(19), key(20), key(55), key(200)):
        cur.seek(probe_key)
        following = [(k, v) for k, v in items if k >= probe_key]
        assert cur.fetchone() == (following[0] if following else None), probe_key
    cur.close()


def disk_bytes(stats):
    return sum(level["bytes"] for level in stats["levels"])


def delete_expected(expected, start, stop):
    return {k: v for k, v in expected.items() if not start <= k < stop}


# -- the fragmented structure ---------------------------------------------------

def test_fragments_split_overlapping_tombstones():
    rt = RangeTombstones([(b"b", b"f", 5), (b"d", b"h", 9), (b"x", b"x", 3)])
    assert rt.fragments() == [(b"b", b"d", [5]), (b"d", b"f", [9, 5]), (b"f", b"h", [9])]
    assert len(rt) == 3                         # the empty range is kept, covers nothing
    assert rt.covering_sequence(b"a") == 0
    assert rt.covering_sequence(b"b") == 5
    assert rt.covering_sequence(b"e") == 9
    assert rt.covering_sequence(b"e", 8) == 5   # a reader at 8 does not see sequence 9
    assert rt.covering_sequence(b"e", 4) == 0
    assert rt.covering_sequence(b"h") == 0      # stop is exclusive
    assert rt.covering_sequence(b"x") == 0


def test_fragments_match_brute_force():
    import random
    rng = random.Random(7)
    alphabet = [bytes([c]) for c in b"abcdefghij"]
    for _ in range(200):
        tombs = []
        for seq in range(1, rng.randrange(1, 8)):
            a, b = sorted(rng.sample(alphabet, 2))
            tombs.append((a, b, seq * 3))
        rt = RangeTombstones(tombs)
        for k in alphabet + [b"", b"a\x00", b"k"]:
            for at in (0, 4, 10, 100):
                want = max([s for a, b, s in tombs if a <= k < b and s <= at], default=0)
                assert rt.covering_sequence(k, at) == want, (tombs, k, at)


def test_layers_answer_as_one_set():
    # A memtable's tombstones in binary-counter layers, plus a Version's
    # layer, looked up together: the same answers as one fragmented set.
    import random
    from kvcy._range_del import add_to_layers, build_range_tombstones
    rng = random.Random(3)
    alphabet = [bytes([c]) for c in b"abcdefghijklmnop"]
    tombs = []
    layers = []
    for seq in range(1, 40):
        a, b = sorted(rng.sample(alphabet, 2))
        tombs.append((a, b, seq))
        before = list(layers)
        grown = add_to_layers(layers, (a, b, seq))
        assert layers == before                    # never changed in place
        layers = grown
        assert len(layers) <= seq.bit_length()          # O(log n) layers
        combined = RangeTombstones([], layers)
        assert len(combined) == seq and combined.tombstones == tuple(tombs)
        single = RangeTombstones(tombs)
        for k in alphabet:
            for at in (0, seq // 2, 100):
                assert combined.covering_sequence(k, at) == single.covering_sequence(k, at)

    class FakeVersion:
        range_dels = ((b"a", b"z", 50),)
        range_tombstones = None

    class FakeMem:
        range_layers = layers

    both = build_range_tombstones([FakeMem()], FakeVersion)
    assert both.covering_sequence(b"c") == 50 and len(both) == 40
    assert build_range_tombstones([], None) is None


def test_tombstones_alone_fill_and_switch_the_memtable(db_path):
    with kvcy.connect(db_path, memtable_max_bytes="64KiB") as conn:
        for i in range(2000):
            conn.delete_range(b"r%05d" % i, b"r%05d~" % i)
        stats = conn.stats()
        assert stats["memtable_switches"] >= 2
        assert stats["range_tombstones"] == 2000
        conn.put(b"r00007x", b"kept")             # inside [r00007, r00007~)
        assert conn.get(b"r00007x") == b"kept"    # newer than the tombstone
        conn.flush()
        assert conn.stats()["range_tombstones"] == 2000


# -- the batch entry ------------------------------------------------------------

def test_write_batch_delete_range_is_one_entry_of_kind_3():
    batch = WriteBatch()
    batch.put(b"a", b"1")
    batch.delete_range(b"b", bytearray(b"c"))
    assert len(batch) == 2
    assert iterate_batch(batch.data()) == [(1, b"a", b"1"), (KIND_RANGE_DELETE, b"b", b"c")]
    assert KIND_RANGE_DELETE == 3


def test_bad_ranges_are_refused_before_anything_is_written(db_path):
    with kvcy.connect(db_path) as conn:
        with pytest.raises(ProgrammingError, match="start < stop"):
            conn.delete_range(b"b", b"a")
        with pytest.raises(ProgrammingError, match="start < stop"):
            conn.delete_range(b"b", b"b")
        with pytest.raises(TypeError, match="str"):
            conn.delete_range("a", b"b")
        with pytest.raises(DataError, match="MAX_KEY_BYTES"):
            conn.delete_range(b"a", b"b" * (MAX_KEY_BYTES + 1))
        assert conn.stats()["last_sequence"] == 0


# -- reads, in each place the tombstone can be -----------------------------------

@pytest.mark.parametrize("where", ["memtable", "flushed", "compacted", "reopened-wal",
                                   "reopened-manifest"])
def test_reads_honour_a_range_tombstone(db_path, where):
    conn = kvcy.connect(db_path)
    expected = fill(conn)
    if where != "memtable":
        conn.flush()                        # the covered data in a table
    conn.delete_range(key(10), key(20))
    conn.put(key(15), b"after")             # newer than the tombstone: visible
    expected = delete_expected(expected, key(10), key(20))
    expected[key(15)] = b"after"
    if where in ("flushed", "compacted", "reopened-manifest"):
        conn.flush()
    if where == "compacted":
        conn.compact_range()
    if where.startswith("reopened"):
        conn.close()
        conn = kvcy.connect(db_path)
    check_reads(conn, expected)
    conn.close()


def test_overlapping_tombstones_and_writes_between_them(db_path):
    with kvcy.connect(db_path) as conn:
        expected = fill(conn)
        conn.delete_range(key(10), key(40))
        conn.put(key(30), b"between")
        conn.flush()
        conn.delete_range(key(25), key(50))
        conn.put(key(45), b"last")
        expected = delete_expected(expected, key(10), key(50))
        expected[key(45)] = b"last"
        check_reads(conn, expected)
        assert conn.stats()["range_tombstones"] == 2
        conn.compact_range()
        check_reads(conn, expected)


def test_snapshot_before_the_delete_still_sees_the_data(db_path):
    with kvcy.connect(db_path) as conn:
        before = fill(conn)
        snap = conn.snapshot()
        conn.delete_range(key(0), key(50))
        for step in ("memtable", "flush", "compact"):
            if step == "flush":
                conn.flush()
            elif step == "compact":
                conn.compact_range()
            assert snap.get(key(7)) == before[key(7)]
            assert list(snap.scan()) == sorted(before.items())
            assert list(snap.scan(reverse=True)) == sorted(before.items())[::-1]
            assert conn.get(key(7)) is None
        # The snapshot kept the covered entries through the compaction.
        snap.close()
        conn.compact_range()
        assert conn.get(key(7)) is None
        assert len(list(conn.scan())) == 50


def test_a_reader_never_sees_the_sequence_without_the_tombstone(db_path):
    # Each delete_range is checked by the same thread right after it returns,
    # while another thread keeps writing (the state is published before the
    # sequence, and a memtable switch republishes it).
    import threading
    with kvcy.connect(db_path, memtable_max_bytes="64KiB") as conn:
        stop = threading.Event()

        def writer():
            i = 0
            while not stop.is_set():
                conn.put(b"z%06d" % i, b"x" * 100)
                i += 1

        t = threading.Thread(target=writer)
        t.start()
        try:
            for round_ in range(50):
                conn.put_many([(key(i), b"r%d" % round_) for i in range(20)])
                conn.delete_range(key(0), key(20))
                assert list(conn.scan(key(0), key(20))) == []
                assert conn.get(key(round_ % 20)) is None
        finally:
            stop.set()
            t.join()


def test_write_batch_with_range_delete_is_atomic_and_ordered(db_path):
    with kvcy.connect(db_path) as conn:
        fill(conn)
        batch = WriteBatch()
        batch.put(key(1), b"before-range")           # older than the tombstone: deleted
        batch.delete_range(key(0), key(5))
        batch.put(key(2), b"after-range")            # newer: visible
        conn.write(batch)
        assert [k for k, _ in conn.scan(key(0), key(6))] == [key(2), key(5)]
        assert conn.get(key(1)) is None


# -- compaction drops, tombstones leave ------------------------------------------

def test_compaction_drops_covered_entries_and_removes_the_tombstone(db_path):
    with kvcy.connect(db_path) as conn:
        conn.put_many([(key(i), b"x" * 200) for i in range(2000)])
        conn.compact_range()
        full = conn.stats()
        conn.delete_range(key(100), key(1900))
        conn.compact_range()
        after = conn.stats()
        assert after["range_tombstones"] == 0       # nothing left for it to hide
        assert after["compaction_entries_dropped"] - full["compaction_entries_dropped"] >= 1800
        assert disk_bytes(after) < disk_bytes(full) / 4
        assert len(list(conn.scan())) == 200
    with kvcy.connect(db_path) as conn:                 # and the MANIFEST agrees
        assert conn.stats()["range_tombstones"] == 0
        assert len(list(conn.scan())) == 200


def test_tombstone_stays_while_a_snapshot_needs_it(db_path):
    with kvcy.connect(db_path) as conn:
        fill(conn)
        conn.flush()
        snap = conn.snapshot()
        conn.delete_range(key(0), key(50))
        conn.compact_range()
        assert conn.stats()["range_tombstones"] == 1
        assert conn.get(key(3)) is None and snap.get(key(3)) == b"v3"
        snap.close()
        conn.compact_range()
        assert conn.stats()["range_tombstones"] == 0
        assert conn.get(key(3)) is None


def test_obsolete_range_dels_rules():
    from kvcy.range_del import obsolete_range_dels
    from kvcy.version_edit import FileMetaData
    from kvcy.version_set import Version

    def meta(number, lo, hi):
        return FileMetaData(number, 100, lo + bytes(8), hi + bytes(8))

    version = Version([[meta(1, b"a", b"c")], [meta(2, b"m", b"p")], [], [], [], [], []],
                      range_dels=[(b"a", b"b", 5), (b"n", b"o", 6), (b"x", b"z", 7),
                                  (b"b", b"n", 40)])
    older = {1: 3, 2: 10}          # the smallest sequence of each table
    calls = []

    def holds_older(m, start, stop, sequence, scan):
        calls.append((m.number, sequence, scan))
        return older[m.number] < sequence

    # (a, b, 5): table 1 holds sequence 3 < 5; (n, o, 6): table 2 only newer;
    # (x, z, 7): no table; (b, n, 40): above the smallest snapshot.
    assert obsolete_range_dels(version, 30, holds_older) == [6, 7]
    assert obsolete_range_dels(version, 5, holds_older) == []       # 6 and 7 not yet visible
    calls.clear()
    obsolete_range_dels(version, 30, holds_older, near=(b"a", b"b"))
    assert (1, 5, True) in calls and (2, 6, False) in calls        # scans only near


def test_version_edit_round_trips_range_tombstones():
    edit = VersionEdit(last_sequence=9)
    edit.add_range_del(b"a", b"c", 7)
    edit.delete_range_del(3)
    decoded = VersionEdit.decode(edit.encode())
    assert decoded.new_range_dels == [(b"a", b"c", 7)]
    assert decoded.deleted_range_dels == {3}


# -- checkpoints, ingest, repair ------------------------------------------------

def test_checkpoint_carries_tombstones(db_path, tmp_path):
    with kvcy.connect(db_path) as conn:
        expected = fill(conn)
        conn.flush()
        conn.delete_range(key(0), key(10))       # in the Version after the flush
        conn.flush()
        conn.delete_range(key(90), key(100))     # in the log
        expected = delete_expected(delete_expected(expected, key(0), key(10)),
                                   key(90), key(100))
        conn.checkpoint(str(tmp_path / "copy"))
    with kvcy.connect(str(tmp_path / "copy")) as copy:
        check_reads(copy, expected)


def test_ingest_over_a_tombstone_gets_a_fresh_sequence(db_path, tmp_path):
    path = str(tmp_path / "part.sst")
    with kvcy.TableWriter(path) as w:
        w.add(key(5), b"ingested")
    with kvcy.connect(db_path) as conn:
        conn.put(key(1), b"old")
        conn.delete_range(key(0), key(9))
        conn.flush()
        conn.ingest([path])
        assert conn.get(key(5)) == b"ingested"
        assert list(conn.scan()) == [(key(5), b"ingested")]


def test_repair_applies_the_tombstones_it_reads(db_path):
    from kvcy.repair import repair
    with kvcy.connect(db_path) as conn:
        expected = fill(conn)
        conn.flush()
        conn.delete_range(key(10), key(20))   # MANIFEST after the flush
        conn.flush()
        conn.delete_range(key(30), key(40))   # log
    report = repair(db_path)
    assert report.range_tombstones == 2
    expected = delete_expected(delete_expected(expected, key(10), key(20)), key(30), key(40))
    with kvcy.connect(db_path) as conn:
        check_reads(conn, expected)


# -- transactions -----------------------------------------------------------------

def test_range_delete_after_the_snapshot_is_a_conflict(db_path):
    with kvcy.connect(db_path) as conn:
        fill(conn)
        txn = conn.begin()
        assert txn.get(key(12)) == b"v12"
        txn.put(b"other", b"1")
        conn.delete_range(key(10), key(20))
        with pytest.raises(ConflictError, match="range"):
            txn.commit()
        txn = conn.begin()
        list(txn.scan(key(50), key(60)))
        txn.put(b"other", b"2")
        conn.delete_range(key(55), key(70))
        with pytest.raises(ConflictError, match="range"):
            txn.commit()
        txn = conn.begin()                         # a range it never touched: no conflict
        txn.get(key(90))
        txn.put(key(91), b"t")
        conn.delete_range(key(0), key(5))
        txn.commit()
        assert conn.get(key(91)) == b"t" and conn.get(b"other") is None


def test_delete_range_in_a_transaction(db_path):
    with kvcy.connect(db_path) as conn:
        fill(conn, 20)
        conn.flush()
        with conn.transaction() as txn:
            txn.put(key(5), b"early")                  # covered: dropped
            txn.delete_range(key(3), key(10))
            txn.put(key(7), b"late")                   # after it: kept
            assert txn.get(key(5)) is None and txn.get(key(7)) == b"late"
            assert txn.get_many([key(2), key(4), key(7)]) == [b"v2", None, b"late"]
            expected = [key(i) for i in (0, 1, 2, 7) + tuple(range(10, 20))]
            assert [k for k, _ in txn.scan()] == expected
            assert [k for k, _ in txn.scan(reverse=True)] == expected[::-1]
            it = txn.scan()
            it.seek(key(4))
            assert it.key() == key(7)
            it.seek_for_prev(key(9))
            assert it.key() == key(7)
            it.close()
            assert conn.get(key(5)) == b"v5"           # nothing before the commit
        assert [k for k, _ in conn.scan()] == expected
        assert conn.get(key(7)) == b"late" and conn.stats()["range_tombstones"] == 1
        batch = WriteBatch()                           # in a batch, in its order
        batch.put(key(12), b"x")
        batch.delete_range(key(11), key(14))
        batch.put(key(13), b"y")
        with conn.transaction() as txn:
            txn.write(batch)
            assert txn.get_many([key(11), key(12), key(13), key(14)]) == [
                None, None, b"y", b"v14"]
        assert conn.get_many([key(11), key(12), key(13), key(14)]) == [None, None, b"y", b"v14"]


def test_delete_range_in_a_transaction_conflicts_with_writes_into_the_range(db_path):
    with kvcy.connect(db_path) as conn:
        fill(conn, 20)
        txn = conn.begin()
        txn.delete_range(key(10), key(15))
        conn.put(key(12), b"concurrent")
        with pytest.raises(ConflictError, match="deleted range"):
            txn.commit()
        assert conn.get(key(12)) == b"concurrent" and conn.get(key(11)) == b"v11"
        txn = conn.begin()
        txn.delete_range(key(10), key(15))
        conn.put(key(16), b"outside")                 # outside the range: no conflict
        txn.commit()
        assert conn.get(key(11)) is None and conn.get(key(16)) == b"outside"


def test_delete_range_with_autocommit_off_and_in_a_namespace(db_path):
    with kvcy.connect(db_path, autocommit=False) as conn:
        fill(conn, 10)
        conn.commit()
        conn.delete_range(key(2), key(5))
        assert conn.get(key(3)) is None
        conn.rollback()
        assert conn.get(key(3)) == b"v3"
        conn.delete_range(key(2), key(5))
        conn.commit()
        assert conn.get(key(3)) is None and conn.get(key(5)) == b"v5"
        users = conn.namespace("users")
        conn.commit()
        with conn.transaction() as txn:
            view = txn.namespace(users)
            view.put_many([(b"u%d" % i, b"x") for i in range(6)])
            view.delete_range(b"u1", b"u4")
            assert [k for k, _ in view.scan()] == [b"u0", b"u4", b"u5"]
        assert [k for k, _ in users.scan()] == [b"u0", b"u4", b"u5"]
        with pytest.raises(ProgrammingError):
            conn.delete_range(key(5), key(2))             # start >= stop


# -- the model --------------------------------------------------------------------

MODEL_KEYS = [b"", b"a", b"b", b"ba", b"c", b"d", b"e", b"\xff"]
model_keys = st.sampled_from(MODEL_KEYS)


class RangeDelModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="kvcy-rangedel-")
        self.path = os.path.join(self.dir, "db")
        self.conn = kvcy.connect(self.path)
        self.model = {}
        self.snaps = []            # (Snapshot, model copy)

    def teardown(self):
        try:
            for snap, _ in self.snaps:
                snap.close()
            self.conn.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    @rule(k=model_keys, v=st.binary(max_size=4))
    def put(self, k, v):
        self.conn.put(k, v)
        self.model[k] = v

    @rule(k=model_keys)
    def delete(self, k):
        self.conn.delete(k)
        self.model.pop(k, None)

    @rule(a=model_keys, b=model_keys)
    def delete_range(self, a, b):
        if a >= b:
            with pytest.raises(ProgrammingError):
                self.conn.delete_range(a, b)
            return
        self.conn.delete_range(a, b)
        self.model = {k: v for k, v in self.model.items() if not a <= k < b}

    @rule(a=model_keys, b=model_keys, k=model_keys, v=st.binary(max_size=4))
    def batch(self, a, b, k, v):
        if a >= b:
            return
        wb = WriteBatch()
        wb.delete_range(a, b)
        wb.put(k, v)
        self.conn.write(wb)
        self.model = {x: y for x, y in self.model.items() if not a <= x < b}
        self.model[k] = v

    @rule(a=model_keys, b=model_keys, k=model_keys, v=st.binary(max_size=4),
          j=model_keys)
    def transaction(self, a, b, k, v, j):
        # put j, delete_range [a, b), put k, in one transaction; reads inside
        # it see its own writes.
        if a >= b:
            return
        model = dict(self.model)
        with self.conn.transaction() as txn:
            txn.put(j, v)
            model[j] = v
            txn.delete_range(a, b)
            model = {x: y for x, y in model.items() if not a <= x < b}
            txn.put(k, v + b"!")
            model[k] = v + b"!"
            assert list(txn.scan()) == sorted(model.items())
            assert txn.get_many(MODEL_KEYS) == [model.get(x) for x in MODEL_KEYS]
        self.model = model

    @rule()
    def flush(self):
        self.conn.flush()

    @rule()
    def compact(self):
        self.conn.compact_range()

    @precondition(lambda self: len(self.snaps) < 3)
    @rule()
    def snapshot(self):
        self.snaps.append((self.conn.snapshot(), dict(self.model)))

    @precondition(lambda self: self.snaps)
    @rule()
    def release(self):
        snap, _ = self.snaps.pop(0)
        snap.close()

    @precondition(lambda self: not self.snaps)
    @rule()
    def reopen(self):
        self.conn.close()
        self.conn = kvcy.connect(self.path)

    @invariant()
    def reads_match(self):
        items = sorted(self.model.items())
        assert [self.conn.get(k) for k in MODEL_KEYS] == [self.model.get(k) for k in MODEL_KEYS]
        assert list(self.conn.scan()) == items
        assert list(self.conn.scan(reverse=True)) == items[::-1]
        assert list(self.conn.scan(b"b", b"d")) == [(k, v) for k, v in items if b"b" <= k < b"d"]
        for snap, seen in self.snaps:
            assert list(snap.scan()) == sorted(seen.items())
            assert snap.get_many(MODEL_KEYS) == [seen.get(k) for k in MODEL_KEYS]


def _settings(max_examples, steps):
    return settings(max_examples=max_examples, stateful_step_count=steps, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def test_model():
    run_state_machine_as_test(RangeDelModel, settings=_settings(25, 30))


@pytest.mark.slow
def test_model_long():
    run_state_machine_as_test(RangeDelModel, settings=_settings(300, 80))


# -- kill -9 --------------------------------------------------------------------

CHILD = textwrap.dedent('''
    import sys
    import kvcy
    conn = kvcy.connect(sys.argv[1], sync=False, memtable_max_bytes="256KiB")
    i = int(sys.argv[2])
    print("ready", flush=True)
    while True:
        batch = kvcy.WriteBatch()
        batch.delete_range(b"r", b"s")
        for j in range(i % 7 + 1):
            batch.put(b"r%d-%d" % (i, j), b"x" * (i % 5 * 9000))
        batch.put(b"counter", b"%d" % i)
        conn.write(batch)
        print(i, flush=True)
        i += 1
''')


def test_kill_during_range_delete_batches_is_all_or_nothing(db_path):
    # Each batch replaces the whole range [r, s) with its own keys and sets
    # counter: after a crash the range must hold exactly the keys of the
    # batch counter names (a torn batch would mix two generations).
    start = 0
    for round_ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", CHILD, db_path, str(start)],
                                stdout=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2 + 0.2 * round_)
        proc.send_signal(signal.SIGKILL)
        acked = [int(line) for line in proc.stdout.read().split() if line.isdigit()]
        proc.wait()
        with kvcy.connect(db_path) as conn:
            counter = int(conn.get(b"counter"))
            last_acked = acked[-1] if acked else start - 1
            assert counter in (last_acked, last_acked + 1)
            keys = [k for k, _ in conn.scan(b"r", b"s")]
            assert keys == sorted(b"r%d-%d" % (counter, j) for j in range(counter % 7 + 1))
            start = counter + 1


def test_readonly_connection_sees_tombstones_after_refresh(db_path):
    with kvcy.connect(db_path) as conn:
        expected = fill(conn)
        conn.delete_range(key(0), key(10))         # in the log
        conn.flush()
        conn.delete_range(key(90), key(100))       # log again, the first one in the MANIFEST
        ro = kvcy.connect(db_path, readonly=True)
        expected = delete_expected(delete_expected(expected, key(0), key(10)), key(90), key(100))
        check_reads(ro, expected)
        conn.delete_range(key(40), key(50))
        conn.flush()
        ro.refresh()
        check_reads(ro, delete_expected(expected, key(40), key(50)))
        ro.close()


def test_iterator_turns_around_inside_and_beside_a_deleted_range(db_path):
    with kvcy.connect(db_path) as conn:
        fill(conn, 30)
        conn.flush()
        conn.delete_range(key(10), key(20))
        it = conn.scan()
        it.seek(key(9))
        assert it.key() == key(9)
        it.next()
        assert it.key() == key(20)                 # over the deleted run
        it.prev()
        assert it.key() == key(9)                  # and back over it
        it.seek(key(15))
        assert it.key() == key(20)
        it.seek_for_prev(key(15))
        assert it.key() == key(9)
        it.close()


def test_a_scan_jumps_over_what_a_tombstone_deletes_in_older_tables(db_path):
    # Tables older than the tombstone skip to its end in one seek instead of
    # being read block by block; newer writes inside the range (in the
    # memtable and in a newer table) still show.
    def wide_key(i):
        return b"k%06d" % i
    with kvcy.connect(db_path, block_cache_bytes=64 << 20) as conn:
        conn.put_many([(wide_key(i), b"v" * 100) for i in range(20000)])
        conn.compact_range()                            # one level, several tables
        conn.put_many([(wide_key(i), b"w" * 100) for i in range(20000, 21000)])
        conn.flush()                                    # a newer table in level 0
        conn.delete_range(wide_key(100), wide_key(20900))
        conn.put(wide_key(5000), b"new")                     # newer than the tombstone
        conn.flush()
        conn.put(wide_key(6000), b"newer")                   # in the memtable
        expected = ([(wide_key(i), b"v" * 100) for i in range(100)]
                    + [(wide_key(5000), b"new"), (wide_key(6000), b"newer")]
                    + [(wide_key(i), b"w" * 100) for i in range(20900, 21000)])
        before = conn.stats()
        assert list(conn.scan()) == expected
        after = conn.stats()
        blocks = (after["block_cache_hits"] + after["block_cache_misses"]
                  - before["block_cache_hits"] - before["block_cache_misses"])
        data_blocks = 21000 * 120 // 4096               # what a block-by-block scan reads
        assert blocks < data_blocks // 10, (blocks, data_blocks)
        with conn.snapshot() as snap:                   # the same at a snapshot
            assert list(snap.scan(wide_key(50), wide_key(20950))) == [
                kv for kv in expected if wide_key(50) <= kv[0] < wide_key(20950)]


def test_aio_delete_range(db_path):
    import asyncio
    import kvcy.aio

    async def main():
        async with kvcy.aio.connect(db_path) as db:
            await db.put_many([(key(i), b"v") for i in range(10)])
            await db.delete_range(key(2), key(8))
            with pytest.raises(ProgrammingError, match="start < stop"):
                await db.delete_range(key(8), key(2))
            return [k async for k, _ in db.scan()]

    assert asyncio.run(main()) == [key(0), key(1), key(8), key(9)]


def test_check_and_cli_dump_accept_range_tombstones(db_path, tmp_path):
    from kvcy.cli import main
    with kvcy.connect(db_path) as conn:
        fill(conn, 20)
        conn.flush()
        conn.delete_range(key(0), key(5))              # in the MANIFEST after the flush
        conn.flush()
        conn.delete_range(key(10), key(15))            # in the log
    report = kvcy.check(db_path)
    assert report.ok, report
    out = tmp_path / "dump.jsonl"
    assert main(["dump", str(db_path), str(out), "--encoding", "text"]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 10 and '"k0005"' in lines[0]
