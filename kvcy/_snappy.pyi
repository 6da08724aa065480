"""Snappy raw block codec in C; see kvcy/_snappy.pyx."""
from _typeshed import ReadableBuffer

def compress(data: ReadableBuffer) -> bytes:
    """Snappy raw block of ``data`` (readable by ``snappy.uncompress``).

    str raises TypeError; 4 GiB or more raises ValueError."""

def uncompress(data: ReadableBuffer) -> bytes:
    """Decode a snappy raw block; kvcy.errors.CorruptionError if invalid,
    TypeError for str."""
