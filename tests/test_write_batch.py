"""Tests for kvcy._write_batch: building a batch, its exact byte layout,
decoding, applying it to a memtable, and refusing damaged reps.

LevelDB's write_batch_test prints the memtable after InsertInto; here the
memtable iterator is read back the same way ("Put(key, value)@seq").

    batch   := sequence:fixed64 count:fixed32 record*
    record  := 0x01 key:lenbytes value:lenbytes | 0x00 key:lenbytes
    lenbytes:= length:varint32 bytes[length]
"""
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kvcy
from kvcy._coding import encode_varint32
from kvcy._memtable import MemTable
from kvcy._write_batch import WriteBatch, apply_batch, batch_header, encode_single, iterate_batch
from kvcy.dbformat import DELETED, KIND_DELETE, KIND_VALUE, MAX_SEQUENCE
from kvcy.errors import CorruptionError, DataError

HEADER = 12
DECODERS = ["batch_header", "iterate_batch", "apply_batch"]


def header(sequence, count):
    return struct.pack("<QI", sequence, count)


def put_record(key, value):
    return b"\x01" + encode_varint32(len(key)) + key + encode_varint32(len(value)) + value


def delete_record(key):
    return b"\x00" + encode_varint32(len(key)) + key


def dump(mem):
    """The memtable's entries in internal-key order, as write_batch_test prints them."""
    out = []
    it = mem.iterator()
    it.seek_to_first()
    while it.valid():
        if it.kind() == KIND_VALUE:
            out.append("Put(%s, %s)@%d" % (it.user_key().decode(), it.value().decode(),
                                           it.sequence()))
        else:
            out.append("Delete(%s)@%d" % (it.user_key().decode(), it.sequence()))
        it.next()
    return out


def decode_with(name, rep):
    """Run one of the decoders; apply_batch into a fresh memtable that is returned too."""
    mem = MemTable()
    if name == "batch_header":
        return batch_header(rep), mem
    if name == "iterate_batch":
        return iterate_batch(rep), mem
    return apply_batch(rep, mem), mem


OPS = st.lists(st.one_of(
    st.tuples(st.just(KIND_VALUE), st.binary(max_size=200), st.binary(max_size=200)),
    st.tuples(st.just(KIND_DELETE), st.binary(max_size=200), st.none()),
), max_size=20)


def build(ops, sequence=0):
    batch = WriteBatch()
    for kind, key, value in ops:
        if kind == KIND_VALUE:
            batch.put(key, value)
        else:
            batch.delete(key)
    batch.set_sequence(sequence)
    return batch


def sample_rep():
    batch = WriteBatch()
    batch.put(b"foo", b"bar")
    batch.delete(b"box")
    batch.put(b"baz", b"boo" * 50)
    batch.put(b"", b"")
    batch.set_sequence(100)
    return batch.data()


# -- building ---------------------------------------------------------------

def test_empty_batch():
    batch = WriteBatch()
    assert batch.count == 0
    assert len(batch) == 0
    assert batch.sequence == 0
    assert batch.byte_size == HEADER
    assert batch.data_bytes == 0
    assert batch.data() == bytes(HEADER)
    assert batch_header(batch.data()) == (0, 0)
    assert iterate_batch(batch.data()) == []


def test_exact_byte_layout():
    batch = WriteBatch()
    batch.put(b"k", b"v")
    batch.delete(b"d")
    batch.put(b"", b"")
    batch.put(b"x" * 300, b"y" * 128)
    batch.set_sequence(0x01020304050607)
    expected = (b"\x07\x06\x05\x04\x03\x02\x01\x00"       # sequence, fixed64 LE
                b"\x04\x00\x00\x00"                       # count, fixed32 LE
                b"\x01" b"\x01k" b"\x01v"                 # Put(k, v)
                b"\x00" b"\x01d"                          # Delete(d)
                b"\x01" b"\x00" b"\x00"                   # Put("", "")
                b"\x01" b"\xac\x02" + b"x" * 300 +        # key length 300 = ac 02
                b"\x80\x01" + b"y" * 128)                 # value length 128 = 80 01
    assert batch.data() == expected
    assert batch.byte_size == len(expected)
    assert batch.count == 4
    assert len(batch) == 4
    assert batch.data_bytes == 1 + 1 + 1 + 0 + 300 + 128


def test_layout_matches_helpers():
    batch = WriteBatch()
    batch.put(b"apple", b"red")
    batch.delete(b"banana")
    batch.set_sequence(42)
    assert batch.data() == header(42, 2) + put_record(b"apple", b"red") + delete_record(b"banana")


def test_sequence_round_trip_and_limit():
    batch = WriteBatch()
    batch.put(b"a", b"1")
    for seq in (1, 2**32, MAX_SEQUENCE):
        batch.set_sequence(seq)
        assert batch.sequence == seq
        assert batch.data()[:8] == struct.pack("<Q", seq)
    with pytest.raises(ValueError):
        batch.set_sequence(MAX_SEQUENCE + 1)
    with pytest.raises(OverflowError):
        batch.set_sequence(-1)
    assert batch.sequence == MAX_SEQUENCE


def test_set_sequence_keeps_the_records():
    batch = WriteBatch()
    batch.put(b"a", b"1")
    before = batch.data()
    batch.set_sequence(77)
    assert batch.data()[8:] == before[8:]


def test_clear():
    batch = WriteBatch()
    batch.put(b"a", b"1" * 1000)
    batch.delete(b"b")
    batch.set_sequence(9)
    batch.clear()
    assert batch.count == 0
    assert batch.byte_size == HEADER
    assert batch.data_bytes == 0
    assert batch.data() == bytes(HEADER)
    batch.put(b"c", b"3")
    assert batch.data() == header(0, 1) + put_record(b"c", b"3")


def test_growth_past_initial_capacity():
    batch = WriteBatch()
    expected = [header(0, 0)]
    for i in range(2000):
        key, value = b"key%d" % i, b"value%d" % i * (i % 7)
        batch.put(key, value)
        expected.append(put_record(key, value))
    rep = batch.data()
    assert rep[HEADER:] == b"".join(expected[1:])
    assert batch_header(rep) == (0, 2000)
    assert batch.byte_size == len(rep)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_bytes_like_keys_and_values(wrap):
    batch = WriteBatch()
    batch.put(wrap(b"k"), wrap(b"v"))
    batch.delete(wrap(b"d"))
    assert batch.data() == header(0, 2) + put_record(b"k", b"v") + delete_record(b"d")


def test_put_pairs_and_delete_keys():
    batch = WriteBatch()
    batch.put_pairs([(b"a", b"1"), [b"b", b"2"], (bytearray(b"c"), memoryview(b"3"))])
    batch.delete_keys([b"x", bytearray(b"y")])
    assert iterate_batch(batch.data()) == [
        (KIND_VALUE, b"a", b"1"), (KIND_VALUE, b"b", b"2"), (KIND_VALUE, b"c", b"3"),
        (KIND_DELETE, b"x", None), (KIND_DELETE, b"y", None)]
    with pytest.raises(TypeError):
        WriteBatch().put_pairs([(b"a", b"1", b"extra")])
    with pytest.raises(TypeError):
        WriteBatch().put_pairs([b"ab"])


# -- validation before anything is written ------------------------------------

@pytest.mark.parametrize("call", [
    lambda b: b.put("k", b"v"),
    lambda b: b.put(b"k", "v"),
    lambda b: b.delete("k"),
    lambda b: b.put(None, b"v"),
    lambda b: b.put(b"k", None),
    lambda b: b.delete(None),
    lambda b: b.put(1, b"v"),
    lambda b: b.put_pairs([("k", b"v")]),
    lambda b: b.delete_keys(["k"]),
])
def test_bad_key_and_value_types_raise_type_error(call):
    batch = WriteBatch()
    batch.put(b"keep", b"me")
    before = batch.data()
    with pytest.raises(TypeError):
        call(batch)
    assert batch.data() == before
    assert batch.count == 1


def test_key_limit():
    batch = WriteBatch()
    batch.put(b"k" * kvcy.MAX_KEY_BYTES, b"v")
    batch.delete(b"k" * kvcy.MAX_KEY_BYTES)
    before = batch.data()
    with pytest.raises(DataError, match="MAX_KEY_BYTES"):
        batch.put(b"k" * (kvcy.MAX_KEY_BYTES + 1), b"v")
    with pytest.raises(DataError):
        batch.delete(b"k" * (kvcy.MAX_KEY_BYTES + 1))
    assert batch.data() == before
    assert batch.count == 2


def test_value_limit():
    batch = WriteBatch()
    too_big = bytes(kvcy.MAX_VALUE_BYTES + 1)
    with pytest.raises(DataError, match="MAX_VALUE_BYTES"):
        batch.put(b"k", too_big)
    with pytest.raises(DataError):
        batch.put(b"k", memoryview(too_big))
    assert batch.count == 0
    assert batch.data() == bytes(HEADER)
    with pytest.raises(DataError):
        encode_single(1, KIND_VALUE, b"k", too_big)


def test_data_error_is_a_database_error():
    assert issubclass(DataError, kvcy.DatabaseError)
    assert kvcy.DataError is DataError


def test_value_at_the_limit_is_accepted():
    batch = WriteBatch()
    batch.put(b"k", memoryview(bytes(kvcy.MAX_VALUE_BYTES)))
    assert batch.count == 1
    assert batch.data_bytes == 1 + kvcy.MAX_VALUE_BYTES


# -- encode_single ---------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=MAX_SEQUENCE), st.binary(max_size=700),
       st.binary(max_size=700))
def test_encode_single_equals_a_one_entry_batch(seq, key, value):
    batch = WriteBatch()
    batch.put(key, value)
    batch.set_sequence(seq)
    assert encode_single(seq, KIND_VALUE, key, value) == batch.data()
    batch = WriteBatch()
    batch.delete(key)
    batch.set_sequence(seq)
    assert encode_single(seq, KIND_DELETE, key) == batch.data()
    assert encode_single(seq, KIND_DELETE, key, None) == batch.data()


def test_encode_single_checks():
    with pytest.raises(ValueError):
        encode_single(1, 2, b"k", b"v")
    with pytest.raises(TypeError):
        encode_single(1, KIND_VALUE, "k", b"v")
    with pytest.raises(TypeError):
        encode_single(1, KIND_VALUE, b"k", "v")
    with pytest.raises(DataError):
        encode_single(1, KIND_DELETE, b"k" * (kvcy.MAX_KEY_BYTES + 1))
    assert encode_single(3, KIND_VALUE, b"k") == header(3, 1) + put_record(b"k", b"")


def test_encode_single_refuses_none_key():
    with pytest.raises(TypeError):
        encode_single(1, KIND_VALUE, None, b"v")


def test_encode_single_refuses_sequence_over_56_bits():
    with pytest.raises(ValueError):
        encode_single(MAX_SEQUENCE + 1, KIND_VALUE, b"k", b"v")


# -- applying to a memtable --------------------------------------------------------

def test_apply_assigns_sequence_plus_index():
    batch = WriteBatch()
    batch.put(b"foo", b"bar")
    batch.delete(b"box")
    batch.put(b"baz", b"boo")
    batch.set_sequence(100)
    mem = MemTable()
    assert apply_batch(batch.data(), mem) == 102
    assert len(mem) == 3
    assert dump(mem) == ["Put(baz, boo)@102", "Delete(box)@101", "Put(foo, bar)@100"]
    assert (mem.first_sequence, mem.last_sequence) == (100, 102)


def test_apply_same_key_twice_later_entry_wins():
    batch = WriteBatch()
    batch.put(b"k", b"first")
    batch.put(b"k", b"second")
    batch.delete(b"j")
    batch.put(b"j", b"back")
    batch.set_sequence(10)
    mem = MemTable()
    assert apply_batch(batch.data(), mem) == 13
    assert mem.get(b"k") == b"second"
    assert mem.get(b"k", 10) == b"first"
    assert mem.get(b"j") == b"back"
    assert mem.get(b"j", 12) is DELETED
    assert dump(mem) == ["Put(j, back)@13", "Delete(j)@12", "Put(k, second)@11",
                         "Put(k, first)@10"]


def test_apply_empty_batch_returns_sequence_minus_one():
    mem = MemTable()
    assert apply_batch(header(50, 0), mem) == 49
    assert len(mem) == 0


def test_apply_empty_batch_at_sequence_zero():
    mem = MemTable()
    assert apply_batch(header(0, 0), mem) == -1


def test_apply_at_the_top_of_the_sequence_space():
    batch = WriteBatch()
    batch.put(b"a", b"1")
    batch.put(b"b", b"2")
    batch.set_sequence(MAX_SEQUENCE - 1)
    mem = MemTable()
    assert apply_batch(batch.data(), mem) == MAX_SEQUENCE
    assert mem.get(b"b") == b"2"


def test_sequences_past_56_bits_are_corruption():
    rep = header(MAX_SEQUENCE, 2) + put_record(b"a", b"1") + put_record(b"b", b"2")
    for name in DECODERS:
        with pytest.raises(CorruptionError):
            _, mem = decode_with(name, rep)
    mem = MemTable()
    with pytest.raises(CorruptionError):
        apply_batch(rep, mem)
    assert len(mem) == 0


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_decoders_accept_bytes_like(wrap):
    rep = sample_rep()
    assert batch_header(wrap(rep)) == (100, 4)
    assert len(iterate_batch(wrap(rep))) == 4
    mem = MemTable()
    assert apply_batch(wrap(rep), mem) == 103


@settings(max_examples=50, deadline=None)
@given(OPS, st.integers(min_value=1, max_value=2**40))
def test_iterate_and_apply_round_trip(ops, seq):
    batch = build(ops, seq)
    rep = batch.data()
    assert batch.count == len(ops)
    assert batch.byte_size == len(rep)
    assert batch.data_bytes == sum(len(k) + len(v or b"") for _, k, v in ops)
    assert batch_header(rep) == (seq, len(ops))
    assert iterate_batch(rep) == [(kind, key, value) for kind, key, value in ops]
    mem = MemTable()
    assert apply_batch(rep, mem) == seq + len(ops) - 1
    assert len(mem) == len(ops)
    it = mem.iterator()
    got = {}
    it.seek_to_first()
    while it.valid():
        got[it.sequence()] = (it.kind(), it.user_key(),
                              it.value() if it.kind() == KIND_VALUE else None)
        it.next()
    assert got == {seq + i: op for i, op in enumerate(ops)}


# -- damaged reps -------------------------------------------------------------------

@pytest.mark.parametrize("name", DECODERS)
def test_every_truncation_is_corruption(name):
    rep = sample_rep()
    for cut in range(len(rep)):
        with pytest.raises(CorruptionError):
            _, mem = decode_with(name, rep[:cut])
    # and nothing was inserted by the failed applies
    for cut in range(len(rep)):
        mem = MemTable()
        with pytest.raises(CorruptionError):
            apply_batch(rep[:cut], mem)
        assert len(mem) == 0


@pytest.mark.parametrize("name", DECODERS)
def test_short_header_is_corruption(name):
    for n in range(HEADER):
        with pytest.raises(CorruptionError, match="header"):
            decode_with(name, bytes(n))


@pytest.mark.parametrize("delta", [1, -1, 100, 2**32 - 4])
def test_wrong_count_is_corruption(delta):
    rep = bytearray(sample_rep())
    count = struct.unpack_from("<I", rep, 8)[0]
    struct.pack_into("<I", rep, 8, (count + delta) % 2**32)
    for name in DECODERS:
        with pytest.raises(CorruptionError):
            decode_with(name, bytes(rep))
    mem = MemTable()
    with pytest.raises(CorruptionError):
        apply_batch(bytes(rep), mem)
    assert len(mem) == 0


@pytest.mark.parametrize("kind", [4, 0x7F, 0x80, 0xFF])
def test_unknown_kind_is_corruption(kind):
    # The bad record is the last one, so a decoder that applied as it went
    # would already have inserted the first two.
    rep = header(5, 3) + put_record(b"a", b"1") + delete_record(b"b") + \
        bytes([kind]) + put_record(b"c", b"3")[1:]
    for name in DECODERS:
        with pytest.raises(CorruptionError, match="kind"):
            decode_with(name, rep)
    mem = MemTable()
    with pytest.raises(CorruptionError):
        apply_batch(rep, mem)
    assert len(mem) == 0
    assert mem.get(b"a") is None


@pytest.mark.parametrize("rep", [
    header(1, 1) + b"\x01" + b"\x05abc",                      # key length past the end
    header(1, 1) + b"\x00" + b"\x05abc",
    header(1, 1) + b"\x01" + b"\x01k" + b"\x09v",            # value length past the end
    header(1, 2) + put_record(b"a", b"1") + b"\x01\x01k\x80\x80\x80\x80\x01v",
    header(1, 1) + b"\x01" + b"\xff\xff\xff\xff\x0fk",       # huge key length
    header(1, 1) + b"\x01" + b"\x01k" + b"\xff\xff\xff\xff\x0f",
    header(1, 1) + b"\x01" + b"\x80\x80\x80\x80\x80\x00k",   # overlong varint32
    header(1, 1) + b"\x01" + b"\x01k" + b"\x80",             # truncated varint
])
def test_length_past_end_is_corruption(rep):
    for name in DECODERS:
        with pytest.raises(CorruptionError):
            decode_with(name, rep)
    mem = MemTable()
    with pytest.raises(CorruptionError):
        apply_batch(rep, mem)
    assert len(mem) == 0


def test_trailing_garbage_is_corruption():
    rep = sample_rep() + b"\x01"
    for name in DECODERS:
        with pytest.raises(CorruptionError):
            decode_with(name, rep)


def set_byte(data, offset, value):
    out = bytearray(data)
    out[offset] = value
    return bytes(out)


@settings(max_examples=60, deadline=None)
@given(OPS.filter(bool), st.data())
def test_random_byte_edit_never_half_applies(ops, data):
    rep = build(ops, 1000).data()
    offset = data.draw(st.integers(min_value=8, max_value=len(rep) - 1), label="offset")
    value = data.draw(st.integers(min_value=0, max_value=255), label="value")
    damaged = set_byte(rep, offset, value)
    mem = MemTable()
    try:
        last = apply_batch(damaged, mem)
    except CorruptionError:
        assert len(mem) == 0
        with pytest.raises(CorruptionError):
            iterate_batch(damaged)
        with pytest.raises(CorruptionError):
            batch_header(damaged)
        return
    # The edit still parses (e.g. a changed byte inside a key or value):
    # then every decoder agrees on what the rep says.
    seq, count = batch_header(damaged)
    assert len(mem) == count
    assert last == seq + count - 1
    assert len(iterate_batch(damaged)) == count


def test_damaged_apply_leaves_existing_entries_alone():
    mem = MemTable()
    apply_batch(header(1, 1) + put_record(b"old", b"value"), mem)
    bad = header(2, 2) + put_record(b"new", b"x") + b"\x09"
    with pytest.raises(CorruptionError):
        apply_batch(bad, mem)
    assert len(mem) == 1
    assert mem.get(b"new") is None
    assert mem.get(b"old") == b"value"


# -- expiring values (kind 2): fixed64 expiry + value -------------------------

def expiring_record(key, expiry, value):
    return bytes([2]) + put_record(key, struct.pack("<Q", expiry) + value)[1:]


def test_expiring_record_round_trips():
    batch = WriteBatch()
    batch.put_expiring(b"k", b"v", 123456789)
    batch.put(b"plain", b"p")
    assert iterate_batch(batch.data()) == [
        (2, b"k", struct.pack("<Q", 123456789) + b"v"), (KIND_VALUE, b"plain", b"p")]
    assert batch.data()[12:] == expiring_record(b"k", 123456789, b"v") + put_record(b"plain", b"p")


@pytest.mark.parametrize("stored_len", [0, 1, 7])
def test_short_expiring_value_is_corruption(stored_len):
    rep = header(5, 2) + put_record(b"a", b"1") + \
        bytes([2]) + put_record(b"c", b"x" * stored_len)[1:]
    for name in DECODERS:
        with pytest.raises(CorruptionError, match="shorter than its 8-byte expiry"):
            decode_with(name, rep)
    mem = MemTable()
    with pytest.raises(CorruptionError):
        apply_batch(rep, mem)
    assert len(mem) == 0


def test_batch_ttl_uses_the_batch_clock():
    batch = WriteBatch(clock=lambda: 1000.0)
    batch.put(b"k", b"v", ttl=2.5)
    batch.put_pairs([(b"a", b"1"), (b"b", b"2")], ttl=1)
    expiries = [struct.unpack("<Q", stored[:8])[0] for _, _, stored in iterate_batch(batch.data())]
    assert expiries == [1_002_500_000, 1_001_000_000, 1_001_000_000]


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("-inf"), True, "5", b"5"])
def test_batch_refuses_a_bad_ttl(ttl):
    batch = WriteBatch()
    with pytest.raises(kvcy.ProgrammingError, match="ttl"):
        batch.put(b"k", b"v", ttl=ttl)
    assert len(batch) == 0


def test_batch_refuses_a_clock_that_is_not_callable():
    with pytest.raises(kvcy.ProgrammingError, match="clock"):
        WriteBatch(clock=5)
