# cython: language_level=3
# Append-only skiplist of internal-key entries, allocated in an Arena.
#
# One writer inserts; readers traverse without locks.  Both hold the GIL
# while they touch the list (no method releases it), so a reader always sees
# a fully linked node; nodes are never removed or changed once linked.
# Each node owns one entry; its bytes follow the node's next[] array:
#     user_key | tag (fixed64 LE) | value
# so user_key + tag is the internal key exactly as tables store it.
from libc.stdint cimport uint32_t, uint64_t
from kvcy._arena cimport Arena

cdef enum:
    SKIPLIST_MAX_HEIGHT = 12

cdef struct SkipNode:
    const unsigned char* key     # user key; the 8-byte tag and the value follow it
    uint32_t key_len             # user key length
    uint32_t value_len           # value length (0 for tombstones)
    uint64_t tag                 # sequence << 8 | kind, also encoded after the key
    int height                   # number of valid next[] slots
    SkipNode* next[1]            # really `height` slots

cdef inline const unsigned char* node_value(const SkipNode* n) noexcept nogil:
    return n.key + n.key_len + 8

cdef class SkipList:
    cdef Arena arena             # owns every node
    cdef SkipNode* head          # sentinel of full height, holds no entry
    cdef int height              # current height of the list (1..SKIPLIST_MAX_HEIGHT)
    cdef uint64_t rng            # xorshift state for node heights
    cdef size_t count            # number of entries

    cdef SkipNode* insert(self, const unsigned char* key, size_t key_len, uint64_t tag,
                          const unsigned char* value, size_t value_len) except NULL
    cdef SkipNode* seek(self, const unsigned char* key, size_t key_len, uint64_t tag,
                        SkipNode** prev) noexcept
    cdef SkipNode* find_less_than(self, const unsigned char* key, size_t key_len,
                                  uint64_t tag) noexcept
    cdef SkipNode* find_last(self) noexcept
    cdef SkipNode* first(self) noexcept
    cdef int random_height(self) noexcept
