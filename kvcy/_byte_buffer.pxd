# cython: language_level=3
# Buf: a growable byte buffer in C, for keys an iterator or a merge loop
# must keep (a saved key and value, seek targets, the current user key).  malloc'd; an empty buffer holds
# no memory.  Every function returns -1 when out of memory and leaves the
# buffer as it was.
from libc.stdint cimport uint64_t
from libc.stdlib cimport realloc, free
from libc.string cimport memcpy

from kvcy._dbformat cimport TAG_BYTES

cdef struct Buf:
    unsigned char* data
    size_t len
    size_t cap


cdef inline int buf_reserve(Buf* b, size_t n) noexcept nogil:
    # Room for n bytes; -1 when out of memory (b unchanged).
    cdef size_t cap = b.cap * 2
    cdef unsigned char* grown
    if cap < n:
        cap = n
    if cap < 64:
        cap = 64
    grown = <unsigned char*>realloc(b.data, cap)
    if grown == NULL:
        return -1
    b.data = grown
    b.cap = cap
    return 0


cdef inline int buf_assign(Buf* b, const unsigned char* p, size_t n) noexcept nogil:
    # b := p[:n]; -1 when out of memory.
    if n > b.cap and buf_reserve(b, n) < 0:
        return -1
    if n:
        memcpy(b.data, p, n)
    b.len = n
    return 0


cdef inline void buf_free(Buf* b) noexcept nogil:
    free(b.data)
    b.data = NULL
    b.len = 0
    b.cap = 0


cdef inline int buf_seek_key(Buf* b, const unsigned char* ukey, size_t n, uint64_t tag) noexcept nogil:
    # b := the internal key (ukey, tag); -1 when out of memory.
    cdef size_t i
    if n + TAG_BYTES > b.cap and buf_reserve(b, n + TAG_BYTES) < 0:
        return -1
    if n:
        memcpy(b.data, ukey, n)
    for i in range(TAG_BYTES):
        b.data[n + i] = <unsigned char>((tag >> (8 * i)) & 0xFF)
    b.len = n + TAG_BYTES
    return 0
