"""Tests for kvcy._coding: fixed32/64 little-endian and varint32/64 codecs.

Modelled on LevelDB's util/coding_test.cc: round trips over the whole range,
known encodings, every truncation of every encoding, overlong varints, and
decoders that never read past the buffer they are given.
"""
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcy._coding import (decode_fixed32, decode_fixed64, decode_varint32, decode_varint64,
                          encode_fixed32, encode_fixed64, encode_varint32, encode_varint64)
from kvcy.errors import CorruptionError

U32 = st.integers(min_value=0, max_value=2**32 - 1)
U64 = st.integers(min_value=0, max_value=2**64 - 1)

CODECS = {
    "fixed32": (encode_fixed32, decode_fixed32, 32),
    "fixed64": (encode_fixed64, decode_fixed64, 64),
    "varint32": (encode_varint32, decode_varint32, 32),
    "varint64": (encode_varint64, decode_varint64, 64),
}
DECODERS = [decode_fixed32, decode_fixed64, decode_varint32, decode_varint64]


def ref_varint(value):
    """Reference varint encoder: 7 bits a byte, low group first, high bit = more."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def interesting(bits):
    """Powers of two and their neighbours across the range (coding_test's Varint64 list)."""
    values = {0, 1, 2**bits - 1}
    for k in range(bits):
        p = 1 << k
        values.update({p - 1, p, p + 1})
    return sorted(v for v in values if 0 <= v < 2**bits)


# -- round trips -----------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(U32)
def test_fixed32_round_trip(v):
    enc = encode_fixed32(v)
    assert enc == struct.pack("<I", v)
    assert decode_fixed32(enc) == (v, 4)


@settings(max_examples=100, deadline=None)
@given(U64)
def test_fixed64_round_trip(v):
    enc = encode_fixed64(v)
    assert enc == struct.pack("<Q", v)
    assert decode_fixed64(enc) == (v, 8)


@settings(max_examples=100, deadline=None)
@given(U32)
def test_varint32_round_trip(v):
    enc = encode_varint32(v)
    assert enc == ref_varint(v)
    assert 1 <= len(enc) <= 5
    assert decode_varint32(enc) == (v, len(enc))


@settings(max_examples=100, deadline=None)
@given(U64)
def test_varint64_round_trip(v):
    enc = encode_varint64(v)
    assert enc == ref_varint(v)
    assert 1 <= len(enc) <= 10
    assert decode_varint64(enc) == (v, len(enc))


@pytest.mark.parametrize("name", sorted(CODECS))
def test_round_trip_at_every_power_of_two(name):
    encode, decode, bits = CODECS[name]
    for v in interesting(bits):
        enc = encode(v)
        assert decode(enc) == (v, len(enc)), v


def test_varint32_sequence_like_coding_test():
    # coding_test's Varint32: (i / 32) << (i % 32) for i < 32 * 32, decoded back to back.
    values = [(i // 32) << (i % 32) & 0xFFFFFFFF for i in range(32 * 32)]
    buf = b"".join(encode_varint32(v) for v in values)
    pos = 0
    for v in values:
        got, nxt = decode_varint32(buf, pos)
        assert got == v
        assert nxt - pos == len(encode_varint32(v))
        pos = nxt
    assert pos == len(buf)


def test_fixed_sequence_back_to_back():
    values = [2**k for k in range(64)] + [0, 2**64 - 1]
    buf = b"".join(encode_fixed64(v) for v in values)
    for i, v in enumerate(values):
        assert decode_fixed64(buf, 8 * i) == (v, 8 * (i + 1))


# -- known encodings --------------------------------------------------------

@pytest.mark.parametrize("value, encoding", [
    (0, b"\x00"),
    (1, b"\x01"),
    (127, b"\x7f"),
    (128, b"\x80\x01"),
    (300, b"\xac\x02"),
    (16383, b"\xff\x7f"),
    (16384, b"\x80\x80\x01"),
    (2**21 - 1, b"\xff\xff\x7f"),
    (2**28 - 1, b"\xff\xff\xff\x7f"),
    (2**28, b"\x80\x80\x80\x80\x01"),
    (2**32 - 1, b"\xff\xff\xff\xff\x0f"),
])
def test_known_varint32_encodings(value, encoding):
    assert encode_varint32(value) == encoding
    assert decode_varint32(encoding) == (value, len(encoding))
    assert encode_varint64(value) == encoding
    assert decode_varint64(encoding) == (value, len(encoding))


@pytest.mark.parametrize("value, encoding", [
    (2**32, b"\x80\x80\x80\x80\x10"),
    (2**35, b"\x80\x80\x80\x80\x80\x01"),
    (2**63, b"\x80" * 9 + b"\x01"),
    (2**64 - 1, b"\xff" * 9 + b"\x01"),
])
def test_known_varint64_encodings(value, encoding):
    assert encode_varint64(value) == encoding
    assert decode_varint64(encoding) == (value, len(encoding))


def test_known_fixed_encodings():
    assert encode_fixed32(0x04030201) == b"\x01\x02\x03\x04"
    assert encode_fixed64(0x0807060504030201) == b"\x01\x02\x03\x04\x05\x06\x07\x08"
    assert decode_fixed32(b"\x01\x02\x03\x04") == (0x04030201, 4)
    assert decode_fixed64(b"\xff" * 8) == (2**64 - 1, 8)


@pytest.mark.parametrize("encode, bad", [
    (encode_fixed32, 2**32), (encode_fixed32, -1),
    (encode_fixed64, 2**64), (encode_fixed64, -1),
    (encode_varint32, 2**32), (encode_varint32, -1),
    (encode_varint64, 2**64), (encode_varint64, -1),
])
def test_encoders_refuse_out_of_range(encode, bad):
    with pytest.raises(OverflowError):
        encode(bad)


# -- truncation -------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(CODECS))
def test_every_truncation_of_every_encoding_is_corruption(name):
    encode, decode, bits = CODECS[name]
    for v in interesting(bits):
        enc = encode(v)
        for cut in range(len(enc)):
            with pytest.raises(CorruptionError):
                decode(enc[:cut])


@settings(max_examples=100, deadline=None)
@given(U64, st.data())
def test_truncated_varint64_is_corruption(v, data):
    enc = encode_varint64(v)
    cut = data.draw(st.integers(min_value=0, max_value=len(enc) - 1))
    with pytest.raises(CorruptionError):
        decode_varint64(enc[:cut])


@pytest.mark.parametrize("name", sorted(CODECS))
def test_decoder_stops_at_the_end_of_a_slice(name):
    # The byte that would complete the value lies just past the view's end:
    # a decoder that honoured its limit cannot see it.
    encode, decode, bits = CODECS[name]
    enc = encode(2**bits - 1)
    backing = bytearray(enc + b"\x00" * 16)
    view = memoryview(backing)[:len(enc) - 1]
    with pytest.raises(CorruptionError):
        decode(view)


def test_truncation_error_names_the_offset():
    with pytest.raises(CorruptionError, match="offset 3"):
        decode_varint32(b"abc\x80", 3)
    with pytest.raises(CorruptionError, match="offset 2"):
        decode_fixed64(b"\x00" * 9, 2)


# -- overlong varints --------------------------------------------------------

@pytest.mark.parametrize("enc", [
    b"\x80\x80\x80\x80\x80\x00",        # 6 bytes
    b"\xff\xff\xff\xff\xff\x00",
    b"\x80\x80\x80\x80\x10",            # 5th byte > 0x0f: 2**32, more than 32 bits
    b"\xff\xff\xff\xff\x1f",
    b"\xff\xff\xff\xff\x7f",
    b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00",
])
def test_overlong_varint32_is_corruption(enc):
    with pytest.raises(CorruptionError):
        decode_varint32(enc)
    # Also when more (well-formed looking) bytes follow.
    with pytest.raises(CorruptionError):
        decode_varint32(enc + b"\x00" * 8)


def test_varint32_fifth_byte_over_0x0f_is_corruption():
    for fifth in range(0x10, 0x100):
        with pytest.raises(CorruptionError):
            decode_varint32(b"\xff\xff\xff\xff" + bytes([fifth]) + b"\x00")


def test_varint32_fifth_byte_up_to_0x0f_decodes():
    for fifth in range(0x10):
        assert decode_varint32(b"\x80\x80\x80\x80" + bytes([fifth])) == (fifth << 28, 5)
        expected = (fifth << 28) | (2**28 - 1)
        assert decode_varint32(b"\xff\xff\xff\xff" + bytes([fifth])) == (expected, 5)


@pytest.mark.parametrize("enc", [
    b"\x80" * 10 + b"\x00",             # 11 bytes
    b"\xff" * 10 + b"\x00",
    b"\xff" * 9 + b"\x02",              # 2**64: more than 64 bits
    b"\x80" * 9 + b"\x7f",
    b"\xff" * 9 + b"\x81\x00",
])
def test_overlong_varint64_is_corruption(enc):
    with pytest.raises(CorruptionError):
        decode_varint64(enc)
    with pytest.raises(CorruptionError):
        decode_varint64(enc + b"\x00" * 8)


def test_varint64_accepts_ten_bytes_up_to_the_maximum():
    assert decode_varint64(b"\x80" * 9 + b"\x01") == (2**63, 10)
    assert decode_varint64(b"\xff" * 9 + b"\x01") == (2**64 - 1, 10)


def test_varint64_value_over_32_bits_is_not_a_varint32():
    enc = encode_varint64(2**32)
    with pytest.raises(CorruptionError):
        decode_varint32(enc)
    assert decode_varint64(enc) == (2**32, 5)


# -- offsets and buffers -----------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(U64, st.binary(max_size=20), st.binary(max_size=20))
def test_decode_at_offset(v, prefix, suffix):
    for encode, decode, bits in CODECS.values():
        value = v & (2**bits - 1)
        enc = encode(value)
        buf = prefix + enc + suffix
        assert decode(buf, len(prefix)) == (value, len(prefix) + len(enc))


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize("buf", [b"", b"\x01", b"\x01" * 12])
def test_offset_outside_the_buffer_is_value_error(decode, buf):
    for offset in (-1, -len(buf) - 1, len(buf) + 1, len(buf) + 100, 2**40):
        with pytest.raises(ValueError):
            decode(buf, offset)


@pytest.mark.parametrize("decode", DECODERS)
def test_offset_at_the_end_is_truncation(decode):
    buf = b"\x01" * 12
    with pytest.raises(CorruptionError):
        decode(buf, len(buf))


@pytest.mark.parametrize("decode", DECODERS)
def test_empty_buffer_is_corruption(decode):
    for empty in (b"", bytearray(), memoryview(b"")):
        with pytest.raises(CorruptionError):
            decode(empty)
        with pytest.raises(CorruptionError):
            decode(empty, 0)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_decoders_accept_bytes_like(wrap):
    assert decode_varint32(wrap(b"\x00\xac\x02"), 1) == (300, 3)
    assert decode_varint64(wrap(b"\xac\x02")) == (300, 2)
    assert decode_fixed32(wrap(b"\x01\x00\x00\x00")) == (1, 4)
    assert decode_fixed64(wrap(b"\x01" + b"\x00" * 7)) == (1, 8)


@pytest.mark.parametrize("decode", DECODERS)
def test_decoders_refuse_str(decode):
    with pytest.raises(TypeError):
        decode("\x01\x00\x00\x00\x00\x00\x00\x00")
