"""On-disk format_version 1 stays readable: a database written by the format-1
writer (tests/data/format_v1/, made once by tests/data/make_format_v1.py) must
read back exactly as the dict model saved beside it
(tests/data/format_v1.model.json.gz).

format_version 1 stays readable for as long as docs/format.md documents it.
A format change needs a new format version number, a reader for both the
old and the new version, and this test extended with a fixture of the new
version (never a regenerated old one).

Two halves:

* the fixture checks itself with a small reference reader written here from
  docs/format.md alone (log records, MANIFEST edits, table footer, index and
  data blocks, write batches, CRC32C in pure Python), so that the fixture
  cannot silently degrade: it must hold files on levels 0, 1 and 2,
  overlapping level-0 files, tombstones over values in deeper levels, both
  raw and snappy blocks, a live WAL with fragmented records, a MANIFEST of
  several edits, and its merged contents must equal the model;
* kvcy reads a copy of it (read-only and read-write; after the reopen that
  replays the log; after compact_range()) through get(), get_many() and
  scans, and must return exactly the model.

The committed files are never opened in place: every open works on a copy
under tmp_path, because opening for writing replaces the MANIFEST, turns the
log into a table and writes LOG and LOCK.
"""
import gzip
import json
import os
import shutil
import struct

import pytest
import snappy

import kvcy

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
FIXTURE = os.path.join(DATA, "format_v1")
MODEL_PATH = os.path.join(DATA, "format_v1.model.json.gz")

TABLE_MAGIC = 0x7473735F7963766B
BLOCK_SIZE = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


# -- the model ----------------------------------------------------------------

def _load_model():
    with gzip.open(MODEL_PATH, "rb") as f:
        raw = json.loads(f.read())
    assert raw["format_version"] == 1
    live = {bytes.fromhex(k): bytes.fromhex(v) for k, v in raw["live"].items()}
    deleted = [bytes.fromhex(k) for k in raw["deleted"]]
    absent = [bytes.fromhex(k) for k in raw["absent"]]
    return live, deleted, absent


LIVE, DELETED, ABSENT = _load_model()
ITEMS = sorted(LIVE.items())


# -- a reference reader of format 1, from docs/format.md -----------------------

def _crc_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data):
    c = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def mask(c):
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(data, pos):
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        assert shift < 70, "varint too long"


def lenbytes(data, pos):
    n, pos = varint(data, pos)
    assert pos + n <= len(data)
    return bytes(data[pos:pos + n]), pos + n


def log_records(data):
    """[(logical record, [fragment types])] of a log file; no damage allowed."""
    out, pending, types = [], None, []
    pos = 0
    while pos < len(data):
        left = BLOCK_SIZE - pos % BLOCK_SIZE
        if left < 7:
            assert data[pos:pos + left] == bytes(left), "block trailer is not zeros"
            pos += left
            continue
        checksum, length, kind = struct.unpack_from("<IHB", data, pos)
        body = data[pos + 7:pos + 7 + length]
        assert len(body) == length and 7 + length <= left, "record crosses a block"
        assert checksum == mask(crc32c(bytes((kind,)) + body)), "log record checksum"
        pos += 7 + length
        if kind == FULL:
            assert pending is None
            out.append((body, [FULL]))
        elif kind == FIRST:
            assert pending is None
            pending, types = body, [FIRST]
        elif kind in (MIDDLE, LAST):
            assert pending is not None
            pending += body
            types.append(kind)
            if kind == LAST:
                out.append((pending, types))
                pending = None
        else:
            raise AssertionError("log record type %d" % kind)
    assert pending is None, "log ends inside a record"
    return out


def manifest_edits(data):
    edits = []
    for record, _ in log_records(data):
        edit = {"new": [], "deleted": []}
        pos = 0
        while pos < len(record):
            tag, pos = varint(record, pos)
            if tag in (2, 3, 4):
                edit[{2: "log_number", 3: "next_file", 4: "last_sequence"}[tag]], pos = \
                    varint(record, pos)
            elif tag == 5:
                _, pos = varint(record, pos)
                _, pos = lenbytes(record, pos)
            elif tag == 6:
                level, pos = varint(record, pos)
                number, pos = varint(record, pos)
                edit["deleted"].append((level, number))
            elif tag == 7:
                level, pos = varint(record, pos)
                number, pos = varint(record, pos)
                size, pos = varint(record, pos)
                smallest, pos = lenbytes(record, pos)
                largest, pos = lenbytes(record, pos)
                edit["new"].append((level, number, size, smallest, largest))
            else:
                raise AssertionError("unknown version edit tag %d" % tag)
        edits.append(edit)
    return edits


def split_ikey(ikey):
    assert len(ikey) >= 8
    (tag,) = struct.unpack_from("<Q", ikey, len(ikey) - 8)
    kind = tag & 0xFF
    assert kind in (0, 1)
    return ikey[:-8], tag >> 8, kind


def block_entries(block):
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * num_restarts
    assert num_restarts >= 1 and limit >= 0
    entries, key, pos = [], b"", 0
    while pos < limit:
        shared, pos = varint(block, pos)
        non_shared, pos = varint(block, pos)
        vlen, pos = varint(block, pos)
        assert shared <= len(key)
        key = key[:shared] + bytes(block[pos:pos + non_shared])
        pos += non_shared
        entries.append((key, bytes(block[pos:pos + vlen])))
        pos += vlen
    assert pos == limit
    return entries


def read_stored_block(data, offset, size):
    """(raw contents, compression byte) of the block at a handle."""
    contents = data[offset:offset + size]
    compression, checksum = struct.unpack_from("<BI", data, offset + size)
    assert checksum == mask(crc32c(contents + bytes((compression,)))), "block checksum"
    if compression == 0:
        return contents, 0
    assert compression == 1, "compression byte %d" % compression
    length, _ = varint(contents, 0)
    raw = snappy.uncompress(contents)
    assert len(raw) == length
    return raw, 1


def read_table(data):
    """(format_version, [(internal key, value)], [compression byte per data block])."""
    assert len(data) >= 64
    fields = struct.unpack_from("<QQQQQQIIQ", data, len(data) - 64)
    assert fields[8] == TABLE_MAGIC
    assert fields[7] == mask(crc32c(data[len(data) - 64:len(data) - 12]))
    index, _ = read_stored_block(data, fields[0], fields[1])
    entries, kinds = [], []
    for _, handle in block_entries(index):
        offset, pos = varint(handle, 0)
        size, pos = varint(handle, pos)
        assert pos == len(handle)
        block, compression = read_stored_block(data, offset, size)
        entries.extend(block_entries(block))
        kinds.append(compression)
    return fields[6], entries, kinds


def batch_entries(batch):
    """[(user key, sequence, kind, value or None)] of one write batch."""
    sequence, count = struct.unpack_from("<QI", batch, 0)
    out, pos = [], 12
    for i in range(count):
        kind = batch[pos]
        key, pos = lenbytes(batch, pos + 1)
        value = None
        if kind == 1:
            value, pos = lenbytes(batch, pos)
        else:
            assert kind == 0
        out.append((key, sequence + i, kind, value))
    assert pos == len(batch)
    return out


def _read(name):
    with open(os.path.join(FIXTURE, name), "rb") as f:
        return f.read()


def decode_fixture():
    """The fixture decoded by the reference reader above."""
    names = sorted(os.listdir(FIXTURE))
    current = _read("CURRENT")
    assert current.endswith(b"\n")
    edits = manifest_edits(_read(current[:-1].decode()))
    files, sizes = {}, {}                             # number -> level, size
    last_sequence = log_number = 0
    for edit in edits:
        for level, number in edit["deleted"]:
            assert files.pop(number) == level
        for level, number, size, _, _ in edit["new"]:
            files[number] = level
            sizes[number] = size
        last_sequence = edit.get("last_sequence", last_sequence)
        log_number = edit.get("log_number", log_number)
    assert sorted("%06d.sst" % n for n in files) == [n for n in names if n.endswith(".sst")]
    tables = {}                                       # number -> (version, entries, kinds)
    for number in files:
        assert os.path.getsize(os.path.join(FIXTURE, "%06d.sst" % number)) == sizes[number]
        tables[number] = read_table(_read("%06d.sst" % number))
    logs = [n for n in names if n.endswith(".log")]
    wal = []
    for name in logs:
        assert int(name[:-4]) >= log_number
        wal.extend((batch_entries(rec), types) for rec, types in log_records(_read(name)))
    return dict(names=names, edits=edits, files=files, tables=tables, wal=wal,
                last_sequence=last_sequence)


@pytest.fixture(scope="module")
def reference():
    return decode_fixture()


# -- the fixture holds what it promises -----------------------------------------

def test_fixture_directory_is_pristine():
    names = set(os.listdir(FIXTURE))
    assert not names & {"LOCK", "LOG", "LOG.old"}, "the committed fixture was opened in place"
    assert not [n for n in names if n.endswith((".dbtmp", ".tmp"))]
    assert len([n for n in names if n.startswith("MANIFEST-")]) == 1
    total = sum(os.path.getsize(os.path.join(FIXTURE, n)) for n in names)
    assert total < 512 * 1024


def test_fixture_tables_cover_levels_and_compression(reference):
    files, tables = reference["files"], reference["tables"]
    assert all(version == 1 for version, _, _ in tables.values())
    by_level = {}
    for number, level in files.items():
        by_level.setdefault(level, []).append(number)
    assert {0, 1, 2} <= set(by_level), by_level
    assert len(by_level[0]) >= 2
    kinds = {k for _, _, ks in tables.values() for k in ks}
    assert kinds == {0, 1}, "data blocks must be both raw and snappy"
    assert len(reference["edits"]) >= 3
    biggest = max(len(v) for _, entries, _ in tables.values() for _, v in entries)
    assert biggest >= 100 * 1024


def test_fixture_tombstones_shadow_deeper_values(reference):
    files, tables = reference["files"], reference["tables"]
    deepest_value, shallowest_delete = {}, {}
    for number, (_, entries, _) in tables.items():
        level = files[number]
        for ikey, _ in entries:
            key, _, kind = split_ikey(ikey)
            if kind == 1:
                deepest_value[key] = max(level, deepest_value.get(key, -1))
            else:
                shallowest_delete[key] = min(level, shallowest_delete.get(key, 99))
    shadowing = {k for k, lv in shallowest_delete.items() if deepest_value.get(k, -1) > lv}
    assert len(shadowing) >= 5
    assert shadowing & {k for k in DELETED}, "some deleted key is shadowed in the tables only"


def test_fixture_has_live_wal(reference):
    wal = reference["wal"]
    assert len(wal) >= 5
    types = [t for _, ts in wal for t in ts]
    assert {FULL, FIRST, MIDDLE, LAST} <= set(types), "a WAL record spans blocks"
    entries = [e for batch, _ in wal for e in batch]
    assert {kind for _, _, kind, _ in entries} == {0, 1}
    assert any(len(batch) > 1 for batch, _ in wal)
    # The log continues the history the MANIFEST records, without a gap.
    seqs = [seq for _, seq, _, _ in entries]
    assert seqs == list(range(reference["last_sequence"] + 1, reference["last_sequence"]
                              + 1 + len(seqs)))
    table_keys = {split_ikey(ikey)[0] for _, es, _ in reference["tables"].values()
                  for ikey, _ in es}
    assert {k for k, _, _, _ in entries} & table_keys, "the log overwrites table keys"


def test_reference_reader_matches_model(reference):
    newest = {}
    for _, entries, _ in reference["tables"].values():
        for ikey, value in entries:
            key, seq, kind = split_ikey(ikey)
            if key not in newest or seq > newest[key][0]:
                newest[key] = (seq, kind, value)
    for batch, _ in reference["wal"]:
        for key, seq, kind, value in batch:
            assert key not in newest or seq > newest[key][0]
            newest[key] = (seq, kind, value)
    live = {k: v for k, (_, kind, v) in newest.items() if kind == 1}
    assert live == LIVE
    assert not set(DELETED) & set(live)
    # Compaction dropped some tombstones with their values; the rest are on disk.
    assert len(set(DELETED) & set(newest)) >= 10
    assert not set(ABSENT) & set(newest)
    assert b"" in LIVE and any(len(k) > 2000 for k in LIVE)
    assert any(len(v) >= 100 * 1024 for v in LIVE.values())


# -- kvcy reads it -------------------------------------------------------------------

def _expected_range(start=None, stop=None, prefix=None):
    return [(k, v) for k, v in ITEMS
            if (start is None or k >= start) and (stop is None or k < stop)
            and (prefix is None or k.startswith(prefix))]


RANGES = [
    dict(start=b"cmp:00300", stop=b"cmp:00600"),
    dict(start=b"\x00", stop=b"\x01"),
    dict(stop=b"a"),
    dict(start=b"wal:"),
    dict(start=b"rnd:0050", stop=b"rnd:0050\x00"),
    dict(start=b"zzz", stop=b"zzz"),
    dict(start=b"cmp:00001", stop=b"cmp:00002"),
    dict(prefix=b"rnd:"),
    dict(prefix=b"wal:batch:"),
    dict(prefix=b"new2:1:"),
    dict(prefix=b"\x00"),
    dict(prefix=b"\xff"),
    dict(prefix=b"big:"),
    dict(prefix=b"nope:"),
]


def check_contents(conn):
    for key, value in ITEMS:
        assert conn.get(key) == value, key[:40]
    for key in DELETED + ABSENT:
        assert conn.get(key) is None, key[:40]
        assert conn.get(key, b"dflt") == b"dflt"
    keys = [k for k, _ in ITEMS] + DELETED + ABSENT
    expected = [LIVE.get(k) for k in keys]
    assert conn.get_many(keys) == expected
    assert conn.get_many(keys[::-1]) == expected[::-1]
    with conn.scan() as it:
        assert list(it) == ITEMS
    with conn.scan(reverse=True) as it:
        assert list(it) == ITEMS[::-1]
    for r in RANGES:
        expected_items = _expected_range(**r)
        with conn.scan(**r) as it:
            assert list(it) == expected_items, r
        with conn.scan(reverse=True, **r) as it:
            assert list(it) == expected_items[::-1], r


@pytest.fixture
def db_copy(tmp_path):
    path = str(tmp_path / "format_v1")
    shutil.copytree(FIXTURE, path)
    return path


def test_readonly_open_reads_everything(db_copy):
    before = sorted(os.listdir(db_copy))
    with kvcy.connect(db_copy, readonly=True) as conn:
        stats = conn.stats()
        assert stats["level0_files"] >= 2
        assert stats["level1_files"] >= 1 and stats["level2_files"] >= 1
        assert stats["memtable_entries"] > 0            # replayed from the log
        check_contents(conn)
        with pytest.raises(kvcy.OperationalError):
            conn.put(b"k", b"v")
    assert sorted(os.listdir(db_copy)) == before


def test_stats_agree_with_manifest(db_copy, reference):
    with kvcy.connect(db_copy, readonly=True) as conn:
        stats = conn.stats()
    for level in range(7):
        n = sum(1 for lv in reference["files"].values() if lv == level)
        assert stats["level%d_files" % level] == n, level


def test_read_write_open_reopen_and_compact(db_copy):
    conn = kvcy.connect(db_copy)
    try:
        assert conn.stats()["recovered_records"] > 0
        check_contents(conn)
        conn.close()
        conn = kvcy.connect(db_copy)                  # the log is a table now
        check_contents(conn)
        conn.compact_range()
        check_contents(conn)
        stats = conn.stats()
        assert sum(stats["level%d_files" % i] for i in range(7)) >= 1
        assert stats["level0_files"] == 0
        conn.close()
        conn = kvcy.connect(db_copy)
        check_contents(conn)
        # Still writable in the ordinary way.
        conn.put(b"after", b"freeze")
        assert conn.get(b"after") == b"freeze"
    finally:
        conn.close()


# -- format version 2: partitioned index and filters ---------------------------------------
# tests/data/format_v2/ (made once by tests/data/make_format_v2.py) is the
# database above written with partitioned_index on and 256-byte blocks: its
# larger tables are version 2, its small ones version 1.

FIXTURE_V2 = os.path.join(DATA, "format_v2")


def _model_v2():
    with gzip.open(os.path.join(DATA, "format_v2.model.json.gz"), "rb") as f:
        model = json.loads(f.read())
    assert model["format_version"] == 2
    live = {bytes.fromhex(k): bytes.fromhex(v) for k, v in model["live"].items()}
    return (live, [bytes.fromhex(k) for k in model["deleted"]],
            [bytes.fromhex(k) for k in model["absent"]])


def _table_versions(path, compressions=None):
    """{table name: (footer format version, top-level or index block entries)};
    the compression byte of each index partition is added to the list
    compressions, if given."""
    from kvcy._block import Block
    from kvcy.table_format import FOOTER_BYTES, BlockHandle, Footer, read_block
    out = {}
    for name in sorted(os.listdir(path)):
        if not name.endswith(".sst"):
            continue
        data = _read_from(path, name)
        footer = Footer.decode(data[-FOOTER_BYTES:], name)
        reader = type("Reader", (), {"path": name,
                                     "read": lambda self, o, n: data[o:o + n]})()
        index = Block(read_block(reader, footer.index, len(data), name, "index"))
        it = index.iterator()
        it.seek_to_first()
        entries = 0
        while it.valid():
            entries += 1
            if footer.version == 2 and compressions is not None:
                part, _ = BlockHandle.decode(it.value())
                compressions.append(data[part.offset + part.size])
            it.next()
        out[name] = (footer.version, entries)
    return out


def _read_from(path, name):
    with open(os.path.join(path, name), "rb") as f:
        return f.read()


def test_v2_fixture_holds_partitioned_tables_on_several_levels():
    compressions = []
    versions = _table_versions(FIXTURE_V2, compressions)
    partitioned = [n for n, (v, parts) in versions.items() if v == 2 and parts > 1]
    assert len(partitioned) >= 3, versions
    assert any(v == 1 for v, _ in versions.values())     # small tables stay version 1
    # The fixture's writer compressed an index partition when that saved an
    # eighth (the reader takes those through the block cache) and left the
    # others raw, as every index partition is written now (searched in
    # place): it holds both, so the model test below reads both ways.
    assert set(compressions) == {0, 1}, compressions


def test_v2_fixture_reads_back_the_model(tmp_path):
    live, deleted, absent = _model_v2()
    path = str(tmp_path / "format_v2")
    shutil.copytree(FIXTURE_V2, path)
    items = sorted(live.items())

    def check(conn):
        assert conn.get_many([k for k, _ in items]) == [v for _, v in items]
        assert conn.get_many(deleted + absent) == [None] * len(deleted + absent)
        assert list(conn.scan()) == items
        assert list(conn.scan(reverse=True)) == items[::-1]
        for start, stop in ((b"cmp:", b"cmp:~"), (b"new2", b"rnd:0100"), (b"\x00", b"a")):
            assert list(conn.scan(start, stop)) == [kv for kv in items
                                                    if start <= kv[0] < stop]

    with kvcy.connect(path, readonly=True) as conn:
        check(conn)
    with kvcy.connect(path) as conn:
        check(conn)
        conn.compact_range()
        check(conn)
    assert kvcy.check(path).ok
