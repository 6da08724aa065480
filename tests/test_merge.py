"""MergingIterator (kvcy._merge) and LevelIterator (kvcy._two_level) against a sorted-list model.

The model of a merge is every child's entries sorted by (internal key, child
index): equal internal keys can only be identical entries, and the newer
child (lower index) comes first.  Children are memtables, blocks, tables and
levels of tables; walks mix next, prev, seeks and direction switches.
"""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iterator_helpers import (build_block, build_level, build_memtable, build_table, entry,
                              ikey, order, random_entries, scan_backward, scan_forward,
                              sorted_entries)
from kvcy._iterator import EmptyIterator, ErrorIterator
from kvcy._merge import MergingIterator
from kvcy._two_level import LevelIterator
from kvcy.dbformat import KIND_DELETE, KIND_FOR_SEEK, MAX_SEQUENCE
from kvcy.errors import CorruptionError
from kvcy.table_cache import TableCache

KINDS = ("memtable", "block", "table", "level", "empty")


def split_runs(entries, parts):
    """Split entries into up to `parts` runs with disjoint, ascending user-key ranges."""
    ordered = sorted_entries(entries)
    user_keys = sorted({k[:-8] for k, _ in ordered})
    if not user_keys:
        return []
    parts = max(1, min(parts, len(user_keys)))
    bounds = [user_keys[len(user_keys) * i // parts] for i in range(1, parts)]
    runs = [[] for _ in range(parts)]
    for k, v in ordered:
        runs[sum(1 for b in bounds if k[:-8] >= b)].append((k, v))
    return [r for r in runs if r]


def make_child(kind, entries, opens=None):
    if kind == "memtable":
        return build_memtable(entries).iterator()
    if kind == "block":
        return build_block(entries).iterator()
    if kind == "table":
        return build_table(entries)[0].iterator()
    if kind == "level":
        files, tables = build_level(split_runs(entries, 3))

        def open_table_iterator(meta):
            if opens is not None:
                opens.append(meta.number)
            return tables[meta.number].iterator()
        return LevelIterator(files, open_table_iterator)
    assert kind == "empty" and not entries
    return EmptyIterator()


def merge_model(children_entries):
    """[(key, value)] of the merge: sorted by (internal key, child index)."""
    rows = [(order(k), i, k, v) for i, es in enumerate(children_entries) for k, v in es]
    rows.sort(key=lambda r: (r[0], r[1]))
    return [(k, v) for _, _, k, v in rows]


def first_at_or_after(model, target):
    t = order(target)
    for i, (k, _) in enumerate(model):
        if order(k) >= t:
            return i
    return len(model)


def children_entries_from(rng, n_children, per_child, shared_fraction=0.1):
    """Entries per child, (user key, sequence) unique across children except
    for some identical entries deliberately repeated in several children."""
    pool = random_entries(rng, n_children * per_child + 10, user_keys=30, max_seq=500)
    out = [[] for _ in range(n_children)]
    for k, v in pool[:n_children * per_child]:
        out[rng.randrange(n_children)].append((k, v))
    # identical entries in more than one child (only the value tells the child apart)
    for k, v in pool[n_children * per_child:]:
        if n_children > 1 and rng.random() < shared_fraction * 5:
            for i in rng.sample(range(n_children), 2):
                out[i].append((k, b"child%d" % i if v else b""))   # tombstones have no value
    return out


def walk(it, model, ops, rng):
    """Drive it with ops, checking every position against the model."""
    pos = None
    for op in ops:
        if op in ("next", "prev") and pos is None:
            with pytest.raises(ValueError):
                getattr(it, op)()
            continue
        if op == "next":
            it.next()
            pos += 1
        elif op == "prev":
            it.prev()
            pos -= 1
        elif op == "first":
            it.seek_to_first()
            pos = 0
        elif op == "last":
            it.seek_to_last()
            pos = len(model) - 1
        else:
            if model and rng.random() < 0.5:
                t = rng.choice(model)[0]          # an exact key, duplicates included
            else:
                t = ikey(b"k%03d" % rng.randrange(32), rng.randrange(0, 501), KIND_FOR_SEEK)
            it.seek(t)
            pos = first_at_or_after(model, t)
        if pos is not None and not 0 <= pos < len(model):
            pos = None
        assert entry(it) == (model[pos] if pos is not None else None), (op, pos)
        assert it.status() is None


# -- MergingIterator --------------------------------------------------------------

def test_merge_of_nothing():
    it = MergingIterator([])
    for move in (it.seek_to_first, it.seek_to_last, lambda: it.seek(ikey(b"a", 1))):
        move()
        assert not it.valid()
    assert it.num_children == 0


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "empty"])
def test_merge_of_one_child_is_the_child(kind):
    entries = random_entries(random.Random(1), 50)
    it = MergingIterator([make_child(kind, entries)])
    model = sorted_entries(entries)
    assert scan_forward(it) == model
    assert scan_backward(it) == model[::-1]


def test_merge_interleaves_children_in_internal_key_order():
    a = [(ikey(b"a", 9), b"a9"), (ikey(b"c", 9), b"c9")]
    b = [(ikey(b"a", 4), b"a4"), (ikey(b"b", 1, KIND_DELETE), b""), (ikey(b"d", 2), b"d2")]
    c = [(ikey(b"a", 5), b"a5"), (ikey(b"c", 10), b"c10")]
    it = MergingIterator([build_memtable(a).iterator(), build_block(b).iterator(),
                          build_table(c)[0].iterator()])
    keys = [(k[:-8], int.from_bytes(k[-8:], "little") >> 8) for k, _ in scan_forward(it)]
    assert keys == [(b"a", 9), (b"a", 5), (b"a", 4), (b"b", 1), (b"c", 10), (b"c", 9),
                    (b"d", 2)]


def test_identical_entries_come_in_child_order_both_ways():
    k = ikey(b"same", 7)
    kids = [[(k, b"child0")], [(ikey(b"other", 1), b"x")], [(k, b"child2")], [(k, b"child3")]]
    it = MergingIterator([build_memtable(es).iterator() for es in kids])
    values = [v for _, v in scan_forward(it)]
    assert values == [b"x", b"child0", b"child2", b"child3"]
    assert [v for _, v in scan_backward(it)] == values[::-1]
    # Direction switches in the middle of the tie.
    it.seek(k)
    assert it.value() == b"child0"
    it.next()
    assert it.value() == b"child2"
    it.prev()
    assert it.value() == b"child0"
    it.next()
    it.next()
    assert it.value() == b"child3"
    it.prev()
    assert it.value() == b"child2"
    it.prev()
    it.prev()
    assert it.value() == b"x"
    it.next()
    assert it.value() == b"child0"


def test_direction_switches_at_every_position():
    rng = random.Random(3)
    kids = children_entries_from(rng, 3, 30)
    model = merge_model(kids)
    kinds = ["memtable", "table", "level"]
    for i in range(len(model)):
        it = MergingIterator([make_child(kinds[j], es) for j, es in enumerate(kids)])
        it.seek_to_first()
        for _ in range(i):
            it.next()
        assert entry(it) == model[i]
        if i > 0:
            it.prev()
            assert entry(it) == model[i - 1]
            it.next()
        if i + 1 < len(model):
            it.next()
            assert entry(it) == model[i + 1]
            it.prev()
        assert entry(it) == model[i]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32),
       kinds=st.lists(st.sampled_from(KINDS), min_size=1, max_size=6),
       per_child=st.integers(0, 25),
       ops=st.lists(st.sampled_from(["next", "prev", "seek", "first", "last"]), max_size=60))
def test_random_walks_match_the_model(seed, kinds, per_child, ops):
    rng = random.Random(seed)
    kids = children_entries_from(rng, len(kinds), per_child)
    for i, kind in enumerate(kinds):
        if kind == "empty":
            kids[i] = []
    model = merge_model(kids)
    it = MergingIterator([make_child(kind, es) for kind, es in zip(kinds, kids)])
    assert scan_forward(it) == model
    assert scan_backward(it) == model[::-1]
    walk(it, model, ops, rng)


def test_merge_rejects_bad_children():
    with pytest.raises(TypeError):
        MergingIterator([object()])
    it = EmptyIterator()
    with pytest.raises(ValueError, match="twice"):
        MergingIterator([it, it])


def test_merge_seek_validates_its_target():
    it = MergingIterator([build_memtable([(ikey(b"a", 1), b"1")]).iterator()])
    with pytest.raises(ValueError):
        it.seek(b"abc")
    with pytest.raises(TypeError):
        it.seek("abc")


def test_merge_error_from_a_child_is_sticky():
    exc = CorruptionError("broken")
    it = MergingIterator([build_memtable([(ikey(b"a", 1), b"1")]).iterator(),
                          ErrorIterator(exc)])
    with pytest.raises(CorruptionError) as info:
        it.seek_to_first()
    assert info.value is exc
    assert not it.valid()
    assert it.status() is exc
    for move in (it.seek_to_last, lambda: it.seek(ikey(b"a", 1)), it.next, it.prev, it.key):
        with pytest.raises(CorruptionError):
            move()


def test_merge_error_mid_scan_is_sticky():
    # A level whose second file cannot be opened, next to a healthy memtable.
    runs = split_runs(random_entries(random.Random(5), 40, user_keys=40), 3)
    files, tables = build_level(runs)

    def open_table_iterator(meta):
        if meta.number == files[1].number:
            raise CorruptionError("table %d: bad footer" % meta.number)
        return tables[meta.number].iterator()

    mem = build_memtable([(ikey(b"k%03d" % i, 1000), b"m") for i in range(40)])
    it = MergingIterator([mem.iterator(), LevelIterator(files, open_table_iterator)])
    it.seek_to_first()
    with pytest.raises(CorruptionError, match="bad footer") as info:
        while it.valid():
            it.next()
    assert not it.valid()
    assert it.status() is info.value
    with pytest.raises(CorruptionError):
        it.seek_to_first()
    with pytest.raises(CorruptionError):
        it.next()


# -- LevelIterator ----------------------------------------------------------------

def level_fixture(n_files=4, per_file=10):
    runs = [[(ikey(b"f%d-%03d" % (f, i), 100 + i), b"v%d-%d" % (f, i)) for i in range(per_file)]
            for f in range(n_files)]
    files, tables = build_level(runs)
    opens = []

    def open_table_iterator(meta):
        opens.append(meta.number)
        return tables[meta.number].iterator()
    return LevelIterator(files, open_table_iterator), files, opens, sorted_entries(
        [e for run in runs for e in run])


def test_level_scans_across_files():
    it, files, opens, model = level_fixture()
    assert it.num_files == 4
    assert scan_forward(it) == model
    assert opens == [f.number for f in files]
    assert scan_backward(it) == model[::-1]


def test_level_opens_files_lazily():
    it, files, opens, model = level_fixture()
    it.seek(ikey(b"f2-005", MAX_SEQUENCE, KIND_FOR_SEEK))
    assert it.user_key() == b"f2-005"
    assert opens == [files[2].number]
    it.seek(ikey(b"f2-007", MAX_SEQUENCE, KIND_FOR_SEEK))
    assert opens == [files[2].number]            # same file: reused
    it.seek_to_first()
    assert opens == [files[2].number, files[0].number]
    for _ in range(9):
        it.next()
    assert opens == [files[2].number, files[0].number]
    it.next()                                    # into the second file
    assert it.user_key() == b"f1-000"
    assert opens[-1] == files[1].number


def test_level_seek_between_files_and_past_the_end():
    it, files, opens, model = level_fixture()
    it.seek(ikey(b"f1-999", MAX_SEQUENCE, KIND_FOR_SEEK))   # after file 1, before file 2
    assert it.user_key() == b"f2-000"
    it.prev()
    assert it.user_key() == b"f1-009"
    it.seek(ikey(b"f9", MAX_SEQUENCE, KIND_FOR_SEEK))
    assert not it.valid()
    it.seek(ikey(b"", MAX_SEQUENCE, KIND_FOR_SEEK))
    assert it.user_key() == b"f0-000"
    # A target equal to a file's largest key lands on it.
    it.seek(files[1].largest)
    assert it.key() == files[1].largest


def test_level_skips_files_that_turn_out_empty():
    runs = [[(ikey(b"a", 1), b"a")], [(ikey(b"m", 1), b"m")], [(ikey(b"z", 1), b"z")]]
    files, tables = build_level(runs)

    def open_table_iterator(meta):
        if meta.number == files[1].number:
            return EmptyIterator()               # e.g. a filtered view
        return tables[meta.number].iterator()
    it = LevelIterator(files, open_table_iterator)
    assert [k[:-8] for k, _ in scan_forward(it)] == [b"a", b"z"]
    assert [k[:-8] for k, _ in scan_backward(it)] == [b"z", b"a"]
    it.seek(ikey(b"m", MAX_SEQUENCE, KIND_FOR_SEEK))
    assert it.user_key() == b"z"


def test_level_of_no_files():
    it = LevelIterator([], lambda meta: None)
    for move in (it.seek_to_first, it.seek_to_last, lambda: it.seek(ikey(b"a", 1))):
        move()
        assert not it.valid()


def test_level_rejects_bad_arguments():
    with pytest.raises(TypeError):
        LevelIterator([], "not callable")
    it, files, opens, model = level_fixture(1)
    bad = LevelIterator(files, lambda meta: "not an iterator")
    with pytest.raises(TypeError):
        bad.seek_to_first()
    assert not bad.valid()


def test_level_through_a_table_cache(tmp_path):
    from kvcy.env import PosixEnv
    from kvcy.flush import write_level0_table
    from kvcy.options import Options
    env = PosixEnv()
    options = Options(block_size=256)
    metas = []
    for n, base in ((7, 0), (8, 100), (9, 200)):
        mem = build_memtable([(ikey(b"%05d" % (base + i), base + i + 1), b"v%d" % (base + i))
                              for i in range(50)])
        metas.append(write_level0_table(str(tmp_path), env, options, mem, n))
    cache = TableCache(str(tmp_path), env, options, None, None)
    it = LevelIterator(metas, cache.iterator)
    got = scan_forward(it)
    assert [k[:-8] for k, _ in got] == [b"%05d" % i for i in list(range(50)) + list(
        range(100, 150)) + list(range(200, 250))]
    assert len(cache) == 3


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(0, 80), parts=st.integers(1, 6),
       ops=st.lists(st.sampled_from(["next", "prev", "seek", "first", "last"]), max_size=50))
def test_level_random_walks_match_the_model(seed, n, parts, ops):
    rng = random.Random(seed)
    entries = random_entries(rng, n, user_keys=40, max_seq=500)
    files, tables = build_level(split_runs(entries, parts))
    it = LevelIterator(files, lambda meta: tables[meta.number].iterator())
    model = sorted_entries(entries)
    assert scan_forward(it) == model
    walk(it, model, ops, rng)
