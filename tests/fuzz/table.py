"""Fuzz target: a whole table opened from arbitrary bytes (kvcy.table.Table:
footer, index, filter, properties, then the C point lookup and the
TableIterator and TableRun scans).

Input: one mode byte, then the table's bytes.  Mode bits:
  0-1  0: the bytes as they are (the checksums stand guard);
       1: checksums re-fixed first (table_bytes.refix_table), so mutated
          blocks reach the decoders;
       2, 3: a round trip: entries made from the bytes are written by
          TableBuilder (options from bits 4-7; 3 with partitioned index
          and filters) and read back, and every lookup and scan must
          return exactly what was written.
  2    read through a real file (RandomAccessFile: its mapping, or pread,
       without the GIL; a partitioned table's partitions in place)
       instead of file.read();
  3    with a block cache.
Checks, on hostile bytes: Table.open and every read yield values or
CorruptionError; the forward and backward scans agree; TableRun (the
compaction's scan in C) sees what TableIterator sees; get() returns a
value, DELETED or None.
"""
import atexit
import os
import shutil
import tempfile

from kvcy._table_builder import TableBuilder
from kvcy._table_scan import TableRun
from kvcy.cache import BlockCache
from kvcy.dbformat import DELETED, KIND_VALUE, MAX_SEQUENCE
from kvcy.env import PosixEnv
from kvcy.options import Options
from kvcy.table import Table

from .iterator_check import expected_get, lookups, walk
from .table_bytes import MemoryFile, MemoryWritable, entries_from, refix_table

SEEDS = "tables: one mode byte + every .sst the engine wrote in a small workload"

_ENV = PosixEnv()
_TMP = None


def _real_file(data):
    """A RandomAccessFile over data, written to a scratch directory."""
    global _TMP
    if _TMP is None:
        _TMP = tempfile.mkdtemp(prefix="kvcy-fuzz-table-", dir="/dev/shm"
                                if os.path.isdir("/dev/shm") else None)
        atexit.register(shutil.rmtree, _TMP, True)
    path = os.path.join(_TMP, "000001.sst")
    with open(path, "wb") as f:
        f.write(data)
    return _ENV.new_random_access_file(path)


def build(entries, mode):
    """Table bytes of entries, with options chosen by the mode's high bits."""
    options = Options(compression="snappy" if mode & 16 else "none",
                      block_size=(256, 512, 1024, 4096)[(mode >> 5) & 3],
                      bloom_bits_per_key=10 if mode & 128 else 0,
                      restart_interval=1 + (mode >> 5) % 16,
                      partitioned_index=bool(mode & 1))
    sink = MemoryWritable()
    builder = TableBuilder(sink, options)
    for key, value in entries:
        builder.add(key, value)
    builder.finish()
    return sink.getvalue()


def _as_row(found):
    """Table.get's answer in Block.get's shape minus the sequence."""
    if found is None:
        return None
    return ("del",) if found is DELETED else ("put", found)


def fuzz_one(data):
    if not data:
        return
    mode, body = data[0], data[1:]
    entries = None
    if mode & 2:
        entries = entries_from(body)
        body = build(entries, mode)
    elif mode & 1:
        body = refix_table(body)
    file = _real_file(body) if mode & 4 else MemoryFile(body)
    try:
        cache = BlockCache(1 << 16) if mode & 8 else None
        table = Table.open(file, len(body), 1, cache)
        check_table(table, body, entries)
    finally:
        if mode & 4:
            file.close()


def check_table(table, body, written):
    # Every entry takes at least 11 bytes of some block.
    scanned, _ = walk(table.iterator, len(body) // 11 + 2, body[-80:-64],
                      compare_seeks=written is not None)
    if written is not None and scanned != written:
        raise AssertionError("the table gave back %d entries, %d were written"
                             % (len(scanned), len(written)))
    run = TableRun([table]).entries()
    if run != scanned:
        raise AssertionError("TableRun saw %d entries, TableIterator %d"
                             % (len(run), len(scanned)))
    for user_key, sequence in lookups(scanned):
        got = table.get(user_key, sequence)
        if got is not None and got is not DELETED and type(got) is not bytes:
            raise AssertionError("Table.get returned %r" % (got,))
        if written is not None:
            want = expected_get(written, user_key, sequence)
            want = None if want is None else (("put", want[1]) if want[0] == KIND_VALUE
                                               else ("del",))
            if _as_row(got) != want:
                raise AssertionError("Table.get(%r, %d) gave %r, %r was written"
                                     % (user_key, sequence, got, want))
    table.get(b"", MAX_SEQUENCE)
