# cython: language_level=3
# Append-only skiplist of internal-key entries, allocated in an Arena.
#
# One writer inserts (holding the engine's write lock); readers traverse
# without locks and without the GIL, as in LevelDB: a node is filled in
# before a release store links it, and readers follow links with acquire
# loads (next_node), so a reader that reaches a node sees all of it.  Nodes
# are never removed or changed once linked; the arena outlives every reader
# (readers hold a reference to the memtable).
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

cdef extern from *:
    """
    static inline void* kvcy_load_acquire(void* const* p) {
        return __atomic_load_n((void**)p, __ATOMIC_ACQUIRE);
    }
    static inline void kvcy_store_release(void** p, void* v) {
        __atomic_store_n(p, v, __ATOMIC_RELEASE);
    }
    static inline int kvcy_load_relaxed_int(const int* p) {
        return __atomic_load_n((int*)p, __ATOMIC_RELAXED);
    }
    static inline void kvcy_store_relaxed_int(int* p, int v) {
        __atomic_store_n(p, v, __ATOMIC_RELAXED);
    }
    """
    void* load_acquire "kvcy_load_acquire"(void* const* p) noexcept nogil
    void store_release "kvcy_store_release"(void** p, void* v) noexcept nogil
    int load_relaxed_int "kvcy_load_relaxed_int"(const int* p) noexcept nogil
    void store_relaxed_int "kvcy_store_relaxed_int"(int* p, int v) noexcept nogil

cdef inline SkipNode* next_node(const SkipNode* n, int level) noexcept nogil:
    # n.next[level], as a reader without locks must load it.
    return <SkipNode*>load_acquire(<void* const*>&n.next[level])

# The newest entry of user key `key` with a tag <= `tag` or the first entry
# after it: the first node >= (key, tag), or NULL.  head and height are a
# SkipList's (height read relaxed: a reader that sees a new height before
# the head's links at that level reads NULL there, which is fine).
cdef SkipNode* skiplist_seek(SkipNode* head, const int* height, const unsigned char* key,
                             size_t key_len, uint64_t tag) noexcept nogil

cdef class SkipList:
    cdef Arena arena             # owns every node
    cdef SkipNode* head          # sentinel of full height, holds no entry
    cdef int height              # current height of the list (1..SKIPLIST_MAX_HEIGHT);
                                 # stored and loaded relaxed (readers without locks)
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
