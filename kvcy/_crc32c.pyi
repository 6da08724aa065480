"""CRC32C (Castagnoli) checksums; see kvcy/_crc32c.pyx."""
from _typeshed import ReadableBuffer

def crc32c(data: ReadableBuffer, crc: int = 0) -> int:
    """CRC32C of ``data`` (C-contiguous, one-byte items), continuing ``crc``."""

def extend(crc: int, data: ReadableBuffer) -> int:
    """Same as ``crc32c(data, crc)``."""

def mask(crc: int) -> int:
    """LevelDB's masked CRC: rotate right 15 bits, add 0xa282ead8."""

def unmask(masked: int) -> int:
    """Inverse of :func:`mask`."""

def hardware_accelerated() -> bool:
    """True iff the SSE4.2 path was chosen at import."""
