"""Table: the reader of one SSTable file.

open() reads and checks the footer, the index block, the bloom filter and
the properties.  get() answers a point lookup: bloom filter (a negative
answer costs no block read), index seek, then one data block, found in the
block cache or read, checked and decompressed.  iterator() walks the whole
table in internal-key order (two levels: index, then data blocks).

Thread-safety: a Table is immutable after open; any number of threads may
call get() and create iterators (reads use pread).  The file is closed when
the last reference to the Table goes away, so a reader that still holds a
Table keeps reading it even after the table cache dropped it or the file
was deleted.
"""
import contextlib
import struct

from kvcy._block import Block
from kvcy._bloom import BloomFilter
from kvcy._two_level import TwoLevelIterator
from kvcy.dbformat import DELETED, KIND_DELETE, KIND_FOR_SEEK, MAX_SEQUENCE
from kvcy.errors import CorruptionError
from kvcy.table_format import FOOTER_BYTES, BlockHandle, Footer, read_block
from kvcy.table_properties import TableProperties

_TAG = struct.Struct("<Q")


def _named(exc, path, kind, offset):
    """exc (a decoder's CorruptionError) restated with the table and block it came from."""
    if path in str(exc):
        return exc
    where = " at offset %d" % offset if offset is not None else ""
    return CorruptionError("table %s: %s block%s: %s" % (path, kind, where, exc))


@contextlib.contextmanager
def _naming(path, kind, offset):
    """Re-raise a decoder's CorruptionError with the table and block it came from
    (for the cold paths: open, block reads)."""
    try:
        yield
    except CorruptionError as exc:
        named = _named(exc, path, kind, offset)
        if named is exc:
            raise
        raise named from exc


class Table:
    __slots__ = ("file", "file_size", "number", "path", "index", "bloom", "properties",
                 "block_cache", "row_cache", "__weakref__")

    def __init__(self, file, file_size, number, index, bloom, properties,
                 block_cache=None, row_cache=None):
        self.file = file
        self.file_size = file_size
        self.number = number
        self.path = file.path
        self.index = index
        self.bloom = bloom
        self.properties = properties
        self.block_cache = block_cache
        self.row_cache = row_cache

    @classmethod
    def open(cls, file, file_size, number=0, block_cache=None, row_cache=None):
        path = file.path
        if file_size < FOOTER_BYTES:
            raise CorruptionError("table %s: %d bytes is too short to be a table"
                                  % (path, file_size))
        footer_bytes = file.read(file_size - FOOTER_BYTES, FOOTER_BYTES)
        footer = Footer.decode(footer_bytes, path)
        with _naming(path, "index", footer.index.offset):
            index = Block(read_block(file, footer.index, file_size, path, "index"))
        bloom = None
        if footer.filter.size:
            with _naming(path, "filter", footer.filter.offset):
                bloom = BloomFilter(read_block(file, footer.filter, file_size, path, "filter"))
        with _naming(path, "properties", footer.properties.offset):
            properties = TableProperties.decode(
                read_block(file, footer.properties, file_size, path, "properties"))
        return cls(file, file_size, number, index, bloom, properties, block_cache, row_cache)

    def read_data_block(self, handle):
        cache = self.block_cache
        if cache is not None:
            key = (self.number, handle.offset)
            block = cache.get(key)
            if block is not None:
                return block
        return self._read_uncached(handle)

    def _read_uncached(self, handle):
        """Read, check and decode a data block, and add it to the block cache."""
        with _naming(self.path, "data", handle.offset):
            block = Block(read_block(self.file, handle, self.file_size, self.path))
        if self.block_cache is not None:
            self.block_cache.put((self.number, handle.offset), block)
        return block

    def block_from_index_value(self, value):
        """The data block an index entry's value (an encoded handle) points at."""
        with _naming(self.path, "index", None):
            handle, end = BlockHandle.decode(value)
        if end != len(value):
            raise CorruptionError("table %s: bad block handle in the index" % self.path)
        return self.read_data_block(handle)

    def may_contain(self, user_key):
        """False iff the bloom filter proves the table holds no entry for user_key."""
        return self.bloom is None or self.bloom.may_contain(user_key)

    def get(self, user_key, sequence):
        """Newest entry of user_key with sequence <= `sequence`: value, DELETED or None."""
        if sequence > MAX_SEQUENCE:
            sequence = MAX_SEQUENCE
        if self.bloom is not None and not self.bloom.may_contain(user_key):
            return None
        row_cache = self.row_cache
        if row_cache is not None and row_cache.enabled:
            row = row_cache.get((self.number, user_key), False)
            if row is None:
                return None                       # the table holds nothing for the key
            if row is not False and row[0] <= sequence:
                return DELETED if row[1] == KIND_DELETE else row[2]
            if row is False:
                newest = self._lookup(user_key, (1 << 56) - 1)
                row_cache.put((self.number, user_key), newest)
                if newest is None:
                    return None
                if newest[0] <= sequence:
                    return DELETED if newest[1] == KIND_DELETE else newest[2]
        found = self._lookup(user_key, sequence)
        if found is None:
            return None
        return DELETED if found[1] == KIND_DELETE else found[2]

    def _lookup(self, user_key, sequence):
        """(sequence, kind, value) of the newest entry <= sequence, or None."""
        try:
            handle = self.index.index_lookup(user_key, sequence)
        except CorruptionError as exc:
            raise _named(exc, self.path, "index", None) from exc
        if handle is None:
            return None
        cache = self.block_cache
        block = cache.get((self.number, handle[0])) if cache is not None else None
        if block is None:
            block = self._read_uncached(BlockHandle(handle[0], handle[1]))
        try:
            found = block.get(user_key, sequence)
        except CorruptionError as exc:
            raise _named(exc, self.path, "data", handle[0]) from exc
        if found is None:
            return None
        kind, value, seq = found
        return seq, kind, value

    def iterator(self):
        """A TwoLevelIterator (kvcy._two_level) over every entry, not yet positioned."""
        return TwoLevelIterator(self)

    def approximate_offset_of(self, ikey):
        it = self.index.iterator()
        it.seek(ikey)
        if it.valid():
            handle, _ = BlockHandle.decode(it.value())
            return handle.offset
        return self.properties.stored_data_bytes
