"""The internal-iterator protocol (kvcy._iterator): the Python face written
once in InternalIterator, driven through MemTableIterator, BlockIterator and
TwoLevelIterator; EmptyIterator and ErrorIterator; sticky errors.
"""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iterator_helpers import (build_block, build_memtable, build_table, entry,
                              first_at_or_after, ikey, random_entries, scan_backward,
                              scan_forward, sorted_entries)
from kvcy._block import Block, BlockIterator
from kvcy._block_builder import BlockBuilder
from kvcy._iterator import EmptyIterator, ErrorIterator, InternalIterator
from kvcy._memtable import MemTable, MemTableIterator
from kvcy._merge import MergingIterator
from kvcy._two_level import LevelIterator
from kvcy._two_level import TableIterator, TwoLevelIterator
from kvcy.dbformat import KIND_DELETE, KIND_FOR_SEEK, KIND_VALUE, MAX_SEQUENCE
from kvcy.errors import CorruptionError
from kvcy.table_format import BlockHandle

PYTHON_FACE = ("valid", "status", "seek_to_first", "seek_to_last", "seek", "next", "prev",
               "key", "value", "user_key", "sequence", "kind")

ENTRIES = [(ikey(b"a", 5), b"a5"), (ikey(b"a", 3, KIND_DELETE), b""), (ikey(b"b", 9), b"b9"),
           (ikey(b"c", 1), b"c1"), (ikey(b"cc", 2), b"cc2"), (ikey(b"d", 7), b"d7")]


def make_memtable_iter(entries):
    return build_memtable(entries).iterator()


def make_block_iter(entries):
    return build_block(entries).iterator()


def make_table_iter(entries):
    table, _ = build_table(entries, block_size=256)
    return table.iterator()


MAKERS = {"memtable": make_memtable_iter, "block": make_block_iter, "table": make_table_iter}


@pytest.fixture(params=sorted(MAKERS))
def make(request):
    return MAKERS[request.param]


# -- the protocol ---------------------------------------------------------------

@pytest.mark.parametrize("cls", [MemTableIterator, BlockIterator, TwoLevelIterator, TableIterator,
                                 MergingIterator, LevelIterator, EmptyIterator, ErrorIterator])
def test_every_iterator_is_an_internal_iterator_with_the_python_face_inherited(cls):
    assert issubclass(cls, InternalIterator)
    for name in PYTHON_FACE:
        # Written once, in the base class; subclasses only implement the cdef face.
        assert name not in cls.__dict__, "%s.%s overrides the base class" % (cls.__name__, name)
        assert getattr(cls, name) is getattr(InternalIterator, name)


def test_iterators_of_each_kind_are_internal_iterators():
    assert isinstance(MemTable().iterator(), InternalIterator)
    assert isinstance(build_block(ENTRIES).iterator(), InternalIterator)
    assert isinstance(build_table(ENTRIES)[0].iterator(), TwoLevelIterator)


def test_scans_forward_and_backward(make):
    it = make(ENTRIES)
    model = sorted_entries(ENTRIES)
    assert scan_forward(it) == model
    assert scan_backward(it) == model[::-1]


def test_key_parts(make):
    it = make(ENTRIES)
    it.seek(ikey(b"a", 3, KIND_DELETE))
    assert it.valid()
    assert (it.user_key(), it.sequence(), it.kind(), it.value()) == (b"a", 3, KIND_DELETE, b"")
    it.next()
    assert (it.user_key(), it.sequence(), it.kind(), it.value()) == (b"b", 9, KIND_VALUE, b"b9")
    assert it.key() == ikey(b"b", 9)


def test_seek_lands_on_first_entry_at_or_after_target(make):
    it = make(ENTRIES)
    model = sorted_entries(ENTRIES)
    targets = [ikey(b"", MAX_SEQUENCE, KIND_FOR_SEEK), ikey(b"a", 4, KIND_FOR_SEEK),
               ikey(b"a", 3, KIND_DELETE), ikey(b"b", 10, KIND_FOR_SEEK), ikey(b"b", 8),
               ikey(b"c", 1), ikey(b"ca", 0), ikey(b"d", 8), ikey(b"d", 6), ikey(b"e", 0)]
    for t in targets:
        it.seek(t)
        i = first_at_or_after(model, t)
        assert entry(it) == (model[i] if i < len(model) else None), t


def test_seek_accepts_bytes_like_and_rejects_bad_targets(make):
    it = make(ENTRIES)
    it.seek(bytearray(ikey(b"b", 9)))
    assert it.user_key() == b"b"
    it.seek(memoryview(ikey(b"c", 1)))
    assert it.user_key() == b"c"
    with pytest.raises(ValueError, match="internal key"):
        it.seek(b"short")
    with pytest.raises(TypeError):
        it.seek("text")
    with pytest.raises(TypeError):
        it.seek(None)


@pytest.mark.parametrize("method", ["next", "prev", "key", "value", "user_key", "sequence",
                                    "kind"])
def test_invalid_iterator_raises_value_error(make, method):
    it = make(ENTRIES)
    with pytest.raises(ValueError, match="invalid iterator"):
        getattr(it, method)()
    it.seek_to_last()
    it.next()
    assert not it.valid()
    with pytest.raises(ValueError, match="invalid iterator"):
        getattr(it, method)()
    assert it.status() is None


def test_empty_sources(make):
    it = make([])
    for move in (it.seek_to_first, it.seek_to_last, lambda: it.seek(ikey(b"a", 1))):
        move()
        assert not it.valid()
    assert it.status() is None


def test_direction_changes_mid_scan(make):
    it = make(ENTRIES)
    model = sorted_entries(ENTRIES)
    it.seek(ikey(b"c", 1))
    i = first_at_or_after(model, ikey(b"c", 1))
    for step in ["prev", "prev", "next", "next", "next", "prev", "next", "next"]:
        getattr(it, step)()
        i += 1 if step == "next" else -1
        assert entry(it) == (model[i] if 0 <= i < len(model) else None)
        if not it.valid():
            break


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(0, 60), kind=st.sampled_from(sorted(MAKERS)),
       ops=st.lists(st.sampled_from(["next", "prev", "seek", "first", "last"]), max_size=40))
def test_random_walk_matches_the_sorted_model(seed, n, kind, ops):
    rng = random.Random(seed)
    entries = random_entries(rng, n)
    model = sorted_entries(entries)
    it = MAKERS[kind](entries)
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
            t = ikey(b"k%03d" % rng.randrange(22), rng.randrange(0, 101), KIND_FOR_SEEK)
            it.seek(t)
            pos = first_at_or_after(model, t)
        if pos is not None and not 0 <= pos < len(model):
            pos = None
        assert entry(it) == (model[pos] if pos is not None else None)


def test_memtable_iterator_sees_entries_added_later_through_the_protocol():
    mem = MemTable()
    it = mem.iterator()
    it.seek_to_first()
    assert not it.valid()
    mem.add(1, KIND_VALUE, b"x", b"1")
    it.seek_to_first()
    assert it.key() == ikey(b"x", 1)


# -- EmptyIterator and ErrorIterator ----------------------------------------------

def test_empty_iterator():
    it = EmptyIterator()
    for move in (it.seek_to_first, it.seek_to_last, lambda: it.seek(ikey(b"a", 1))):
        move()
        assert not it.valid()
    for method in ("next", "prev", "key", "value"):
        with pytest.raises(ValueError):
            getattr(it, method)()
    assert it.status() is None


def test_error_iterator_raises_its_error_on_every_move():
    exc = CorruptionError("bad table")
    it = ErrorIterator(exc)
    assert not it.valid()
    assert it.status() is exc
    for move in (it.seek_to_first, it.seek_to_last, lambda: it.seek(ikey(b"a", 1)), it.next,
                 it.prev, it.key, it.value):
        with pytest.raises(CorruptionError) as info:
            move()
        assert info.value is exc
        assert not it.valid()


def test_error_iterator_needs_an_exception():
    with pytest.raises(TypeError):
        ErrorIterator("not an exception")


# -- TwoLevelIterator ---------------------------------------------------------------

class FakeTable:
    """An index over explicit data blocks (some may be empty), counting loads;
    loading a block listed in `bad` fails.  blocks: [(separator user key,
    entries)], the separator >= the block's user keys and < the next block's."""

    def __init__(self, blocks, bad=()):
        self.blocks = {}
        self.loads = []
        self.bad = set(bad)
        index = BlockBuilder(1)
        for i, (separator, entries) in enumerate(blocks):
            handle = BlockHandle(100 * i, i).encode()
            self.blocks[handle] = (i, build_block(entries))
            index.add(ikey(separator, 0, KIND_DELETE), handle)
        self.index = Block(index.finish())

    def block_from_index_value(self, value):
        i, block = self.blocks[bytes(value)]
        self.loads.append(i)
        if i in self.bad:
            raise CorruptionError("table: block %d is corrupt" % i)
        return block


def block_entries(user_keys, seq=1):
    return [(ikey(k, seq), k.upper()) for k in user_keys]


def test_two_level_skips_empty_blocks_both_ways():
    table = FakeTable([(b"0", []), (b"b", block_entries([b"a", b"b"])), (b"b1", []),
                       (b"b2", []), (b"c", block_entries([b"c"])), (b"z", [])])
    it = TableIterator(table)
    want = sorted_entries(block_entries([b"a", b"b", b"c"]))
    assert scan_forward(it) == want
    assert scan_backward(it) == want[::-1]
    it.seek(ikey(b"bb", MAX_SEQUENCE, KIND_FOR_SEEK))
    assert it.user_key() == b"c"
    it.prev()
    assert it.user_key() == b"b"


def test_two_level_only_loads_a_block_when_it_changes():
    table = FakeTable([(b"c", block_entries([b"a", b"b", b"c"])),
                       (b"e", block_entries([b"d", b"e"]))])
    it = TableIterator(table)
    scan_forward(it)
    assert table.loads == [0, 1]
    it.seek(ikey(b"d", 1))                 # past the end, no block was kept
    assert table.loads == [0, 1, 1]
    it.seek(ikey(b"e", 1))
    it.prev()
    it.seek_to_last()
    assert table.loads == [0, 1, 1]        # d and e live in the loaded block
    it.prev()
    it.prev()
    assert it.user_key() == b"c"
    assert table.loads == [0, 1, 1, 0]


def test_two_level_over_an_empty_index():
    table = FakeTable([])
    it = TableIterator(table)
    for move in (it.seek_to_first, it.seek_to_last, lambda: it.seek(ikey(b"a", 1))):
        move()
        assert not it.valid()


def test_two_level_load_error_is_sticky():
    table = FakeTable([(b"a", block_entries([b"a"])), (b"b", block_entries([b"b"])),
                       (b"c", block_entries([b"c"]))], bad={1})
    it = TableIterator(table)
    it.seek_to_first()
    assert it.user_key() == b"a"
    with pytest.raises(CorruptionError, match="block 1") as info:
        it.next()
    exc = info.value
    assert not it.valid()
    assert it.status() is exc
    # Block 2 is fine, but the iterator stays dead.
    for move in (it.seek_to_first, it.seek_to_last, lambda: it.seek(ikey(b"c", 1)), it.next,
                 it.prev, it.key):
        with pytest.raises(CorruptionError) as again:
            move()
        assert again.value is exc
    assert table.loads == [0, 1]


def test_two_level_data_block_corruption_is_sticky():
    entries = block_entries([b"k%02d" % i for i in range(20)])
    # Build a block whose 10th entry claims a shared prefix longer than the previous key.
    b = BlockBuilder(16)
    for k, v in sorted_entries(entries):
        b.add(k, v)
    raw = bytearray(b.finish())
    # Entries are: shared, non_shared, value_len (one byte each here), key delta, value.
    offset = 0
    for _ in range(10):
        non_shared, vlen = raw[offset + 1], raw[offset + 2]
        offset += 3 + non_shared + vlen
    raw[offset] = 200                      # shared > previous key length
    bad_block = Block(bytes(raw))

    class OneBlockTable:
        index = Block(_index_for([(entries[-1][0], b"h")]))

        def block_from_index_value(self, value):
            return bad_block

    it = TableIterator(OneBlockTable())
    it.seek_to_first()
    seen = 0
    with pytest.raises(CorruptionError, match="shared prefix") as info:
        while it.valid():
            seen += 1
            it.next()
    assert seen == 10
    assert not it.valid()
    assert it.status() is info.value
    for move in (it.seek_to_first, it.seek_to_last, it.next):
        with pytest.raises(CorruptionError):
            move()


def _index_for(pairs):
    b = BlockBuilder(1)
    for k, v in pairs:
        b.add(k, v)
    return b.finish()


def test_two_level_base_class_is_not_made_directly():
    with pytest.raises(TypeError, match="TableIterator"):
        TwoLevelIterator(object())


def test_two_level_rejects_a_non_block():
    class Weird:
        index = Block(_index_for([(ikey(b"z", 1), b"h")]))

        def block_from_index_value(self, value):
            return b"not a block"

    it = TableIterator(Weird())
    with pytest.raises(TypeError):
        it.seek_to_first()
    assert not it.valid()


def test_table_iterator_over_many_blocks_with_compression():
    rng = random.Random(7)
    entries = random_entries(rng, 300, user_keys=200)
    table, _ = build_table(entries, block_size=256, compression="snappy")
    assert table.properties.data_blocks > 10
    it = table.iterator()
    model = sorted_entries(entries)
    assert scan_forward(it) == model
    assert scan_backward(it) == model[::-1]


def test_repr():
    it = build_memtable(ENTRIES).iterator()
    assert "not valid" in repr(it)
    it.seek_to_first()
    assert "MemTableIterator" in repr(it) and "a" in repr(it)
