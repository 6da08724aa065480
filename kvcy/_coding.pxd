# cython: language_level=3
# Fixed-width little-endian and varint coding on raw pointers.
#
# Encoders write into a caller-provided buffer that is large enough
# (REQUIRES: 5 bytes for varint32, 10 for varint64, 4/8 for fixed) and return
# the pointer just past what they wrote.  Decoders take (p, limit) and return
# the pointer just past the value, or NULL when the value would run past
# limit or is overlong; they never read at or beyond limit.
# The byte formats are in docs/format.md ("Integers").
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy


cdef inline unsigned char* put_fixed32(unsigned char* dst, uint32_t v) noexcept nogil:
    dst[0] = <unsigned char>(v)
    dst[1] = <unsigned char>(v >> 8)
    dst[2] = <unsigned char>(v >> 16)
    dst[3] = <unsigned char>(v >> 24)
    return dst + 4

cdef inline unsigned char* put_fixed64(unsigned char* dst, uint64_t v) noexcept nogil:
    cdef int i
    for i in range(8):
        dst[i] = <unsigned char>(v >> (8 * i))
    return dst + 8

cdef inline uint32_t load_fixed32(const unsigned char* p) noexcept nogil:
    # REQUIRES: 4 readable bytes at p.
    return (<uint32_t>p[0]) | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)

cdef inline uint64_t load_fixed64(const unsigned char* p) noexcept nogil:
    # REQUIRES: 8 readable bytes at p.
    return (<uint64_t>load_fixed32(p)) | (<uint64_t>load_fixed32(p + 4) << 32)

cdef inline const unsigned char* get_fixed32(const unsigned char* p, const unsigned char* limit,
                                             uint32_t* value) noexcept nogil:
    if limit - p < 4:
        return NULL
    value[0] = load_fixed32(p)
    return p + 4

cdef inline const unsigned char* get_fixed64(const unsigned char* p, const unsigned char* limit,
                                             uint64_t* value) noexcept nogil:
    if limit - p < 8:
        return NULL
    value[0] = load_fixed64(p)
    return p + 8

cdef inline unsigned char* put_varint32(unsigned char* dst, uint32_t v) noexcept nogil:
    while v >= 0x80:
        dst[0] = <unsigned char>(v | 0x80)
        dst += 1
        v >>= 7
    dst[0] = <unsigned char>v
    return dst + 1

cdef inline unsigned char* put_varint64(unsigned char* dst, uint64_t v) noexcept nogil:
    while v >= 0x80:
        dst[0] = <unsigned char>(v | 0x80)
        dst += 1
        v >>= 7
    dst[0] = <unsigned char>v
    return dst + 1

cdef inline int varint_length(uint64_t v) noexcept nogil:
    cdef int n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n

cdef inline const unsigned char* get_varint32(const unsigned char* p, const unsigned char* limit,
                                              uint32_t* value) noexcept nogil:
    # Fast path for the common one-byte case.
    cdef uint32_t result = 0
    cdef uint32_t byte
    cdef int shift = 0
    if p < limit and p[0] < 0x80:
        value[0] = p[0]
        return p + 1
    while shift <= 28 and p < limit:
        byte = p[0]
        p += 1
        if shift == 28 and byte > 0x0F:
            return NULL          # overlong or more than 32 bits
        if byte & 0x80:
            result |= (byte & 0x7F) << shift
        else:
            result |= byte << shift
            value[0] = result
            return p
        shift += 7
    return NULL

cdef inline const unsigned char* get_varint64(const unsigned char* p, const unsigned char* limit,
                                              uint64_t* value) noexcept nogil:
    cdef uint64_t result = 0
    cdef uint64_t byte
    cdef int shift = 0
    while shift <= 63 and p < limit:
        byte = p[0]
        p += 1
        if shift == 63 and byte > 0x01:
            return NULL          # overlong or more than 64 bits
        if byte & 0x80:
            result |= (byte & 0x7F) << shift
        else:
            result |= byte << shift
            value[0] = result
            return p
        shift += 7
    return NULL


cdef inline const unsigned char* view_ptr(const unsigned char[::1] view) noexcept:
    # The address of a bytes-like view's first byte; a zero-length view has
    # no element 0, so it gets a pointer to an empty string (never read).
    if view.shape[0] == 0:
        return <const unsigned char*>""
    return &view[0]
