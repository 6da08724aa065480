"""Tests for kvcy._block_cache.BlockCache, through real tables.

The cache is only reachable through tables (Table.get, read_data_block,
iterators) and the engine, so every case builds real SSTables with
test_table's helpers and reads them back, checking the answers against the
entries written.  Covered: the capacity bound under random gets, scans and
block reads (one shard and several), exact hit/miss/byte accounting, the
shard count as a function of the capacity, a disabled cache (capacity 0)
and one smaller than a block, pinned blocks (a Block from read_data_block)
outliving clear(), eviction, the table and the cache object, and 8 threads
reading several tables through one small cache that evicts all the time,
both through Table (the with-GIL path) and through a connection's C read
path (without the GIL).

A use-after-free found here (a pinned Block collected in a garbage cycle
released its handle after the collector had dropped its cache; fixed by
no_gc_clear on Block) is kept as regression tests that run the repro in a
child process: under glibc's MALLOC_PERTURB_ by default, under valgrind
with -m slow.
"""
import os
import platform
import random
import shutil
import subprocess
import sys
import textwrap
import threading

import pytest

import kvcy
from kvcy.cache import ENTRY_OVERHEAD_BYTES, BlockCache
from kvcy.dbformat import MAX_SEQUENCE

from test_table import (build_table, data_blocks, ikey, index_entries, many_block_table,
                        open_table, scan_forward)

KIB = 1024
MIB = 1024 * KIB
MIN_SHARD_BYTES = 256 * KIB          # kvcy/_block_cache.pyx: smallest share of a shard


# -- helpers -------------------------------------------------------------------------

# Regression: in a KVCY_DEBUG=1 build, CYTHON_TRACE_NOGIL made traced nogil
# functions take the GIL for their trace events, including evict_locked and
# unref_locked while a cache shard's mutex was held, so a thread holding the
# GIL and waiting for that mutex (Table.load_block -> cache_lookup, or
# cache_release) deadlocked with it.  setup.py now never traces _block_cache
# (UNTRACED); the threaded tests below run in the debug build too, and
# test_threads_sharing_a_cache_do_not_deadlock watches for the hang.


class TableSet:
    """Several tables on disk with distinct values; entries and rows by block."""

    def __init__(self, directory, count, n, value_bytes, block_size, compression):
        self.tables = []          # (path, size, number, entries)
        for number in range(1, count + 1):
            entries = [(ikey(b"k%05d" % i, 7),
                        (b"t%d-%05d-" % (number, i) * (value_bytes // 9 + 1))[:value_bytes])
                       for i in range(n)]
            path = directory / ("%06d.sst" % number)
            size, _ = build_table(path, entries, block_size=block_size, compression=compression,
                                  bloom_bits_per_key=0)
            self.tables.append((path, size, number, entries))
        self.n = n

    def open_all(self, cache):
        return [(open_table(path, size, number, block_cache=cache), entries)
                for path, size, number, entries in self.tables]

    def raw_bytes(self):
        return sum(len(k) + len(v) for _, _, _, entries in self.tables for k, v in entries)


@pytest.fixture(scope="module")
def small_tables(tmp_path_factory):
    """4 tables of 600 small entries in 512-byte blocks (about 70 KiB of blocks)."""
    return TableSet(tmp_path_factory.mktemp("small"), 4, 600, 60, 512, "snappy")


@pytest.fixture(scope="module")
def big_tables(tmp_path_factory):
    """4 tables of 1400 entries of 300 bytes in 4 KiB blocks: about 1.7 MiB
    uncompressed, more than a two-shard cache holds."""
    return TableSet(tmp_path_factory.mktemp("big"), 4, 1400, 300, 4096, "none")


def block_rows(block):
    it = block.iterator()
    it.seek_to_first()
    rows = []
    while it.valid():
        rows.append((it.key(), it.value()))
        it.next()
    assert it.status() is None
    return rows


def random_reads(rng, tables, cache, ops, check_each=True):
    """Random gets, short scans and whole-block reads; every answer checked,
    and the bound after each operation."""
    capacity = cache.capacity_bytes
    for _ in range(ops):
        table, entries = rng.choice(tables)
        r = rng.random()
        if r < 0.8:
            i = rng.randrange(len(entries))
            assert table.get(b"k%05d" % i, MAX_SEQUENCE) == entries[i][1]
        elif r < 0.9:
            i = rng.randrange(len(entries))
            it = table.iterator()
            it.seek(entries[i][0])
            for want in entries[i:i + 40]:
                assert it.valid() and (it.key(), it.value()) == want
                it.next()
        else:
            handles = index_entries(table)
            j = rng.randrange(len(handles))
            rows = block_rows(table.read_data_block(handles[j][1]))
            assert rows and rows[0] in entries
        if check_each:
            assert cache.used_bytes <= capacity, (cache.used_bytes, capacity)


# -- construction and the shard count ------------------------------------------------------

@pytest.mark.parametrize("capacity, shards", [
    (0, 1), (1, 1), (4 * KIB, 1), (2 * MIN_SHARD_BYTES - 1, 1),
    (2 * MIN_SHARD_BYTES, 2), (4 * MIN_SHARD_BYTES - 1, 2), (4 * MIN_SHARD_BYTES, 4),
    (8 * MIN_SHARD_BYTES, 8), (16 * MIN_SHARD_BYTES - 1, 8), (16 * MIN_SHARD_BYTES, 16),
    (64 * MIB, 16), (1 << 40, 16),
])
def test_shard_count_scales_with_capacity(capacity, shards):
    cache = BlockCache(capacity)
    assert cache.num_shards == shards
    assert cache.capacity_bytes == capacity
    assert cache.enabled == (capacity > 0)
    assert (len(cache), cache.used_bytes, cache.hits, cache.misses) == (0, 0, 0, 0)
    # Every shard gets at least MIN_SHARD_BYTES once there are several.
    assert shards == 1 or capacity // shards >= MIN_SHARD_BYTES
    assert "BlockCache" in repr(cache)
    cache.clear()                                    # empty clear is harmless
    assert len(cache) == 0


def test_negative_capacity_is_refused():
    with pytest.raises(OverflowError):
        BlockCache(-1)


# -- accounting -------------------------------------------------------------------------

def test_hits_misses_and_bytes_are_exact(tmp_path):
    path, size, entries = many_block_table(tmp_path, n=300, bloom_bits_per_key=0)
    # Block sizes as the cache charges them (uncompressed size + overhead).
    layout = data_blocks(open_table(path, size))
    keys_by_block = [[k[:-8] for k, _ in rows] for _, _, rows in layout]
    sizes = [open_table(path, size).read_data_block(h).size for _, h, _ in layout]
    cache = BlockCache(1 * MIB)
    table = open_table(path, size, block_cache=cache)
    assert (cache.hits, cache.misses) == (0, 0)            # opening reads no data block
    for j, keys in enumerate(keys_by_block):
        for n, key in enumerate(keys):
            table.get(key, MAX_SEQUENCE)
            # One lookup per get: the first of a block misses, the rest hit.
            assert cache.misses == j + 1
            assert cache.hits == sum(len(ks) - 1 for ks in keys_by_block[:j]) + n
        assert len(cache) == j + 1
        assert cache.used_bytes == sum(sizes[:j + 1]) + (j + 1) * ENTRY_OVERHEAD_BYTES
    total_gets = sum(len(ks) for ks in keys_by_block)
    assert cache.hits + cache.misses == total_gets
    # A key past the last block never reaches the cache...
    before = (cache.hits, cache.misses)
    assert table.get(b"zzzz", MAX_SEQUENCE) is None
    assert before == (cache.hits, cache.misses)
    # ...but one between keys of a block does (the block is searched).
    assert table.get(keys_by_block[0][0] + b"\x00", MAX_SEQUENCE) is None
    assert (cache.hits, cache.misses) == (before[0] + 1, before[1])
    # clear() drops the blocks, keeps the counters, and the next read misses.
    hits, misses = cache.hits, cache.misses
    cache.clear()
    assert (len(cache), cache.used_bytes, cache.hits, cache.misses) == (0, 0, hits, misses)
    assert table.get(keys_by_block[1][0], MAX_SEQUENCE) == dict(entries)[ikey(keys_by_block[1][0], 5)]
    assert (cache.hits, cache.misses, len(cache)) == (hits, misses + 1, 1)


def test_bloom_filtered_gets_do_not_touch_the_cache(tmp_path):
    path, size, entries = many_block_table(tmp_path, n=300, bloom_bits_per_key=10)
    cache = BlockCache(1 * MIB)
    table = open_table(path, size, block_cache=cache)
    # Between two present keys: a lookup that passes the bloom filter searches a block.
    absent = [b"k%05d" % i + b"-absent" for i in range(299)]
    passed = sum(1 for k in absent if table.may_contain(k))
    for k in absent:
        assert table.get(k, MAX_SEQUENCE) is None
    # Only bloom false positives search a block.
    assert cache.hits + cache.misses == passed


# -- the capacity bound -------------------------------------------------------------------

@pytest.mark.parametrize("capacity", [1 * KIB, 3 * KIB, 16 * KIB, 64 * KIB])
def test_capacity_bound_under_random_reads_one_shard(small_tables, capacity):
    cache = BlockCache(capacity)
    assert cache.num_shards == 1
    tables = small_tables.open_all(cache)
    random_reads(random.Random(capacity), tables, cache, 700)
    assert 0 < len(cache)
    assert 0 < cache.used_bytes <= capacity
    # Eviction happened: the tables' blocks do not fit.
    total_blocks = sum(t.properties.data_blocks for t, _ in tables)
    assert len(cache) < total_blocks
    assert cache.misses > len(cache)


def test_capacity_bound_with_two_shards(big_tables):
    capacity = 2 * MIN_SHARD_BYTES + 3 * KIB
    cache = BlockCache(capacity)
    assert cache.num_shards == 2
    tables = big_tables.open_all(cache)
    total_blocks = sum(t.properties.data_blocks for t, _ in tables)
    rng = random.Random(11)
    # Full scans first: every block passes through the cache.
    for table, entries in tables:
        assert scan_forward(table.iterator()) == entries
        assert cache.used_bytes <= capacity
    assert cache.misses == total_blocks
    random_reads(rng, tables, cache, 600)
    assert cache.used_bytes <= capacity
    # Both shards are filled: more than one shard's capacity is in use.
    assert cache.used_bytes > capacity // 2
    assert len(cache) < total_blocks


def test_blocks_larger_than_a_shard_are_served_but_not_kept(small_tables):
    cache = BlockCache(200)                  # less than any block plus its overhead
    tables = small_tables.open_all(cache)
    random_reads(random.Random(3), tables, cache, 200)
    assert (len(cache), cache.used_bytes, cache.hits) == (0, 0, 0)
    assert cache.misses > 0


def test_disabled_cache_still_serves_reads(small_tables):
    cache = BlockCache(0)
    assert not cache.enabled and cache.num_shards == 1
    tables = small_tables.open_all(cache)
    gets = 0
    for table, entries in tables:
        for i in range(0, len(entries), 7):
            assert table.get(b"k%05d" % i, MAX_SEQUENCE) == entries[i][1]
            gets += 1
        assert scan_forward(table.iterator()) == entries
        handle = index_entries(table)[1][1]
        assert block_rows(table.read_data_block(handle))
    assert (len(cache), cache.used_bytes, cache.hits) == (0, 0, 0)
    assert cache.misses >= gets                # every lookup misses and reads the file


# -- pinned blocks ---------------------------------------------------------------------------

def test_pinned_blocks_survive_clear(small_tables):
    cache = BlockCache(1 * MIB)
    (table, _), = small_tables.open_all(cache)[:1]
    layout = data_blocks(table)
    held = [(table.read_data_block(h), rows) for _, h, rows in layout[:5]]
    again = table.read_data_block(layout[0][1])        # a second pin of block 0 (a hit)
    assert len(cache) == len(layout)
    cache.clear()
    assert (len(cache), cache.used_bytes) == (0, 0)
    for block, rows in held:
        assert block_rows(block) == rows
    assert block_rows(again) == layout[0][2]
    del held
    assert block_rows(again) == layout[0][2]
    # The cleared blocks are read again on demand.
    misses = cache.misses
    assert block_rows(table.read_data_block(layout[0][1])) == layout[0][2]
    assert cache.misses == misses + 1


def test_pinned_block_survives_eviction(small_tables):
    cache = BlockCache(2 * KIB)                          # two or three blocks
    tables = small_tables.open_all(cache)
    first, _ = tables[0]
    sep, handle, rows = data_blocks(first)[0]
    block = first.read_data_block(handle)
    it = block.iterator()
    it.seek_to_first()
    assert (it.key(), it.value()) == rows[0]
    # Read every block of the other tables: block 0 is evicted long ago.
    for table, entries in tables[1:]:
        assert scan_forward(table.iterator()) == entries
        assert cache.used_bytes <= cache.capacity_bytes
    misses = cache.misses
    first.read_data_block(handle)
    assert cache.misses == misses + 1                    # it was no longer cached
    # The held block and an iterator positioned in it still read correctly.
    got = [(it.key(), it.value())]
    it.next()
    while it.valid():
        got.append((it.key(), it.value()))
        it.next()
    assert got == rows
    assert block_rows(block) == rows


def test_pinned_block_outlives_its_table_and_cache(small_tables):
    for capacity in (0, 1 * MIB):
        cache = BlockCache(capacity)
        (table, _), = small_tables.open_all(cache)[:1]
        layout = data_blocks(table)
        block = table.read_data_block(layout[2][1])
        it = block.iterator()
        del table, cache
        assert block_rows(block) == layout[2][2]
        it.seek(layout[2][2][-1][0])
        assert (it.key(), it.value()) == layout[2][2][-1]
        del block
        it.seek_to_first()
        assert (it.key(), it.value()) == layout[2][2][0]


# A pinned Block keeps its BlockCache alive through Block.owner, but Cython's
# generated tp_clear for Block drops `owner` when the garbage collector
# breaks a reference cycle the Block is part of.  If that was the cache's
# last reference the cache is freed, and Block.__dealloc__ then calls
# cache_release() on a handle whose shard (and its mutex) went with it.
#
# Two detectors run the repro in a child: glibc with the thread cache off
# and MALLOC_PERTURB_=64 fills the freed shard with 0x40 bytes, so the
# dangling pthread_mutex_lock sees a priority-protect mutex kind and glibc
# aborts at once (fast, glibc only); valgrind reports the invalid read in
# cache_release (slow).  Without the cycle the same script runs clean.
_GC_CYCLE_REPRO = textwrap.dedent("""
    import gc, os, sys, tempfile
    from kvcy._table_builder import TableBuilder
    from kvcy.cache import BlockCache
    from kvcy.dbformat import encode_internal_key
    from kvcy.env import PosixEnv
    from kvcy.options import Options
    from kvcy.table import Table
    from kvcy.table_format import BlockHandle
    env = PosixEnv()
    path = os.path.join(tempfile.mkdtemp(), "000001.sst")
    f = env.new_writable_file(path)
    b = TableBuilder(f, Options(), path)
    b.add(encode_internal_key(b"k", 1, 1), b"v")
    size = b.finish()
    f.close()
    gc.disable()
    cache = BlockCache(1 << 20)
    table = Table.open(env.new_random_access_file(path), size, 1, cache)
    it = table.index.iterator()
    it.seek_to_first()
    block = table.read_data_block(BlockHandle.decode(it.value())[0])
    holder = [block]
    if sys.argv[1] == "cycle":
        holder.append(holder)       # the block is garbage only as part of a cycle
    del block, table, cache, it
    assert holder[0].size > 0
    del holder
    gc.collect()
    print("done")
""")

def run_gc_repro(tmp_path, how, prefix=(), extra_env=None, timeout=60):
    script = tmp_path / "repro.py"
    script.write_text(_GC_CYCLE_REPRO)
    env = dict(os.environ, **(extra_env or {}))
    try:
        return subprocess.run(list(prefix) + [sys.executable, str(script), how],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("the repro hung (a dangling mutex looked locked)")


GLIBC_PERTURB = {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0", "MALLOC_PERTURB_": "64"}


def needs_glibc():
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("the MALLOC_PERTURB_ detector needs glibc")


def test_pinned_block_outside_a_cycle_under_malloc_perturb(tmp_path):
    # The detector's control: no cycle, no use-after-free, a clean exit.
    needs_glibc()
    proc = run_gc_repro(tmp_path, "plain", extra_env=GLIBC_PERTURB)
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr[-3000:]


def test_pinned_block_in_a_gc_cycle_under_malloc_perturb(tmp_path):
    needs_glibc()
    proc = run_gc_repro(tmp_path, "cycle", extra_env=GLIBC_PERTURB)
    assert proc.returncode == 0 and "done" in proc.stdout, (proc.returncode,
                                                            proc.stderr[-3000:])


@pytest.mark.slow
@pytest.mark.parametrize("how", [
    "plain", "cycle"])
def test_pinned_block_in_a_gc_cycle_under_valgrind(tmp_path, how):
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.skip("valgrind is not installed")
    proc = run_gc_repro(tmp_path, how, prefix=[valgrind, "-q", "--undef-value-errors=no"],
                        timeout=300)
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr[-3000:]
    # Only errors inside kvcy's cache count: the bug, not valgrind noise from Python.
    assert "cache_release" not in proc.stderr, proc.stderr[-3000:]


# -- concurrent readers ------------------------------------------------------------------------

def run_threads(target, count):
    errors = []

    def guarded(i):
        try:
            target(i)
        except BaseException as exc:            # reported by the main thread
            errors.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)                  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "a reader hung"
    finally:
        sys.setswitchinterval(old)
    if errors:
        raise errors[0]


@pytest.mark.parametrize("which, capacity", [("small", 2 * KIB), ("small", 8 * KIB),
                                             ("big", 2 * MIN_SHARD_BYTES)])
def test_eight_threads_share_a_small_cache(request, which, capacity):
    tableset = request.getfixturevalue(which + "_tables")
    cache = BlockCache(capacity)
    tables = tableset.open_all(cache)
    layouts = [[(h, rows) for _, h, rows in data_blocks(t)] for t, _ in tables]
    cache.clear()
    hits0, misses0 = cache.hits, cache.misses
    lookups = [0] * 8
    ops = 4000 if which == "small" else 2000

    def reader(n):
        rng = random.Random(n)
        for step in range(ops):
            t = rng.randrange(len(tables))
            table, entries = tables[t]
            r = rng.random()
            if r < 0.85:
                i = rng.randrange(len(entries))
                assert table.get(b"k%05d" % i, MAX_SEQUENCE) == entries[i][1]
            elif r < 0.99:
                handle, rows = rng.choice(layouts[t])
                block = table.read_data_block(handle)
                assert block_rows(block) == rows
            else:
                cache.clear()
                lookups[n] -= 1                  # not a lookup
            lookups[n] += 1
            assert cache.used_bytes <= capacity

    run_threads(reader, 8)
    assert cache.used_bytes <= capacity
    # Counters are kept under the shard locks: none lost.
    assert (cache.hits - hits0) + (cache.misses - misses0) == sum(lookups)
    assert cache.misses - misses0 > len(cache)           # constant eviction
    for table, entries in tables:                        # still consistent afterwards
        assert scan_forward(table.iterator()) == entries


def test_eight_threads_read_through_the_engine_without_the_gil(tmp_path):
    # The C read path: lookups, preads and cache inserts without the GIL.
    options = dict(block_size=256, block_cache_bytes=4 * KIB, target_file_bytes=8 * KIB,
                   bloom_bits_per_key=0, compression="snappy")
    model = {}
    with kvcy.connect(tmp_path / "db", **options) as conn:
        rng = random.Random(5)
        for part in range(6):                            # several tables
            batch = {b"key%05d" % rng.randrange(3000): b"%d-" % part * rng.randrange(1, 40)
                     for _ in range(500)}
            conn.put_many(batch)
            model.update(batch)
            conn.flush()
        conn.compact_range(None, b"key01500")
        keys = sorted(model)
        stats = conn.stats()
        assert sum(v for k, v in stats.items() if k.endswith("_files")) >= 3

        def reader(n):
            r = random.Random(n)
            for _ in range(1500):
                if r.random() < 0.8:
                    k = r.choice(keys)
                    assert conn.get(k) == model[k]
                else:
                    ks = r.sample(keys, 20)
                    assert conn.get_many(ks) == [model[k] for k in ks]

        run_threads(reader, 8)
        stats = conn.stats()
        assert stats["block_cache_bytes"] <= 4 * KIB
        assert stats["block_cache_misses"] > 100


# The debug-build deadlock, in a child process with a watchdog
# (faulthandler exits from its own thread, whoever holds the GIL).
_THREADS_CHILD = textwrap.dedent("""
    import faulthandler, pathlib, random, sys, tempfile, threading
    faulthandler.dump_traceback_later(%(watchdog)d, exit=True)
    sys.path.insert(0, %(tests)r)
    from test_block_cache import TableSet
    from kvcy.cache import BlockCache
    from kvcy.dbformat import MAX_SEQUENCE
    tables = TableSet(pathlib.Path(tempfile.mkdtemp()), 4, 600, 60, 512, "snappy")
    cache = BlockCache(2048)
    opened = tables.open_all(cache)
    sys.setswitchinterval(1e-5)

    def reader(n):
        rng = random.Random(n)
        for _ in range(3000):
            table, entries = rng.choice(opened)
            i = rng.randrange(len(entries))
            assert table.get(b"k%%05d" %% i, MAX_SEQUENCE) == entries[i][1]
            cache.used_bytes

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("done")
""")


def test_threads_sharing_a_cache_do_not_deadlock(tmp_path):
    script = tmp_path / "threads.py"
    script.write_text(_THREADS_CHILD % dict(watchdog=60, tests=os.path.dirname(
        os.path.abspath(__file__))))
    try:
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the readers deadlocked and the watchdog did not fire")
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr[-4000:]
