# cython: language_level=3
"""The process's one SIGBUS guard for file mappings (kvcy/_mapped_file.h).

The guard is a signal handler and a per-thread jump target.  Both live in
the header's static variables, so every module that included the header
would get its own copy, and two handlers would chain through each other:
after the first fault in one module, the other's handler would be gone.
Hence this module: the header is compiled once, here, and the readers of
tables and the writer of the WAL reach it through cimport.
"""
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

cdef extern from "_mapped_file.h" nogil:
    int kvcy_map_install() noexcept
    int kvcy_map_run(int (*fn)(void*) noexcept nogil, void* arg) noexcept
    const unsigned char* kvcy_map_open(int fd, uint64_t size) noexcept
    void kvcy_map_close(const unsigned char* p, uint64_t size) noexcept


cdef int map_install() noexcept:
    # Install the handler (once; with the GIL): 0, or -1 when mappings must not be used.
    return kvcy_map_install()


cdef int map_run(int (*fn)(void*) noexcept nogil, void* arg) noexcept nogil:
    # fn(arg) with a SIGBUS in it turned into the result MAP_FAULT.
    return kvcy_map_run(fn, arg)


cdef struct Copy:
    unsigned char* dst
    const unsigned char* src
    size_t n


cdef int run_copy(void* arg) noexcept nogil:
    cdef Copy* c = <Copy*>arg
    memcpy(c.dst, c.src, c.n)
    return 0


cdef int map_copy(unsigned char* dst, const unsigned char* src, size_t n) noexcept nogil:
    # memcpy where dst or src lies in a mapping: 0, or MAP_FAULT.
    cdef Copy c
    c.dst = dst
    c.src = src
    c.n = n
    return kvcy_map_run(run_copy, &c)


cdef const unsigned char* map_open(int fd, uint64_t size) noexcept:
    # The first size bytes of fd mapped read-only, or NULL.
    return kvcy_map_open(fd, size)


cdef void map_close(const unsigned char* p, uint64_t size) noexcept:
    kvcy_map_close(p, size)
