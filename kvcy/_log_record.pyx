# cython: language_level=3, embedsignature=True
"""Framing of logical records into log blocks (see kvcy/log_format.py).

LogFramer turns one logical record into the exact bytes to append: headers,
fragments and any zero padding that closes a block.  It keeps the offset in
the current block, so the writer appends its output with one write call.
Not thread-safe; the log writer owns one framer per file.
"""
from libc.stdint cimport uint32_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from cpython.bytes cimport PyBytes_FromStringAndSize

from kvcy._coding cimport put_fixed32, load_fixed32
from kvcy._crc32c cimport crc32c_extend, crc32c_mask

cdef enum:
    BLOCK = LOG_BLOCK_BYTES
    HEADER = LOG_HEADER_BYTES
    FULL = 1
    FIRST = 2
    MIDDLE = 3
    LAST = 4

# CRC32C of each type byte alone, so a fragment's checksum extends it.
cdef uint32_t TYPE_CRC[5]
cdef unsigned char _t
for _t in range(5):
    TYPE_CRC[_t] = crc32c_extend(0, &_t, 1)


cdef class LogFramer:
    def __cinit__(self, Py_ssize_t block_offset=0):
        if block_offset < 0:
            raise ValueError("block_offset must be >= 0")
        self.block_offset = block_offset % BLOCK

    def frame(self, const unsigned char[::1] payload):
        """The bytes that append `payload` as one logical record."""
        if payload.shape[0] == 0:
            return self.frame_raw(<const unsigned char*>"", 0)
        return self.frame_raw(&payload[0], payload.shape[0])

    cdef size_t frame_into(self, const unsigned char* src, size_t left,
                           unsigned char* out) noexcept nogil:
        # Frame one record into out, which has room for frame_bound(left)
        # bytes; returns the bytes written.
        cdef unsigned char* p = out
        cdef size_t avail, n, offset = <size_t>self.block_offset
        cdef bint begin = True, end
        cdef int rtype
        cdef uint32_t crc
        while True:
            avail = BLOCK - offset
            if avail < HEADER:
                # Too small for a header: pad the block with zeros.
                if avail:
                    memset(p, 0, avail)
                    p += avail
                offset = 0
                avail = BLOCK
            n = avail - HEADER
            if n > left:
                n = left
            end = n == left
            if begin and end:
                rtype = FULL
            elif begin:
                rtype = FIRST
            elif end:
                rtype = LAST
            else:
                rtype = MIDDLE
            crc = crc32c_mask(crc32c_extend(TYPE_CRC[rtype], src, n))
            put_fixed32(p, crc)
            p[4] = <unsigned char>(n & 0xFF)
            p[5] = <unsigned char>(n >> 8)
            p[6] = <unsigned char>rtype
            if n:
                memcpy(p + HEADER, src, n)
            p += HEADER + n
            src += n
            left -= n
            offset += HEADER + n
            begin = False
            if end:
                break
        self.block_offset = offset
        return <size_t>(p - out)

    cdef bytes frame_raw(self, const unsigned char* src, size_t left):
        cdef size_t cap = frame_bound(left)
        cdef unsigned char small[1024]
        cdef unsigned char* out = small
        cdef size_t n
        if cap > sizeof(small):
            out = <unsigned char*>malloc(cap)
            if out == NULL:
                raise MemoryError()
        try:
            n = self.frame_into(src, left, out)
            return PyBytes_FromStringAndSize(<const char*>out, n)
        finally:
            if out != small:
                free(out)


def record_checksum_ok(const unsigned char[::1] block, Py_ssize_t start, Py_ssize_t length):
    """True iff the physical record at block[start:] (header + length data) checks out.

    REQUIRES: start + 7 + length <= len(block) (the reader validates first).
    """
    if start < 0 or length < 0 or start > block.shape[0] - HEADER - length:
        raise ValueError("record outside the block")
    cdef const unsigned char* p = &block[start]
    cdef uint32_t expected = load_fixed32(p)
    cdef uint32_t actual
    if p[6] > LAST:
        return False
    actual = crc32c_extend(TYPE_CRC[p[6]], p + HEADER, <size_t>length)
    return crc32c_mask(actual) == expected
