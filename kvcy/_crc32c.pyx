# cython: language_level=3, embedsignature=True
"""CRC32C (Castagnoli) checksums, as LevelDB uses them for WAL records and
block trailers.

The CRC is the standard reflected CRC-32C (polynomial 0x82f63b78, initial
and final XOR 0xffffffff): ``crc32c(b"123456789") == 0xE3069283``.
``extend(crc, data)`` continues a CRC, so
``extend(crc32c(a), b) == crc32c(a + b)``.  ``mask``/``unmask`` are LevelDB's
masking of a stored CRC (see kvcy/_crc32c.pxd and docs/format.md).

Two interchangeable paths compute the same function: the SSE4.2 ``crc32``
instruction (kvcy/_crc32c_hw.h) when the CPU has it, otherwise slicing-by-8
tables.  The path is chosen once at import; setting the environment variable
``KVCY_CRC32C_SOFTWARE=1`` before import forces the software path (tests use
it to check the two agree).

Cython modules cimport ``crc32c_extend``, ``crc32c_mask`` and
``crc32c_unmask`` from kvcy._crc32c; the functions here are the Python face.

Thread-safety: the tables are built at import and read-only afterwards; every
function is pure and may be called from any thread.  The Python wrappers
release the GIL for buffers of 4 KiB or more (the buffer stays referenced by
the call's memoryview meanwhile), so do not mutate a bytearray while another
thread checksums it.
"""
import os

from libc.stdint cimport uint32_t, uintptr_t

from kvcy._coding cimport load_fixed32


cdef extern from "_crc32c_hw.h" nogil:
    void kvcy_crc32c_hw_init()
    int kvcy_crc32c_hw_available()
    uint32_t kvcy_crc32c_sse42(uint32_t crc, const unsigned char* p, size_t n)


cdef enum:
    # Below this many bytes the GIL round trip costs more than the CRC.
    NOGIL_MIN_BYTES = 4096

cdef uint32_t POLY = 0x82f63b78u    # reflected Castagnoli polynomial; never change

# _TABLE[0][b]: register after feeding byte b to a zero register (classic
# byte-at-a-time table).  _TABLE[k][b]: the same followed by k zero bytes, so
# eight bytes are folded with eight independent lookups (slicing-by-8).
cdef uint32_t _TABLE[8][256]
cdef bint _use_hw = False


cdef void _build_tables() noexcept nogil:
    cdef uint32_t b, c
    cdef int j, k
    for b in range(256):
        c = b
        for j in range(8):
            if c & 1:
                c = (c >> 1) ^ POLY
            else:
                c = c >> 1
        _TABLE[0][b] = c
    for b in range(256):
        c = _TABLE[0][b]
        for k in range(1, 8):
            c = (c >> 8) ^ _TABLE[0][c & 0xff]
            _TABLE[k][b] = c


cdef uint32_t _extend_sw(uint32_t l, const unsigned char* p, size_t n) noexcept nogil:
    # Raw register in, raw register out (no pre/post inversion).
    cdef const unsigned char* limit = p + n
    cdef uint32_t lo, hi
    # Head: align p to 8 so the word loads below do not straddle lines.
    while p < limit and (<uintptr_t>p & 7) != 0:
        l = _TABLE[0][(l ^ p[0]) & 0xff] ^ (l >> 8)
        p += 1
    while limit - p >= 8:
        lo = load_fixed32(p) ^ l
        hi = load_fixed32(p + 4)
        l = (_TABLE[7][lo & 0xff] ^ _TABLE[6][(lo >> 8) & 0xff]
             ^ _TABLE[5][(lo >> 16) & 0xff] ^ _TABLE[4][lo >> 24]
             ^ _TABLE[3][hi & 0xff] ^ _TABLE[2][(hi >> 8) & 0xff]
             ^ _TABLE[1][(hi >> 16) & 0xff] ^ _TABLE[0][hi >> 24])
        p += 8
    while p < limit:
        l = _TABLE[0][(l ^ p[0]) & 0xff] ^ (l >> 8)
        p += 1
    return l


cdef uint32_t crc32c_extend(uint32_t crc, const unsigned char* data, size_t n) noexcept nogil:
    cdef uint32_t l = crc ^ <uint32_t>0xffffffffu
    if _use_hw:
        l = kvcy_crc32c_sse42(l, data, n)
    else:
        l = _extend_sw(l, data, n)
    return l ^ <uint32_t>0xffffffffu


cdef inline uint32_t _extend_view(uint32_t crc, const unsigned char[::1] data):
    # The memoryview `data` owns a reference to the buffer for the whole call,
    # including the nogil section.
    cdef size_t n = <size_t>data.shape[0]
    cdef const unsigned char* p
    if n == 0:
        return crc
    p = &data[0]
    if n >= NOGIL_MIN_BYTES:
        with nogil:
            crc = crc32c_extend(crc, p, n)
    else:
        crc = crc32c_extend(crc, p, n)
    return crc


def crc32c(const unsigned char[::1] data, uint32_t crc=0):
    """CRC32C of bytes-like ``data``; a non-zero ``crc`` continues the CRC of
    earlier bytes (``crc32c(b, crc32c(a)) == crc32c(a + b)``).

    ``data`` must be C-contiguous with one-byte items (bytes, bytearray,
    memoryview, mmap, ...); str raises TypeError.  Returns an int in
    [0, 2**32).
    """
    return _extend_view(crc, data)


def extend(uint32_t crc, const unsigned char[::1] data):
    """CRC32C of (the bytes whose CRC is ``crc``) followed by ``data``; the
    same as ``crc32c(data, crc)``, in LevelDB's argument order."""
    return _extend_view(crc, data)


def mask(uint32_t crc):
    """LevelDB's masked form of ``crc`` (rotate right 15, add 0xa282ead8),
    stored wherever the checksummed data may itself hold CRCs."""
    return crc32c_mask(crc)


def unmask(uint32_t masked):
    """Inverse of :func:`mask`."""
    return crc32c_unmask(masked)


def hardware_accelerated():
    """True iff this process computes CRCs with the SSE4.2 instruction
    (chosen at import; False when ``KVCY_CRC32C_SOFTWARE=1`` was set)."""
    return bool(_use_hw)


_build_tables()
kvcy_crc32c_hw_init()
_use_hw = (kvcy_crc32c_hw_available() != 0
           and os.environ.get("KVCY_CRC32C_SOFTWARE", "") in ("", "0"))
