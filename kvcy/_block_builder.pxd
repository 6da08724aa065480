# cython: language_level=3
# BlockBuilder: prefix-compressed sorted entries plus a restart array.
#
# Byte grammar (docs/format.md, "Blocks"):
#     block   := entry* restart:fixed32[num_restarts] num_restarts:fixed32
#     entry   := shared:varint32 non_shared:varint32 value_length:varint32
#                key_delta[non_shared] value[value_length]
# An entry's key is the first `shared` bytes of the previous entry's key
# followed by key_delta.  Every restart_interval-th entry (the first one
# included) is a restart point: it has shared == 0, and restart[i] is its
# offset from the start of the block.  There is always at least one restart
# (offset 0), so an empty block is eight bytes: fixed32(0) fixed32(1).
# All offsets and lengths are 32-bit: a block stays below 4 GiB.
# Not thread-safe: the table builder that owns it uses it from one thread.
cimport cython
from libc.stdint cimport uint32_t

# Why BlockBuilder.append refused an entry (0: it did not).
cdef enum:
    BUILD_OK = 0
    BUILD_NO_MEMORY = -1
    BUILD_TOO_BIG = -2           # the block would pass 4 GiB
    BUILD_FINISHED = -3          # finish() was called and reset() was not
    BUILD_OUT_OF_ORDER = -4      # KVCY_DEBUG only: key not after the last one


@cython.final
cdef class BlockBuilder:
    cdef unsigned char* buf      # the entries written so far (no restart array)
    cdef size_t size             # bytes used in buf
    cdef size_t capacity         # bytes allocated for buf
    cdef uint32_t* restarts      # offsets of the restart entries; restarts[0] == 0
    cdef size_t num_restarts     # used slots of restarts (>= 1)
    cdef size_t restarts_cap     # allocated slots of restarts
    cdef int restart_interval    # entries per restart segment (>= 1)
    cdef int counter             # entries since the last restart point
    cdef size_t count_           # entries added since the last reset
    cdef unsigned char* last     # the last key added
    cdef size_t last_len         # bytes of the last key
    cdef size_t last_cap         # bytes allocated for last
    cdef bint finished           # finish() was called; add() refuses until reset()

    cdef int append(self, const unsigned char* key, size_t key_len,
                    const unsigned char* value, size_t value_len) noexcept nogil
    cdef int add_raw(self, const unsigned char* key, size_t key_len,
                     const unsigned char* value, size_t value_len) except -1
    cdef void finish_into(self, unsigned char* p) noexcept nogil
    cdef void clear(self) noexcept nogil
    cdef size_t size_estimate(self) noexcept nogil
