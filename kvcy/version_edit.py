"""VersionEdit: one change to the set of live files, as stored in MANIFEST.

Byte grammar (docs/format.md, "MANIFEST"); a record of the log format
holds one edit, a sequence of tagged fields:

    edit      := field*
    field     := LOG_NUMBER:varint32 number:varint64
               | NEXT_FILE_NUMBER:varint32 number:varint64
               | LAST_SEQUENCE:varint32 sequence:varint64
               | COMPACT_POINTER:varint32 level:varint32 key:lenbytes
               | DELETED_FILE:varint32 level:varint32 number:varint64
               | NEW_FILE:varint32 level:varint32 number:varint64 size:varint64
                     smallest:lenbytes largest:lenbytes
               | NEW_RANGE_DEL:varint32 start:lenbytes stop:lenbytes sequence:varint64
               | DELETED_RANGE_DEL:varint32 sequence:varint64
    lenbytes  := length:varint32 bytes[length]

Tag values 2-7 are LevelDB's, 16 and 17 (range tombstones, kvcy/range_del.py)
kvcy's own; all are on disk: never change them.  An edit
that sets LOG_NUMBER also sets LAST_SEQUENCE to the last sequence held by
logs older than that number, which is what lets recovery check that the
first surviving log continues the history without a gap.
"""
from dataclasses import dataclass, field

from kvcy._coding import decode_varint32, decode_varint64, encode_varint32, encode_varint64
from kvcy.errors import CorruptionError

LOG_NUMBER = 2
NEXT_FILE_NUMBER = 3
LAST_SEQUENCE = 4
COMPACT_POINTER = 5
DELETED_FILE = 6
NEW_FILE = 7
NEW_RANGE_DEL = 16          # a flushed memtable's range tombstone joins the Version
DELETED_RANGE_DEL = 17      # a range tombstone with nothing left to hide leaves it

MAX_LEVELS_ON_DISK = 64


class FileMetaData:
    """A table file: its number, size and internal-key range (immutable)."""

    __slots__ = ("number", "file_size", "smallest", "largest", "smallest_user", "largest_user")

    def __init__(self, number, file_size, smallest, largest):
        self.number = number
        self.file_size = file_size
        self.smallest = smallest              # smallest internal key
        self.largest = largest                # largest internal key
        self.smallest_user = smallest[:-8]    # their user keys, for range checks
        self.largest_user = largest[:-8]

    def __eq__(self, other):
        return (isinstance(other, FileMetaData) and self.number == other.number
                and self.file_size == other.file_size and self.smallest == other.smallest
                and self.largest == other.largest)

    def __hash__(self):
        return hash(self.number)

    def __repr__(self):
        return "FileMetaData(%d, %d, %r, %r)" % (self.number, self.file_size,
                                                 self.smallest, self.largest)


@dataclass
class VersionEdit:
    log_number: int = None
    next_file_number: int = None
    last_sequence: int = None
    compact_pointers: list = field(default_factory=list)   # (level, internal key)
    deleted_files: set = field(default_factory=set)        # (level, number)
    new_files: list = field(default_factory=list)          # (level, FileMetaData)
    new_range_dels: list = field(default_factory=list)     # (start, stop, sequence)
    deleted_range_dels: set = field(default_factory=set)   # sequences

    def add_file(self, level, meta):
        self.new_files.append((level, meta))

    def delete_file(self, level, number):
        self.deleted_files.add((level, number))

    def add_range_del(self, start, stop, sequence):
        self.new_range_dels.append((bytes(start), bytes(stop), sequence))

    def delete_range_del(self, sequence):
        self.deleted_range_dels.add(sequence)

    def encode(self):
        for level, key in self.compact_pointers:
            _check_level_key(level, key, "compact pointer")
        for level, meta in self.new_files:
            _check_level_key(level, meta.smallest, "smallest key")
            _check_level_key(level, meta.largest, "largest key")
        for level, _ in self.deleted_files:
            _check_level_key(level, b"\0" * 8, "deleted file")
        out = []
        if self.log_number is not None:
            out += [encode_varint32(LOG_NUMBER), encode_varint64(self.log_number)]
        if self.next_file_number is not None:
            out += [encode_varint32(NEXT_FILE_NUMBER), encode_varint64(self.next_file_number)]
        if self.last_sequence is not None:
            out += [encode_varint32(LAST_SEQUENCE), encode_varint64(self.last_sequence)]
        for level, key in self.compact_pointers:
            out += [encode_varint32(COMPACT_POINTER), encode_varint32(level), _lenbytes(key)]
        for level, number in sorted(self.deleted_files):
            out += [encode_varint32(DELETED_FILE), encode_varint32(level), encode_varint64(number)]
        for level, meta in self.new_files:
            out += [encode_varint32(NEW_FILE), encode_varint32(level),
                    encode_varint64(meta.number), encode_varint64(meta.file_size),
                    _lenbytes(meta.smallest), _lenbytes(meta.largest)]
        for start, stop, sequence in self.new_range_dels:
            out += [encode_varint32(NEW_RANGE_DEL), _lenbytes(start), _lenbytes(stop),
                    encode_varint64(sequence)]
        for sequence in sorted(self.deleted_range_dels):
            out += [encode_varint32(DELETED_RANGE_DEL), encode_varint64(sequence)]
        return b"".join(out)

    @classmethod
    def decode(cls, data):
        """Parse an edit; CorruptionError names the field that is bad."""
        edit = cls()
        pos = 0
        while pos < len(data):
            tag, pos = decode_varint32(data, pos)
            if tag == LOG_NUMBER:
                edit.log_number, pos = decode_varint64(data, pos)
            elif tag == NEXT_FILE_NUMBER:
                edit.next_file_number, pos = decode_varint64(data, pos)
            elif tag == LAST_SEQUENCE:
                edit.last_sequence, pos = decode_varint64(data, pos)
            elif tag == COMPACT_POINTER:
                level, pos = _level(data, pos)
                key, pos = _get_lenbytes(data, pos, "compact pointer")
                if len(key) < 8:
                    raise CorruptionError("version edit: compact pointer shorter than its tag")
                edit.compact_pointers.append((level, key))
            elif tag == DELETED_FILE:
                level, pos = _level(data, pos)
                number, pos = decode_varint64(data, pos)
                edit.deleted_files.add((level, number))
            elif tag == NEW_FILE:
                level, pos = _level(data, pos)
                number, pos = decode_varint64(data, pos)
                size, pos = decode_varint64(data, pos)
                smallest, pos = _get_lenbytes(data, pos, "smallest key")
                largest, pos = _get_lenbytes(data, pos, "largest key")
                if len(smallest) < 8 or len(largest) < 8:
                    raise CorruptionError("version edit: file %d has a key shorter than its tag"
                                          % number)
                edit.new_files.append((level, FileMetaData(number, size, smallest, largest)))
            elif tag == NEW_RANGE_DEL:
                start, pos = _get_lenbytes(data, pos, "range tombstone start")
                stop, pos = _get_lenbytes(data, pos, "range tombstone stop")
                sequence, pos = decode_varint64(data, pos)
                edit.new_range_dels.append((start, stop, sequence))
            elif tag == DELETED_RANGE_DEL:
                sequence, pos = decode_varint64(data, pos)
                edit.deleted_range_dels.add(sequence)
            else:
                raise CorruptionError("version edit: unknown tag %d at offset %d" % (tag, pos))
        return edit


def _check_level_key(level, key, what):
    if not 0 <= level < MAX_LEVELS_ON_DISK:
        raise ValueError("version edit: level %d out of range" % level)
    if len(key) < 8:
        raise ValueError("version edit: %s shorter than its 8-byte tag" % what)


def _lenbytes(data):
    return encode_varint32(len(data)) + bytes(data)


def _get_lenbytes(data, pos, what):
    n, pos = decode_varint32(data, pos)
    if n > len(data) - pos:
        raise CorruptionError("version edit: %s of %d bytes runs past the record" % (what, n))
    return bytes(data[pos:pos + n]), pos + n


def _level(data, pos):
    level, pos = decode_varint32(data, pos)
    if level >= MAX_LEVELS_ON_DISK:
        raise CorruptionError("version edit: level %d out of range" % level)
    return level, pos
