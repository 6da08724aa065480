"""Model-based test of the whole LSM tree: a Connection behaves like a dict,
and its snapshots and open iterators like frozen copies of that dict.

A hypothesis RuleBasedStateMachine drives writes (put, delete, put_many,
delete_many, WriteBatch), reads (get, get_many, scans forward and reverse
with random bounds and prefixes, cursor-style walks with seek /
seek_for_prev / next / prev), snapshots (take, release, get / get_many /
scan through one), iterators left open while other rules run, flush,
compact_range (random or full range) and reopen (close + connect; the
model drops its snapshots and iterators, which must then raise
ProgrammingError).

Keys come from a small alphabet (the empty key, 0x00 / 0xff bytes, keys
that prefix one another) so writes collide.  Memtable, block, table and
level sizes are tiny (a few hundred bytes for tables and level 1), so
flushes happen within a run and several levels form; each run also draws
cache, bloom, compression and table-cache options.  After every step every
key and a full scan are compared with the model.
"""
import bisect
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule, run_state_machine_as_test)

import kvcy
from kvcy import ProgrammingError

KEYS = sorted([b"", b"\x00", b"\x00\xff", b"a", b"a\x00", b"ab", b"a\xff", b"a\xff\xff",
               b"b", b"ba", b"bb", b"c", b"k" * 40, b"\xff", b"\xff\x00", b"\xff\xff"]
              + [b"m%02d" % i for i in range(12)])
BOUNDS = KEYS + [b"a\x01", b"aa", b"b\x00", b"m05\x00", b"zz", b"\xff\xff\xff"]
PREFIXES = [b"", b"\x00", b"a", b"a\xff", b"b", b"m0", b"m1", b"\xff", b"\xff\xff", b"k", b"zz"]
BIG_VALUES = [b"x" * 300, bytes(range(256)) * 4, b"y" * 1500]

keys = st.sampled_from(KEYS)
values = st.binary(max_size=10) | st.integers(0, len(BIG_VALUES) - 1).map(
    lambda i: BIG_VALUES[i])      # drawn by index: short reprs in failure reports
bounds = st.none() | st.sampled_from(BOUNDS)
prefixes = st.none() | st.sampled_from(PREFIXES)
indices = st.integers(0, 1000)    # picks a live snapshot / iterator modulo their count

MAX_SNAPSHOTS = 4
MAX_ITERATORS = 4


def expected(model, start=None, stop=None, prefix=None, reverse=False):
    rows = sorted((k, v) for k, v in model.items()
                  if (start is None or k >= start) and (stop is None or k < stop)
                  and (prefix is None or k.startswith(prefix)))
    return rows[::-1] if reverse else rows


class LsmModel(RuleBasedStateMachine):
    deepest_level = 0             # over all runs: checks that levels did form

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="kvcy-model-lsm-")
        self.path = os.path.join(self.dir, "db")
        self.conn = None
        self.model = {}
        self.snaps = []           # [(Snapshot, frozen dict)]
        self.iters = []           # [(DBIterator, rows it has still to yield)]

    @initialize(memtable=st.sampled_from([4096, 32 * 1024]),
                row_cache=st.sampled_from([0, 1 << 16]),
                block_cache=st.sampled_from([0, 1 << 20]),
                bloom=st.sampled_from([0, 10]),
                compression=st.sampled_from(["snappy", "none"]),
                max_open_files=st.sampled_from([16, 1000]),
                level0_trigger=st.sampled_from([2, 4]),
                partitioned=st.booleans())
    def open(self, memtable, row_cache, block_cache, bloom, compression, max_open_files,
             level0_trigger, partitioned):
        # partitioned: flushes of the larger memtable write tables whose
        # index outgrows a 256-byte partition (format version 2).
        self.options = dict(memtable_max_bytes=memtable, memtable_min_bytes=0,
                            target_file_bytes=300, level1_max_bytes=600, block_size=256,
                            row_cache_bytes=row_cache, block_cache_bytes=block_cache,
                            bloom_bits_per_key=bloom, compression=compression,
                            max_open_files=max_open_files,
                            level0_compaction_trigger=level0_trigger,
                            partitioned_index=partitioned)
        self.conn = self._connect()

    def _connect(self):
        return kvcy.connect(self.path, **self.options)

    def teardown(self):
        try:
            if self.conn is not None:
                self.conn.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- writes --------------------------------------------------------------

    @rule(key=keys, value=values)
    def put(self, key, value):
        self.conn.put(key, value)
        self.model[key] = value

    @rule(key=keys)
    def delete(self, key):
        self.conn.delete(key)
        self.model.pop(key, None)

    @rule(pairs=st.lists(st.tuples(keys, values), max_size=8))
    def put_many(self, pairs):
        self.conn.put_many(pairs)
        self.model.update(pairs)

    @rule(ks=st.lists(keys, max_size=8))
    def delete_many(self, ks):
        self.conn.delete_many(ks)
        for key in ks:
            self.model.pop(key, None)

    @rule(entries=st.lists(st.tuples(keys, st.none() | values), max_size=8))
    def write_batch(self, entries):
        batch = kvcy.WriteBatch()
        for key, value in entries:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self.conn.write(batch)
        for key, value in entries:
            if value is None:
                self.model.pop(key, None)
            else:
                self.model[key] = value

    # -- reads ---------------------------------------------------------------

    @rule(key=keys)
    def get(self, key):
        assert self.conn.get(key) == self.model.get(key)
        assert self.conn.get(key, b"<d>") == self.model.get(key, b"<d>")

    @rule(ks=st.lists(keys, max_size=8))
    def get_many(self, ks):
        assert self.conn.get_many(ks) == [self.model.get(k) for k in ks]

    @rule(start=bounds, stop=bounds, prefix=prefixes, reverse=st.booleans())
    def scan(self, start, stop, prefix, reverse):
        rows = list(self.conn.scan(start, stop, prefix=prefix, reverse=reverse))
        assert rows == expected(self.model, start, stop, prefix, reverse)

    @rule(start=bounds, stop=bounds, reverse=st.booleans(), use_snapshot=st.booleans(),
          which=indices,
          ops=st.lists(st.sampled_from(["next", "prev", "first", "last"])
                       | st.tuples(st.sampled_from(["seek", "seek_for_prev"]),
                                   st.sampled_from(BOUNDS)), min_size=1, max_size=12))
    def walk(self, start, stop, reverse, use_snapshot, which, ops):
        """Cursor moves on an iterator against a sorted key list."""
        if use_snapshot and self.snaps:
            snap, state = self.snaps[which % len(self.snaps)]
            it = snap.scan(start, stop, reverse=reverse)
        else:
            state = self.model
            it = self.conn.scan(start, stop, reverse=reverse)
        rows = expected(state, start, stop)
        ks = [k for k, _ in rows]
        pos = None                  # index into rows, None when not valid
        moved = False               # a cursor move happened (iteration resumes from it)
        with it:
            for op in ops:
                if op in ("next", "prev"):
                    if pos is None:
                        with pytest.raises(ValueError):
                            getattr(it, op)()
                        continue
                    getattr(it, op)()
                    pos = pos + 1 if op == "next" else pos - 1
                    if not 0 <= pos < len(rows):
                        pos = None
                elif op == "first":
                    it.seek_to_first()
                    pos = 0 if rows else None
                elif op == "last":
                    it.seek_to_last()
                    pos = len(rows) - 1 if rows else None
                elif op[0] == "seek":
                    it.seek(op[1])
                    i = bisect.bisect_left(ks, op[1])
                    pos = i if i < len(rows) else None
                else:
                    it.seek_for_prev(op[1])
                    i = bisect.bisect_right(ks, op[1]) - 1
                    pos = i if i >= 0 else None
                moved = True
                assert it.valid() == (pos is not None), (op, pos)
                if pos is not None:
                    assert it.item() == rows[pos], op
            # Iteration picks up from the cursor: the entry under it, then onwards;
            # with no successful move it starts at the beginning.
            if not moved:
                rest = rows[::-1] if reverse else rows
            elif pos is not None:
                rest = rows[pos::-1] if reverse else rows[pos:]
            else:
                rest = []
            assert list(it) == rest

    # -- iterators left open ---------------------------------------------------

    @precondition(lambda self: len(self.iters) < MAX_ITERATORS)
    @rule(start=bounds, stop=bounds, prefix=prefixes, reverse=st.booleans(),
          consume=st.integers(0, 3))
    def open_iterator(self, start, stop, prefix, reverse, consume):
        it = self.conn.scan(start, stop, prefix=prefix, reverse=reverse)
        rows = expected(self.model, start, stop, prefix, reverse)
        got = [row for _, row in zip(range(consume), it)]
        assert got == rows[:consume]
        self.iters.append((it, rows[consume:]))

    @precondition(lambda self: self.iters)
    @rule(which=indices, n=st.integers(1, 40))
    def drain_iterator(self, which, n):
        i = which % len(self.iters)
        it, rows = self.iters[i]
        got = [row for _, row in zip(range(n), it)]
        assert got == rows[:n]
        if n >= len(rows):
            assert list(it) == []
            it.close()
            del self.iters[i]
        else:
            self.iters[i] = (it, rows[n:])

    # -- snapshots -------------------------------------------------------------

    @precondition(lambda self: len(self.snaps) < MAX_SNAPSHOTS)
    @rule()
    def take_snapshot(self):
        self.snaps.append((self.conn.snapshot(), dict(self.model)))

    @precondition(lambda self: self.snaps)
    @rule(which=indices, use_with=st.booleans())
    def release_snapshot(self, which, use_with):
        snap, state = self.snaps.pop(which % len(self.snaps))
        if use_with:
            with snap:
                assert snap.get_many(KEYS) == [state.get(k) for k in KEYS]
        else:
            snap.close()
        with pytest.raises(ProgrammingError):
            snap.get(KEYS[0])

    @precondition(lambda self: self.snaps)
    @rule(which=indices, ks=st.lists(keys, min_size=1, max_size=8))
    def snapshot_get(self, which, ks):
        snap, state = self.snaps[which % len(self.snaps)]
        assert snap.get_many(ks) == [state.get(k) for k in ks]
        assert snap.get(ks[0]) == state.get(ks[0])

    @precondition(lambda self: self.snaps)
    @rule(which=indices, start=bounds, stop=bounds, prefix=prefixes, reverse=st.booleans())
    def snapshot_scan(self, which, start, stop, prefix, reverse):
        snap, state = self.snaps[which % len(self.snaps)]
        rows = list(snap.scan(start, stop, prefix=prefix, reverse=reverse))
        assert rows == expected(state, start, stop, prefix, reverse)

    # -- the tree --------------------------------------------------------------

    @rule()
    def flush(self):
        self.conn.flush()

    @rule(start=bounds, stop=bounds)
    def compact_range(self, start, stop):
        self.conn.compact_range(start, stop)

    @rule()
    def compact_all(self):
        self.conn.compact_range()

    @rule()
    def reopen(self):
        self.conn.close()
        for snap, _ in self.snaps:
            with pytest.raises(ProgrammingError):
                snap.get(KEYS[0])
        for it, _ in self.iters:
            with pytest.raises(ProgrammingError):
                next(it)
        self.snaps.clear()
        self.iters.clear()
        self.conn = self._connect()

    @invariant()
    def matches_model(self):
        if self.conn is None:
            return
        assert self.conn.get_many(KEYS) == [self.model.get(k) for k in KEYS]
        assert list(self.conn.scan()) == expected(self.model)
        stats = self.conn.stats()
        for level in range(1, 7):
            if stats.get("level%d_files" % level):
                LsmModel.deepest_level = max(LsmModel.deepest_level, level)


def _settings(max_examples, steps):
    return settings(max_examples=max_examples, stateful_step_count=steps, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_lsm_matches_the_model():
    LsmModel.deepest_level = 0
    run_state_machine_as_test(LsmModel, settings=_settings(60, 80))
    assert LsmModel.deepest_level >= 2, "the premise: runs reach level 2"


@pytest.mark.slow
def test_lsm_matches_the_model_long():
    LsmModel.deepest_level = 0
    run_state_machine_as_test(LsmModel, settings=_settings(600, 150))
    assert LsmModel.deepest_level >= 3
