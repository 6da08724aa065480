"""Tests for kvcy._bloom: LevelDB's Hash() and bloom filter format.

Modelled on LevelDB's util/hash_test.cc (known hash values) and
util/bloom_test.cc (small filters, varying lengths, false-positive rate),
plus a pure-Python reference builder that pins the exact filter bytes, and
malformed filters that must be refused with CorruptionError.
"""
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcy._bloom import BloomFilter, BloomFilterBuilder, bloom_hash
from kvcy.errors import CorruptionError

SEED = 0xBC9F1D34
M32 = 0xFFFFFFFF


def ref_hash(data, seed=SEED):
    """LevelDB's Hash(), transcribed to Python from its description."""
    m = 0xC6A4A793
    n = len(data)
    h = (seed ^ (n * m)) & M32
    i = 0
    while n - i >= 4:
        (w,) = struct.unpack_from("<I", data, i)
        h = ((h + w) * m) & M32
        h ^= h >> 16
        i += 4
    rest = n - i
    if rest == 3:
        h = (h + (data[i + 2] << 16)) & M32
    if rest >= 2:
        h = (h + (data[i + 1] << 8)) & M32
    if rest >= 1:
        h = ((h + data[i]) * m) & M32
        h ^= h >> 24
    return h


def ref_filter(keys, bits_per_key):
    """The filter LevelDB's BloomFilterPolicy::CreateFilter writes."""
    k = min(max(int(bits_per_key * 0.69), 1), 30)
    bits = max(64, len(keys) * bits_per_key)
    nbytes = (bits + 7) // 8
    bits = nbytes * 8
    array = bytearray(nbytes)
    for key in keys:
        h = ref_hash(key)
        delta = ((h >> 17) | (h << 15)) & M32
        for _ in range(k):
            pos = h % bits
            array[pos // 8] |= 1 << (pos % 8)
            h = (h + delta) & M32
    return bytes(array) + bytes((k,))


def int_key(i):
    """bloom_test's Key(): the 4-byte little-endian encoding of i."""
    return struct.pack("<I", i)


def build(keys, bits_per_key=10):
    b = BloomFilterBuilder(bits_per_key)
    for key in keys:
        b.add_key(key)
    return b.finish()


# -- the hash ---------------------------------------------------------------

@pytest.mark.parametrize("data, expected", [
    # LevelDB util/hash_test.cc SignedUnsignedIssue, seed 0xbc9f1d34.
    (b"", 0xBC9F1D34),
    (b"\x62", 0xEF1345C4),
    (b"\xc3\x97", 0x5B663814),
    (b"\xe2\x99\xa5", 0x323C078F),
    (b"\xe1\x80\xb9\x32", 0xED21633A),
])
def test_hash_known_values(data, expected):
    assert bloom_hash(data) == expected
    assert ref_hash(data) == expected


@given(st.binary(max_size=64))
def test_hash_matches_reference(data):
    assert bloom_hash(data) == ref_hash(data)
    assert bloom_hash(bytearray(data)) == bloom_hash(memoryview(data)) == ref_hash(data)


# -- the builder ------------------------------------------------------------

@pytest.mark.parametrize("bits_per_key, k", [(1, 1), (2, 1), (3, 2), (10, 6), (20, 13),
                                              (43, 29), (44, 30), (64, 30)])
def test_probe_count(bits_per_key, k):
    b = BloomFilterBuilder(bits_per_key)
    assert b.num_probes == k
    assert b.finish()[-1] == k


@pytest.mark.parametrize("bad", [0, -1, 65, 1000])
def test_bits_per_key_range(bad):
    with pytest.raises(ValueError, match="bits_per_key"):
        BloomFilterBuilder(bad)


@pytest.mark.parametrize("n", [0, 1, 2, 7, 100, 1000])
@pytest.mark.parametrize("bits_per_key", [1, 6, 10, 17])
def test_exact_bytes_match_reference(n, bits_per_key):
    keys = [b"key%d" % i for i in range(n)]
    assert build(keys, bits_per_key) == ref_filter(keys, bits_per_key)


def test_empty_filter():
    f = build([])
    assert f == bytes(8) + bytes((6,))
    bf = BloomFilter(f)
    assert not bf.may_contain(b"hello")
    assert not bf.may_contain(b"")


def test_small():
    # bloom_test.cc Small.
    bf = BloomFilter(build([b"hello", b"world"]))
    assert bf.may_contain(b"hello")
    assert bf.may_contain(b"world")
    assert not bf.may_contain(b"x")
    assert not bf.may_contain(b"foo")


def test_finish_resets_and_count():
    b = BloomFilterBuilder(10)
    assert b.count == 0
    b.add_key(b"a")
    b.add_key(bytearray(b"b"))
    b.add_key(memoryview(b"c"))
    assert b.count == 3
    first = b.finish()
    assert b.count == 0
    assert BloomFilter(first).may_contain(b"b")
    b.add_key(b"z")
    second = b.finish()
    assert second == ref_filter([b"z"], 10)
    assert b.bits_per_key == 10


def test_many_keys_grow_the_hash_array():
    keys = [int_key(i) for i in range(5000)]
    assert build(keys) == ref_filter(keys, 10)


def test_str_is_refused():
    b = BloomFilterBuilder(10)
    with pytest.raises(TypeError):
        b.add_key("text")
    bf = BloomFilter(build([b"a"]))
    with pytest.raises(TypeError):
        bf.may_contain("text")


# -- false negatives and positives -------------------------------------------

@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=300), st.integers(1, 64))
def test_no_false_negatives(keys, bits_per_key):
    bf = BloomFilter(build(keys, bits_per_key))
    for key in keys:
        assert bf.may_contain(key)


def test_no_false_negatives_10k():
    keys = [b"user-%08d" % i for i in range(10000)]
    bf = BloomFilter(build(keys))
    assert all(bf.may_contain(k) for k in keys)


def false_positive_rate(bf, n=10000):
    return sum(bf.may_contain(int_key(i + 1000000000)) for i in range(n)) / n


@pytest.mark.parametrize("length", [1, 10, 100, 1000, 10000])
def test_varying_lengths(length):
    # bloom_test.cc VaryingLengths: every key found, a small filter, few
    # false positives.
    keys = [int_key(i) for i in range(length)]
    f = build(keys)
    assert len(f) <= length * 10 // 8 + 40
    bf = BloomFilter(f)
    for key in keys:
        assert bf.may_contain(key)
    assert false_positive_rate(bf) <= 0.02


def test_false_positive_rate_10_bits():
    # 10k inserted keys, 10k others: LevelDB aims at about 1%.
    keys = [b"key-%d" % i for i in range(10000)]
    bf = BloomFilter(build(keys))
    others = [b"other-%d" % i for i in range(10000)]
    rate = sum(bf.may_contain(k) for k in others) / len(others)
    assert rate <= 0.015, rate
    assert false_positive_rate(bf) <= 0.015


# -- malformed filters --------------------------------------------------------

@pytest.mark.parametrize("data, what", [
    (b"", "empty"),
    (b"\x06", "no bit array"),
    (bytes(8) + b"\x00", "k=0"),
    (bytes(8) + b"\x1f", "k=31"),
    (bytes(8) + b"\xff", "k=255"),
])
def test_corrupt_filters(data, what):
    with pytest.raises(CorruptionError, match="bloom filter") as info:
        BloomFilter(data)
    assert what in str(info.value)


def test_unusual_but_valid_filters():
    # Any bit array length and k in 1..30 is a filter (LevelDB reads them).
    for k in (1, 30):
        bf = BloomFilter(b"\xff" + bytes((k,)))
        assert bf.may_contain(b"anything")
        assert bf.bits == 8 and bf.num_probes == k and bf.size == 2
        assert not BloomFilter(b"\x00" + bytes((k,))).may_contain(b"anything")


def test_filter_accepts_bytes_like():
    f = build([b"a", b"b"])
    for data in (bytearray(f), memoryview(f)):
        assert BloomFilter(data).may_contain(b"a")
