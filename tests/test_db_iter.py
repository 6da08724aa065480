"""DBIterator (kvcy._db_iter) against a model: user key -> [(seq, kind, value)].

At sequence S a user key is visible iff its newest entry with seq <= S is a
value; the iterator yields the visible keys in [start, stop), ascending or
descending.  The internal entries are spread over a merge of memtables,
blocks, tables and levels.
"""
import bisect
import gc
import random
import sys
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iterator_helpers import (build_block, build_level, build_memtable, build_table, ikey,
                              sorted_entries)
from kvcy._block import Block
from kvcy._block_builder import BlockBuilder
from kvcy._db_iter import DBIterator, prefix_stop
from kvcy._iterator import EmptyIterator, ErrorIterator
from kvcy._merge import MergingIterator
from kvcy._two_level import LevelIterator
from kvcy.dbformat import KIND_DELETE, KIND_VALUE, MAX_SEQUENCE
from kvcy.errors import CorruptionError, ProgrammingError


# -- the model ------------------------------------------------------------------

def visible(model, sequence, start=None, stop=None):
    """Sorted [(user key, value)] visible at sequence within [start, stop)."""
    out = []
    for uk in sorted(model):
        if (start is not None and uk < start) or (stop is not None and uk >= stop):
            continue
        versions = [v for v in model[uk] if v[0] <= sequence]
        if not versions:
            continue
        seq, kind, value = max(versions)
        if kind == KIND_VALUE:
            out.append((uk, value))
    return out


def random_model(rng, n_keys, max_versions, max_seq=200, tombstone_rate=0.3):
    model = {}
    seqs = rng.sample(range(1, max_seq + 1), min(max_seq, n_keys * max_versions))
    i = 0
    for k in range(n_keys):
        uk = b"k%03d" % k if rng.random() < 0.8 else b"k%03d\x00x" % k
        versions = []
        for _ in range(rng.randint(1, max_versions)):
            if i >= len(seqs):
                break
            seq = seqs[i]
            i += 1
            if rng.random() < tombstone_rate:
                versions.append((seq, KIND_DELETE, b""))
            else:
                versions.append((seq, KIND_VALUE, b"%s@%d" % (uk, seq)))
        if versions:
            model[uk] = versions
    return model


def internal_entries(model):
    return [(ikey(uk, seq, kind), value) for uk, vs in model.items() for seq, kind, value in vs]


def merge_over(model, rng, n_children=3, kinds=("memtable", "block", "table", "level")):
    """A MergingIterator over the model's entries spread randomly across children."""
    parts = [[] for _ in range(n_children)]
    for e in internal_entries(model):
        parts[rng.randrange(n_children)].append(e)
    children = []
    for part in parts:
        kind = rng.choice(kinds)
        if kind == "memtable":
            children.append(build_memtable(part).iterator())
        elif kind == "block":
            children.append(build_block(part).iterator())
        elif kind == "table" and part:
            children.append(build_table(part)[0].iterator())
        elif kind == "level" and part:
            ordered = sorted_entries(part)
            user_keys = sorted({k[:-8] for k, _ in ordered})
            cut = user_keys[len(user_keys) // 2]
            runs = [r for r in ([e for e in ordered if e[0][:-8] < cut],
                                [e for e in ordered if e[0][:-8] >= cut]) if r]
            files, tables = build_level(runs)
            children.append(LevelIterator(files, lambda m, t=tables: t[m.number].iterator()))
        else:
            children.append(EmptyIterator())
    return MergingIterator(children)


def db_iter(model, sequence, start=None, stop=None, reverse=False, seed=0, **kw):
    return DBIterator(merge_over(model, random.Random(seed)), sequence, start, stop,
                      reverse=reverse, **kw)


# -- basics -----------------------------------------------------------------------

MODEL = {
    b"a": [(1, KIND_VALUE, b"a1"), (5, KIND_VALUE, b"a5")],
    b"b": [(2, KIND_VALUE, b"b2"), (6, KIND_DELETE, b"")],
    b"c": [(3, KIND_DELETE, b""), (7, KIND_VALUE, b"c7")],
    b"d": [(4, KIND_VALUE, b"d4")],
    b"e": [(8, KIND_DELETE, b"")],
}


@pytest.mark.parametrize("sequence", range(0, 10))
def test_visible_entries_at_each_sequence(sequence):
    want = visible(MODEL, sequence)
    assert list(db_iter(MODEL, sequence)) == want
    assert list(db_iter(MODEL, sequence, reverse=True)) == want[::-1]


def test_latest_state():
    assert list(db_iter(MODEL, MAX_SEQUENCE)) == [(b"a", b"a5"), (b"c", b"c7"), (b"d", b"d4")]


def test_reverse_finds_the_newest_visible_version_of_each_key():
    # Many versions per key, newest a tombstone for some: reverse must read them all.
    model = {b"k": [(s, KIND_VALUE, b"v%d" % s) for s in range(1, 30)],
             b"j": [(s, KIND_VALUE, b"j%d" % s) for s in range(30, 40)] + [(40, KIND_DELETE, b"")],
             b"i": [(41, KIND_DELETE, b""), (42, KIND_VALUE, b"i42")]}
    for seq in (0, 10, 29, 35, 39, 40, 41, 42, 100):
        want = visible(model, seq)
        assert list(db_iter(model, seq, reverse=True)) == want[::-1], seq
        assert list(db_iter(model, seq)) == want, seq


def test_bounds():
    model = {bytes([c]): [(c, KIND_VALUE, bytes([c]) * 2)] for c in range(ord("a"), ord("k"))}
    cases = [(None, None), (b"c", None), (None, b"f"), (b"c", b"f"), (b"c", b"c"),
             (b"f", b"c"), (b"bb", b"ff"), (b"", b"zz"), (b"z", None), (None, b"a")]
    for start, stop in cases:
        want = visible(model, 1000, start, stop)
        assert list(db_iter(model, 1000, start, stop)) == want, (start, stop)
        assert list(db_iter(model, 1000, start, stop, reverse=True)) == want[::-1], (start, stop)


def test_bounds_accept_bytes_like_and_reject_str():
    it = db_iter(MODEL, 100, bytearray(b"b"), memoryview(b"d"))
    assert [k for k, _ in it] == [b"c"]
    with pytest.raises(TypeError):
        db_iter(MODEL, 100, "a")
    with pytest.raises(TypeError):
        db_iter(MODEL, 100, None, "z")


def test_prefix_as_bounds():
    model = {k: [(i + 1, KIND_VALUE, k)] for i, k in enumerate(
        [b"us", b"user", b"user:1", b"user:2", b"user:\xff", b"user;", b"users", b"v"])}
    it = db_iter(model, 100, b"user:", prefix_stop(b"user:"))
    assert [k for k, _ in it] == [b"user:1", b"user:2", b"user:\xff"]
    assert prefix_stop(b"a\xff\xff") == b"b"
    assert prefix_stop(b"\xff\xff") is None
    assert prefix_stop(b"") is None
    assert prefix_stop(bytearray(b"ab")) == b"ac"
    with pytest.raises(TypeError):
        prefix_stop("ab")


def test_stop_bound_stops_without_reading_the_rest():
    # Entries past stop are never reached: a deep run of tombstones after it costs nothing.
    model = {b"a": [(1, KIND_VALUE, b"1")]}
    model.update({b"z%05d" % i: [(i + 2, KIND_DELETE, b"")] for i in range(2000)})
    assert list(db_iter(model, 10**6, None, b"b")) == [(b"a", b"1")]


def test_sequence_is_checked():
    with pytest.raises(ValueError):
        DBIterator(EmptyIterator(), MAX_SEQUENCE + 1)
    with pytest.raises(TypeError):
        DBIterator(object(), 1)


# -- cursor ---------------------------------------------------------------------

def test_cursor_moves():
    it = db_iter(MODEL, 100)
    it.seek(b"b")
    assert (it.key(), it.value()) == (b"c", b"c7")
    it.prev()
    assert it.item() == (b"a", b"a5")
    it.next()
    it.next()
    assert it.key() == b"d"
    it.next()
    assert not it.valid()
    with pytest.raises(ValueError):
        it.next()
    with pytest.raises(ValueError):
        it.key()
    it.seek_to_last()
    assert it.key() == b"d"
    it.seek_for_prev(b"cz")
    assert it.key() == b"c"
    it.seek_for_prev(b"c")
    assert it.key() == b"c"
    it.seek_for_prev(b"b")
    assert it.key() == b"a"
    it.seek_for_prev(b"")
    assert not it.valid()
    it.seek_to_first()
    assert it.key() == b"a"


def test_seek_respects_bounds():
    it = db_iter(MODEL, 100, b"b", b"d")
    it.seek(b"a")
    assert it.key() == b"c"
    it.seek(b"d")
    assert not it.valid()
    it.seek_for_prev(b"z")
    assert it.key() == b"c"
    it.seek_for_prev(b"a")
    assert not it.valid()


def test_iteration_continues_from_the_cursor():
    it = db_iter(MODEL, 100)
    it.seek(b"b")
    assert list(it) == [(b"c", b"c7"), (b"d", b"d4")]
    assert list(it) == []                     # exhausted stays exhausted
    it.seek_to_first()
    assert next(it) == (b"a", b"a5")
    assert it.key() == b"a"                   # the cursor rests on the yielded entry
    it.next()                                 # a cursor move: the next __next__ yields it
    assert next(it) == (b"c", b"c7")
    assert next(it) == (b"d", b"d4")

    rev = db_iter(MODEL, 100, reverse=True)
    rev.seek(b"c")
    assert list(rev) == [(b"c", b"c7"), (b"a", b"a5")]
    rev.seek_for_prev(b"cc")
    assert next(rev) == (b"c", b"c7")
    rev.next()
    assert next(rev) == (b"d", b"d4")
    assert next(rev) == (b"c", b"c7")


def test_mixed_next_prev_over_many_versions():
    rng = random.Random(11)
    model = random_model(rng, 30, 6)
    for seq in (50, 120, 200):
        want = visible(model, seq)
        it = db_iter(model, seq, seed=seq)
        it.seek_to_first()
        pos = 0
        for _ in range(300):
            if not want:
                assert not it.valid()
                break
            assert it.item() == want[pos]
            step = rng.choice([-1, 1])
            if 0 <= pos + step < len(want):
                (it.next if step == 1 else it.prev)()
                pos += step


# -- lifetime and errors -----------------------------------------------------------

class Pin:
    pass


def test_close_releases_the_pin_and_children():
    pin = Pin()
    ref = weakref.ref(pin)
    merge = merge_over(MODEL, random.Random(1))
    refs = sys.getrefcount(merge)
    it = DBIterator(merge, 100, pin=pin)
    assert sys.getrefcount(merge) == refs + 1
    del pin
    gc.collect()
    assert ref() is not None
    assert next(it) == (b"a", b"a5")
    it.close()
    gc.collect()
    assert ref() is None
    assert sys.getrefcount(merge) == refs
    assert it.closed
    it.close()                                # idempotent


def test_iterators_can_be_tracked_weakly():
    it = db_iter(MODEL, 100)
    ref = weakref.ref(it)
    assert ref() is it
    del it
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("use", [
    lambda it: next(it), lambda it: iter(it), lambda it: it.valid(), lambda it: it.key(),
    lambda it: it.value(), lambda it: it.item(), lambda it: it.next(), lambda it: it.prev(),
    lambda it: it.seek(b"a"), lambda it: it.seek_for_prev(b"a"), lambda it: it.seek_to_first(),
    lambda it: it.seek_to_last(), lambda it: it.__enter__()])
def test_use_after_close_raises_programming_error(use):
    it = db_iter(MODEL, 100)
    it.seek_to_first()
    it.close()
    with pytest.raises(ProgrammingError):
        use(it)


def test_close_during_a_step_waits_for_the_step():
    # Another thread may close the iterator while this one is inside a step
    # (a table read releases the GIL); here a file opener closes it mid-step.
    runs = [[(ikey(b"a%02d" % i, 1), b"x") for i in range(3)],
            [(ikey(b"b%02d" % i, 1), b"y") for i in range(3)]]
    files, tables = build_level(runs)
    holder = {}

    def open_table_iterator(meta):
        if meta.number == files[1].number:
            holder["it"].close()
            with pytest.raises(ProgrammingError, match="closed"):
                next(holder["it"])
        return tables[meta.number].iterator()
    pin = Pin()
    ref = weakref.ref(pin)
    it = holder["it"] = DBIterator(MergingIterator([LevelIterator(files, open_table_iterator)]),
                                   100, pin=pin)
    del pin
    got = [next(it) for _ in range(4)]       # the 4th step crosses into the second file
    assert got[-1] == (b"b00", b"y")
    assert it.closed
    gc.collect()
    assert ref() is None                      # released once the step was over
    with pytest.raises(ProgrammingError):
        next(it)


def test_reentrant_use_is_refused():
    runs = [[(ikey(b"a", 1), b"x")], [(ikey(b"b", 1), b"y")]]
    files, tables = build_level(runs)
    holder = {}
    seen = []

    def open_table_iterator(meta):
        if meta.number == files[1].number:
            try:
                holder["it"].seek_to_first()
            except ProgrammingError as exc:
                seen.append(exc)
        return tables[meta.number].iterator()
    it = holder["it"] = DBIterator(MergingIterator([LevelIterator(files, open_table_iterator)]),
                                   100)
    assert list(it) == [(b"a", b"x"), (b"b", b"y")]
    assert len(seen) == 1 and "in use" in str(seen[0])


def test_uninitialised_iterator_is_unusable_not_a_crash():
    it = DBIterator.__new__(DBIterator)
    with pytest.raises(ProgrammingError):
        next(it)
    with pytest.raises(ProgrammingError):
        it.seek_to_first()


def test_context_manager_closes():
    with db_iter(MODEL, 100) as it:
        assert next(it) == (b"a", b"a5")
    assert it.closed
    with pytest.raises(ProgrammingError):
        next(it)


def test_child_error_is_sticky():
    exc = CorruptionError("table 9: bad block")
    it = DBIterator(MergingIterator([build_memtable(internal_entries(MODEL)).iterator(),
                                     ErrorIterator(exc)]), 100)
    with pytest.raises(CorruptionError) as info:
        next(it)
    assert info.value is exc
    assert it.status() is exc
    assert not it.valid()
    for use in (lambda: next(it), it.seek_to_first, it.seek_to_last, lambda: it.seek(b"a"),
                it.next, it.prev, it.key):
        with pytest.raises(CorruptionError):
            use()


def test_child_error_mid_scan_is_sticky():
    runs = [[(ikey(b"a%02d" % i, 1), b"x") for i in range(10)],
            [(ikey(b"b%02d" % i, 1), b"x") for i in range(10)]]
    files, tables = build_level(runs)

    def open_table_iterator(meta):
        if meta.number == files[1].number:
            raise CorruptionError("table %d: bad" % meta.number)
        return tables[meta.number].iterator()
    it = DBIterator(MergingIterator([LevelIterator(files, open_table_iterator)]), 100)
    got = []
    with pytest.raises(CorruptionError) as info:
        for kv in it:
            got.append(kv)
    assert len(got) == 10
    assert it.status() is info.value
    with pytest.raises(CorruptionError):
        next(it)
    with pytest.raises(CorruptionError):
        it.seek_to_first()


def test_entry_of_unknown_kind_is_corruption():
    b = BlockBuilder(4)
    b.add(ikey(b"a", 1), b"1")
    b.add(ikey(b"b", 2, 7), b"?")            # kind 7 does not exist
    b.add(ikey(b"c", 3), b"3")
    it = DBIterator(MergingIterator([Block(b.finish()).iterator()]), 100)
    assert next(it) == (b"a", b"1")
    with pytest.raises(CorruptionError, match="unknown kind 7"):
        next(it)
    with pytest.raises(CorruptionError, match="unknown kind 7"):
        it.seek_to_first()
    # Backward, c is only known to be the newest visible version of its key once
    # the entry before it (b's) has been read.
    rev = DBIterator(MergingIterator([Block(b.finish()).iterator()]), 100, reverse=True)
    with pytest.raises(CorruptionError):
        next(rev)
    with pytest.raises(CorruptionError):
        next(rev)


def test_invisible_entries_of_unknown_kind_are_skipped():
    # Entries newer than the sequence are not read for their kind.
    b = BlockBuilder(4)
    b.add(ikey(b"a", 1), b"1")
    b.add(ikey(b"b", 200, 7), b"?")
    b.add(ikey(b"b", 2), b"2")
    it = DBIterator(MergingIterator([Block(b.finish()).iterator()]), 100)
    assert list(it) == [(b"a", b"1"), (b"b", b"2")]


def test_large_keys_and_values():
    model = {b"k" * 5000 + bytes([i]): [(i + 1, KIND_VALUE, bytes([i]) * 100000)]
             for i in range(5)}
    want = visible(model, 100)
    assert list(db_iter(model, 100)) == want
    assert list(db_iter(model, 100, reverse=True)) == want[::-1]


# -- property tests -----------------------------------------------------------------

OPS = ["next", "prev", "seek", "seek_for_prev", "first", "last", "iter", "iter", "iter"]


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32), n_keys=st.integers(0, 25), max_versions=st.integers(1, 5),
       n_children=st.integers(1, 5), reverse=st.booleans(), bounded=st.integers(0, 3),
       ops=st.lists(st.sampled_from(OPS), max_size=60))
def test_walks_match_the_model(seed, n_keys, max_versions, n_children, reverse, bounded, ops):
    rng = random.Random(seed)
    model = random_model(rng, n_keys, max_versions)
    sequence = rng.randrange(0, 220)
    keys = sorted(model) or [b"k000"]
    start = rng.choice(keys) if bounded & 1 else None
    stop = rng.choice(keys + [b"k1"]) if bounded & 2 else None
    want = visible(model, sequence, start, stop)
    wkeys = [k for k, _ in want]
    it = DBIterator(merge_over(model, rng, n_children), sequence, start, stop, reverse=reverse)

    # Whole scans first, on fresh iterators.
    assert list(DBIterator(merge_over(model, rng, n_children), sequence, start, stop)) == want
    assert list(DBIterator(merge_over(model, rng, n_children), sequence, start, stop,
                           reverse=True)) == want[::-1]

    pos, fresh, pending = None, True, False
    for op in ops:
        if op in ("next", "prev"):
            if pos is None:
                with pytest.raises(ValueError):
                    getattr(it, op)()
                continue
            getattr(it, op)()
            pos += 1 if op == "next" else -1
            pending = True
        elif op == "first":
            it.seek_to_first()
            pos, pending = 0, True
        elif op == "last":
            it.seek_to_last()
            pos, pending = len(want) - 1, True
        elif op in ("seek", "seek_for_prev"):
            target = rng.choice(keys + [b"", b"k", b"k0105", b"z"])
            if rng.random() < 0.3:
                target += b"\x00"
            if op == "seek":
                it.seek(target)
                pos = bisect.bisect_left(wkeys, target)
            else:
                it.seek_for_prev(target)
                pos = bisect.bisect_right(wkeys, target) - 1
            pending = True
        else:                                  # op == "iter": one __next__
            if fresh:
                pos = len(want) - 1 if reverse else 0
            elif not pending and pos is not None:
                pos += -1 if reverse else 1
            if pos is not None and not 0 <= pos < len(want):
                pos = None
            pending = False
            if pos is None:
                with pytest.raises(StopIteration):
                    next(it)
            else:
                assert next(it) == want[pos]
        if op not in ("next", "prev"):
            fresh = False
        if pos is not None and not 0 <= pos < len(want):
            pos = None
        assert it.valid() == (pos is not None)
        if pos is not None:
            assert it.item() == want[pos]
        assert it.status() is None


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
def test_take_returns_the_same_pairs_as_iteration_in_chunks(reverse, chunk):
    rng = random.Random(chunk)
    model = random_model(rng, 60, 4)
    expected = visible(model, 150)
    if reverse:
        expected = expected[::-1]
    it = db_iter(model, 150, reverse=reverse, seed=chunk)
    got = it.take(chunk, 2)
    while len(got) % chunk == 0 and got:
        more = it.take(chunk, 1)
        got += more
        if len(more) < chunk:
            break
    assert got == expected
    assert it.take(chunk, 1) == []
    assert it.take(0, 2) == []


def test_take_modes_follow_the_cursor():
    model = random_model(random.Random(5), 40, 3)
    expected = visible(model, MAX_SEQUENCE)
    keys = [k for k, _ in expected]
    it = db_iter(model, MAX_SEQUENCE)
    it.seek(keys[10])
    assert it.take(3, 0) == expected[10:13]          # starts on the entry sought
    assert next(it) == expected[13]                   # __next__ steps after a take
    assert it.take(2, 1) == expected[14:16]
    with pytest.raises(ValueError):
        it.take(-1)
    with pytest.raises(ValueError):
        it.take(1, 5)
    it.close()
    with pytest.raises(ProgrammingError):
        it.take(1)
