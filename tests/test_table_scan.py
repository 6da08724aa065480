"""Tests for kvcy._table_scan.TableRun: the C reader that feeds compactions.

A run is read front to back through every table and block; checked against
the entries the tables were built from, for runs of one and several tables,
empty tables, every table knob, tables read through a Python file object
(the fault env's path, which takes the GIL per block), and damage: a flipped
byte in a data block or an unknown entry kind must stop the run with a
CorruptionError naming the table, never with wrong entries.  (A damaged
index is refused when the table opens: test_table_format.py.)  Blocks a run reads must not enter the block cache.
"""
import os
import struct
import subprocess
import sys

import pytest

from kvcy._table_scan import TableRun
from kvcy.cache import BlockCache
from kvcy.dbformat import KIND_DELETE, KIND_VALUE
from kvcy.errors import CorruptionError, OperationalError
from kvcy.table import Table

from fault_env import FaultEnv
from test_table import ENV, KNOBS, build_table, ikey, index_entries, open_table


def make_tables(tmp_path, sizes, **knobs):
    """Tables 1..len(sizes) of consecutive keys; (tables, all entries in order)."""
    tables, everything, k = [], [], 0
    for number, n in enumerate(sizes, start=1):
        entries = []
        for _ in range(n):
            kind = KIND_DELETE if k % 7 == 3 else KIND_VALUE
            entries.append((ikey(b"key%06d" % k, 1000 - k % 50, kind),
                            b"" if kind == KIND_DELETE else b"value-%d-" % k * (k % 9)))
            k += 1
        path = tmp_path / ("%06d.sst" % number)
        build_table(path, entries, **knobs)
        tables.append(open_table(path, number=number))
        everything.extend(entries)
    return tables, everything


@pytest.mark.parametrize("knobs", KNOBS[:8], ids=lambda k: "-".join(map(str, k.values())))
def test_run_reads_every_entry_of_every_table_in_order(tmp_path, knobs):
    tables, entries = make_tables(tmp_path, [300, 1, 0, 450], **knobs)
    assert TableRun(tables).entries() == entries
    assert TableRun(tables[:1]).entries() == entries[:300]


def test_empty_runs(tmp_path):
    tables, _ = make_tables(tmp_path, [0, 0])
    assert TableRun([]).entries() == []
    assert TableRun(tables).entries() == []


def test_a_run_can_be_read_twice(tmp_path):
    tables, entries = make_tables(tmp_path, [200, 200], block_size=256)
    run = TableRun(tables)
    assert run.entries() == entries
    assert run.entries() == entries


def test_run_refuses_what_is_not_a_table():
    with pytest.raises(TypeError):
        TableRun([object()])


def test_blocks_read_by_a_run_stay_out_of_the_cache(tmp_path):
    path = tmp_path / "000001.sst"
    entries = [(ikey(b"k%05d" % i, 5), b"v" * 50) for i in range(2000)]
    size, _ = build_table(path, entries, block_size=512)
    cache = BlockCache(1 << 20)
    table = Table.open(ENV.new_random_access_file(str(path)), size, 1, cache)
    assert TableRun([table]).entries() == entries
    assert cache.used_bytes == 0
    # A block the cache already holds is used from there (a hit, no copy kept).
    assert table.get(b"k00000", 9) == b"v" * 50
    usage, hits = cache.used_bytes, cache.hits
    assert TableRun([table]).entries() == entries
    assert cache.used_bytes == usage and cache.hits == hits + 1


def test_run_through_a_python_file_object(tmp_path):
    tables, entries = make_tables(tmp_path, [120, 80], block_size=256)
    env = FaultEnv()
    slow = []
    for t in tables:
        file = env.new_random_access_file(t.path)
        slow.append(Table.open(file, os.path.getsize(t.path), 1))
    assert TableRun(slow).entries() == entries


def test_run_raises_what_the_python_file_raises(tmp_path):
    tables, _ = make_tables(tmp_path, [120], block_size=256)
    env = FaultEnv()
    table = Table.open(env.new_random_access_file(tables[0].path),
                       os.path.getsize(tables[0].path), 1)
    env.fail_after(0, ops=("read",))
    with pytest.raises(OperationalError) as info:
        TableRun([table]).entries()
    assert "read" in str(info.value)


def damaged_copy(tmp_path, table, offset, new_byte=None, xor=0x40):
    """A copy of table's file with one byte changed; the reopened Table."""
    data = bytearray(open(table.path, "rb").read())
    data[offset] = new_byte if new_byte is not None else data[offset] ^ xor
    path = tmp_path / ("damaged-%d.sst" % offset)
    path.write_bytes(bytes(data))
    return open_table(path, number=99)


def test_flipped_byte_in_a_data_block_stops_the_run(tmp_path):
    tables, _ = make_tables(tmp_path, [400], block_size=512, compression="none")
    blocks = [handle for _, handle in index_entries(tables[0])]
    for handle in (blocks[0], blocks[len(blocks) // 2], blocks[-1]):
        bad = damaged_copy(tmp_path, tables[0], handle.offset + handle.size // 2)
        with pytest.raises(CorruptionError) as info:
            TableRun([tables[0], bad]).entries()
        assert "damaged-" in str(info.value) and "checksum" in str(info.value)


def test_unknown_kind_byte_with_a_valid_checksum_stops_the_run(tmp_path):
    # Built through the builder, so the CRC covers the bad kind: only the
    # scan's own check can catch it.
    path = tmp_path / "000001.sst"
    good = [(ikey(b"a", 5), b"x"), (ikey(b"b", 5), b"y")]
    bad_key = b"b" + struct.pack("<Q", (4 << 8) | 0x7E)
    build_table(path, [good[0], (bad_key, b"y")], compression="none")
    with pytest.raises(CorruptionError) as info:
        TableRun([open_table(path)]).entries()
    assert "kind" in str(info.value)
    build_table(tmp_path / "000002.sst", good, compression="none")
    assert TableRun([open_table(tmp_path / "000002.sst")]).entries() == good


def test_a_run_holding_a_cached_block_is_collected_safely(tmp_path):
    # A run that stopped on damage keeps its current block, which came from
    # the block cache.  Collected in a cycle through its own tables, it must
    # give the block back before they and the cache go: TableRun is
    # no_gc_clear and holds the caches itself.  (The release into a freed
    # cache this guards against crashes only sometimes; valgrind shows it
    # every time: run this script under valgrind to check.)
    script = r'''
import gc, struct, sys
sys.path.insert(0, %(tests)r)
from kvcy._table_scan import TableRun
from kvcy.cache import BlockCache
from kvcy.errors import CorruptionError
from kvcy.table import Table
from test_table import ENV, build_table, ikey
path = %(path)r
bad_key = b"b" + struct.pack("<Q", (4 << 8) | 0x7E)
size, _ = build_table(path, [(ikey(b"a", 5), b"x"), (bad_key, b"y")], compression="none")
for _ in range(20):
    cache = BlockCache(1 << 20)
    table = Table.open(ENV.new_random_access_file(path), size, 1, cache)
    assert table.get(b"a", 9) == b"x"              # the block is in the cache now
    run = TableRun([table])
    try:
        run.entries()
    except CorruptionError:
        pass
    table.row_cache = run          # a cycle through the run: run -> table -> run
    del run, table, cache
    gc.collect()
print("ok")
''' % {"tests": os.path.dirname(os.path.abspath(__file__)), "path": str(tmp_path / "t.sst")}
    env = dict(os.environ, PYTHONMALLOC="debug")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
