"""Partitioned index and filters (format version 2, Options.partitioned_index).

A table whose index outgrows one block_size partition is written with its
index and bloom filter cut into partitions under a small top-level index
(kvcy/_table_builder.pyx, docs/format.md).  A table read through a mapping
uses its partitions in place once checked; one read with pread takes them
through the block cache (kvcy/_table_index.pyx).
Every reader of tables is exercised on such tables against a dict model:
point reads (without the GIL, and through a Python file object with it),
iterators, compaction's sequential runs, ingest, check and repair; versions
of one key that straddle a partition boundary; and damaged partitions,
which must read as CorruptionError naming the partition.
"""
import gc
import glob
import os
import random

import pytest

import kvcy
from kvcy import _table_block
from kvcy._block import Block
from kvcy.table import Table
from kvcy.table_format import FOOTER_BYTES, BlockHandle, Footer, read_block

from fault_env import FaultEnv

OPTIONS = dict(partitioned_index=True, block_size=256, bloom_bits_per_key=10)


def key(i):
    return b"key:%07d" % i


def value(i, gen=0):
    return b"value %d of generation %d " % (i, gen) * 3


def bytes_reader(path):
    """(the file's bytes, a file object over them with path and read(offset, n))."""
    with open(path, "rb") as f:
        data = f.read()
    return data, type("Reader", (), {"path": path, "read": lambda self, o, n: data[o:o + n]})()


def partitions_of(path):
    """(footer, [(index handle, filter handle)]) of the table file at path
    (no partitions for a version 1 table)."""
    data, reader = bytes_reader(path)
    footer = Footer.decode(data[-FOOTER_BYTES:], path)
    if not footer.partitioned:
        return footer, []
    top = Block(read_block(reader, footer.index, len(data), path, "index"))
    it = top.iterator()
    it.seek_to_first()
    parts = []
    while it.valid():
        index_handle, pos = BlockHandle.decode(it.value())
        filter_handle, _ = BlockHandle.decode(it.value(), pos)
        parts.append((index_handle, filter_handle))
        it.next()
    return footer, parts


def only_table(path):
    (table,) = glob.glob(os.path.join(path, "*.sst"))
    return table


@pytest.fixture
def table3000(tmp_path):
    """A database of one partitioned table of key(0)..key(2999); its table's path."""
    with kvcy.connect(tmp_path / "db", **OPTIONS) as conn:
        conn.put_many([(key(i), value(i)) for i in range(3000)])
        conn.flush()
    return only_table(tmp_path / "db")


def test_a_large_table_is_partitioned_and_a_small_one_is_not(tmp_path):
    with kvcy.connect(tmp_path / "big", **OPTIONS) as conn:
        conn.put_many([(key(i), value(i)) for i in range(5000)])
        conn.flush()
    footer, parts = partitions_of(only_table(tmp_path / "big"))
    assert footer.version == 2 and footer.filter.size == 0 and len(parts) > 10
    assert all(f.size > 0 for _, f in parts)
    with kvcy.connect(tmp_path / "small", **OPTIONS) as conn:
        conn.put_many([(key(i), value(i)) for i in range(20)])
        conn.flush()
    footer, _ = partitions_of(only_table(tmp_path / "small"))
    assert footer.version == 1                      # one partition: written as before


def test_only_the_top_level_index_stays_in_memory(tmp_path):
    figures = {}
    for partitioned in (False, True):
        path = tmp_path / ("p" if partitioned else "u")
        with kvcy.connect(path, block_size=256, partitioned_index=partitioned) as conn:
            conn.put_many([(key(i), value(i)) for i in range(20000)])
            conn.flush()
            assert conn.get(key(7)) == value(7)
            figures[partitioned] = conn.stats()["table_meta_bytes"]
    assert figures[True] * 5 < figures[False], figures


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reads_match_a_model_through_flushes_compactions_and_snapshots(tmp_path, seed):
    rnd = random.Random(seed)
    model, snaps = {}, []
    with kvcy.connect(tmp_path / "db", memtable_max_bytes=64 << 10,
                      target_file_bytes=32 << 10, **OPTIONS) as conn:
        for gen in range(6):
            for _ in range(1500):
                i = rnd.randrange(3000)
                if rnd.random() < 0.15:
                    conn.delete(key(i))
                    model.pop(key(i), None)
                else:
                    conn.put(key(i), value(i, gen))
                    model[key(i)] = value(i, gen)
            if gen % 2:
                snaps.append((conn.snapshot(), dict(model)))
            conn.flush()
        conn.compact_range(key(0), key(1500))
        probes = [key(i) for i in range(0, 3000, 7)] + [key(i) + b"~" for i in range(0, 3000, 97)]
        assert conn.get_many(probes) == [model.get(k) for k in probes]
        items = sorted(model.items())
        assert list(conn.scan()) == items
        assert list(conn.scan(key(1000), key(2000), reverse=True)) == [
            kv for kv in items if key(1000) <= kv[0] < key(2000)][::-1]
        for snap, seen in snaps:
            assert snap.get_many(probes) == [seen.get(k) for k in probes]
            assert list(snap.scan(key(500), key(900))) == sorted(
                (k, v) for k, v in seen.items() if key(500) <= k < key(900))
            snap.close()
        with conn.scan() as it:                       # seeks across partitions
            for i in rnd.sample(range(3000), 50):
                it.seek(key(i))
                expected = next((k for k, _ in items if k >= key(i)), None)
                assert (it.key() if it.valid() else None) == expected


def test_versions_of_one_key_across_a_partition_boundary(tmp_path):
    # Snapshots keep every version, so one user key spans many blocks and
    # several partitions: each partition's filter must hold it.
    with kvcy.connect(tmp_path / "db", **OPTIONS) as conn:
        conn.put_many([(key(i), value(i)) for i in range(100)])
        snaps = []
        for gen in range(300):
            conn.put(key(50), b"generation %d " % gen * 8)
            snaps.append((conn.snapshot(), gen))
        conn.flush()
        footer, parts = partitions_of(only_table(tmp_path / "db"))
        assert footer.version == 2 and len(parts) > 3
        for snap, gen in snaps:
            assert snap.get(key(50)) == b"generation %d " % gen * 8
            snap.close()
        assert conn.get(key(50)) == b"generation 299 " * 8
        assert conn.get(key(51)) == value(51)


def test_reads_through_a_python_file_object(tmp_path, table3000):
    # fd < 0: the lookups and iterators that read with the GIL.
    data, reader = bytes_reader(table3000)
    table = Table.open(reader, len(data), 1, kvcy.cache.BlockCache(1 << 20))
    assert table.partitioned
    for i in range(0, 3000, 37):
        assert table.get(key(i), 1 << 40) == value(i)
        assert table.get(key(i) + b"!", 1 << 40) is None
    it = table.iterator()
    it.seek_to_first()
    n = 0
    while it.valid():
        n += 1
        it.next()
    assert n == 3000
    with kvcy.connect(tmp_path / "db", env=FaultEnv()) as conn:   # the engine on top
        assert conn.get(key(2999)) == value(2999)
        assert len(list(conn.scan())) == 3000
        conn.compact_range()
        assert conn.get(key(5)) == value(5)


@pytest.mark.parametrize("part", ["filter", "index"])
def test_a_damaged_partition_is_corruption_naming_it(tmp_path, table3000, part):
    path = table3000
    _, parts = partitions_of(path)
    index_handle, filter_handle = parts[0]
    target = filter_handle if part == "filter" else index_handle
    with open(path, "r+b") as f:
        f.seek(target.offset + 5)
        byte = f.read(1)
        f.seek(target.offset + 5)
        f.write(bytes([byte[0] ^ 0x40]))
    with kvcy.connect(tmp_path / "db") as conn:
        for _ in range(2):                            # a failed check is not remembered
            with pytest.raises(kvcy.CorruptionError, match="%s partition.*checksum" % part):
                conn.get(key(0))
        assert conn.get(key(2999)) == value(2999)     # the other partitions read on
        if part == "index":
            with pytest.raises(kvcy.CorruptionError, match="index partition"):
                list(conn.scan())
    report = kvcy.check(tmp_path / "db")
    assert not report.ok
    assert any("%s partition" % part in p.what and p.offset == target.offset
               for p in report.problems), report.problems


def test_a_filter_partition_with_a_bad_probe_count_is_corruption(tmp_path, table3000):
    path = table3000
    _, parts = partitions_of(path)
    _, filter_handle = parts[0]
    with open(path, "rb") as f:
        data = bytearray(f.read())
    contents = bytes(data[filter_handle.offset:filter_handle.offset + filter_handle.size])
    from kvcy.table_format import block_trailer
    bad = contents[:-1] + bytes([99])                 # k = 99: no filter has that many probes
    data[filter_handle.offset:filter_handle.offset + filter_handle.size + 5] = (
        bad + block_trailer(bad, 0))
    with open(path, "wb") as f:
        f.write(data)
    with kvcy.connect(tmp_path / "db") as conn:
        with pytest.raises(kvcy.CorruptionError, match="filter partition.*probe count 99"):
            conn.get(key(0))


def test_table_writer_ingest_and_repair_with_partitions(tmp_path):
    sst = tmp_path / "bulk.sst"
    with kvcy.TableWriter(sst, partitioned_index=True, block_size=256) as w:
        w.add_many((key(i), value(i)) for i in range(5000))
    assert partitions_of(str(sst))[0].version == 2
    with kvcy.connect(tmp_path / "db") as conn:
        conn.put(key(1), b"older")
        conn.ingest([str(sst)])                       # checks every key through a run
        assert conn.get(key(1)) == value(1) and conn.get(key(4999)) == value(4999)
        assert len(list(conn.scan())) == 5000
    # A damaged data block: repair keeps every other entry.
    path = [p for p in glob.glob(str(tmp_path / "db" / "*.sst"))][0]
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"\xff\xff\xff\xff")
    kvcy.repair(tmp_path / "db")
    with kvcy.connect(tmp_path / "db") as conn:
        kept = dict(conn.scan())
    assert 4800 < len(kept) < 5000, len(kept)
    # key(1)'s older value may come back if its ingested block was the damaged one.
    assert [k for k in kept if kept[k] != value(int(k[4:]))] in ([], [key(1)])


def test_a_partitioned_table_read_as_version_1_is_corruption(tmp_path, table3000):
    # The footer's version byte flipped back to 1 (its checksum fixed): the
    # top-level index read as an index names two handles per entry, not one.
    import struct
    from kvcy._crc32c import crc32c, mask
    with open(table3000, "rb") as f:
        data = bytearray(f.read())
    foot = len(data) - FOOTER_BYTES
    data[foot + 48:foot + 52] = struct.pack("<I", 1)
    data[foot + 52:foot + 56] = struct.pack("<I", mask(crc32c(bytes(data[foot:foot + 52]))))
    with open(table3000, "wb") as f:
        f.write(data)
    with kvcy.connect(tmp_path / "db") as conn:
        with pytest.raises(kvcy.CorruptionError, match="bad block handle"):
            conn.get(key(10))
        with pytest.raises(kvcy.CorruptionError):
            list(conn.scan())


def test_a_handle_to_a_cached_filter_partition_is_not_read_as_an_index(table3000):
    # A hostile top-level index whose index handle points at a filter
    # partition: once that filter sits in the block cache as raw bytes, the
    # lookup must not walk it as a block of entries.
    from kvcy._block_builder import BlockBuilder
    from kvcy._crc32c import crc32c, mask
    from kvcy.table_format import block_trailer
    import struct
    data, _ = bytes_reader(table3000)
    footer, parts = partitions_of(table3000)
    _, filter0 = parts[0]
    top = Block(read_block(bytes_reader(table3000)[1], footer.index, len(data), "t", "index"))
    it = top.iterator()
    it.seek_to_first()
    builder = BlockBuilder(1)
    first = True
    while it.valid():
        entry = it.value()
        if first:                                       # index handle := the filter's
            entry = filter0.encode() + filter0.encode()
            first = False
        builder.add(it.key(), entry)
        it.next()
    block = builder.finish()
    body = bytes(data[:len(data) - FOOTER_BYTES]) + block + block_trailer(block, 0)
    head = struct.pack("<QQQQQQI", len(data) - FOOTER_BYTES, len(block), 0, 0,
                       footer.properties.offset, footer.properties.size, 2)
    bad = body + head + struct.pack("<IQ", mask(crc32c(head)), 0x7473735F7963766B)
    reader = type("Reader", (), {"path": "hostile.sst", "read": lambda self, o, n: bad[o:o + n]})()
    table = Table.open(reader, len(bad), 1, kvcy.cache.BlockCache(1 << 20))
    # Each time the "index partition" is read from the file and its restart
    # array refused, never walked from the cached raw filter (whose missing
    # restart array a cursor would index with an underflowed count).
    for _ in range(2):                                 # the second time the filter is cached
        with pytest.raises(kvcy.CorruptionError, match="index partition.*restart count"):
            table.get(key(0), 1 << 40)
    assert table.get(key(2999), 1 << 40) == value(2999)   # other partitions read on


def test_index_partitions_are_written_raw(table3000):
    # A reader searches them where they lie in the mapping: not compressed.
    data, _ = bytes_reader(table3000)
    _, parts = partitions_of(table3000)
    assert len(parts) > 3
    assert [data[index.offset + index.size] for index, _ in parts] == [0] * len(parts)
    assert [data[filt.offset + filt.size] for _, filt in parts] == [0] * len(parts)


def block_cache_misses(path, keys):
    """The block cache misses of reading keys, in key order, on a fresh connection."""
    with kvcy.connect(path, block_cache_bytes=1 << 20) as conn:
        before = conn.stats()["block_cache_misses"]
        assert conn.get_many(keys) == [value(int(k[4:])) for k in keys]
        return conn.stats()["block_cache_misses"] - before


def test_a_mapped_table_uses_its_partitions_in_place(tmp_path, table3000):
    # Two keys of one data block, and one of a data block in another
    # partition.  Mapped, only the two data blocks go through the block
    # cache; read with pread (no room left for a mapping), so do the two
    # filter and two index partitions.
    _, parts = partitions_of(table3000)
    assert len(parts) > 3
    keys = [key(0), key(1), key(2999)]
    assert block_cache_misses(tmp_path / "db", keys) == 2
    gc.collect()              # tables of earlier tests, held in cycles, unmapped now, not below
    previous = _table_block.set_max_mapped_tables(_table_block.mapped_table_count())
    try:
        assert block_cache_misses(tmp_path / "db", keys) == 2 + 4
    finally:
        _table_block.set_max_mapped_tables(previous)


def test_hostile_partitions_with_valid_checksums_never_crash_a_reader(tmp_path, table3000):
    # Bytes of a filter or index partition changed and its CRC32C made to
    # match, so the change reaches the code that probes and searches
    # partitions in place: every get gives the key's own value, None (a
    # filter or index that no longer finds it) or CorruptionError, and
    # never crashes or reads outside the block (the KVCY_DEBUG=1 build
    # checks every access).
    from kvcy.table_format import block_trailer
    rng = random.Random(41)
    original, _ = bytes_reader(table3000)
    _, parts = partitions_of(table3000)
    probes = [key(i) for i in range(0, 3000, 7)] + [b"key:9999999", b"a", b"key:0001234x"]
    outcomes = set()
    for trial in range(60):
        index_handle, filter_handle = parts[rng.randrange(len(parts))]
        target = filter_handle if trial % 2 else index_handle
        contents = bytearray(original[target.offset:target.offset + target.size])
        for _ in range(rng.choice((1, 2, 8))):
            pos = rng.randrange(len(contents))
            contents[pos] = rng.choice((0, 0xff, rng.randrange(256), contents[pos] ^ 1))
        data = bytearray(original)
        data[target.offset:target.offset + target.size + 5] = (
            bytes(contents) + block_trailer(bytes(contents), 0))
        with open(table3000, "wb") as f:
            f.write(data)
        with kvcy.connect(tmp_path / "db", block_cache_bytes=1 << 16) as conn:
            for k in probes:
                try:
                    got = conn.get(k)
                except kvcy.CorruptionError:
                    outcomes.add("corruption")
                    continue
                want = value(int(k[4:])) if k[4:].isdigit() and int(k[4:]) < 3000 else None
                assert got in (want, None), (trial, k, got)
                outcomes.add("value" if got is not None else "none")
    assert outcomes == {"value", "none", "corruption"}, outcomes


def test_partitions_changed_after_their_check_never_crash_a_reader(tmp_path, table3000):
    # Once checked, a partition read in place is trusted, but its restart
    # count is bounded again on every read: bytes changed in the live file
    # behind kvcy's back (a restart count of 0 or too large, a bad restart
    # array, a filter's probe count, noise) give a value, None or
    # CorruptionError, never a crash or an overread (KVCY_DEBUG=1 checks).
    import struct
    rng = random.Random(43)
    original, _ = bytes_reader(table3000)
    _, parts = partitions_of(table3000)
    probes = [key(i) for i in range(0, 3000, 11)]
    index0, filter0 = parts[len(parts) // 2]
    damages = [
        (index0.offset + index0.size - 4, struct.pack("<I", 0)),
        (index0.offset + index0.size - 4, struct.pack("<I", 0xFFFFFFFF)),
        (index0.offset + index0.size - 8, struct.pack("<I", 0xFFFFFF00)),
        (filter0.offset + filter0.size - 1, bytes([0])),
        (filter0.offset + filter0.size - 1, bytes([99])),
    ] + [(part.offset + rng.randrange(part.size), bytes([rng.randrange(256)]) * 7)
         for part in (index0, filter0) for _ in range(6)]
    with kvcy.connect(tmp_path / "db", block_cache_bytes=1 << 16) as conn:
        assert conn.get_many(probes) == [value(int(k[4:])) for k in probes]  # all checked
        for offset, patch in damages:
            with open(table3000, "r+b") as f:
                f.seek(offset)
                f.write(patch)
            for k in probes:
                try:
                    assert conn.get(k) in (value(int(k[4:])), None), (offset, k)
                except kvcy.CorruptionError:
                    pass
            with open(table3000, "r+b") as f:
                f.seek(offset)
                f.write(original[offset:offset + len(patch)])
        assert conn.get_many(probes) == [value(int(k[4:])) for k in probes]


def test_a_table_cut_inside_a_checked_partition_reads_as_truncated(tmp_path, table3000):
    # The zeros past the new end of the file, inside the filter's last page,
    # fail its probe count; the error names the cause, as a read with pread
    # would, not the zeros.
    _, parts = partitions_of(table3000)
    _, filt = parts[len(parts) // 2]
    with kvcy.connect(tmp_path / "db", block_cache_bytes=1 << 16) as conn:
        inside = [key(i) for i in range(3000)]
        assert conn.get_many(inside) == [value(i) for i in range(3000)]    # all checked
        os.truncate(table3000, filt.offset + filt.size - 3)
        errors = []
        for k in inside:
            try:
                conn.get(k)
            except kvcy.CorruptionError as exc:
                errors.append(str(exc))
        assert errors and all("truncated" in e for e in errors), errors[:3]
        assert any("filter partition" in e for e in errors), errors[:3]


def test_table_get_on_an_env_file_uses_partitions_in_place(table3000):
    # Table.get (the row cache's and the fuzzers' way in) takes the same
    # path as a connection's get: two keys of one data block and one of
    # another partition cost the block cache two data blocks, nothing more.
    from kvcy.cache import BlockCache
    from kvcy.env import PosixEnv
    file = PosixEnv().new_random_access_file(table3000)
    try:
        cache = BlockCache(1 << 20)
        table = Table.open(file, os.path.getsize(table3000), 1, cache)
        for k in (key(0), key(1), key(2999)):
            assert table.get(k, 1 << 50) == value(int(k[4:]))
        assert cache.misses == 2
        del table
    finally:
        file.close()
