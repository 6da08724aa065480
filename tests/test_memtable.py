"""Tests for kvcy._memtable.MemTable (and through it _arena and _skiplist).

In the spirit of LevelDB's skiplist_test and memtable tests: a sorted Python
list is the model; get() at a sequence returns the newest visible entry; the
iterator walks internal-key order (user key ascending bytewise, then
sequence descending) in both directions and seeks by internal key.
"""
import gc
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcy._memtable import MemTable
from kvcy.dbformat import (DELETED, KIND_DELETE, KIND_FOR_SEEK, KIND_VALUE, MAX_SEQUENCE,
                           encode_internal_key, parse_internal_key)

# Keys chosen so that prefixes, 0x00 and 0xff bytes and the empty key meet.
KEY_ALPHABET = [b"", b"\x00", b"\x00\x00", b"\x01", b"a", b"a\x00", b"a\x00\x00", b"a\x01",
                b"ab", b"abc", b"b", b"\x7f", b"\x80", b"\xff", b"\xff\x00", b"\xff\xff"]
KEYS = st.one_of(st.sampled_from(KEY_ALPHABET), st.binary(max_size=6))


def order(entry):
    """Internal-key order of a (user_key, sequence, kind, value) entry."""
    user_key, seq, kind, _ = entry
    return (user_key, -((seq << 8) | kind))


def fill(mem, entries):
    for user_key, seq, kind, value in entries:
        if kind == KIND_VALUE:
            mem.add(seq, kind, user_key, value)
        else:
            mem.add(seq, kind, user_key)


def current(it):
    """The entry under the iterator, in model form."""
    kind = it.kind()
    return (it.user_key(), it.sequence(), kind, it.value() if kind == KIND_VALUE else b"")


def scan_forward(it):
    out = []
    it.seek_to_first()
    while it.valid():
        out.append(current(it))
        it.next()
    return out


def scan_backward(it):
    out = []
    it.seek_to_last()
    while it.valid():
        out.append(current(it))
        it.prev()
    return out


@st.composite
def entries(draw, min_size=0, max_size=40):
    """A list of entries with distinct sequence numbers (as the engine assigns them)."""
    keys = draw(st.lists(KEYS, min_size=min_size, max_size=max_size))
    seqs = draw(st.permutations(range(1, len(keys) + 1)))
    out = []
    for key, seq in zip(keys, seqs):
        kind = draw(st.sampled_from([KIND_VALUE, KIND_VALUE, KIND_DELETE]))
        value = draw(st.binary(max_size=8)) if kind == KIND_VALUE else b""
        out.append((key, seq, kind, value))
    return out


# -- empty ------------------------------------------------------------------

def test_empty_memtable():
    mem = MemTable()
    assert len(mem) == 0
    assert mem.get(b"") is None
    assert mem.get(b"a") is None
    assert mem.first_sequence == 0
    assert mem.last_sequence == 0
    it = mem.iterator()
    assert not it.valid()
    it.seek_to_first()
    assert not it.valid()
    it.seek_to_last()
    assert not it.valid()
    it.seek(encode_internal_key(b"", MAX_SEQUENCE, KIND_FOR_SEEK))
    assert not it.valid()


def test_log_number():
    assert MemTable().log_number is None
    assert MemTable(log_number=7).log_number == 7
    assert MemTable(7).log_number == 7


# -- get at a sequence ------------------------------------------------------

def test_get_returns_newest_visible_entry():
    mem = MemTable()
    mem.add(10, KIND_VALUE, b"k", b"v10")
    mem.add(20, KIND_DELETE, b"k")
    mem.add(30, KIND_VALUE, b"k", b"v30")
    mem.add(15, KIND_VALUE, b"j", b"j15")
    assert mem.get(b"k", 0) is None
    assert mem.get(b"k", 9) is None
    assert mem.get(b"k", 10) == b"v10"
    assert mem.get(b"k", 19) == b"v10"
    assert mem.get(b"k", 20) is DELETED
    assert mem.get(b"k", 29) is DELETED
    assert mem.get(b"k", 30) == b"v30"
    assert mem.get(b"k") == b"v30"
    assert mem.get(b"k", MAX_SEQUENCE) == b"v30"
    assert mem.get(b"j", 14) is None
    assert mem.get(b"j", 15) == b"j15"


def test_get_missing_keys_near_existing_ones():
    mem = MemTable()
    mem.add(1, KIND_VALUE, b"a\x00", b"x")
    mem.add(2, KIND_VALUE, b"ab", b"y")
    for missing in (b"", b"a", b"a\x00\x00", b"a\x01", b"aa", b"abc", b"b", b"\xff"):
        assert mem.get(missing) is None, missing
    assert mem.get(b"a\x00") == b"x"
    assert mem.get(b"ab") == b"y"


def test_tombstone_is_deleted_marker_not_none():
    mem = MemTable()
    mem.add(1, KIND_DELETE, b"gone")
    assert mem.get(b"gone") is DELETED
    assert not DELETED
    assert DELETED is not None


def test_empty_key_and_empty_value():
    mem = MemTable()
    mem.add(1, KIND_VALUE, b"", b"")
    mem.add(2, KIND_VALUE, b"e", b"")
    assert mem.get(b"") == b""
    assert mem.get(b"e") == b""
    mem.add(3, KIND_DELETE, b"")
    assert mem.get(b"") is DELETED
    assert mem.get(b"", 2) == b""


def test_value_kind_without_value_is_empty():
    mem = MemTable()
    mem.add(1, KIND_VALUE, b"k")
    assert mem.get(b"k") == b""


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_bytes_like_keys_and_values(wrap):
    mem = MemTable()
    mem.add(1, KIND_VALUE, wrap(b"key"), wrap(b"value"))
    assert mem.get(wrap(b"key")) == b"value"
    assert type(mem.get(b"key")) is bytes


def test_get_copies_the_value():
    mem = MemTable()
    value = bytearray(b"before")
    mem.add(1, KIND_VALUE, b"k", value)
    value[:] = b"after!"
    assert mem.get(b"k") == b"before"


@settings(max_examples=60, deadline=None)
@given(entries(), st.data())
def test_get_matches_model(ents, data):
    mem = MemTable()
    fill(mem, ents)
    keys = {e[0] for e in ents} | {b"", b"a", b"zz"}
    top = len(ents) + 1
    for key in keys:
        seq = data.draw(st.integers(min_value=0, max_value=top), label="sequence")
        visible = [e for e in ents if e[0] == key and e[1] <= seq]
        got = mem.get(key, seq)
        if not visible:
            assert got is None
        else:
            newest = max(visible, key=lambda e: e[1])
            if newest[2] == KIND_DELETE:
                assert got is DELETED
            else:
                assert got == newest[3]


# -- add() checks -----------------------------------------------------------

def test_add_refuses_unknown_kind():
    mem = MemTable()
    for kind in (2, 3, KIND_FOR_SEEK, -1):
        with pytest.raises((ValueError, OverflowError)):
            mem.add(1, kind, b"k", b"v")
    assert len(mem) == 0


def test_add_refuses_sequence_over_56_bits():
    mem = MemTable()
    with pytest.raises(ValueError):
        mem.add(MAX_SEQUENCE + 1, KIND_VALUE, b"k", b"v")
    with pytest.raises(OverflowError):
        mem.add(-1, KIND_VALUE, b"k", b"v")
    assert len(mem) == 0
    mem.add(MAX_SEQUENCE, KIND_VALUE, b"k", b"v")
    assert mem.get(b"k") == b"v"
    assert mem.last_sequence == MAX_SEQUENCE


def test_str_keys_and_values_raise_type_error():
    mem = MemTable()
    with pytest.raises(TypeError):
        mem.add(1, KIND_VALUE, "k", b"v")
    with pytest.raises(TypeError):
        mem.add(1, KIND_VALUE, b"k", "v")
    with pytest.raises(TypeError):
        mem.get("k")
    assert len(mem) == 0


def test_none_key_raises_type_error():
    mem = MemTable()
    with pytest.raises(TypeError):
        mem.add(1, KIND_VALUE, None, b"x")
    with pytest.raises(TypeError):
        mem.get(None)


def test_get_with_sequence_over_56_bits_is_refused():
    mem = MemTable()
    mem.add(5, KIND_VALUE, b"k", b"v")
    with pytest.raises(ValueError):
        mem.get(b"k", MAX_SEQUENCE + 1)


# -- sequences, len, memory ---------------------------------------------------

def test_first_and_last_sequence():
    mem = MemTable()
    mem.add(5, KIND_VALUE, b"a", b"1")
    assert (mem.first_sequence, mem.last_sequence) == (5, 5)
    mem.add(3, KIND_VALUE, b"b", b"2")
    mem.add(9, KIND_DELETE, b"a")
    mem.add(7, KIND_VALUE, b"c", b"3")
    assert (mem.first_sequence, mem.last_sequence) == (3, 9)


def test_first_sequence_zero_is_kept():
    mem = MemTable()
    mem.add(0, KIND_VALUE, b"a", b"1")
    mem.add(5, KIND_VALUE, b"b", b"2")
    assert mem.first_sequence == 0


def test_len_counts_entries_not_keys():
    mem = MemTable()
    for seq in range(1, 11):
        mem.add(seq, KIND_VALUE, b"same", b"%d" % seq)
        assert len(mem) == seq
    mem.add(11, KIND_DELETE, b"same")
    assert len(mem) == 11
    assert mem.get(b"same") is DELETED


def test_memory_usage_grows():
    mem = MemTable()
    usage = mem.memory_usage()
    assert usage >= 0
    seen = [usage]
    for seq in range(1, 5001):
        mem.add(seq, KIND_VALUE, b"key%06d" % seq, b"v" * 100)
        now = mem.memory_usage()
        assert now >= seen[-1]
        seen.append(now)
    # 5000 entries of 109 key+value bytes: the arena holds at least that much.
    assert seen[-1] - seen[0] >= 5000 * 109
    # ...and not wildly more (node + tag overhead, 64 KiB blocks).
    assert seen[-1] < 5000 * (109 + 8 + 200) + 2 * 65536
    assert mem.data_bytes == 5000 * 109


def test_memory_usage_counts_a_large_value():
    mem = MemTable()
    before = mem.memory_usage()
    mem.add(1, KIND_VALUE, b"big", b"\x07" * (1 << 20))
    assert mem.memory_usage() >= before + (1 << 20)


def test_large_values():
    mem = MemTable()
    big = bytes(range(256)) * 4096          # 1 MiB
    other = b"\xab" * ((1 << 20) + 3)
    mem.add(1, KIND_VALUE, b"big", big)
    mem.add(2, KIND_VALUE, b"small", b"s")
    mem.add(3, KIND_VALUE, b"big2", other)
    assert mem.get(b"big") == big
    assert mem.get(b"big2") == other
    assert mem.get(b"small") == b"s"
    it = mem.iterator()
    it.seek(encode_internal_key(b"big", MAX_SEQUENCE, KIND_FOR_SEEK))
    assert it.user_key() == b"big"
    assert it.value() == big
    it.next()
    assert it.user_key() == b"big2"
    assert it.value() == other


def test_large_key():
    mem = MemTable()
    key = b"k" * 70000
    mem.add(1, KIND_VALUE, key, b"v")
    assert mem.get(key) == b"v"
    assert mem.get(key[:-1]) is None


def test_many_entries_stay_ordered():
    mem = MemTable()
    n = 100_000
    # A scrambled insertion order (a permutation of range(n)) with sequential sequences.
    for seq, i in enumerate(((i * 7919) % n for i in range(n)), start=1):
        mem.add(seq, KIND_VALUE, b"%08d" % i, b"%d" % seq)
    assert len(mem) == n
    it = mem.iterator()
    it.seek_to_first()
    count = 0
    prev = None
    while it.valid():
        key = it.user_key()
        assert prev is None or prev < key
        prev = key
        count += 1
        it.next()
    assert count == n
    assert mem.get(b"%08d" % 0) == b"1"
    assert mem.get(b"%08d" % 7919) == b"2"
    assert mem.get(b"%08d" % n) is None


# -- iterator order -----------------------------------------------------------

def test_iterator_order_bytewise_with_prefixes():
    keys = [b"ab", b"a\x00", b"\xff", b"", b"a", b"\x00", b"a\xff", b"b", b"\x00\x00"]
    mem = MemTable()
    for seq, key in enumerate(keys, start=1):
        mem.add(seq, KIND_VALUE, key, key)
    got = [e[0] for e in scan_forward(mem.iterator())]
    assert got == [b"", b"\x00", b"\x00\x00", b"a", b"a\x00", b"ab", b"a\xff", b"b", b"\xff"]
    assert got == sorted(keys)


def test_same_user_key_newest_first():
    mem = MemTable()
    mem.add(2, KIND_VALUE, b"k", b"two")
    mem.add(9, KIND_DELETE, b"k")
    mem.add(5, KIND_VALUE, b"k", b"five")
    mem.add(1, KIND_VALUE, b"k\x00", b"one")
    got = scan_forward(mem.iterator())
    assert got == [(b"k", 9, KIND_DELETE, b""), (b"k", 5, KIND_VALUE, b"five"),
                   (b"k", 2, KIND_VALUE, b"two"), (b"k\x00", 1, KIND_VALUE, b"one")]


def test_key_is_the_internal_key():
    mem = MemTable()
    mem.add(0x123456, KIND_VALUE, b"user", b"v")
    mem.add(7, KIND_DELETE, b"")
    it = mem.iterator()
    it.seek_to_first()
    assert it.key() == encode_internal_key(b"", 7, KIND_DELETE)
    assert it.key() == b"\x00\x07\x00\x00\x00\x00\x00\x00"
    assert it.value() == b""
    it.next()
    assert it.key() == b"user" + ((0x123456 << 8) | 1).to_bytes(8, "little")
    assert parse_internal_key(it.key()) == (b"user", 0x123456, KIND_VALUE)
    assert (it.user_key(), it.sequence(), it.kind(), it.value()) == (b"user", 0x123456, 1, b"v")


@settings(max_examples=100, deadline=None)
@given(entries())
def test_iteration_matches_sorted_model(ents):
    mem = MemTable()
    fill(mem, ents)
    model = sorted(ents, key=order)
    assert len(mem) == len(ents)
    assert scan_forward(mem.iterator()) == model
    assert scan_backward(mem.iterator()) == model[::-1]


# -- seek -----------------------------------------------------------------

def test_seek_by_internal_key():
    mem = MemTable()
    mem.add(10, KIND_VALUE, b"a", b"a10")
    mem.add(20, KIND_VALUE, b"a", b"a20")
    mem.add(15, KIND_VALUE, b"b", b"b15")
    it = mem.iterator()
    # A lookup key (largest kind) at sequence s lands on the newest entry <= s.
    it.seek(encode_internal_key(b"a", MAX_SEQUENCE, KIND_FOR_SEEK))
    assert (it.user_key(), it.sequence()) == (b"a", 20)
    it.seek(encode_internal_key(b"a", 20, KIND_FOR_SEEK))
    assert (it.user_key(), it.sequence()) == (b"a", 20)
    it.seek(encode_internal_key(b"a", 19, KIND_FOR_SEEK))
    assert (it.user_key(), it.sequence()) == (b"a", 10)
    it.seek(encode_internal_key(b"a", 9, KIND_FOR_SEEK))
    assert (it.user_key(), it.sequence()) == (b"b", 15)
    # The exact internal key of an entry finds that entry.
    it.seek(encode_internal_key(b"a", 10, KIND_VALUE))
    assert (it.user_key(), it.sequence()) == (b"a", 10)
    # A smaller kind at the same sequence sorts after the entry.
    it.seek(encode_internal_key(b"a", 10, KIND_DELETE))
    assert (it.user_key(), it.sequence()) == (b"b", 15)
    it.seek(encode_internal_key(b"", 0, KIND_DELETE))
    assert it.user_key() == b"a"
    it.seek(encode_internal_key(b"a\x00", MAX_SEQUENCE, KIND_FOR_SEEK))
    assert it.user_key() == b"b"
    it.seek(encode_internal_key(b"b", 0, KIND_DELETE))
    assert not it.valid()
    it.seek(encode_internal_key(b"c", MAX_SEQUENCE, KIND_FOR_SEEK))
    assert not it.valid()


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_seek_accepts_bytes_like(wrap):
    mem = MemTable()
    mem.add(1, KIND_VALUE, b"k", b"v")
    it = mem.iterator()
    it.seek(wrap(encode_internal_key(b"k", 1, KIND_FOR_SEEK)))
    assert it.valid() and it.user_key() == b"k"


def test_seek_refuses_target_shorter_than_a_tag():
    mem = MemTable()
    mem.add(1, KIND_VALUE, b"k", b"v")
    it = mem.iterator()
    for target in (b"", b"k", b"1234567"):
        with pytest.raises(ValueError):
            it.seek(target)
    with pytest.raises(TypeError):
        it.seek("k" * 8)


@settings(max_examples=60, deadline=None)
@given(entries(min_size=1), KEYS, st.integers(min_value=0, max_value=70),
       st.sampled_from([KIND_DELETE, KIND_VALUE, KIND_FOR_SEEK]))
def test_seek_matches_model(ents, key, seq, kind):
    mem = MemTable()
    fill(mem, ents)
    model = sorted(ents, key=order)
    target = (key, -((seq << 8) | kind))
    expected = [e for e in model if order(e) >= target]
    it = mem.iterator()
    it.seek(encode_internal_key(key, seq, kind))
    if not expected:
        assert not it.valid()
    else:
        assert it.valid()
        assert current(it) == expected[0]


# -- navigation against a model -------------------------------------------------

OPS = st.lists(st.one_of(
    st.just(("first",)), st.just(("last",)), st.just(("next",)), st.just(("prev",)),
    st.tuples(st.just("seek"), KEYS, st.integers(min_value=0, max_value=70),
              st.sampled_from([KIND_DELETE, KIND_VALUE, KIND_FOR_SEEK])),
), max_size=40)


@settings(max_examples=60, deadline=None)
@given(entries(), OPS)
def test_navigation_matches_model(ents, ops):
    mem = MemTable()
    fill(mem, ents)
    model = sorted(ents, key=order)
    it = mem.iterator()
    pos = None                      # index into model, None when invalid
    for op in ops:
        if op[0] == "first":
            it.seek_to_first()
            pos = 0 if model else None
        elif op[0] == "last":
            it.seek_to_last()
            pos = len(model) - 1 if model else None
        elif op[0] == "seek":
            _, key, seq, kind = op
            it.seek(encode_internal_key(key, seq, kind))
            target = (key, -((seq << 8) | kind))
            pos = next((i for i, e in enumerate(model) if order(e) >= target), None)
        elif op[0] == "next":
            if pos is None:
                with pytest.raises(ValueError):
                    it.next()
                continue
            it.next()
            pos = pos + 1 if pos + 1 < len(model) else None
        elif op[0] == "prev":
            if pos is None:
                with pytest.raises(ValueError):
                    it.prev()
                continue
            it.prev()
            pos = pos - 1 if pos > 0 else None
        if pos is None:
            assert not it.valid()
        else:
            assert it.valid()
            assert current(it) == model[pos]
            assert it.key() == encode_internal_key(*model[pos][:3])


def test_next_then_prev_round_trip_over_duplicates():
    mem = MemTable()
    for seq in range(1, 30):
        mem.add(seq, KIND_VALUE if seq % 3 else KIND_DELETE, b"k%d" % (seq % 4), b"%d" % seq)
    it = mem.iterator()
    it.seek_to_first()
    path = []
    while it.valid():
        path.append(it.key())
        it.next()
    it.seek_to_last()
    for expected in reversed(path):
        assert it.key() == expected
        it.prev()
    assert not it.valid()


# -- invalid iterator and lifetime ---------------------------------------------

@pytest.mark.parametrize("method", ["next", "prev", "key", "user_key", "sequence", "kind",
                                    "value"])
def test_invalid_iterator_calls_raise_value_error(method):
    mem = MemTable()
    it = mem.iterator()
    with pytest.raises(ValueError):
        getattr(it, method)()
    mem.add(1, KIND_VALUE, b"k", b"v")
    it.seek_to_first()
    it.next()                              # walked off the end
    assert not it.valid()
    with pytest.raises(ValueError):
        getattr(it, method)()
    it.seek_to_first()
    it.prev()                              # walked off the front
    assert not it.valid()
    with pytest.raises(ValueError):
        getattr(it, method)()


def test_iterator_status_is_ok():
    it = MemTable().iterator()
    assert it.status() is None


def test_iterator_keeps_the_memtable_alive():
    mem = MemTable()
    for seq in range(1, 2001):
        mem.add(seq, KIND_VALUE, b"%05d" % seq, b"v" * 50 + b"%d" % seq)
    ref = weakref.ref(mem) if _weakrefable(mem) else None
    it = mem.iterator()
    it.seek_to_first()
    assert it.user_key() == b"00001"
    del mem
    gc.collect()
    if ref is not None:
        assert ref() is not None
    # Churn the allocator so freed arena blocks would be reused.
    junk = [bytes([i % 256]) * 4096 for i in range(2000)]
    count = 1
    it.next()
    while it.valid():
        count += 1
        assert it.user_key() == b"%05d" % count
        assert it.value() == b"v" * 50 + b"%d" % count
        it.next()
    assert count == 2000
    it.seek_to_last()
    assert it.user_key() == b"02000"
    del junk


def test_entries_added_after_the_iterator_is_made_are_visible():
    mem = MemTable()
    it = mem.iterator()
    mem.add(1, KIND_VALUE, b"b", b"1")
    it.seek_to_first()
    assert it.user_key() == b"b"
    mem.add(2, KIND_VALUE, b"c", b"2")
    it.next()
    assert it.user_key() == b"c"


def _weakrefable(obj):
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True
