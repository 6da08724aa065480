"""Tests for the SSTable layer: kvcy._table_builder, kvcy.table, kvcy.cache,
kvcy.table_cache and kvcy.table_properties, through real files.

In the style of LevelDB's table_test: every case is a round trip
TableBuilder -> file (PosixEnv) -> Table.open, checked against a plain
sorted list of internal keys: point lookups at several sequences (newest
visible version, DELETED for tombstones, None when nothing is visible),
forward and backward scans, seeks to, between and past keys.  The cases
cover the empty table, one key, hypothesis-chosen tables with many versions
and tombstones, long common prefixes, a 1 MiB value, keys made of 0x00 and
0xff bytes, every combination of the table knobs (compression, block size,
bloom bits, restart interval), the index separators, the properties, and
the block and row caches.  Corruption lives in test_table_format.py and
test_corruption.py.
"""
import bisect
import itertools
import os
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvcy._memtable import MemTable
from kvcy._table_builder import TableBuilder, short_successor_py, shortest_separator_py
from kvcy.cache import ENTRY_OVERHEAD_BYTES, BlockCache, RowCache
from kvcy.dbformat import (DELETED, KIND_DELETE, KIND_FOR_SEEK, KIND_VALUE, MAX_SEQUENCE,
                           encode_internal_key, parse_internal_key)
from kvcy.env import PosixEnv
from kvcy.errors import CorruptionError
from kvcy.filename import table_file_name
from kvcy.options import Options
from kvcy.table import Table
from kvcy.table_cache import TableCache
from kvcy.table_format import (BLOCK_TRAILER_BYTES, FOOTER_BYTES, NO_COMPRESSION,
                               SNAPPY_COMPRESSION, BlockHandle, Footer)
from kvcy.table_properties import TableProperties

ENV = PosixEnv()
MAX_TAG = struct.pack("<Q", (MAX_SEQUENCE << 8) | KIND_FOR_SEEK)


# -- helpers -------------------------------------------------------------------

def ikey(user_key, seq, kind=KIND_VALUE):
    return encode_internal_key(user_key, seq, kind)


def order(k):
    """Sort key of an internal key: user key ascending, tag descending."""
    user_key, seq, kind = parse_internal_key(k)
    return (user_key, -((seq << 8) | kind))


def build_table(path, entries, **options):
    """Write entries (sorted (internal key, value) pairs) to path; (size, props)."""
    path = str(path)
    file = ENV.new_writable_file(path)
    builder = TableBuilder(file, Options(**options), path)
    for k, v in entries:
        builder.add(k, v)
    size = builder.finish()
    file.close()
    assert size == os.path.getsize(path)
    assert builder.finished
    return size, builder.props


def open_table(path, size=None, number=1, block_cache=None, row_cache=None):
    path = str(path)
    if size is None:
        size = os.path.getsize(path)
    return Table.open(ENV.new_random_access_file(path), size, number, block_cache, row_cache)


class CountingFile:
    """A RandomAccessFile wrapper that records every read (offset, n)."""

    def __init__(self, file):
        self.file = file
        self.path = file.path
        self.reads = []

    def read(self, offset, n):
        self.reads.append((offset, n))
        return self.file.read(offset, n)


def scan_forward(it):
    out = []
    it.seek_to_first()
    while it.valid():
        out.append((it.key(), it.value()))
        it.next()
    assert it.status() is None
    return out


def scan_backward(it):
    out = []
    it.seek_to_last()
    while it.valid():
        out.append((it.key(), it.value()))
        it.prev()
    assert it.status() is None
    return out


def expected_get(entries, user_key, seq):
    """What Table.get must answer: the newest entry of user_key at or below seq."""
    for k, v in entries:
        uk, s, kind = parse_internal_key(k)
        if uk == user_key and s <= seq:
            return DELETED if kind == KIND_DELETE else v
    return None


class Model:
    """The sorted entry list, indexed for fast expected answers."""

    def __init__(self, entries):
        self.entries = entries
        self.orders = [order(k) for k, _ in entries]
        assert self.orders == sorted(self.orders) and len(set(self.orders)) == len(entries)
        self.versions = {}                       # user key -> [(seq, answer)], newest first
        for k, v in entries:
            uk, s, kind = parse_internal_key(k)
            self.versions.setdefault(uk, []).append((s, DELETED if kind == KIND_DELETE else v))

    def get(self, user_key, seq):
        for s, answer in self.versions.get(user_key, ()):
            if s <= seq:
                return answer
        return None

    def seek(self, target):
        i = bisect.bisect_left(self.orders, order(target))
        return self.entries[i] if i < len(self.entries) else None

    def sequences(self, user_key):
        seqs = {0, 1, MAX_SEQUENCE - 1, MAX_SEQUENCE}
        for s, _ in self.versions.get(user_key, ()):
            seqs.update((s, max(s - 1, 0), min(s + 1, MAX_SEQUENCE)))
        return sorted(seqs)


def assert_get(table, entries, user_key, seq, want=None):
    if want is None:
        want = expected_get(entries, user_key, seq)
    got = table.get(user_key, seq)
    if want is DELETED or want is None:
        assert got is want, (user_key, seq, got, want)
    else:
        assert type(got) is bytes and got == want, (user_key, seq)


def check_seek(table, model, target):
    """seek(target) lands on the first entry >= target (or goes invalid)."""
    want = model.seek(target)
    it = table.iterator()
    it.seek(target)
    if want is None:
        assert not it.valid() and it.status() is None
    else:
        assert it.valid() and (it.key(), it.value()) == want


def check_table(table, entries, absent=()):
    """Every read path of table agrees with the sorted list entries."""
    model = Model(entries)
    assert scan_forward(table.iterator()) == entries
    assert scan_backward(table.iterator()) == entries[::-1]
    user_keys = sorted(model.versions)
    for uk in list(user_keys) + list(absent):
        for s in model.sequences(uk):
            want = model.get(uk, s)
            got = table.get(uk, s)
            if want is DELETED or want is None:
                assert got is want, (uk, s, got, want)
            else:
                assert type(got) is bytes and got == want, (uk, s)
    targets = [k for k, _ in entries]
    targets += [ikey(uk, s, KIND_FOR_SEEK) for uk in list(user_keys) + list(absent)
                for s in (MAX_SEQUENCE, 0)]
    targets += [ikey(uk + b"\x00", MAX_SEQUENCE, KIND_FOR_SEEK) for uk in user_keys]
    for t in targets:
        check_seek(table, model, t)
    # Iterators move both ways from a seek: next then prev comes back.
    for t in targets[::max(1, len(targets) // 20)]:
        it = table.iterator()
        it.seek(t)
        if it.valid():
            here = it.key()
            it.prev()
            if it.valid():
                it.next()
                assert it.key() == here


def index_entries(table):
    it = table.index.iterator()
    it.seek_to_first()
    out = []
    while it.valid():
        out.append((it.key(), BlockHandle.decode(it.value())[0]))
        it.next()
    return out


def data_blocks(table):
    """[(separator, handle, [(key, value)...])] for each data block of the table."""
    out = []
    for sep, handle in index_entries(table):
        block = table.read_data_block(handle)
        it = block.iterator()
        rows = []
        it.seek_to_first()
        while it.valid():
            rows.append((it.key(), it.value()))
            it.next()
        out.append((sep, handle, rows))
    return out


KNOBS = [dict(compression=c, block_size=bs, bloom_bits_per_key=bloom, restart_interval=ri)
         for c, bs, bloom, ri in itertools.product(("snappy", "none"), (256, 4096), (0, 10),
                                                   (1, 16))]


def knob_id(k):
    return "%s-bs%d-bloom%d-ri%d" % (k["compression"], k["block_size"],
                                    k["bloom_bits_per_key"], k["restart_interval"])


# -- strategies ------------------------------------------------------------------

USER_KEYS = st.one_of(
    st.sampled_from([b"", b"\x00", b"\x00\x00", b"\x01", b"a", b"a\x00", b"ab", b"abc",
                     b"\x7f", b"\x80", b"\xff", b"\xff\x00", b"\xff\xff", b"\xff" * 9]),
    st.binary(max_size=16),
    st.builds(lambda s: b"common/prefix/" * 6 + s, st.binary(max_size=4)),
)
SEQS = st.integers(0, 300) | st.sampled_from([MAX_SEQUENCE, MAX_SEQUENCE - 1, 1 << 40])
VALUES = st.binary(max_size=60) | st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=3),
                                            st.integers(1, 400))


@st.composite
def table_entries(draw, max_keys=40, max_filler=300):
    """Sorted unique internal keys, several versions per user key, tombstones.

    Hypothesis-chosen user keys (edge bytes, shared prefixes) are mixed with
    up to max_filler random ones so that tables span many blocks.
    """
    n = draw(st.integers(0, max_keys))
    user_keys = set(draw(st.lists(USER_KEYS, min_size=n, max_size=n, unique=True)))
    rng = random.Random(draw(st.integers(0, 2 ** 32)))
    for _ in range(draw(st.integers(0, max_filler))):
        user_keys.add(rng.choice([b"", b"fill", b"\xff\xff", b"common/prefix/" * 6])
                      + rng.randbytes(rng.randint(0, 6)))
    triples = []
    for uk in sorted(user_keys):
        if rng.random() < 0.7 or len(triples) > 500:
            seqs = draw(st.lists(SEQS, min_size=1, max_size=4, unique=True))
        else:
            seqs = rng.sample(range(1, 1000), rng.randint(1, 4))
        for s in seqs:
            triples.append((uk, s, KIND_DELETE if rng.random() < 0.25 else KIND_VALUE))
    keys = sorted((ikey(*t) for t in triples), key=order)
    values = [draw(VALUES) if i < 30 else rng.randbytes(rng.choice([0, 1, 10, 50, 200]))
              for i in range(len(keys))]
    return [(k, v if parse_internal_key(k)[2] == KIND_VALUE else b"")
            for k, v in zip(keys, values)]


# -- the empty table and one key -----------------------------------------------------

@pytest.mark.parametrize("knobs", KNOBS[::3], ids=knob_id)
def test_empty_table(tmp_path, knobs):
    path = tmp_path / "000001.sst"
    size, props = build_table(path, [], **knobs)
    assert props.num_entries == 0 and props.data_blocks == 0
    assert props.smallest == b"" and props.largest == b""
    table = open_table(path, size)
    for uk in (b"", b"a", b"\xff" * 20):
        assert table.get(uk, MAX_SEQUENCE) is None
        assert table.get(uk, 0) is None
    assert index_entries(table) == []
    it = table.iterator()
    it.seek_to_first()
    assert not it.valid() and it.status() is None
    it.seek_to_last()
    assert not it.valid() and it.status() is None
    it.seek(ikey(b"", MAX_SEQUENCE, KIND_FOR_SEEK))
    assert not it.valid() and it.status() is None
    assert table.properties.as_dict() == props.as_dict()
    assert table.properties.num_entries == 0


@pytest.mark.parametrize("kind", [KIND_VALUE, KIND_DELETE])
@pytest.mark.parametrize("knobs", KNOBS[::5], ids=knob_id)
def test_one_key(tmp_path, knobs, kind):
    value = b"the value" if kind == KIND_VALUE else b""
    entries = [(ikey(b"key", 7, kind), value)]
    path = tmp_path / "000001.sst"
    size, props = build_table(path, entries, **knobs)
    table = open_table(path, size)
    want = value if kind == KIND_VALUE else DELETED
    assert table.get(b"key", 7) == want and table.get(b"key", MAX_SEQUENCE) == want
    assert table.get(b"key", 6) is None
    for other in (b"", b"ke", b"kex", b"key\x00", b"kez", b"\xff"):
        assert table.get(other, MAX_SEQUENCE) is None
    check_table(table, entries, absent=[b"", b"ke", b"key\x00", b"zz"])
    p = table.properties
    assert (p.num_entries, p.num_deletions, p.data_blocks) == (1, int(kind == KIND_DELETE), 1)
    assert p.smallest == p.largest == entries[0][0]
    assert p.smallest_sequence == p.largest_sequence == 7


# -- many keys ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def hypo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("hypothesis_tables")


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(table_entries(), st.sampled_from(KNOBS))
def test_round_trip(hypo_dir, entries, knobs):
    path = hypo_dir / "000001.sst"
    size, props = build_table(path, entries, **knobs)
    table = open_table(path, size)
    check_table(table, entries, absent=[b"", b"\x00", b"zzz", b"\xff" * 3, b"\xff" * 17])
    check_properties(table.properties, entries)
    assert table.properties.as_dict() == props.as_dict()
    blocks = data_blocks(table)
    assert [row for _, _, rows in blocks for row in rows] == entries
    assert props.data_blocks == len(blocks)


def check_properties(p, entries):
    seqs = [parse_internal_key(k)[1] for k, _ in entries]
    kinds = [parse_internal_key(k)[2] for k, _ in entries]
    assert p.num_entries == len(entries)
    assert p.num_deletions == kinds.count(KIND_DELETE)
    assert p.raw_key_bytes == sum(len(k) for k, _ in entries)
    assert p.raw_value_bytes == sum(len(v) for _, v in entries)
    assert p.smallest == (entries[0][0] if entries else b"")
    assert p.largest == (entries[-1][0] if entries else b"")
    assert p.smallest_sequence == (min(seqs) if seqs else 0)
    assert p.largest_sequence == (max(seqs) if seqs else 0)


def test_versions_and_tombstones(tmp_path):
    entries = [
        (ikey(b"a", 50), b"a50"), (ikey(b"a", 40, KIND_DELETE), b""), (ikey(b"a", 30), b"a30"),
        (ikey(b"b", 10, KIND_DELETE), b""),
        (ikey(b"c", 99), b"c99"), (ikey(b"c", 1), b"c1"),
    ]
    path = tmp_path / "000001.sst"
    build_table(path, entries, block_size=256, restart_interval=1)
    table = open_table(path)
    assert table.get(b"a", 60) == b"a50"
    assert table.get(b"a", 50) == b"a50"
    assert table.get(b"a", 49) is DELETED
    assert table.get(b"a", 40) is DELETED
    assert table.get(b"a", 39) == b"a30"
    assert table.get(b"a", 30) == b"a30"
    assert table.get(b"a", 29) is None
    assert table.get(b"b", 10) is DELETED and table.get(b"b", 9) is None
    assert table.get(b"c", 98) == b"c1" and table.get(b"c", 0) is None
    p = table.properties
    assert (p.num_entries, p.num_deletions, p.smallest_sequence, p.largest_sequence) == (6, 2, 1, 99)
    check_table(table, entries, absent=[b"", b"a\x00", b"bb", b"d"])


@pytest.mark.parametrize("knobs", KNOBS, ids=knob_id)
def test_versions_split_across_blocks(tmp_path, knobs):
    # One user key with many versions spans several data blocks; a lookup at
    # any sequence must reach the block that holds its visible version.
    entries = []
    for uk in (b"hot", b"hou"):
        for seq in range(400, 0, -3):
            kind = KIND_DELETE if seq % 7 == 0 else KIND_VALUE
            entries.append((ikey(uk, seq, kind), b"" if kind == KIND_DELETE
                            else b"%s@%d" % (uk, seq) * 3))
    path = tmp_path / "000001.sst"
    build_table(path, entries, **knobs)
    table = open_table(path)
    if knobs["block_size"] == 256:
        assert table.properties.data_blocks > 10
    check_table(table, entries, absent=[b"ho", b"hot\x00", b"hp"])


def test_add_memtable_matches_add(tmp_path):
    mem = MemTable()
    rng = random.Random(5)
    for seq in range(1, 600):
        key = b"k%04d" % rng.randrange(150)
        if rng.random() < 0.2:
            mem.add(seq, KIND_DELETE, key)
        else:
            mem.add(seq, KIND_VALUE, key, b"v%d" % seq * rng.randrange(1, 30))
    it = mem.iterator()
    it.seek_to_first()
    entries = []
    while it.valid():
        entries.append((bytes(it.key()), bytes(it.value())))
        it.next()
    assert len(entries) == 599
    path = tmp_path / "000001.sst"
    file = ENV.new_writable_file(str(path))
    builder = TableBuilder(file, Options(block_size=512), str(path))
    builder.add_memtable(mem)
    size = builder.finish()
    file.close()
    build_table(tmp_path / "000002.sst", entries, block_size=512)
    with open(path, "rb") as f1, open(tmp_path / "000002.sst", "rb") as f2:
        assert f1.read() == f2.read()
    table = open_table(path, size)
    check_table(table, entries)
    check_properties(table.properties, entries)


# -- key shapes and value sizes ---------------------------------------------------------

@pytest.mark.parametrize("restart_interval", [1, 16])
@pytest.mark.parametrize("compression", ["snappy", "none"])
def test_keys_sharing_a_long_prefix(tmp_path, compression, restart_interval):
    prefix = bytes(range(256)) * 3 + b"p" * 232          # 1000 bytes
    assert len(prefix) == 1000
    entries = [(ikey(prefix + b"%05d" % i, 1000 - i), b"v%d" % i) for i in range(300)]
    entries.append((ikey(prefix, 5), b"the prefix itself"))
    entries.sort(key=lambda e: order(e[0]))
    path = tmp_path / "000001.sst"
    size, props = build_table(path, entries, compression=compression, block_size=4096,
                              restart_interval=restart_interval)
    table = open_table(path, size)
    check_table(table, entries, absent=[prefix[:-1], prefix + b"\x00", prefix + b"99999",
                                        prefix[:500]])
    # Prefix compression: between restart points only the suffix is stored.
    if restart_interval == 16:
        assert props.raw_data_bytes < props.raw_key_bytes // 6
    for sep, _, rows in data_blocks(table):
        assert len(sep) <= len(rows[-1][0])


@pytest.mark.parametrize("compression", ["snappy", "none"])
@pytest.mark.parametrize("block_size", [256, 4096])
def test_one_mebibyte_values(tmp_path, compression, block_size):
    rng = random.Random(11)
    noise = rng.randbytes(1 << 20)                      # incompressible
    text = b"compressible " * ((1 << 20) // 13 + 1)     # very compressible
    text = text[:1 << 20]
    entries = [(ikey(b"a", 1), b"small"), (ikey(b"big-noise", 2), noise),
               (ikey(b"big-text", 3), text), (ikey(b"c", 4), b"after")]
    path = tmp_path / "000001.sst"
    size, props = build_table(path, entries, compression=compression, block_size=block_size)
    table = open_table(path, size, block_cache=BlockCache(64 * 1024))
    assert table.get(b"big-noise", 9) == noise
    assert table.get(b"big-text", 9) == text
    assert table.get(b"a", 9) == b"small" and table.get(b"c", 9) == b"after"
    assert table.get(b"big", 9) is None
    check_table(table, entries)
    # A block bigger than the whole cache is read but never cached.
    assert table.block_cache.used_bytes <= 64 * 1024
    if compression == "snappy":
        assert size < (1 << 20) + (1 << 19)             # the text value compressed
    else:
        assert size > 2 << 20
    assert props.raw_value_bytes == 2 * (1 << 20) + 10


def test_edge_bytes_in_keys(tmp_path):
    user_keys = [b"", b"\x00", b"\x00\x00", b"\x00\xff", b"\x01", b"a\x00", b"a\x00\x00",
                 b"a\xff", b"a\xff\xff", b"b", b"\x7f\xff", b"\x80", b"\xfe\xff", b"\xff",
                 b"\xff\x00", b"\xff\xfe", b"\xff\xff", b"\xff" * 40]
    assert user_keys == sorted(user_keys)
    entries = []
    for i, uk in enumerate(user_keys):
        entries.append((ikey(uk, 100 + i), b"v-" + uk))
        entries.append((ikey(uk, 50 + i, KIND_DELETE), b""))
    for knobs in KNOBS:
        path = tmp_path / ("%s.sst" % knob_id(knobs))
        build_table(path, entries, **knobs)
        table = open_table(path)
        check_table(table, entries, absent=[b"\x00\x00\x00", b"\xff" * 41, b"\xff" * 39 + b"\xfe",
                                            b"a\xff\x00", b"\x7f"])
        # The table ends in an all-0xff user key: short_successor cannot
        # shorten it, so the last index key must be that key itself.
        last_sep = index_entries(table)[-1][0]
        assert order(last_sep) >= order(entries[-1][0])
        assert last_sep == entries[-1][0]


def test_all_ff_key_alone_and_keys_ending_in_ff(tmp_path):
    for uk in (b"\xff", b"\xff" * 100, b"a\xff\xff\xff", b"\xfe\xff"):
        entries = [(ikey(uk, 3), b"x"), (ikey(uk, 2, KIND_DELETE), b"")]
        path = tmp_path / "000001.sst"
        build_table(path, entries)
        table = open_table(path)
        check_table(table, entries, absent=[uk + b"\x00", uk[:-1], uk + b"\xff"])


# -- the index separators -----------------------------------------------------------

def test_separator_examples():
    # docs/format.md: last key "abcdef", next first key "abzz" -> "abd" + max tag.
    assert shortest_separator_py(ikey(b"abcdef", 5), ikey(b"abzz", 9)) == b"abd" + MAX_TAG
    # Nothing shorter fits: the start key is kept whole.
    for a, b in [(b"abc", b"abd"), (b"ab", b"abc"), (b"a\xff", b"b"), (b"a", b"a")]:
        start = ikey(a, 5)
        assert shortest_separator_py(start, ikey(b, 1)) == start
    assert short_successor_py(ikey(b"abc", 5)) == b"b" + MAX_TAG
    assert short_successor_py(ikey(b"\xff\xffx", 5)) == b"\xff\xff" + b"y" + MAX_TAG
    assert short_successor_py(ikey(b"\xff\xff", 5)) == ikey(b"\xff\xff", 5)
    assert short_successor_py(ikey(b"", 5)) == ikey(b"", 5)
    with pytest.raises(ValueError):
        shortest_separator_py(b"short", ikey(b"a", 1))
    with pytest.raises(ValueError):
        short_successor_py(b"1234567")


INTERNAL_KEYS = st.builds(ikey, USER_KEYS | st.binary(max_size=6),
                          st.integers(0, MAX_SEQUENCE),
                          st.sampled_from([KIND_VALUE, KIND_DELETE]))


@settings(max_examples=500, deadline=None)
@given(INTERNAL_KEYS, INTERNAL_KEYS)
def test_shortest_separator_lies_between(a, b):
    if order(a) == order(b):
        return
    start, limit = sorted((a, b), key=order)
    sep = shortest_separator_py(start, limit)
    assert order(start) <= order(sep) < order(limit)
    assert len(sep) <= len(start)
    if sep != start:
        # A shortened key is the user-key prefix bumped by one, with the largest tag.
        assert sep.endswith(MAX_TAG)
        su, lu = start[:-8], limit[:-8]
        n = len(sep) - 8
        assert sep[:n - 1] == su[:n - 1] == lu[:n - 1]


@settings(max_examples=300, deadline=None)
@given(INTERNAL_KEYS, st.binary(max_size=10))
def test_short_successor_is_above(key, suffix):
    succ = short_successor_py(key)
    assert order(succ) >= order(key)
    assert len(succ) <= len(key)
    user_key = key[:-8]
    if user_key.strip(b"\xff"):
        assert succ.endswith(MAX_TAG) and succ[:-8] > user_key
    # Every key of a longer user key with the same prefix sorts before the
    # successor too, unless the key cannot be shortened at all.
    if succ != key:
        assert order(ikey(user_key + suffix, 0)) < order(succ)


def test_index_separators_are_short_and_between_blocks(tmp_path):
    rng = random.Random(3)
    words = sorted({bytes(rng.choice(b"aeimquy") for _ in range(rng.randint(20, 60)))
                    for _ in range(400)})
    entries = [(ikey(w, 7), b"value-%d" % i * 4) for i, w in enumerate(words)]
    path = tmp_path / "000001.sst"
    build_table(path, entries, block_size=256)
    table = open_table(path)
    blocks = data_blocks(table)
    assert len(blocks) > 20
    short = 0
    for (sep, _, rows), nxt in zip(blocks, blocks[1:] + [None]):
        assert order(rows[-1][0]) <= order(sep)
        if nxt is not None:
            assert order(sep) < order(nxt[2][0][0])
        if len(sep) < len(rows[-1][0]):
            short += 1
    # Random 20..60-byte words over letters 4 apart differ early: nearly every
    # separator is a few bytes plus the tag.
    assert short >= len(blocks) - 2
    assert sum(len(sep) for sep, _, _ in blocks) < sum(len(rows[-1][0]) for _, _, rows in blocks) / 3


def test_index_handles_cover_the_data_blocks(tmp_path):
    entries = [(ikey(b"k%05d" % i, 9), b"x" * (i % 50)) for i in range(2000)]
    path = tmp_path / "000001.sst"
    size, props = build_table(path, entries, block_size=1024)
    table = open_table(path, size)
    handles = [h for _, h in index_entries(table)]
    assert handles[0].offset == 0
    for h1, h2 in zip(handles, handles[1:]):
        assert h2.offset == h1.offset + h1.size + BLOCK_TRAILER_BYTES
    end = handles[-1].offset + handles[-1].size + BLOCK_TRAILER_BYTES
    assert end == props.stored_data_bytes == table.properties.stored_data_bytes
    with open(path, "rb") as f:
        footer = Footer.decode(f.read()[-FOOTER_BYTES:])
    assert footer.filter.offset == end                   # the filter follows the data
    assert footer.properties.offset == footer.filter.offset + footer.filter.size + 5
    assert footer.index.offset == footer.properties.offset + footer.properties.size + 5
    assert footer.index.offset + footer.index.size + 5 + FOOTER_BYTES == size


# -- compression -----------------------------------------------------------------

def test_snappy_table_is_smaller_when_values_compress(tmp_path):
    entries = [(ikey(b"key%06d" % i, 3), b"abcdefgh" * 20 + b"%d" % i) for i in range(500)]
    sizes = {}
    for c in ("snappy", "none"):
        sizes[c], props = build_table(tmp_path / ("%s.sst" % c), entries, compression=c)
        table = open_table(tmp_path / ("%s.sst" % c))
        assert scan_forward(table.iterator()) == entries
        if c == "snappy":
            assert props.stored_data_bytes < props.raw_data_bytes / 3
        else:
            assert props.stored_data_bytes == props.raw_data_bytes + 5 * props.data_blocks
    assert sizes["snappy"] < sizes["none"] / 3
    # Every data block of the snappy table is stored compressed.
    with open(tmp_path / "snappy.sst", "rb") as f:
        data = f.read()
    table = open_table(tmp_path / "snappy.sst")
    for _, handle in index_entries(table):
        assert data[handle.offset + handle.size] == SNAPPY_COMPRESSION


def test_incompressible_blocks_are_stored_raw(tmp_path):
    rng = random.Random(1)
    entries = [(ikey(b"key%06d" % i, 3), rng.randbytes(100)) for i in range(200)]
    size, props = build_table(tmp_path / "t.sst", entries, compression="snappy")
    assert props.stored_data_bytes == props.raw_data_bytes + 5 * props.data_blocks
    table = open_table(tmp_path / "t.sst")
    with open(tmp_path / "t.sst", "rb") as f:
        data = f.read()
    for _, handle in index_entries(table):
        assert data[handle.offset + handle.size] == NO_COMPRESSION
    assert scan_forward(table.iterator()) == entries


# -- properties -------------------------------------------------------------------

def test_properties(tmp_path):
    entries = []
    for i in range(300):
        uk = b"user%04d" % i
        entries.append((ikey(uk, 1000 + i), b"v" * (i % 17)))
        if i % 3 == 0:
            entries.append((ikey(uk, 10 + i, KIND_DELETE), b""))
    path = tmp_path / "000001.sst"
    size, props = build_table(path, entries, block_size=512, compression="none")
    table = open_table(path, size)
    p = table.properties
    check_properties(p, entries)
    assert p.num_deletions == 100
    assert p.smallest_sequence == 10 and p.largest_sequence == 1299
    assert p.data_blocks == len(index_entries(table)) > 1
    assert p.as_dict() == props.as_dict()
    assert p.raw_data_bytes == sum(h.size for _, h in index_entries(table))  # stored raw
    decoded = TableProperties.decode(p.encode())
    assert decoded.as_dict() == p.as_dict()


def test_properties_ignore_unknown_names():
    props = TableProperties()
    props.num_entries = 5
    props.largest = b"zz" + bytes(8)
    data = bytearray(props.encode())
    data[0] += 1                               # one more field...
    data += b"\x0cfuture_field\x03abc"          # ...that this version does not know
    decoded = TableProperties.decode(bytes(data))
    assert decoded.as_dict() == props.as_dict()


# -- caches -------------------------------------------------------------------------

def many_block_table(tmp_path, n=600, number=1, **knobs):
    entries = [(ikey(b"k%05d" % i, 5), b"value-%05d-" % i * 6) for i in range(n)]
    path = tmp_path / ("%06d.sst" % number)
    size, _ = build_table(path, entries, block_size=512, **knobs)
    return path, size, entries


def test_block_cache_counts_hits_and_misses(tmp_path):
    path, size, entries = many_block_table(tmp_path, bloom_bits_per_key=0)
    cache = BlockCache(1 << 20)
    file = CountingFile(ENV.new_random_access_file(str(path)))
    table = Table.open(file, size, 1, cache)
    opened_reads = len(file.reads)
    assert (cache.hits, cache.misses) == (0, 0)             # open reads no data block
    assert table.get(b"k00000", 9) == entries[0][1]
    assert (cache.hits, cache.misses) == (0, 1)
    assert len(file.reads) == opened_reads + 1
    assert table.get(b"k00000", 9) == entries[0][1]
    assert table.get(b"k00001", 9) == entries[1][1]        # same block
    assert (cache.hits, cache.misses) == (2, 1)
    assert len(file.reads) == opened_reads + 1              # hits read nothing
    # A full scan touches every block once more: all hits but the first.
    blocks = table.properties.data_blocks
    assert scan_forward(table.iterator()) == entries
    assert cache.misses == blocks and cache.hits == 2 + 1
    assert len(cache) == blocks
    assert scan_forward(table.iterator()) == entries
    assert cache.misses == blocks and cache.hits == 3 + blocks
    assert len(file.reads) == opened_reads + blocks
    assert 0 < cache.used_bytes <= cache.capacity_bytes


def test_block_cache_stays_within_its_bound(tmp_path):
    path, size, entries = many_block_table(tmp_path, bloom_bits_per_key=0)
    capacity = 4096
    cache = BlockCache(capacity)
    table = open_table(path, size, block_cache=cache)
    rng = random.Random(2)
    for _ in range(3):
        assert scan_forward(table.iterator()) == entries
        assert cache.used_bytes <= capacity
        for _ in range(200):
            i = rng.randrange(len(entries))
            assert table.get(b"k%05d" % i, 5) == entries[i][1]
            assert cache.used_bytes <= capacity
    assert 0 < len(cache) < table.properties.data_blocks
    smallest_block = min(table.read_data_block(h).size + ENTRY_OVERHEAD_BYTES
                         for _, h in index_entries(table))
    assert len(cache) <= capacity // smallest_block
    # Evicted blocks are read again: misses keep growing in a scan.
    before = cache.misses
    scan_forward(table.iterator())
    assert cache.misses - before >= table.properties.data_blocks - len(cache)


def test_disabled_block_cache(tmp_path):
    path, size, entries = many_block_table(tmp_path, n=100)
    cache = BlockCache(0)
    table = open_table(path, size, block_cache=cache)
    assert table.get(b"k00007", 5) == entries[7][1]
    assert table.get(b"k00007", 5) == entries[7][1]
    assert (cache.hits, len(cache), cache.used_bytes) == (0, 0, 0)


def test_block_cache_shared_by_tables_with_the_same_offsets(tmp_path):
    # Two tables with identical layout but different values: the cache key
    # must include the file number.
    cache = BlockCache(1 << 20)
    tables = []
    for number in (1, 2):
        entries = [(ikey(b"k%05d" % i, 5), b"table%d-%05d" % (number, i)) for i in range(300)]
        path = tmp_path / ("%06d.sst" % number)
        size, _ = build_table(path, entries, block_size=512)
        tables.append((open_table(path, size, number, block_cache=cache), entries))
    for _ in range(2):
        for table, entries in tables:
            for i in (0, 150, 299):
                assert table.get(b"k%05d" % i, 5) == entries[i][1]
            assert scan_forward(table.iterator()) == entries
    assert cache.hits > 0


def row_cache_table(tmp_path, number=1, bloom_bits_per_key=0, suffix=b""):
    entries = [
        (ikey(b"a", 5), b"a5" + suffix),
        (ikey(b"k", 30), b"k30" + suffix), (ikey(b"k", 20, KIND_DELETE), b""),
        (ikey(b"k", 10), b"k10" + suffix), (ikey(b"k", 3), b"k3" + suffix),
        (ikey(b"m", 8, KIND_DELETE), b""),
        (ikey(b"z", 40), b"z40" + suffix),
    ]
    path = tmp_path / ("%06d.sst" % number)
    size, _ = build_table(path, entries, bloom_bits_per_key=bloom_bits_per_key)
    return path, size, entries


@pytest.mark.parametrize("bloom", [0, 10])
def test_row_cache_answers_older_sequences(tmp_path, bloom):
    path, size, entries = row_cache_table(tmp_path, bloom_bits_per_key=bloom)
    cache = RowCache(1 << 20)
    table = open_table(path, size, row_cache=cache)
    # The first lookup is by an old reader: the row cache learns the newest
    # version (k@30), which that reader must not see.
    order_of_reads = [(b"k", 15), (b"k", 40), (b"k", 25), (b"k", 30), (b"k", 29),
                      (b"k", 20), (b"k", 19), (b"k", 10), (b"k", 9), (b"k", 3), (b"k", 2),
                      (b"k", 0), (b"m", 8), (b"m", 7), (b"m", 100), (b"a", 4), (b"a", 5)]
    for _ in range(3):
        for uk, seq in order_of_reads:
            assert_get(table, entries, uk, seq)
    assert cache.hits > 0
    assert len(cache) == 3


@pytest.mark.parametrize("bloom", [0, 10])
def test_row_cache_negative_lookups(tmp_path, bloom):
    path, size, entries = row_cache_table(tmp_path, bloom_bits_per_key=bloom)
    cache = RowCache(1 << 20)
    file = CountingFile(ENV.new_random_access_file(str(path)))
    table = Table.open(file, size, 1, None, cache)
    absent = [b"", b"b", b"k\x00", b"j", b"kk", b"\xff", b"a\x00"]
    for uk in absent:
        assert table.get(uk, MAX_SEQUENCE) is None
    reads = len(file.reads)
    for _ in range(2):
        for uk in absent:
            assert table.get(uk, MAX_SEQUENCE) is None
            assert table.get(uk, 0) is None
    assert len(file.reads) == reads                    # answered from the caches
    # Present keys still answer correctly after the negative entries.
    for uk in (b"a", b"k", b"m", b"z"):
        for seq in (0, 5, 8, 29, 40, MAX_SEQUENCE):
            assert_get(table, entries, uk, seq)
    if bloom == 0:
        assert cache.hits >= 2 * 2 * len(absent)


def test_row_cache_hit_reads_nothing(tmp_path):
    path, size, entries = row_cache_table(tmp_path)
    cache = RowCache(1 << 20)
    file = CountingFile(ENV.new_random_access_file(str(path)))
    table = Table.open(file, size, 1, None, cache)
    assert table.get(b"z", 50) == b"z40"
    reads = len(file.reads)
    hits = cache.hits
    assert table.get(b"z", 45) == b"z40"
    assert table.get(b"k", 40) == b"k30"        # first lookup of k reads
    reads_after_k = len(file.reads)
    assert table.get(b"k", 35) == b"k30"
    assert len(file.reads) == reads_after_k and reads_after_k == reads + 1
    assert cache.hits == hits + 2


def test_row_cache_shared_by_two_tables(tmp_path):
    cache = RowCache(1 << 20)
    tables = []
    for number, suffix in ((1, b"-one"), (2, b"-two")):
        path, size, entries = row_cache_table(tmp_path, number, suffix=suffix)
        tables.append((open_table(path, size, number, row_cache=cache), entries))
    for _ in range(2):
        for table, entries in tables:
            for uk in (b"a", b"k", b"m", b"z", b"q"):
                for seq in (MAX_SEQUENCE, 25, 4):
                    assert_get(table, entries, uk, seq)


def test_row_cache_stays_within_its_bound(tmp_path):
    entries = [(ikey(b"k%04d" % i, 5), b"v" * 1000) for i in range(100)]
    path = tmp_path / "000001.sst"
    size, _ = build_table(path, entries)
    capacity = 10 * (1000 + ENTRY_OVERHEAD_BYTES)
    cache = RowCache(capacity)
    table = open_table(path, size, row_cache=cache)
    for i in range(100):
        assert table.get(b"k%04d" % i, 5) == b"v" * 1000
        assert cache.used_bytes <= capacity
    assert len(cache) == 10
    # A row larger than the whole cache is answered but not kept.
    big = [(ikey(b"big", 1), b"x" * 20000)]
    build_table(tmp_path / "000002.sst", big)
    small = RowCache(1000)
    table = open_table(tmp_path / "000002.sst", number=2, row_cache=small)
    assert table.get(b"big", 1) == b"x" * 20000
    assert table.get(b"big", 1) == b"x" * 20000
    assert small.used_bytes <= 1000


# -- the table cache ------------------------------------------------------------------

def test_table_cache_opens_once_and_reads(tmp_path):
    entries = [(ikey(b"k%03d" % i, 9), b"v%d" % i) for i in range(50)]
    sizes = {}
    for number in (7, 8):
        sizes[number], _ = build_table(table_file_name(str(tmp_path), number), entries)

    class Meta:
        def __init__(self, number):
            self.number = number
            self.file_size = sizes[number]

    tc = TableCache(str(tmp_path), ENV, Options(), BlockCache(1 << 20), RowCache(0))
    assert tc.get(Meta(7), b"k010", 9) == b"v10"
    assert tc.get(Meta(7), b"k010", 8) is None
    assert tc.find_table(7, sizes[7]) is tc.find_table(7, sizes[7])
    assert scan_forward(tc.iterator(Meta(8))) == entries
    assert tc.opens == 2 and len(tc) == 2
    tc.evict(7)
    assert len(tc) == 1
    assert tc.get(Meta(7), b"k049", 9) == b"v49"
    assert tc.opens == 3


def test_table_cache_refuses_a_bad_size(tmp_path):
    entries = [(ikey(b"k", 9), b"v")]
    size, _ = build_table(table_file_name(str(tmp_path), 3), entries)
    tc = TableCache(str(tmp_path), ENV, Options(), BlockCache(0), RowCache(0))
    with pytest.raises(CorruptionError):
        tc.find_table(3, size - 1)
    assert len(tc) == 0
    assert tc.find_table(3, size).get(b"k", 9) == b"v"


# -- builder and lookup contracts ---------------------------------------------------------

def test_builder_refuses_short_keys_and_str(tmp_path):
    path = str(tmp_path / "000001.sst")
    file = ENV.new_writable_file(path)
    builder = TableBuilder(file, Options(), path)
    with pytest.raises(ValueError):
        builder.add(b"1234567", b"v")
    with pytest.raises(TypeError):
        builder.add("a string key", b"v")
    builder.add(ikey(b"a", 1), bytearray(b"from a bytearray"))
    builder.add(memoryview(ikey(b"b", 1)), b"")
    assert builder.num_entries == 2
    size = builder.finish()
    file.close()
    table = open_table(path, size)
    assert table.get(b"a", 1) == b"from a bytearray" and table.get(b"b", 1) == b""


def test_approximate_offset_of(tmp_path):
    entries = [(ikey(b"k%05d" % i, 5), b"x" * 40) for i in range(500)]
    path = tmp_path / "000001.sst"
    size, props = build_table(path, entries, block_size=1024, compression="none")
    table = open_table(path, size)
    offsets = [table.approximate_offset_of(k) for k, _ in entries]
    assert offsets == sorted(offsets) and offsets[0] == 0
    assert offsets[-1] < props.stored_data_bytes
    assert table.approximate_offset_of(ikey(b"zzz", 1)) == props.stored_data_bytes
    assert table.approximate_offset_of(entries[250][0]) == pytest.approx(size / 2, rel=0.1)


def test_finish_twice_and_add_after_finish_are_refused(tmp_path):
    path = str(tmp_path / "000001.sst")
    file = ENV.new_writable_file(path)
    builder = TableBuilder(file, Options(), path)
    builder.add(ikey(b"a", 1), b"x")
    size = builder.finish()
    try:
        with pytest.raises(Exception):
            builder.finish()
        with pytest.raises(Exception):
            builder.add(ikey(b"b", 1), b"y")
    finally:
        file.close()
    assert os.path.getsize(path) == size
    assert open_table(path, size).get(b"a", 1) == b"x"


@pytest.mark.parametrize("sequence", [MAX_SEQUENCE + 1, 2 ** 64 - 1])
def test_sequence_above_the_maximum_is_handled_the_same_with_or_without_row_cache(
        tmp_path, sequence):
    path = tmp_path / "000001.sst"
    size, _ = build_table(path, [(ikey(b"a", 1), b"x")])

    def outcome(row_cache):
        table = open_table(path, size, row_cache=row_cache)
        try:
            return ("value", table.get(b"a", sequence))
        except Exception as exc:
            return ("raises", type(exc))

    without, with_cache = outcome(None), outcome(RowCache(1 << 20))
    assert without == with_cache
    assert without[0] == "value" or issubclass(without[1], ValueError)


@pytest.mark.parametrize("compression", ["snappy", "none"])
@pytest.mark.parametrize("seed", range(4))
def test_builder_blocks_match_the_python_reference_encoding(tmp_path, compression, seed):
    # The builder compresses and checksums blocks in C; table_format's
    # compress_block and block_trailer are the reference it must agree with.
    from kvcy._block_builder import BlockBuilder
    from kvcy.table_format import block_trailer, compress_block
    rng = random.Random(seed)
    entries = []
    for i in range(rng.randrange(1, 60)):
        value = rng.choice([rng.randbytes(rng.randrange(0, 120)),
                            bytes([rng.randrange(256)]) * rng.randrange(0, 300)])
        entries.append((ikey(b"k%05d" % i, 5), value))
    path = tmp_path / "000001.sst"
    build_table(path, entries, block_size=1 << 20, compression=compression,
                bloom_bits_per_key=0)
    raw_builder = BlockBuilder(16)
    for k, v in entries:
        raw_builder.add(k, v)
    contents, ctype = compress_block(raw_builder.finish(), compression)
    expected = contents + block_trailer(contents, ctype)
    assert path.read_bytes()[:len(expected)] == expected


# -- builder output: the descriptor path and the file-object path ---------------------------

def big_entries(n=6000):
    # ~600 KiB of poorly compressible values: several output-buffer drains.
    rng = random.Random(7)
    return [(ikey(b"key%06d" % i, 9), rng.randbytes(100)) for i in range(n)]


def test_builder_writes_the_same_bytes_through_a_descriptor_and_a_file_object(tmp_path):
    from fault_env import FaultEnv
    entries = big_entries()
    sizes = []
    for env, name in ((ENV, "000001.sst"), (FaultEnv(), "000002.sst")):
        path = str(tmp_path / name)
        file = env.new_writable_file(path)
        assert (getattr(file, "fileno", None) is not None) == (env is ENV)
        builder = TableBuilder(file, Options(), path)
        for k, v in entries:
            builder.add(k, v)
        size = builder.finish()
        assert file.size == size == os.path.getsize(path)
        file.close()
        sizes.append(size)
    assert (tmp_path / "000001.sst").read_bytes() == (tmp_path / "000002.sst").read_bytes()
    check_table(open_table(tmp_path / "000001.sst"), entries)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_builder_write_error_is_sticky_and_names_the_file(tmp_path):
    from kvcy.errors import OperationalError
    path = str(tmp_path / "000001.sst")
    file = ENV.new_writable_file(path)
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, file.fileno())          # every write now fails with ENOSPC
    os.close(full)
    builder = TableBuilder(file, Options(), path)
    with pytest.raises(OperationalError) as info:
        for k, v in big_entries():
            builder.add(k, v)
    assert path in str(info.value) and "ENOSPC" in str(info.value)
    with pytest.raises(OperationalError):
        builder.add(ikey(b"zzz", 1), b"v")      # sticky: the builder refuses more
    with pytest.raises(OperationalError):
        builder.finish()
    file.close()
