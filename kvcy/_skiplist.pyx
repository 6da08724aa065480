# cython: language_level=3, embedsignature=True
"""SkipList: the ordered index of a memtable.

Ordered by compare_internal (user key ascending, tag descending).  Heights
are drawn with branching factor 4 (as LevelDB), so a search touches about
log4(n) * 4 / 3 nodes per level.  Duplicate internal keys are impossible
because every entry has its own sequence number.
"""
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

from kvcy._arena cimport Arena
from kvcy._coding cimport put_fixed64
from kvcy._dbformat cimport compare_internal


cdef inline int node_compare(const SkipNode* n, const unsigned char* key, size_t key_len,
                             uint64_t tag) noexcept nogil:
    return compare_internal(n.key, n.key_len, n.tag, key, key_len, tag)


cdef SkipNode* skiplist_seek(SkipNode* head, const int* height, const unsigned char* key,
                             size_t key_len, uint64_t tag) noexcept nogil:
    cdef SkipNode* x = head
    cdef SkipNode* nxt
    cdef int level = load_relaxed_int(height) - 1
    while True:
        nxt = next_node(x, level)
        if nxt != NULL and node_compare(nxt, key, key_len, tag) < 0:
            x = nxt
        elif level == 0:
            return nxt
        else:
            level -= 1


cdef class SkipList:
    def __cinit__(self, Arena arena):
        cdef int i
        self.arena = arena
        self.head = <SkipNode*>arena.allocate_aligned(
            sizeof(SkipNode) + (SKIPLIST_MAX_HEIGHT - 1) * sizeof(SkipNode*))
        self.head.key = NULL
        self.head.key_len = 0
        self.head.value_len = 0
        self.head.tag = 0
        self.head.height = SKIPLIST_MAX_HEIGHT
        for i in range(SKIPLIST_MAX_HEIGHT):
            self.head.next[i] = NULL
        self.height = 1
        self.rng = 0x2545F4914F6CDD1D
        self.count = 0

    cdef int random_height(self) noexcept:
        cdef int h = 1
        cdef uint64_t x
        while h < SKIPLIST_MAX_HEIGHT:
            x = self.rng
            x ^= x << 13
            x ^= x >> 7
            x ^= x << 17
            self.rng = x
            if (x >> 32) & 3:       # continue with probability 1/4
                break
            h += 1
        return h

    cdef SkipNode* seek(self, const unsigned char* key, size_t key_len, uint64_t tag,
                        SkipNode** prev) noexcept:
        # First node >= (key, tag), or NULL; fills prev[level] when prev is given.
        cdef SkipNode* x = self.head
        cdef SkipNode* nxt
        cdef int level = self.height - 1
        while True:
            nxt = next_node(x, level)
            if nxt != NULL and node_compare(nxt, key, key_len, tag) < 0:
                x = nxt
            else:
                if prev != NULL:
                    prev[level] = x
                if level == 0:
                    return nxt
                level -= 1

    cdef SkipNode* find_less_than(self, const unsigned char* key, size_t key_len,
                                  uint64_t tag) noexcept:
        # Last node < (key, tag), or NULL when there is none.
        cdef SkipNode* x = self.head
        cdef SkipNode* nxt
        cdef int level = self.height - 1
        while True:
            nxt = next_node(x, level)
            if nxt != NULL and node_compare(nxt, key, key_len, tag) < 0:
                x = nxt
            else:
                if level == 0:
                    return NULL if x == self.head else x
                level -= 1

    cdef SkipNode* find_last(self) noexcept:
        cdef SkipNode* x = self.head
        cdef SkipNode* nxt
        cdef int level = self.height - 1
        while True:
            nxt = next_node(x, level)
            if nxt != NULL:
                x = nxt
            else:
                if level == 0:
                    return NULL if x == self.head else x
                level -= 1

    cdef SkipNode* first(self) noexcept:
        return next_node(self.head, 0)

    cdef SkipNode* insert(self, const unsigned char* key, size_t key_len, uint64_t tag,
                          const unsigned char* value, size_t value_len) except NULL:
        cdef SkipNode* prev[SKIPLIST_MAX_HEIGHT]
        cdef SkipNode* node
        cdef unsigned char* data
        cdef int height, i
        cdef size_t node_bytes
        self.seek(key, key_len, tag, prev)
        height = self.random_height()
        if height > self.height:
            for i in range(self.height, height):
                prev[i] = self.head
            store_relaxed_int(&self.height, height)
        node_bytes = sizeof(SkipNode) + (height - 1) * sizeof(SkipNode*)
        node = <SkipNode*>self.arena.allocate_aligned(node_bytes + key_len + 8 + value_len)
        data = (<unsigned char*>node) + node_bytes
        if key_len:
            memcpy(data, key, key_len)
        put_fixed64(data + key_len, tag)
        if value_len:
            memcpy(data + key_len + 8, value, value_len)
        node.key = data
        node.key_len = <uint32_t>key_len
        node.value_len = <uint32_t>value_len
        node.tag = tag
        node.height = height
        for i in range(height):
            # The node is private until the release store publishes it.
            node.next[i] = prev[i].next[i]
            store_release(<void**>&prev[i].next[i], <void*>node)
        self.count += 1
        return node
