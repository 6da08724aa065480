"""Shared helpers for the iterator tests (test_iterator, test_merge, test_db_iter).

Builders turn a list of internal entries into each kind of InternalIterator
(memtable, block, table, level of tables), and the drivers read any
InternalIterator back into a list through its Python face, so every test
compares an iterator against a plain sorted list.
"""
from kvcy._block import Block
from kvcy._block_builder import BlockBuilder
from kvcy._memtable import MemTable
from kvcy._table_builder import TableBuilder
from kvcy.dbformat import KIND_DELETE, KIND_VALUE, encode_internal_key, parse_internal_key
from kvcy.options import Options
from kvcy.table import Table
from kvcy.version_edit import FileMetaData


def ikey(user_key, seq, kind=KIND_VALUE):
    return encode_internal_key(user_key, seq, kind)


def order(k):
    """Sort key of an internal key: user key ascending, tag descending."""
    user_key, seq, kind = parse_internal_key(k)
    return (user_key, -((seq << 8) | kind))


def sorted_entries(entries):
    """entries [(internal key, value)] in internal-key order."""
    return sorted(entries, key=lambda e: order(e[0]))


# -- builders -------------------------------------------------------------------

def build_memtable(entries):
    mem = MemTable()
    for k, v in entries:
        user_key, seq, kind = parse_internal_key(k)
        mem.add(seq, kind, user_key, v if kind == KIND_VALUE else None)
    return mem


def build_block(entries, restart_interval=4):
    b = BlockBuilder(restart_interval)
    for k, v in sorted_entries(entries):
        b.add(k, v)
    return Block(b.finish())


class MemFile:
    """An in-memory file: what TableBuilder appends to and Table.open reads."""

    def __init__(self, path="mem.sst"):
        self.path = path
        self.data = bytearray()
        self.reads = 0

    def append(self, data):
        self.data += data

    def read(self, offset, n):
        self.reads += 1
        return bytes(self.data[offset:offset + n])

    def close(self):
        pass


def build_table(entries, number=1, block_size=256, compression="none", restart_interval=4):
    """A Table holding entries; returns (table, FileMetaData)."""
    options = Options(block_size=block_size, compression=compression,
                      restart_interval=restart_interval, bloom_bits_per_key=10)
    file = MemFile("%06d.sst" % number)
    builder = TableBuilder(file, options, file.path)
    ordered = sorted_entries(entries)
    for k, v in ordered:
        builder.add(k, v)
    size = builder.finish()
    table = Table.open(file, size, number)
    meta = FileMetaData(number, size, ordered[0][0], ordered[-1][0]) if ordered else None
    return table, meta


def build_level(runs, block_size=256):
    """Tables from runs (lists of entries, each run's user keys disjoint from
    and ordered before the next's); returns (files, {number: Table})."""
    files, tables = [], {}
    for i, run in enumerate(runs):
        table, meta = build_table(run, number=i + 10, block_size=block_size)
        files.append(meta)
        tables[meta.number] = table
    return files, tables


# -- drivers --------------------------------------------------------------------

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


def entry(it):
    """(key, value) under the iterator, or None when it is not valid."""
    return (it.key(), it.value()) if it.valid() else None


def first_at_or_after(model, target):
    """Index in the sorted model of the first entry >= target (len when none)."""
    t = order(target)
    for i, (k, _) in enumerate(model):
        if order(k) >= t:
            return i
    return len(model)


def random_entries(rng, n, user_keys=20, max_seq=100, tombstones=True):
    """n entries with distinct (user key, sequence) pairs."""
    seen = set()
    out = []
    while len(out) < n:
        uk = b"k%03d" % rng.randrange(user_keys)
        seq = rng.randrange(1, max_seq)
        if (uk, seq) in seen:
            continue
        seen.add((uk, seq))
        kind = KIND_DELETE if tombstones and rng.random() < 0.2 else KIND_VALUE
        value = b"" if kind == KIND_DELETE else b"v%d-%s" % (seq, uk)
        out.append((ikey(uk, seq, kind), value))
    return out
