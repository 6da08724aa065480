# cython: language_level=3
# BlockCache: decompressed, checked table blocks in C memory, keyed by
# (table file number, block offset), charged by bytes, LRU, sharded, safe for
# readers that do not hold the GIL.  See kvcy/_block_cache.pyx.
#
# A CacheHandle is a pinned block: its bytes stay valid until the holder calls
# cache_release(), even if the cache evicts it meanwhile (it is then freed by
# the last release).  A handle made while the cache is disabled (capacity 0)
# is never in the cache and is freed by its only release.
from libc.stdint cimport uint32_t, uint64_t

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    int pthread_mutex_init(pthread_mutex_t* m, const void* attr)
    int pthread_mutex_destroy(pthread_mutex_t* m)
    int pthread_mutex_lock(pthread_mutex_t* m)
    int pthread_mutex_unlock(pthread_mutex_t* m)

cdef enum:
    # Bookkeeping charged per cached block on top of its bytes (the entry, the
    # hash slot and malloc's own overhead, rounded up).
    BLOCK_ENTRY_OVERHEAD_BYTES = 96
    BLOCK_CACHE_MAX_SHARDS = 16

cdef struct CacheHandle:
    uint64_t file_number         # key, with offset
    uint64_t offset
    unsigned char* data          # the block's raw (uncompressed) bytes, right after the
                                 # handle in the same allocation (handle_alloc)
    size_t size                  # bytes at data
    uint32_t restarts            # checked trailer: offset of the restart array
    uint32_t num_restarts        # checked trailer: restart count, >= 1
    size_t charge                # size + BLOCK_ENTRY_OVERHEAD_BYTES
    Py_ssize_t refs              # users holding it, +1 while it is in the cache (atomic)
    bint in_cache                # True while the hash table and LRU list hold it
    void* shard                  # the CacheShard it belongs to (NULL: detached)
    CacheHandle* next_hash       # chain in the shard's bucket
    CacheHandle* lru_prev        # LRU list: head.lru_next is the least recently used
    CacheHandle* lru_next

cdef struct CacheShard:
    pthread_mutex_t mutex        # guards everything below and the handles' links
    size_t capacity              # bytes this shard may hold
    size_t usage                 # bytes charged by the handles in it
    size_t count                 # handles in it
    CacheHandle** buckets        # hash table, power-of-two length
    size_t num_buckets
    CacheHandle lru              # sentinel of the circular LRU list
    unsigned long long hits
    unsigned long long misses


# The cache itself, as C readers without the GIL see it.
cdef struct BlockCacheCore:
    CacheShard* shards           # num_shards of them, malloc'd
    int num_shards               # power of two, 1..BLOCK_CACHE_MAX_SHARDS
    size_t capacity              # total bytes, 0 = disabled


cdef class BlockCache:
    cdef BlockCacheCore core     # owned; freed at dealloc

    cdef unsigned long long total(self, int what) noexcept


cdef CacheHandle* cache_lookup(BlockCacheCore* cache, uint64_t file_number,
                               uint64_t offset) noexcept nogil
cdef CacheHandle* handle_alloc(size_t size) noexcept nogil
cdef CacheHandle* cache_insert(BlockCacheCore* cache, uint64_t file_number, uint64_t offset,
                               CacheHandle* h) noexcept nogil
cdef void cache_release(CacheHandle* h) noexcept nogil
