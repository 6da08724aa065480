"""Helpers shared by the table targets: in-memory files, re-fixed checksums,
and entries made from fuzz bytes.

refix_table() makes a mutated table's checksums right again (footer CRC,
magic, format version, and the trailer CRC of every block the footer and
the index point at), so that a mutation inside a block reaches the block
decoders instead of stopping at the checksum check.  entries_from() turns
arbitrary bytes into sorted, distinct internal-key entries for round trips.
"""
import struct

from kvcy._block import Block
from kvcy._coding import decode_varint64
from kvcy._crc32c import crc32c, mask
from kvcy.dbformat import KIND_DELETE, KIND_VALUE, encode_internal_key
from kvcy.errors import CorruptionError
from kvcy.table_format import BLOCK_TRAILER_BYTES, FOOTER_BYTES, TABLE_FORMAT_VERSION, TABLE_MAGIC

from .iterator_check import internal_order


class MemoryFile:
    """A random-access file over bytes: what Table reads through file.read()."""

    def __init__(self, data, path="<fuzz table>"):
        self.data = bytes(data)
        self.path = path

    def read(self, offset, n):
        return self.data[offset:offset + n]


class MemoryWritable:
    """An append-only sink for TableBuilder (not a WritableFile, so it is
    written through append())."""

    def __init__(self, path="<fuzz table>"):
        self.parts = []
        self.path = path
        self.size = 0

    def append(self, data):
        self.parts.append(bytes(data))
        self.size += len(data)

    def getvalue(self):
        return b"".join(self.parts)


def _fix_block(buf, offset, size):
    """Rewrite the trailer CRC of the block at (offset, size) if it lies in buf."""
    end = len(buf) - FOOTER_BYTES
    if offset > end or size > end - offset - BLOCK_TRAILER_BYTES:
        return False
    crc = crc32c(bytes(buf[offset + size:offset + size + 1]), crc32c(bytes(buf[offset:offset + size])))
    struct.pack_into("<I", buf, offset + size + 1, mask(crc))
    return True


def refix_table(data):
    """data with its footer and block checksums made valid again."""
    if len(data) < FOOTER_BYTES:
        return data
    buf = bytearray(data)
    start = len(buf) - FOOTER_BYTES
    handles = struct.unpack_from("<QQQQQQ", buf, start)
    struct.pack_into("<I", buf, start + 48, TABLE_FORMAT_VERSION)
    struct.pack_into("<I", buf, start + 52, mask(crc32c(bytes(buf[start:start + 52]))))
    struct.pack_into("<Q", buf, start + 56, TABLE_MAGIC)
    for i in range(0, 6, 2):
        _fix_block(buf, handles[i], handles[i + 1])
    index_offset, index_size = handles[0], handles[1]
    if index_size <= len(buf) and buf[index_offset + index_size:index_offset + index_size + 1] == b"\0":
        try:
            it = Block(bytes(buf[index_offset:index_offset + index_size])).iterator()
            it.seek_to_first()
            while it.valid():
                value = it.value()
                offset, pos = decode_varint64(value, 0)
                size, pos = decode_varint64(value, pos)
                _fix_block(buf, offset, size)
                it.next()
        except CorruptionError:
            pass
    return bytes(buf)


class Consumer:
    """Reads small numbers and byte strings off the front of fuzz bytes."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def byte(self):
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n):
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return bytes(out)

    def left(self):
        return len(self.data) - self.pos


def entries_from(data, limit=300, max_bytes=64 * 1024):
    """Sorted, distinct (internal key, value) entries made from data, at
    most `limit` of them and about max_bytes in all (bigger tables only make
    each execution slower)."""
    c = Consumer(data)
    out = {}
    previous = b""
    total = 0
    while c.left() > 0 and len(out) < limit and total < max_bytes:
        head = c.byte()
        # Share a prefix with the previous key half the time: prefix compression.
        shared = previous[:c.byte() % (len(previous) + 1)] if head & 1 else b""
        user_key = shared + c.take(head >> 4)
        sequence = c.byte() | (c.byte() << 8)
        kind = KIND_DELETE if head & 2 else KIND_VALUE
        value = b"" if kind == KIND_DELETE else c.take(c.byte() >> (head & 4))
        if head & 8:
            value *= 1 + c.byte() % 64     # some long, compressible values
        out[encode_internal_key(user_key, sequence, kind)] = value
        total += len(user_key) + len(value)
        previous = user_key
    return sorted(out.items(), key=lambda e: internal_order(e[0]))
