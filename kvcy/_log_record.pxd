# cython: language_level=3
# Framing of logical records into 32 KiB log blocks; see _log_record.pyx.

cdef class LogFramer:
    cdef public Py_ssize_t block_offset     # bytes used in the current block

    cdef bytes frame_raw(self, const unsigned char* src, size_t n)
