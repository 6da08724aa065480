# cython: language_level=3
# Framing of logical records into 32 KiB log blocks; see _log_record.pyx.

cdef enum:
    LOG_BLOCK_BYTES = 32768
    LOG_HEADER_BYTES = 7


cdef inline size_t frame_bound(size_t n) noexcept nogil:
    # Most bytes framing an n-byte record can take: every block it touches
    # gets a header, and at most HEADER - 1 bytes of padding close a block
    # before it.
    return n + (n // (LOG_BLOCK_BYTES - LOG_HEADER_BYTES) + 2) * 2 * LOG_HEADER_BYTES


cdef class LogFramer:
    cdef public Py_ssize_t block_offset     # bytes used in the current block

    cdef bytes frame_raw(self, const unsigned char* src, size_t n)
    cdef size_t frame_into(self, const unsigned char* src, size_t n,
                           unsigned char* out) noexcept nogil
