# cython: language_level=3
# Internal keys: user_key + fixed64 tag, tag = sequence << 8 | kind.
#
# Internal keys order by user key ascending (bytewise), then by tag
# descending, so the newest entry of a user key comes first.  The kind values
# are written to disk (WAL, tables) and must never change.
# See docs/format.md ("Internal keys").
from libc.stdint cimport uint64_t
from libc.string cimport memcmp

cdef enum:
    KIND_DELETE = 0          # tombstone; on disk, never change
    KIND_VALUE = 1           # a value; on disk, never change
    KIND_EXPIRING_VALUE = 2  # fixed64 expiry (µs since the epoch) + a value; on disk, never change
    KIND_RANGE_DELETE = 3    # write batches only: range tombstone [key, value); on disk, never change
    KIND_FOR_SEEK = 0xFF     # largest kind: a lookup tag sorts before every entry of its sequence

cdef enum:
    TAG_BYTES = 8

# Sequence numbers use 56 bits of the tag.
cdef extern from *:
    """
    #define KVCY_MAX_SEQUENCE ((((uint64_t)1) << 56) - 1)
    """
    const uint64_t MAX_SEQUENCE "KVCY_MAX_SEQUENCE"

cdef inline uint64_t pack_tag(uint64_t sequence, int kind) noexcept nogil:
    return (sequence << 8) | <uint64_t>kind

cdef inline uint64_t tag_sequence(uint64_t tag) noexcept nogil:
    return tag >> 8

cdef inline int tag_kind(uint64_t tag) noexcept nogil:
    return <int>(tag & 0xFF)

cdef inline int compare_user_keys(const unsigned char* a, size_t alen,
                                  const unsigned char* b, size_t blen) noexcept nogil:
    cdef size_t n = alen if alen < blen else blen
    cdef int r = memcmp(a, b, n) if n else 0
    if r != 0:
        return r
    if alen < blen:
        return -1
    if alen > blen:
        return 1
    return 0

cdef inline int compare_internal(const unsigned char* a, size_t alen, uint64_t atag,
                                 const unsigned char* b, size_t blen, uint64_t btag) noexcept nogil:
    # Negative, zero or positive as (a, atag) sorts before, with or after (b, btag).
    cdef int r = compare_user_keys(a, alen, b, blen)
    if r != 0:
        return r
    if atag > btag:
        return -1
    if atag < btag:
        return 1
    return 0
