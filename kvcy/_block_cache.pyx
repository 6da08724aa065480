# cython: language_level=3, embedsignature=True
"""BlockCache: the C-level cache of decompressed table blocks.

Keyed by (table file number, block offset): a table file is never rewritten
under the same number, so a cached block is right for as long as the file
can be read and nothing is ever invalidated.  Each block is charged its
bytes plus BLOCK_ENTRY_OVERHEAD_BYTES; when a shard is over its share of the
capacity, its least recently used blocks are dropped.  A handle and its
block's bytes are one allocation (handle_alloc).

Readers call lookup()/insert() without the GIL.  The key space is split
over up to 16 shards (fewer for small caches, so that one block still fits a
shard), each with its own mutex, so concurrent readers rarely wait for each
other.  A returned CacheHandle is pinned: eviction only unlinks it, and the
last cache_release() frees it, so a reader never loses the bytes it is
reading.  Pin counts are atomic, so a release takes no lock, and blocks
are freed after the shard's mutex is let go.  Hit and miss counts are kept
per shard under its mutex.

Thread-safety: every method may be called from any thread, with or without
the GIL.  After os.fork() the child must not use a cache inherited from the
parent (a mutex may be held by a thread that does not exist there); kvcy's
connections refuse all use after a fork, so it never does.
"""
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport calloc, malloc, free
from libc.string cimport memset

# Smallest share of the capacity a shard gets: below this, fewer shards.
cdef size_t MIN_SHARD_BYTES = 256 * 1024


cdef inline uint64_t hash_key(uint64_t file_number, uint64_t offset) noexcept nogil:
    cdef uint64_t h = file_number * <uint64_t>0x9E3779B97F4A7C15ULL
    h ^= offset + <uint64_t>0x632BE59BD9B4E019ULL + (h << 6) + (h >> 2)
    h ^= h >> 29
    h *= <uint64_t>0xBF58476D1CE4E5B9ULL
    h ^= h >> 32
    return h


cdef inline void lru_unlink(CacheHandle* h) noexcept nogil:
    h.lru_prev.lru_next = h.lru_next
    h.lru_next.lru_prev = h.lru_prev


cdef inline void lru_append(CacheShard* s, CacheHandle* h) noexcept nogil:
    # Most recently used goes last, just before the sentinel.
    h.lru_next = &s.lru
    h.lru_prev = s.lru.lru_prev
    h.lru_prev.lru_next = h
    s.lru.lru_prev = h


cdef extern from *:
    """
    static inline Py_ssize_t kvcy_refs_add(Py_ssize_t* p, Py_ssize_t d) {
        return __atomic_add_fetch(p, d, __ATOMIC_ACQ_REL);
    }
    """
    # refs += d, atomically: the new count.
    Py_ssize_t refs_add "kvcy_refs_add"(Py_ssize_t* p, Py_ssize_t d) noexcept nogil


cdef inline void unref(CacheHandle* h) noexcept nogil:
    # Drop one pin; the last frees the handle.  Needs no lock: while a
    # handle is in the cache the cache holds a pin, so the count reaches 0
    # only after eviction, when no lookup can find it any more.
    if refs_add(&h.refs, -1) == 0:
        free(h)                      # the bytes live in the same allocation


cdef void hash_remove(CacheShard* s, CacheHandle* h) noexcept nogil:
    cdef CacheHandle** slot = &s.buckets[hash_key(h.file_number, h.offset) & (s.num_buckets - 1)]
    while slot[0] != NULL and slot[0] != h:
        slot = &slot[0].next_hash
    if slot[0] == h:
        slot[0] = h.next_hash


cdef CacheHandle* evict_locked(CacheShard* s, CacheHandle* h,
                               CacheHandle* dead) noexcept nogil:
    # Take h out of the cache; pinned bytes live on until the last release.
    # The cache's pin is dropped after the shard's mutex is released (a
    # free of a block another thread allocated can wait for that thread's
    # malloc arena): h joins the `dead` chain, returned, for unref_chain.
    hash_remove(s, h)
    lru_unlink(h)
    h.in_cache = False
    s.usage -= h.charge
    s.count -= 1
    h.next_hash = dead
    return h


cdef inline void unref_chain(CacheHandle* dead) noexcept nogil:
    # The cache's pins of the handles evict_locked() chained, dropped.
    cdef CacheHandle* nxt
    while dead != NULL:
        nxt = dead.next_hash
        unref(dead)
        dead = nxt


cdef void evict_all(CacheShard* s) noexcept nogil:
    cdef CacheHandle* dead = NULL
    pthread_mutex_lock(&s.mutex)
    while s.lru.lru_next != &s.lru:
        dead = evict_locked(s, s.lru.lru_next, dead)
    pthread_mutex_unlock(&s.mutex)
    unref_chain(dead)


cdef void grow_buckets(CacheShard* s) noexcept nogil:
    # Double the hash table; on allocation failure keep the longer chains.
    cdef size_t n = s.num_buckets * 2
    cdef CacheHandle** grown = <CacheHandle**>calloc(n, sizeof(CacheHandle*))
    cdef CacheHandle* h
    cdef CacheHandle* nxt
    cdef size_t i, b
    if grown == NULL:
        return
    for i in range(s.num_buckets):
        h = s.buckets[i]
        while h != NULL:
            nxt = h.next_hash
            b = hash_key(h.file_number, h.offset) & (n - 1)
            h.next_hash = grown[b]
            grown[b] = h
            h = nxt
    free(s.buckets)
    s.buckets = grown
    s.num_buckets = n


cdef void cache_release(CacheHandle* h) noexcept nogil:
    """Give back a handle from lookup(), insert() or handle_alloc()."""
    unref(h)


cdef CacheHandle* handle_alloc(size_t size) noexcept nogil:
    """A detached handle (pinned once, in no cache) with room for size bytes
    at h.data, in one allocation with the handle: a block read costs one
    malloc and its eviction one free, which matters when reader threads
    free each other's blocks (each free then takes the other thread's malloc
    arena lock).  NULL when out of memory.  The caller fills data,
    restarts and num_restarts, then inserts it or releases it."""
    cdef CacheHandle* h = <CacheHandle*>malloc(sizeof(CacheHandle) + (size if size else 1))
    if h == NULL:
        return NULL
    memset(h, 0, sizeof(CacheHandle))
    h.data = <unsigned char*>(h + 1)
    h.size = size
    h.charge = size + BLOCK_ENTRY_OVERHEAD_BYTES
    h.refs = 1
    return h


cdef CacheHandle* cache_lookup(BlockCacheCore* cache, uint64_t file_number,
                               uint64_t offset) noexcept nogil:
    """The pinned block at (file_number, offset), or NULL on a miss."""
    cdef uint64_t hv = hash_key(file_number, offset)
    cdef CacheShard* s = &cache.shards[(hv >> 56) & <uint64_t>(cache.num_shards - 1)]
    cdef CacheHandle* h
    pthread_mutex_lock(&s.mutex)
    h = s.buckets[hv & (s.num_buckets - 1)]
    while h != NULL and (h.file_number != file_number or h.offset != offset):
        h = h.next_hash
    if h != NULL:
        refs_add(&h.refs, 1)
        lru_unlink(h)
        lru_append(s, h)
        s.hits += 1
    else:
        s.misses += 1
    pthread_mutex_unlock(&s.mutex)
    return h

cdef CacheHandle* cache_insert(BlockCacheCore* cache, uint64_t file_number, uint64_t offset,
                               CacheHandle* h) noexcept nogil:
    """Cache a checked block from handle_alloc() (the caller's pin passes to
    the returned handle, h itself).  A block larger than a shard's
    capacity, or any block of a disabled cache, stays detached: the
    caller's release frees it."""
    cdef uint64_t hv = hash_key(file_number, offset)
    cdef CacheShard* s = &cache.shards[(hv >> 56) & <uint64_t>(cache.num_shards - 1)]
    cdef CacheHandle* old
    cdef CacheHandle** slot
    cdef CacheHandle* dead = NULL
    if h.charge > s.capacity:
        return h
    h.file_number = file_number
    h.offset = offset
    h.shard = s
    pthread_mutex_lock(&s.mutex)
    slot = &s.buckets[hv & (s.num_buckets - 1)]
    old = slot[0]
    while old != NULL and (old.file_number != file_number or old.offset != offset):
        old = old.next_hash
    if old != NULL:
        dead = evict_locked(s, old, dead)    # two readers missed at once; keep the newer copy
    slot = &s.buckets[hv & (s.num_buckets - 1)]
    h.next_hash = slot[0]
    slot[0] = h
    h.refs = 2                       # the cache's and the caller's (not yet shared)
    h.in_cache = True
    lru_append(s, h)
    s.usage += h.charge
    s.count += 1
    while s.usage > s.capacity and s.lru.lru_next != &s.lru:
        dead = evict_locked(s, s.lru.lru_next, dead)
    if s.count > s.num_buckets:
        grow_buckets(s)
    pthread_mutex_unlock(&s.mutex)
    unref_chain(dead)
    return h


cdef class BlockCache:
    """Decompressed blocks keyed by (file number, offset), bounded in bytes;
    capacity_bytes=0 disables it.  See the module docstring."""

    def __cinit__(self, size_t capacity_bytes):
        cdef int shards = 1
        cdef int i
        cdef CacheShard* s
        while (shards < BLOCK_CACHE_MAX_SHARDS
               and capacity_bytes // <size_t>(shards * 2) >= MIN_SHARD_BYTES):
            shards *= 2
        self.core.capacity = capacity_bytes
        self.core.num_shards = shards
        self.core.shards = <CacheShard*>calloc(shards, sizeof(CacheShard))
        if self.core.shards == NULL:
            raise MemoryError()
        for i in range(shards):
            s = &self.core.shards[i]
            pthread_mutex_init(&s.mutex, NULL)
            s.capacity = capacity_bytes // <size_t>shards
            s.lru.lru_next = &s.lru
            s.lru.lru_prev = &s.lru
            s.num_buckets = 256
            s.buckets = <CacheHandle**>calloc(s.num_buckets, sizeof(CacheHandle*))
            if s.buckets == NULL:
                raise MemoryError()

    def __dealloc__(self):
        cdef int i
        if self.core.shards == NULL:
            return
        for i in range(self.core.num_shards):
            evict_all(&self.core.shards[i])
        for i in range(self.core.num_shards):
            free(self.core.shards[i].buckets)
            pthread_mutex_destroy(&self.core.shards[i].mutex)
        free(self.core.shards)

    # -- Python face: statistics and maintenance -----------------------------

    def clear(self):
        """Drop every cached block (pinned ones are freed by their last release)."""
        cdef int i
        cdef CacheShard* s
        for i in range(self.core.num_shards):
            s = &self.core.shards[i]
            with nogil:
                evict_all(s)

    cdef unsigned long long total(self, int what) noexcept:
        cdef unsigned long long n = 0
        cdef int i
        cdef CacheShard* s
        for i in range(self.core.num_shards):
            s = &self.core.shards[i]
            with nogil:
                pthread_mutex_lock(&s.mutex)
                if what == 0:
                    n += s.hits
                elif what == 1:
                    n += s.misses
                elif what == 2:
                    n += s.usage
                else:
                    n += s.count
                pthread_mutex_unlock(&s.mutex)
        return n

    @property
    def hits(self):
        """Lookups that found their block."""
        return self.total(0)

    @property
    def misses(self):
        """Lookups that did not (each is followed by a read from the file)."""
        return self.total(1)

    @property
    def used_bytes(self):
        """Bytes charged by the cached blocks (their sizes plus overhead)."""
        return self.total(2)

    @property
    def capacity_bytes(self):
        return self.core.capacity

    @property
    def num_shards(self):
        return self.core.num_shards

    @property
    def enabled(self):
        return self.core.capacity > 0

    def __len__(self):
        return self.total(3)

    def __repr__(self):
        return "<kvcy BlockCache %d of %d bytes in %d blocks>" % (
            self.total(2), self.core.capacity, self.total(3))


# For Python callers (kvcy.cache): the per-block overhead the cache charges.
ENTRY_OVERHEAD_BYTES = BLOCK_ENTRY_OVERHEAD_BYTES
