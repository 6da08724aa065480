"""Tests for kvcy._block_builder and kvcy._block.

In the style of LevelDB's table_test block cases: round trips through
BlockBuilder and Block with several restart intervals, forward and reverse
scans, seeks to, between and past keys, point lookups at several sequences,
exact bytes of a hand-checked block, and corruption: every truncation and
random byte flips of a finished block must give CorruptionError or correct
data, never a crash or a read outside the block.  A pure-Python reference
reader (ref_open/ref_scan) spells out the validation rules and is the oracle
for construction and forward scans of damaged blocks.  The corruption fuzz
also runs in a child process, so a segfault fails a test instead of pytest.
"""
import functools
import os
import random
import struct
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcy._block import Block, BlockIterator
from kvcy._block_builder import BlockBuilder
from kvcy.dbformat import (KIND_DELETE, KIND_FOR_SEEK, KIND_VALUE, MAX_SEQUENCE,
                           encode_internal_key, parse_internal_key)
from kvcy.errors import CorruptionError, ProgrammingError

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


# -- helpers -------------------------------------------------------------------

def ikey(user_key, seq, kind=KIND_VALUE):
    return encode_internal_key(user_key, seq, kind)


def order(k):
    """Sort key of an internal key: user key ascending, tag descending."""
    user_key, seq, kind = parse_internal_key(k)
    return (user_key, -((seq << 8) | kind))


def build(entries, restart_interval=16):
    b = BlockBuilder(restart_interval)
    for k, v in entries:
        b.add(k, v)
    return b.finish()


def scan_forward(it):
    out = []
    it.seek_to_first()
    while it.valid():
        out.append((it.key(), it.value()))
        it.next()
    return out


def scan_backward(it):
    out = []
    it.seek_to_last()
    while it.valid():
        out.append((it.key(), it.value()))
        it.prev()
    return out


def expected_seek(entries, target):
    """Index of the first entry >= target in a sorted entry list."""
    t = order(target)
    for i, (k, _) in enumerate(entries):
        if order(k) >= t:
            return i
    return len(entries)


def expected_get(entries, user_key, seq):
    for k, v in entries:
        uk, s, kind = parse_internal_key(k)
        if uk == user_key and s <= seq:
            return (kind, v if kind == KIND_VALUE else b"", s)
    return None


# Byte-edit helpers (LevelDB's corruption-test habit).

def set_byte(data, pos, value):
    b = bytearray(data)
    b[pos] = value & 0xFF
    return bytes(b)


def flip(data, pos, mask=0xFF):
    return set_byte(data, pos, data[pos] ^ mask)


def truncate(data, n):
    return data[:n]


def put_restart_count(data, num):
    return data[:-4] + struct.pack("<I", num)


# -- reference reader: the validation rules, spelled out ------------------------

def ref_varint32(data, pos, limit):
    result = shift = 0
    while shift <= 28 and pos < limit:
        b = data[pos]
        pos += 1
        if shift == 28 and b > 0x0F:
            return None
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
    return None


def ref_open(data):
    """(restart array offset, restart offsets), or None if Block() must refuse."""
    n = len(data)
    if n < 4:
        return None
    (num,) = struct.unpack_from("<I", data, n - 4)
    if num == 0 or num > (n - 4) // 4:
        return None
    restarts = n - 4 - 4 * num
    rps = list(struct.unpack_from("<%dI" % num, data, restarts))
    if rps[0] != 0:
        return None
    for a, b in zip(rps, rps[1:]):
        if b <= a or b >= restarts:
            return None
    return restarts, rps


def ref_scan(data):
    """(entries, layout, corrupt) of a forward scan of an opened block.

    layout[i] = (key delta start, value start, value end) of entry i.
    """
    restarts, rps = ref_open(data)
    entries, layout = [], []
    pos, key, ri = 0, b"", 0
    while pos < restarts:
        lengths = []
        p = pos
        for _ in range(3):
            r = ref_varint32(data, p, restarts)
            if r is None:
                return entries, layout, True
            lengths.append(r[0])
            p = r[1]
        shared, non_shared, vlen = lengths
        if non_shared > restarts - p or vlen > restarts - p - non_shared:
            return entries, layout, True
        if shared > len(key) or shared + non_shared < 8:
            return entries, layout, True
        key = key[:shared] + data[p:p + non_shared]
        value = data[p + non_shared:p + non_shared + vlen]
        while ri + 1 < len(rps) and rps[ri + 1] <= pos:
            if rps[ri + 1] != pos:
                return entries, layout, True      # stepped over a restart point
            ri += 1
        if shared and rps[ri] == pos:
            return entries, layout, True          # restart entry shares a prefix
        entries.append((key, value))
        layout.append((p, p + non_shared, p + non_shared + vlen))
        pos = p + non_shared + vlen
    if ri + 1 < len(rps):
        return entries, layout, True              # a restart point inside the last entry
    return entries, layout, False


# -- strategies ------------------------------------------------------------------

USER_KEYS = st.one_of(
    st.sampled_from([b"", b"\x00", b"\x00\x00", b"\x01", b"a", b"a\x00", b"ab", b"abc",
                     b"\x7f", b"\x80", b"\xff", b"\xff\x00", b"\xff\xff"]),
    st.binary(max_size=12),
    st.builds(lambda s: b"prefix/" * 8 + s, st.binary(max_size=4)),
)
SEQS = st.integers(0, 200) | st.sampled_from([MAX_SEQUENCE, MAX_SEQUENCE - 1, 1 << 40])
ENTRY_KEYS = st.tuples(USER_KEYS, SEQS, st.sampled_from([KIND_VALUE, KIND_DELETE]))


@st.composite
def sorted_entries(draw, max_size=60):
    triples = draw(st.lists(ENTRY_KEYS, max_size=max_size,
                            unique_by=lambda t: (t[0], t[1])))
    keys = sorted((ikey(*t) for t in triples), key=order)
    values = draw(st.lists(st.binary(max_size=40), min_size=len(keys), max_size=len(keys)))
    return [(k, v if parse_internal_key(k)[2] == KIND_VALUE else b"")
            for k, v in zip(keys, values)]


# -- builder --------------------------------------------------------------------

def test_exact_bytes_of_a_small_block():
    t = struct.pack("<Q", (5 << 8) | KIND_VALUE)
    b = BlockBuilder(2)
    b.add(b"abc" + t, b"1")
    b.add(b"abd" + t, b"")
    b.add(b"abde" + t, b"xyz")
    data = b.finish()
    expected = (
        b"\x00\x0b\x01" + b"abc" + t + b"1"        # offset 0: restart, shared 0
        + b"\x02\x09\x00" + b"d" + t               # offset 15: shares "ab"
        + b"\x00\x0c\x03" + b"abde" + t + b"xyz"   # offset 27: restart (interval 2)
        + struct.pack("<III", 0, 27, 2))
    assert data == expected
    assert len(data) == 57


def test_exact_bytes_shared_tag_and_multibyte_varint():
    a = b"k" + struct.pack("<Q", (9 << 8) | 1)
    c = b"k" + struct.pack("<Q", (8 << 8) | 1)
    data = build([(a, b"v" * 200), (c, b"")])
    # The second key shares "k" and the kind byte 0x01 of the tag.
    assert data == (b"\x00\x09\xc8\x01" + a + b"v" * 200
                    + b"\x02\x07\x00" + c[2:]
                    + struct.pack("<II", 0, 1))


def test_empty_block():
    b = BlockBuilder()
    assert b.empty() and b.count == 0 and b.last_key == b""
    assert b.current_size_estimate() == 8
    data = b.finish()
    assert data == struct.pack("<II", 0, 1)
    block = Block(data)
    assert block.size == 8 and block.num_restarts == 1
    it = block.iterator()
    for move in (it.seek_to_first, it.seek_to_last,
                 lambda: it.seek(ikey(b"a", 1))):
        move()
        assert not it.valid()
        assert it.status() is None
    assert block.get(b"a", MAX_SEQUENCE) is None


def test_size_estimate_tracks_finish_and_reset():
    b = BlockBuilder(3)
    entries = [(ikey(b"key%03d" % i, i), b"value" * (i % 5)) for i in range(40)]
    for k, v in entries:
        b.add(k, v)
        assert b.last_key == k
    assert b.count == 40 and not b.empty()
    est = b.current_size_estimate()
    data = b.finish()
    assert len(data) == est
    assert b.finish() == data                 # finish() again: same bytes
    with pytest.raises(ProgrammingError, match="reset"):
        b.add(ikey(b"zzz", 1), b"")
    b.reset()
    assert b.empty() and b.count == 0 and b.last_key == b""
    for k, v in entries:
        b.add(k, v)
    assert b.finish() == data


def test_builder_arguments():
    with pytest.raises(ValueError, match="restart_interval"):
        BlockBuilder(0)
    b = BlockBuilder()
    assert b.restart_interval == 16
    with pytest.raises(TypeError):
        b.add("text-key-long", b"v")
    with pytest.raises(TypeError):
        b.add(ikey(b"a", 1), "text")
    b.add(bytearray(ikey(b"a", 1)), memoryview(b"v1"))
    b.add(memoryview(ikey(b"b", 1)), bytearray(b""))
    assert scan_forward(Block(b.finish()).iterator()) == [(ikey(b"a", 1), b"v1"),
                                                          (ikey(b"b", 1), b"")]


def test_out_of_order_is_refused_only_in_debug_builds():
    b = BlockBuilder()
    b.add(ikey(b"b", 1), b"")
    try:
        b.add(ikey(b"a", 1), b"")
    except ProgrammingError:
        pass                                   # KVCY_DEBUG build
    try:
        BlockBuilder().add(b"short", b"")
    except ProgrammingError:
        pass


def test_restart_points():
    entries = [(ikey(b"k%02d" % i, 1), b"") for i in range(10)]
    for interval, count in [(1, 10), (2, 5), (3, 4), (16, 1)]:
        assert Block(build(entries, interval)).num_restarts == count


# -- round trips ----------------------------------------------------------------

def check_round_trip(entries, interval):
    data = build(entries, interval)
    block = Block(data)
    assert block.size == len(data)
    it = block.iterator()
    assert not it.valid() and it.status() is None
    assert scan_forward(it) == entries
    assert scan_backward(it) == entries[::-1]
    assert ref_scan(data) == (entries, ref_scan(data)[1], False)
    # Seek to every key, just before and after it, and past the end.
    targets = [k for k, _ in entries]
    for k, _ in entries:
        uk, seq, _ = parse_internal_key(k)
        targets.append(ikey(uk, seq, KIND_FOR_SEEK))
        if seq:
            targets.append(ikey(uk, seq - 1, KIND_FOR_SEEK))
        targets.append(ikey(uk + b"\x00", MAX_SEQUENCE, KIND_FOR_SEEK))
    targets += [ikey(b"", MAX_SEQUENCE, KIND_FOR_SEEK), ikey(b"\xff" * 20, 0, 0)]
    for t in targets:
        it.seek(t)
        i = expected_seek(entries, t)
        if i == len(entries):
            assert not it.valid()
        else:
            assert it.valid() and (it.key(), it.value()) == entries[i]
            if i + 1 < len(entries):
                it.next()
                assert (it.key(), it.value()) == entries[i + 1]
                it.prev()
            it.prev()
            if i == 0:
                assert not it.valid()
            else:
                assert (it.key(), it.value()) == entries[i - 1]
        assert it.status() is None
    # Point lookups.
    user_keys = {parse_internal_key(k)[0] for k, _ in entries} | {b"\x00absent"}
    seqs = {0, 1, 50, MAX_SEQUENCE} | {parse_internal_key(k)[1] for k, _ in entries[:8]}
    for uk in user_keys:
        for s in seqs:
            assert block.get(uk, s) == expected_get(entries, uk, s)


@settings(max_examples=150, deadline=None)
@given(sorted_entries(), st.sampled_from([1, 2, 16]))
def test_round_trip(entries, interval):
    check_round_trip(entries, interval)


@pytest.mark.parametrize("interval", [1, 2, 16])
def test_shared_prefixes_and_edge_bytes(interval):
    user_keys = sorted({b"", b"\x00", b"\x00\x00", b"\x00\xff", b"\xff", b"\xff\x00",
                        b"\xff\xff\xff"} | {b"common/prefix/" * 20 + bytes((i,)) * (i % 4)
                                            for i in range(0, 256, 7)})
    entries = []
    for uk in user_keys:
        for seq in (300, 7, 0):
            kind = KIND_DELETE if seq == 7 else KIND_VALUE
            entries.append((ikey(uk, seq, kind), b"" if kind == KIND_DELETE else uk[-3:] * 3))
    check_round_trip(entries, interval)


def test_large_values():
    big = bytes(random.Random(1).getrandbits(8) for _ in range(100 * 1024))
    entries = [(ikey(b"a", 3), big), (ikey(b"b", 2), b""), (ikey(b"c", 1), big[::-1])]
    check_round_trip(entries, 1)
    block = Block(build(entries))
    assert block.get(b"a", 5) == (KIND_VALUE, big, 3)
    assert block.get(b"c", 1) == (KIND_VALUE, big[::-1], 1)


def test_long_keys_grow_the_key_buffer():
    entries = [(ikey(b"x" * n, 1), b"%d" % n) for n in (10, 127, 128, 129, 1000, 70000)]
    entries.sort(key=lambda e: order(e[0]))
    check_round_trip(entries, 2)


def test_get_versions_and_tombstones():
    entries = [
        (ikey(b"apple", 9), b"apple9"),
        (ikey(b"apple", 5, KIND_DELETE), b""),
        (ikey(b"apple", 2), b"apple2"),
        (ikey(b"banana", 4, KIND_DELETE), b""),
        (ikey(b"cherry", MAX_SEQUENCE), b"max"),
        (ikey(b"cherry", 1), b"cherry1"),
    ]
    for interval in (1, 2, 16):
        block = Block(build(entries, interval))
        assert block.get(b"apple", MAX_SEQUENCE) == (KIND_VALUE, b"apple9", 9)
        assert block.get(b"apple", 9) == (KIND_VALUE, b"apple9", 9)
        assert block.get(b"apple", 8) == (KIND_DELETE, b"", 5)
        assert block.get(b"apple", 5) == (KIND_DELETE, b"", 5)
        assert block.get(b"apple", 4) == (KIND_VALUE, b"apple2", 2)
        assert block.get(b"apple", 1) is None
        assert block.get(b"banana", 100) == (KIND_DELETE, b"", 4)
        assert block.get(b"banana", 3) is None
        assert block.get(b"cherry", MAX_SEQUENCE) == (KIND_VALUE, b"max", MAX_SEQUENCE)
        assert block.get(b"cherry", 2 ** 64 - 1) == (KIND_VALUE, b"max", MAX_SEQUENCE)
        assert block.get(b"cherry", MAX_SEQUENCE - 1) == (KIND_VALUE, b"cherry1", 1)
        assert block.get(b"appl", MAX_SEQUENCE) is None
        assert block.get(b"apple\x00", MAX_SEQUENCE) is None
        assert block.get(b"zzz", MAX_SEQUENCE) is None
        assert block.get(bytearray(b"apple"), 9) == block.get(memoryview(b"apple"), 9)
        with pytest.raises(TypeError):
            block.get("apple", 9)


def test_unknown_kind_in_a_data_block():
    block = Block(build([(ikey(b"a", 3, 5), b"x")]))
    with pytest.raises(CorruptionError, match="unknown kind 5"):
        block.get(b"a", 10)
    assert block.get(b"a", 2) is None


def test_index_block_style_keys():
    # Index blocks hold separators tagged (MAX_SEQUENCE, KIND_FOR_SEEK).
    seps = [ikey(b"b", MAX_SEQUENCE, KIND_FOR_SEEK), ikey(b"d", MAX_SEQUENCE, KIND_FOR_SEEK),
            ikey(b"f\xff", MAX_SEQUENCE, KIND_FOR_SEEK)]
    entries = [(k, b"handle%d" % i) for i, k in enumerate(seps)]
    it = Block(build(entries, 1)).iterator()
    it.seek(ikey(b"c", 42))
    assert it.value() == b"handle1" and it.kind() == KIND_FOR_SEEK
    assert it.sequence() == MAX_SEQUENCE
    it.seek(ikey(b"b", 1))
    assert it.value() == b"handle1"
    it.seek(ikey(b"b", MAX_SEQUENCE, KIND_FOR_SEEK))
    assert it.value() == b"handle0"
    it.seek(ikey(b"g", 1))
    assert not it.valid() and it.status() is None


def test_iterator_accessors():
    block = Block(build([(ikey(b"user", 77, KIND_DELETE), b""), (ikey(b"v", 3), b"x")]))
    it = block.iterator()
    assert isinstance(it, BlockIterator)
    for name in ("key", "value", "user_key", "sequence", "kind", "next", "prev"):
        with pytest.raises(ValueError, match="invalid iterator"):
            getattr(it, name)()
    it.seek(bytearray(ikey(b"user", 100)))
    assert (it.user_key(), it.sequence(), it.kind(), it.value()) == (b"user", 77, KIND_DELETE, b"")
    it.next()
    assert (it.user_key(), it.sequence(), it.kind()) == (b"v", 3, KIND_VALUE)
    with pytest.raises(ValueError, match="internal key"):
        it.seek(b"short")
    with pytest.raises(TypeError):
        it.seek("text target")


def test_block_accepts_bytes_like_and_keeps_it_alive():
    data = build([(ikey(b"a", 1), b"v")])
    block = Block(bytearray(data))
    it = block.iterator()
    del block
    it.seek_to_first()
    assert it.value() == b"v"
    with pytest.raises(TypeError):
        Block("text")
    with pytest.raises(TypeError):
        BlockIterator(None)


# -- corruption ----------------------------------------------------------------

@pytest.mark.parametrize("data, what", [
    (b"", "too short"),
    (b"\x01\x00\x00", "too short"),
    (struct.pack("<I", 0), "restart count is 0"),
    (struct.pack("<II", 0, 2), "does not fit"),
    (struct.pack("<I", 0xFFFFFFFF), "does not fit"),
    (struct.pack("<II", 5, 1), "restart 0 at offset 5"),
    (b"\x00" * 16 + struct.pack("<III", 0, 0, 2), "does not follow"),
    (b"\x00" * 16 + struct.pack("<III", 0, 16, 2), "past the 16 bytes"),
    (b"\x00" * 16 + struct.pack("<III", 0, 0xFFFFFFF0, 2), "past the 16 bytes"),
])
def test_bad_trailer_refused_at_construction(data, what):
    with pytest.raises(CorruptionError, match="block: ") as info:
        Block(data)
    assert what in str(info.value)


def test_huge_restart_count_on_a_real_block():
    data = build([(ikey(b"k%02d" % i, 1), b"v") for i in range(20)], 4)
    for num in (6, 100, 2 ** 31, 2 ** 32 - 1):
        with pytest.raises(CorruptionError, match="block: "):
            Block(put_restart_count(data, num))


def assert_poisoned(it):
    """A corrupted iterator: invalid, sticky status, every use raises it."""
    assert not it.valid()
    status = it.status()
    assert isinstance(status, CorruptionError)
    assert str(status).startswith("block: ")
    for call in (it.key, it.value, it.user_key, it.sequence, it.kind, it.next, it.prev,
                 it.seek_to_first, it.seek_to_last, lambda: it.seek(ikey(b"", 0))):
        with pytest.raises(CorruptionError) as info:
            call()
        assert str(info.value) == str(status)
        assert not it.valid()
    assert it.status() is status


def test_corruption_is_sticky():
    good = build([(ikey(b"a", 1), b"1"), (ikey(b"b", 1), b"2")])
    bad = set_byte(good, 0, 5)                 # first entry claims a shared prefix
    block = Block(bad)
    assert block.size == len(bad)
    it = block.iterator()
    with pytest.raises(CorruptionError, match="shared prefix"):
        it.seek_to_first()
    assert_poisoned(it)
    with pytest.raises(CorruptionError):
        block.get(b"a", 1)


def test_short_key_is_corrupt():
    data = b"\x00\x03\x01abcv" + struct.pack("<II", 0, 1)
    it = Block(data).iterator()
    with pytest.raises(CorruptionError, match="shorter than its 8-byte tag"):
        it.seek_to_first()
    assert_poisoned(it)


def test_value_running_past_the_entries_is_corrupt():
    good = build([(ikey(b"a", 1), b"12345")])
    bad = set_byte(good, 2, 6)                 # value length 6 > the 5 bytes there
    it = Block(bad).iterator()
    with pytest.raises(CorruptionError, match="run past"):
        it.seek_to_last()
    assert_poisoned(it)


def test_corruption_found_mid_scan():
    entries = [(ikey(b"k%03d" % i, 1), b"v%d" % i) for i in range(50)]
    data = build(entries, 8)
    _, layout, _ = ref_scan(data)
    header = layout[30][0] - 3                 # entry 30's shared byte
    bad = set_byte(data, header, 0x7F)         # shared 127 > previous key length
    it = Block(bad).iterator()
    it.seek_to_first()
    seen = 0
    with pytest.raises(CorruptionError):
        while it.valid():
            seen += 1
            it.next()
    assert seen == 30
    assert_poisoned(it)


def test_misplaced_restart_point_is_corrupt():
    entries = [(ikey(b"k%03d" % i, 1), b"v") for i in range(8)]
    data = build(entries, 4)                    # restarts at entries 0 and 4
    restarts, rps = ref_open(data)
    bad = data[:restarts + 4] + struct.pack("<I", rps[1] + 1) + data[-4:]
    it = Block(bad).iterator()
    with pytest.raises(CorruptionError):
        scan_forward(it)
    assert_poisoned(it)
    it = Block(bad).iterator()
    with pytest.raises(CorruptionError):
        scan_backward(it)


def run_everything(data):
    """Exercise a possibly damaged block; returns the forward scan, or None when
    it is CorruptionError.  Anything but CorruptionError propagates."""
    try:
        block = Block(data)
    except CorruptionError:
        assert ref_open(data) is None
        return None
    assert ref_open(data) is not None
    ref_entries, _, ref_corrupt = ref_scan(data)
    it = block.iterator()
    forward = []
    try:
        it.seek_to_first()
        while it.valid():
            k = it.key()
            assert len(k) >= 8
            forward.append((k, it.value()))
            it.next()
        corrupt = False
    except CorruptionError:
        assert_poisoned(it)
        corrupt = True
    assert (forward, corrupt) == (ref_entries, ref_corrupt)
    it = block.iterator()
    try:
        backward = scan_backward(it)
        assert not corrupt and backward == forward[::-1]
    except CorruptionError:
        assert corrupt
        assert_poisoned(it)
    in_order = not corrupt and all(order(a[0]) < order(b[0])
                                   for a, b in zip(forward, forward[1:]))
    targets = [k for k, _ in forward[:20]] + [ikey(b"", MAX_SEQUENCE), ikey(b"m", 5),
                                              ikey(b"\xff" * 9, 0)]
    for t in targets:
        it = block.iterator()
        try:
            it.seek(t)
        except CorruptionError:
            assert corrupt or not in_order
            assert_poisoned(it)
            continue
        if in_order:
            i = expected_seek(forward, t)
            assert (it.key(), it.value()) == forward[i] if i < len(forward) else not it.valid()
        elif it.valid():
            assert len(it.key()) >= 8
        uk = parse_internal_key(t)[0]
        try:
            got = block.get(uk, MAX_SEQUENCE)
        except CorruptionError:
            continue
        if in_order:
            expected = expected_get(forward, uk, MAX_SEQUENCE)
            if expected is not None and expected[0] not in (KIND_VALUE, KIND_DELETE):
                expected = "corrupt"
            assert got == expected
    return None if corrupt else forward


CORRUPTION_ENTRIES = [(ikey(b"key-%03d" % (i // 2), 100 - i, KIND_DELETE if i % 5 == 0
                            else KIND_VALUE), b"" if i % 5 == 0 else b"value-%d" % i)
                      for i in range(24)] + [(ikey(b"z" * 140, 1), b"big" * 50)]


@functools.lru_cache(maxsize=None)
def corruption_base(interval):
    return build(CORRUPTION_ENTRIES, interval)


@pytest.mark.parametrize("interval", [1, 3, 16])
def test_every_truncation(interval):
    data = corruption_base(interval)
    for n in range(len(data)):
        run_everything(truncate(data, n))
        run_everything(data[n:])


@pytest.mark.parametrize("interval", [1, 3, 16])
def test_value_flips_give_the_flipped_value(interval):
    data = corruption_base(interval)
    entries, layout, _ = ref_scan(data)
    for i, (_, vstart, vend) in enumerate(layout):
        for pos in range(vstart, vend):
            got = run_everything(flip(data, pos, 0x5A))
            want = list(entries)
            value = bytearray(entries[i][1])
            value[pos - vstart] ^= 0x5A
            want[i] = (entries[i][0], bytes(value))
            assert got == want


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([1, 3, 16]), st.lists(st.tuples(st.integers(0, 10 ** 6),
                                                       st.integers(1, 255)), min_size=1,
                                             max_size=4),
       st.integers(0, 10 ** 6) | st.none())
def test_random_flips_and_truncations(interval, flips, cut):
    data = corruption_base(interval)
    for pos, mask in flips:
        data = flip(data, pos % len(data), mask)
    if cut is not None:
        data = truncate(data, cut % (len(data) + 1))
    run_everything(data)


def fuzz_corruptions(seed, cases):
    """Random damage to blocks; run in a child process by the test below."""
    rng = random.Random(seed)
    outcomes = {"refused": 0, "corrupt": 0, "data": 0}
    for _ in range(cases):
        data = bytearray(corruption_base(rng.choice([1, 2, 3, 16])))
        for _ in range(rng.randint(1, 6)):
            action = rng.random()
            pos = rng.randrange(len(data))
            if action < 0.6:
                data[pos] ^= 1 << rng.randrange(8)
            elif action < 0.8:
                data[pos] = rng.choice([0x00, 0x7F, 0x80, 0xFF, rng.randrange(256)])
            elif len(data) > 1:
                del data[pos]
        if rng.random() < 0.2:
            del data[rng.randrange(len(data) + 1):]
        data = bytes(data)
        result = run_everything(data)
        if ref_open(data) is None:
            outcomes["refused"] += 1
        else:
            outcomes["data" if result is not None else "corrupt"] += 1
    return outcomes


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
import test_block
print(test_block.fuzz_corruptions({seed}, {cases}))
"""


def test_corruption_fuzz_in_child_process():
    # A segfault or abort() (KVCY_DEBUG range checks) is a failing exit code.
    seed = random.randrange(2 ** 32)
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(tests=TESTS_DIR, seed=seed,
                                                               cases=1500)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, "seed %d: exit %d\n%s" % (seed, proc.returncode,
                                                            proc.stderr[-3000:])
    assert "corrupt" in proc.stdout
