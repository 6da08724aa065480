# cython: language_level=3
# WalWriter: frames a commit group's records and appends them to the current
# WAL file from C.  See kvcy/_wal_writer.pyx.
from kvcy._log_record cimport LogFramer

cdef enum:
    WAL_BUFFER_KEEP_BYTES = 2 << 20  # a larger framing buffer is freed after its group
    WAL_MAP_BYTES = 1 << 20          # the window of the file mapped for appends


cdef class WalWriter:
    cdef LogFramer framer            # framing state of the file
    cdef readonly object file        # the WAL file (an env WritableFile, or any object with append/sync)
    cdef object append_file          # file.append
    cdef object sync_file            # file.sync
    cdef int fd                      # file's descriptor, written directly; -1: use append()
    cdef unsigned char* buf          # the group's framed records (owned)
    cdef size_t cap                  # bytes allocated at buf
    cdef size_t used                 # bytes framed into buf and not yet written
    cdef size_t pos                  # the file's logical size: where the next append goes
                                     # (file.size catches up in settle_size())
    cdef bint mapped                 # appends are copies into map (else write(2) on fd)
    cdef unsigned char* map          # WAL_MAP_BYTES of the file from map_start, or NULL
    cdef size_t map_start

    cdef int reserve(self, size_t n) except -1
    cdef void add(self, const unsigned char* rep, size_t n) noexcept
    cdef size_t write(self) except? 0
    cdef int sync(self) except -1
    cdef int settle_size(self) except -1
    cdef void unmap_window(self) noexcept nogil
    cdef int map_window(self) noexcept nogil
    cdef int map_append(self, const unsigned char* p, size_t n, size_t* done) noexcept nogil
    cpdef retire(self)
