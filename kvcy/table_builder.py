"""TableBuilder: writes one SSTable from internal keys added in order.

Data blocks are cut at about block_size bytes; each finished block gets an
index entry whose key is a short separator (LevelDB's
FindShortestSeparator: a key >= every key of the block and < every key of
the next, often much shorter than either), so the index stays small.  The
bloom filter covers every user key of the table.  Format: table_format.py
and docs/format.md ("Table files").

Not thread-safe; a flush or compaction owns its builder.  REQUIRES: keys are
added in strictly increasing internal-key order (user key ascending, tag
descending).
"""
import struct

from kvcy._block_builder import BlockBuilder
from kvcy._bloom import BloomFilterBuilder
from kvcy.dbformat import KIND_DELETE, KIND_FOR_SEEK, MAX_SEQUENCE
from kvcy.table_format import BlockHandle, Footer, block_trailer, compress_block
from kvcy.table_properties import TableProperties

_MAX_TAG = struct.pack("<Q", (MAX_SEQUENCE << 8) | KIND_FOR_SEEK)


def shortest_separator(start, limit):
    """An internal key k with start <= k < limit, as short as cheaply possible."""
    us, ul = start[:-8], limit[:-8]
    n = min(len(us), len(ul))
    i = 0
    while i < n and us[i] == ul[i]:
        i += 1
    if i < n:
        b = us[i]
        if b < 0xFF and b + 1 < ul[i]:
            shorter = us[:i] + bytes((b + 1,))
            # shorter > us (byte i grew) and < ul (still below ul[i]).
            return shorter + _MAX_TAG
    return start


def short_successor(key):
    """An internal key k >= key, as short as cheaply possible."""
    uk = key[:-8]
    for i, b in enumerate(uk):
        if b != 0xFF:
            return uk[:i] + bytes((b + 1,)) + _MAX_TAG
    return key


class TableBuilder:
    def __init__(self, file, options, path=None):
        self.file = file
        self.path = path or file.path
        self.block_size = options.block_size
        self.compression = options.compression
        self.data_block = BlockBuilder(options.restart_interval)
        self.index_block = BlockBuilder(1)
        bits = options.bloom_bits_per_key
        self.bloom = BloomFilterBuilder(bits) if bits else None
        self.offset = 0
        self.last_key = None
        self.last_user_key = None
        self.pending_handle = None     # handle of the last data block, awaiting its separator
        self.props = TableProperties()
        self.finished = False

    def add(self, ikey, value):
        if self.pending_handle is not None:
            self.index_block.add(shortest_separator(self.last_key, ikey),
                                 self.pending_handle.encode())
            self.pending_handle = None
        user_key = ikey[:-8]
        if user_key != self.last_user_key:
            if self.bloom is not None:
                self.bloom.add_key(user_key)
            self.last_user_key = user_key
        props = self.props
        if props.num_entries == 0:
            props.smallest = ikey
        props.num_entries += 1
        props.raw_key_bytes += len(ikey)
        props.raw_value_bytes += len(value)
        tag = int.from_bytes(ikey[-8:], "little")
        if tag & 0xFF == KIND_DELETE:
            props.num_deletions += 1
        seq = tag >> 8
        if seq < props.smallest_sequence or props.num_entries == 1:
            props.smallest_sequence = seq
        if seq > props.largest_sequence:
            props.largest_sequence = seq
        self.last_key = ikey
        self.data_block.add(ikey, value)
        if self.data_block.current_size_estimate() >= self.block_size:
            self.flush_block()

    def flush_block(self):
        if self.data_block.empty():
            return
        raw = self.data_block.finish()
        self.pending_handle = self._write_block(raw)
        self.props.raw_data_bytes += len(raw)
        self.props.data_blocks += 1
        self.data_block.reset()

    def _write_block(self, raw, compression=None):
        contents, ctype = compress_block(raw, self.compression if compression is None
                                         else compression)
        handle = BlockHandle(self.offset, len(contents))
        self.file.append(contents)
        self.file.append(block_trailer(contents, ctype))
        self.offset += len(contents) + 5
        return handle

    def finish(self):
        """Write filter, properties, index and footer; return the file size."""
        self.flush_block()
        self.props.stored_data_bytes = self.offset
        filter_handle = (self._write_block(self.bloom.finish(), "none")
                         if self.bloom is not None else BlockHandle(0, 0))
        self.props.largest = self.last_key or b""
        props_handle = self._write_block(self.props.encode(), "none")
        if self.pending_handle is not None:
            self.index_block.add(short_successor(self.last_key), self.pending_handle.encode())
            self.pending_handle = None
        index_handle = self._write_block(self.index_block.finish())
        footer = Footer(index_handle, filter_handle, props_handle).encode()
        self.file.append(footer)
        self.offset += len(footer)
        self.finished = True
        return self.offset

    @property
    def num_entries(self):
        return self.props.num_entries

    def file_size(self):
        return self.offset
