"""Fuzz target: the snappy decoder (kvcy._snappy, kvcy's own C codec of
the raw snappy format, which reads every compressed table block).

Input: one mode byte, then bytes.  Mode bit 0: a round trip: the bytes are
compressed by kvcy._snappy.compress and must decompress, by kvcy and by
python-snappy, to exactly themselves.  Otherwise the bytes are a
compressed block from disk: kvcy._snappy.uncompress yields bytes or raises
CorruptionError, and agrees with python-snappy (the reference codec) on
what a valid block decodes to.
"""
import snappy as reference

from kvcy import _snappy
from kvcy._coding import decode_varint32, decode_varint64
from kvcy.errors import CorruptionError

SEEDS = "compressed: mode 0 + the snappy-compressed blocks of the workload's tables"


def _length_is_varint32(body):
    """True iff the block starts with a valid varint32 length.  The snappy
    format caps it at 5 bytes (as Google's snappy does); python-snappy also
    takes longer ones (a 9-byte varint of 0 found by the fuzzer, kept as a
    regression): kvcy refusing those is right, not a disagreement."""
    try:
        decode_varint32(body, 0)
        return True
    except CorruptionError:
        return False


def _claimed_length(body):
    """The block's length header, or 2**64 when it is not a varint64 (then
    python-snappy may read a wrapped, huge length of its own)."""
    try:
        return decode_varint64(body, 0)[0]
    except CorruptionError:
        return 1 << 64


def fuzz_one(data):
    if not data:
        return
    mode, body = data[0], data[1:]
    if mode & 1:
        packed = _snappy.compress(body)
        if _snappy.uncompress(packed) != body or reference.uncompress(packed) != body:
            raise AssertionError("snappy round trip of %d bytes failed" % len(body))
        return
    want = None
    if _claimed_length(body) <= 32 * len(body) + 64:
        # python-snappy allocates the claimed length before it checks anything
        # (2 GiB for a 7-byte input, found by the ASan run): ask it only about
        # lengths a block could expand to (snappy expands at most 64/3 times).
        try:
            want = reference.uncompress(body)
        except Exception:
            want = None
    try:
        got = _snappy.uncompress(body)
    except CorruptionError:
        if want is not None and _length_is_varint32(body):
            raise AssertionError("kvcy refused a block python-snappy decodes (%d bytes)"
                                 % len(want))
        raise
    if type(got) is not bytes or got != want:
        raise AssertionError("kvcy decoded %d bytes, python-snappy %r"
                             % (len(got), None if want is None else len(want)))
