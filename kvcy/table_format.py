"""SSTable framing: block handles, the footer, and checked block reads.

Byte grammar (docs/format.md, "Table files"):

    table      := data_block* filter_block properties_block index_block footer   (version 1)
                | data_block* properties_block (filter_partition? index_partition)*
                  top_index_block footer                                        (version 2)
    *_block    := contents[size] compression:u8 checksum:fixed32
    footer     := index:handle filter:handle properties:handle
                  format_version:fixed32 footer_crc:fixed32 magic:fixed64   (64 bytes)
    handle     := offset:fixed64 size:fixed64            (size excludes the trailer)

checksum is the masked CRC32C of contents followed by the compression
byte; footer_crc is the masked CRC32C of the 52 footer bytes before it.
compression is 0 (raw) or 1 (snappy, raw format, used only when it saves
at least an eighth).  Index entries map a separator internal key to a
handle encoded as offset:varint64 size:varint64.  These values are on disk;
never change them.

Every length read from disk is checked against the file size before it is
used, so a hostile file yields CorruptionError, never a huge allocation or
a read outside the file.
"""
import struct

from kvcy._coding import decode_varint32, decode_varint64, encode_varint64
from kvcy._crc32c import crc32c, mask, unmask
from kvcy import _snappy as snappy           # kvcy's own C codec of the snappy format
from kvcy.errors import CorruptionError
from kvcy.options import MAX_KEY_BYTES, MAX_VALUE_BYTES

TABLE_MAGIC = 0x7473735F7963766B          # b"kvcy_sst" little-endian; never change
TABLE_FORMAT_VERSION = 1
# Version 2: the index and the bloom filter are cut into partitions of about
# block_size bytes, read through the block cache; the footer's index handle
# is a top-level index whose entries map each partition's last separator to
# its index partition's and filter partition's handles (four varint64s), and
# its filter handle is (0, 0).  Written when Options.partitioned_index is on
# and a table's index outgrows one partition; version 1 stays readable.
PARTITIONED_FORMAT_VERSION = 2
FORMAT_VERSIONS = (TABLE_FORMAT_VERSION, PARTITIONED_FORMAT_VERSION)
FOOTER_BYTES = 64
BLOCK_TRAILER_BYTES = 5
NO_COMPRESSION = 0
SNAPPY_COMPRESSION = 1
# No block kvcy writes is larger than one maximal entry plus a block's slack.
MAX_BLOCK_BYTES = MAX_VALUE_BYTES + MAX_KEY_BYTES + (1 << 20)

_FOOTER = struct.Struct("<QQQQQQIIQ")
_TRAILER = struct.Struct("<BI")


class BlockHandle:
    __slots__ = ("offset", "size")

    def __init__(self, offset, size):
        self.offset = offset
        self.size = size

    def encode(self):
        return encode_varint64(self.offset) + encode_varint64(self.size)

    @classmethod
    def decode(cls, data, pos=0):
        offset, pos = decode_varint64(data, pos)
        size, pos = decode_varint64(data, pos)
        return cls(offset, size), pos

    def __eq__(self, other):
        return (isinstance(other, BlockHandle) and self.offset == other.offset
                and self.size == other.size)

    def __repr__(self):
        return "BlockHandle(%d, %d)" % (self.offset, self.size)


class Footer:
    __slots__ = ("index", "filter", "properties", "version")

    def __init__(self, index, filter, properties, version=TABLE_FORMAT_VERSION):
        self.index = index
        self.filter = filter
        self.properties = properties
        self.version = version

    @property
    def partitioned(self):
        """True for format version 2: index and filter in partitions."""
        return self.version == PARTITIONED_FORMAT_VERSION

    def encode(self):
        head = struct.pack("<QQQQQQI", self.index.offset, self.index.size,
                           self.filter.offset, self.filter.size,
                           self.properties.offset, self.properties.size, self.version)
        return head + struct.pack("<IQ", mask(crc32c(head)), TABLE_MAGIC)

    @classmethod
    def decode(cls, data, path="<table>"):
        if len(data) != FOOTER_BYTES:
            raise CorruptionError("table %s: footer of %d bytes, expected %d"
                                  % (path, len(data), FOOTER_BYTES))
        fields = _FOOTER.unpack(data)
        if fields[8] != TABLE_MAGIC:
            raise CorruptionError("table %s: bad magic number (not a kvcy table)" % path)
        if unmask(fields[7]) != crc32c(data[:52]):
            raise CorruptionError("table %s: footer checksum mismatch" % path)
        if fields[6] not in FORMAT_VERSIONS:
            raise CorruptionError("table %s: unknown format version %d" % (path, fields[6]))
        if fields[6] == PARTITIONED_FORMAT_VERSION and (fields[2] or fields[3]):
            raise CorruptionError("table %s: a partitioned table's footer names a filter "
                                  "block" % path)
        return cls(BlockHandle(fields[0], fields[1]), BlockHandle(fields[2], fields[3]),
                   BlockHandle(fields[4], fields[5]), fields[6])


def block_trailer(contents, compression):
    """The 5-byte trailer of a block: compression byte, masked CRC32C."""
    crc = crc32c(bytes((compression,)), crc32c(contents))
    return _TRAILER.pack(compression, mask(crc))


def compress_block(raw, compression):
    """(stored contents, compression byte) for a block's raw contents."""
    if compression == "snappy" and len(raw) > 64:
        packed = snappy.compress(raw)
        if len(packed) <= len(raw) - len(raw) // 8:
            return packed, SNAPPY_COMPRESSION
    return raw, NO_COMPRESSION


def check_handle(handle, file_size, path, what):
    """CorruptionError unless handle and its trailer lie inside the file's data part."""
    limit = file_size - FOOTER_BYTES
    if (handle.offset > limit or handle.size > limit - handle.offset - BLOCK_TRAILER_BYTES
            or handle.size > MAX_BLOCK_BYTES):
        raise CorruptionError("table %s: %s block handle (offset %d, size %d) lies outside "
                              "the %d-byte file" % (path, what, handle.offset, handle.size,
                                                    file_size))


def read_block(file, handle, file_size, path, what="data"):
    """Read, check and decompress one block; returns its raw contents (bytes)."""
    check_handle(handle, file_size, path, what)
    n = handle.size + BLOCK_TRAILER_BYTES
    data = file.read(handle.offset, n)
    if len(data) != n:
        raise CorruptionError("table %s: %s block at offset %d truncated (%d of %d bytes)"
                              % (path, what, handle.offset, len(data), n))
    contents = data[:handle.size]
    compression, stored = _TRAILER.unpack_from(data, handle.size)
    if unmask(stored) != crc32c(data[handle.size:handle.size + 1], crc32c(contents)):
        raise CorruptionError("table %s: %s block at offset %d: checksum mismatch"
                              % (path, what, handle.offset))
    if compression == NO_COMPRESSION:
        return contents
    if compression == SNAPPY_COMPRESSION:
        try:
            length, _ = decode_varint32(contents, 0)
        except CorruptionError:
            length = MAX_BLOCK_BYTES + 1
        if length > MAX_BLOCK_BYTES:
            raise CorruptionError("table %s: %s block at offset %d claims %d bytes "
                                  "uncompressed" % (path, what, handle.offset, length))
        try:
            raw = snappy.uncompress(contents)
        except Exception as exc:
            raise CorruptionError("table %s: %s block at offset %d does not decompress: %s"
                                  % (path, what, handle.offset, exc)) from exc
        if len(raw) != length:
            raise CorruptionError("table %s: %s block at offset %d: bad uncompressed length"
                                  % (path, what, handle.offset))
        return raw
    raise CorruptionError("table %s: %s block at offset %d: unknown compression type %d"
                          % (path, what, handle.offset, compression))
