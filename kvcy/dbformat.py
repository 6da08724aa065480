"""Internal keys for Python layers, and the DELETED marker.

An internal key is user_key + fixed64 little-endian tag, tag = sequence << 8
| kind.  The constants are defined once, in _dbformat.pxd (the kind values
are on disk and must never change), and taken from there.  See
docs/format.md ("Internal keys").
"""
import struct

from kvcy._dbformat import FORMAT_CONSTANTS as _C
from kvcy.errors import CorruptionError

KIND_DELETE = _C["KIND_DELETE"]        # tombstone
KIND_VALUE = _C["KIND_VALUE"]          # a value
KIND_EXPIRING_VALUE = _C["KIND_EXPIRING_VALUE"]   # fixed64 expiry + a value (kvcy/_expiry.pyx)
KIND_RANGE_DELETE = _C["KIND_RANGE_DELETE"]   # a range tombstone (write batches only)
KIND_FOR_SEEK = _C["KIND_FOR_SEEK"]    # largest kind: a lookup tag sorts before every entry of its sequence
MAX_SEQUENCE = _C["MAX_SEQUENCE"]
TAG_BYTES = _C["TAG_BYTES"]

_TAG = struct.Struct("<Q")


class _Deleted:
    """Marker returned by layer lookups: the newest visible entry is a tombstone."""
    __slots__ = ()

    def __repr__(self):
        return "DELETED"

    def __bool__(self):
        return False


DELETED = _Deleted()


def pack_tag(sequence, kind):
    return (sequence << 8) | kind


def encode_internal_key(user_key, sequence, kind):
    """user_key + fixed64(sequence << 8 | kind)."""
    if not 0 <= sequence <= MAX_SEQUENCE:
        raise ValueError("sequence %d outside 0..2**56-1" % sequence)
    return bytes(user_key) + _TAG.pack((sequence << 8) | kind)


def parse_internal_key(ikey):
    """Return (user_key, sequence, kind); CorruptionError when shorter than the tag."""
    if len(ikey) < TAG_BYTES:
        raise CorruptionError("internal key of %d bytes is shorter than its 8-byte tag" % len(ikey))
    (tag,) = _TAG.unpack_from(ikey, len(ikey) - TAG_BYTES)
    return bytes(ikey[:-TAG_BYTES]), tag >> 8, tag & 0xFF


def as_user_bytes(obj, what):
    """obj as bytes; TypeError naming `what` for anything not bytes-like."""
    if type(obj) is bytes:
        return obj
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj)
    if isinstance(obj, memoryview):
        return obj.tobytes()
    if isinstance(obj, str):
        raise TypeError("%s must be bytes-like, not str (encode it, e.g. with .encode())" % what)
    raise TypeError("%s must be bytes-like (bytes, bytearray or memoryview), not %s"
                    % (what, type(obj).__name__))
