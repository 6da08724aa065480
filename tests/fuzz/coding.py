"""Fuzz target: the varint, fixed-width and CRC32C kernels (kvcy._coding,
kvcy._crc32c).

Input: any bytes.  Checks: decoding a varint32/varint64/fixed32/fixed64 at
every offset of the first bytes yields (value, next offset) or raises
CorruptionError; a decoded varint re-encodes to a canonical form that
decodes to the same value; encode -> decode round trips of values read
from the bytes; CRC32C equals a bytewise reference on a prefix, extends
across any split, and mask/unmask are inverses.
"""
import struct

from kvcy._coding import (decode_fixed32, decode_fixed64, decode_varint32, decode_varint64,
                          encode_fixed32, encode_fixed64, encode_varint32, encode_varint64)
from kvcy._crc32c import crc32c, extend, mask, unmask
from kvcy.errors import CorruptionError

SEEDS = "bytes: varint-heavy records (edits, index handles) of a small workload"

_POLY = 0x82F63B78
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)


def reference_crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _decode_everywhere(data):
    for offset in range(min(len(data), 24)):
        for decode, encode, bits in ((decode_varint32, encode_varint32, 32),
                                     (decode_varint64, encode_varint64, 64)):
            try:
                value, end = decode(data, offset)
            except CorruptionError:
                continue
            if not offset < end <= len(data) or not 0 <= value < (1 << bits):
                raise AssertionError("%s at %d gave (%d, %d) in %d bytes"
                                     % (decode.__name__, offset, value, end, len(data)))
            canonical = encode(value)
            if len(canonical) > end - offset or decode(canonical, 0) != (value, len(canonical)):
                raise AssertionError("varint %d does not round-trip" % value)
        for decode, width in ((decode_fixed32, 4), (decode_fixed64, 8)):
            try:
                value, end = decode(data, offset)
            except CorruptionError:
                if len(data) - offset >= width:
                    raise AssertionError("%s refused %d bytes" % (decode.__name__, width))
                continue
            if value != int.from_bytes(data[offset:offset + width], "little") or end != offset + width:
                raise AssertionError("%s at %d is wrong" % (decode.__name__, offset))


def fuzz_one(data):
    _decode_everywhere(data)
    for i in range(0, min(len(data), 64) - 7, 8):
        v64 = struct.unpack_from("<Q", data, i)[0]
        for value, bits, enc, dec in ((v64, 64, encode_varint64, decode_varint64),
                                      (v64 & 0xFFFFFFFF, 32, encode_varint32, decode_varint32),
                                      (v64 >> (v64 & 63), 64, encode_varint64, decode_varint64)):
            if dec(enc(value) + data[:3], 0)[0] != value:
                raise AssertionError("varint%d round trip of %d failed" % (bits, value))
        if decode_fixed64(encode_fixed64(v64))[0] != v64:
            raise AssertionError("fixed64 round trip of %d failed" % v64)
        v32 = v64 & 0xFFFFFFFF
        if decode_fixed32(encode_fixed32(v32))[0] != v32 or unmask(mask(v32)) != v32:
            raise AssertionError("fixed32 or mask round trip of %d failed" % v32)
    head = data[:512]
    whole = crc32c(data)
    if crc32c(head) != reference_crc32c(head):
        raise AssertionError("crc32c of %d bytes differs from the reference" % len(head))
    cut = data[0] * len(data) // 256 if data else 0
    if extend(crc32c(data[:cut]), data[cut:]) != whole or crc32c(data[cut:], crc32c(data[:cut])) != whole:
        raise AssertionError("crc32c does not extend across a split at %d" % cut)
