"""TableProperties: what a table knows about itself, stored in its properties block.

Byte grammar (docs/format.md, "Properties block"):

    properties := count:varint32 (name:lenbytes value:lenbytes)*

Integer properties are stored as varint64 in value; smallest and largest
are internal keys.  Unknown names are kept and ignored, so later versions
can add properties without breaking older readers.  earliest_expiry (the
smallest expiry of the table's expiring values, microseconds since the
epoch) is written only by tables that hold such values, so every other
table's block is byte for byte what it was before time to live existed.
"""
from kvcy._coding import decode_varint32, decode_varint64, encode_varint32, encode_varint64
from kvcy.errors import CorruptionError

_INT_FIELDS = ("num_entries", "num_deletions", "raw_key_bytes", "raw_value_bytes",
               "raw_data_bytes", "stored_data_bytes", "data_blocks",
               "smallest_sequence", "largest_sequence", "earliest_expiry")
_OPTIONAL_FIELDS = ("earliest_expiry",)      # written only when not 0
_BYTES_FIELDS = ("smallest", "largest")


class TableProperties:
    __slots__ = _INT_FIELDS + _BYTES_FIELDS

    def __init__(self):
        for name in _INT_FIELDS:
            setattr(self, name, 0)
        for name in _BYTES_FIELDS:
            setattr(self, name, b"")

    def encode(self):
        names = [name for name in _INT_FIELDS
                 if name not in _OPTIONAL_FIELDS or getattr(self, name)]
        out = [encode_varint32(len(names) + len(_BYTES_FIELDS))]
        for name in names:
            out.append(_lenbytes(name.encode()) + _lenbytes(encode_varint64(getattr(self, name))))
        for name in _BYTES_FIELDS:
            out.append(_lenbytes(name.encode()) + _lenbytes(getattr(self, name)))
        return b"".join(out)

    @classmethod
    def decode(cls, data):
        props = cls()
        count, pos = decode_varint32(data, 0)
        for _ in range(count):
            name, pos = _get_lenbytes(data, pos)
            value, pos = _get_lenbytes(data, pos)
            name = name.decode("ascii", "replace")
            if name in _INT_FIELDS:
                number, end = decode_varint64(value, 0)
                if end != len(value):
                    raise CorruptionError("table properties: bad value of %s" % name)
                setattr(props, name, number)
            elif name in _BYTES_FIELDS:
                setattr(props, name, value)
        if pos != len(data):
            raise CorruptionError("table properties: %d trailing bytes" % (len(data) - pos))
        return props

    def as_dict(self):
        return {name: getattr(self, name) for name in self.__slots__}


def _lenbytes(data):
    return encode_varint32(len(data)) + data


def _get_lenbytes(data, pos):
    n, pos = decode_varint32(data, pos)
    if n > len(data) - pos:
        raise CorruptionError("table properties: field of %d bytes runs past the block" % n)
    return bytes(data[pos:pos + n]), pos + n
