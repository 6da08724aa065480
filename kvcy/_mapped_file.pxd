# cython: language_level=3
# File mappings and the one SIGBUS guard of the process: table reads
# (_table_block.pyx) and WAL appends (_wal_writer.pyx) both run their
# accesses to a mapping through map_run.  See kvcy/_mapped_file.pyx.
from libc.stdint cimport uint64_t

cdef enum:
    MAP_FAULT = -1000            # map_run: fn touched a page the file no longer has

cdef int map_install() noexcept
cdef int map_run(int (*fn)(void*) noexcept nogil, void* arg) noexcept nogil
cdef int map_copy(unsigned char* dst, const unsigned char* src, size_t n) noexcept nogil
cdef const unsigned char* map_open(int fd, uint64_t size) noexcept
cdef void map_close(const unsigned char* p, uint64_t size) noexcept
