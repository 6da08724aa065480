"""Fuzz target: the snappy decoder (kvcy._snappy, kvcy's own C codec of
the raw snappy format, which reads every compressed table block).

Input: one mode byte, then bytes.  Mode bit 0: a round trip: the bytes are
compressed by kvcy._snappy.compress and must decompress, by kvcy and by
python-snappy, to exactly themselves.  Otherwise the bytes are a
compressed block from disk: kvcy._snappy.uncompress must give exactly what
reference_uncompress (below: the format as Google's snappy decodes it,
written from the format description) gives, both bytes or both
CorruptionError.

python-snappy is no oracle for hostile blocks: the long runs found it
allocating the claimed length (2-3 GiB for 7-byte inputs), accepting a
9-byte length varint that the format caps at 5 bytes, and refusing a
1-byte literal written in the 2-byte long form, which the format allows.
Those inputs are kept as regressions.
"""
import snappy as python_snappy

from kvcy import _snappy
from kvcy._coding import decode_varint32
from kvcy.errors import CorruptionError

SEEDS = "compressed: mode 0 + the snappy-compressed blocks of the workload's tables"


def reference_uncompress(block):
    """The raw snappy format, decoded plainly: a varint32 length, then
    literals and copies; CorruptionError for anything malformed."""
    length, pos = decode_varint32(block, 0)
    if length > 32 * len(block) + 64:           # more than any block can expand to
        raise CorruptionError("claimed length %d" % length)
    out = bytearray()
    n = len(block)
    while pos < n:
        tag = block[pos]
        pos += 1
        if tag & 3 == 0:                        # literal
            size = tag >> 2
            if size >= 60:
                extra = size - 59
                if extra > n - pos:
                    raise CorruptionError("literal length cut off")
                size = int.from_bytes(block[pos:pos + extra], "little")
                pos += extra
            size += 1
            if size > n - pos:
                raise CorruptionError("literal runs past the block")
            out += block[pos:pos + size]
            pos += size
        else:                                   # copy with a 1, 2 or 4-byte offset
            width = (1, 2, 4)[(tag & 3) - 1]
            if width > n - pos:
                raise CorruptionError("copy offset cut off")
            if width == 1:
                size = 4 + ((tag >> 2) & 7)
                offset = ((tag >> 5) << 8) | block[pos]
            else:
                size = 1 + (tag >> 2)
                offset = int.from_bytes(block[pos:pos + width], "little")
            pos += width
            if offset == 0 or offset > len(out):
                raise CorruptionError("copy offset %d out of range" % offset)
            for _ in range(size):
                out.append(out[-offset])
        if len(out) > length:
            raise CorruptionError("output longer than claimed")
    if len(out) != length:
        raise CorruptionError("output shorter than claimed")
    return bytes(out)


def _outcome(decode, block):
    try:
        return decode(block)
    except CorruptionError:
        return None


def fuzz_one(data):
    if not data:
        return
    mode, body = data[0], data[1:]
    if mode & 1:
        packed = _snappy.compress(body)
        if _snappy.uncompress(packed) != body or python_snappy.uncompress(packed) != body:
            raise AssertionError("snappy round trip of %d bytes failed" % len(body))
        return
    want = _outcome(reference_uncompress, body)
    got = _outcome(_snappy.uncompress, body)
    if got != want or (got is not None and type(got) is not bytes):
        raise AssertionError("kvcy decoded %r, the reference %r"
                             % (None if got is None else len(got),
                                None if want is None else len(want)))
    if got is None:
        raise CorruptionError("both decoders refused the block")
