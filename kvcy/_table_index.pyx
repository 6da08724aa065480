# cython: language_level=3, embedsignature=True
"""Which data block of a table may hold a key, in C without the GIL.

An unpartitioned table (format version 1) answers from its index block,
held in memory by the open Table: table_index_find seeks it for the first
separator >= (key, tag).  A partitioned one (version 2, docs/format.md,
"Partitioned index and filters") answers in three steps: its top-level
index, in memory, names the partition; the partition's filter (a bloom
filter) may rule the key out; the partition's index names the block.  The
filter and index partitions of a table read through a mapping are used
where they lie in it: the first read of each checks its CRC32C (and an
index partition's restart array) and records that in the table's
part_state, and later reads probe the filter and search the index in the
mapping without copying, checking or caching the block again, as LevelDB
reads raw blocks of a mapped table in place.  So the block cache holds data
blocks only, and a lookup that misses it costs one block read, not three.
A partition stored compressed (index partitions of tables written before
that), and every partition of a table read with pread, come from the block
cache, read and checked like data blocks on a miss
(kvcy/_table_block.pyx).  kvcy/_table.pyx then searches the data block.

Every value read from an index is checked to hold exactly its handles,
and a filter partition its probe count, before use; a failure is a
ReadError code (kvcy/_table_block.pxd).

Thread-safety: functions of the table's immutable state, the block cache,
which has its own locks, and part_state, whose flags are only ever added,
atomically (a reader that misses a flag set a moment ago checks the block
again: the same answer).
"""
from libc.stdint cimport uint32_t, uint64_t

from kvcy._block cimport BlockCursor, cursor_init, cursor_free, cursor_seek
from kvcy._block_cache cimport CacheHandle, cache_release
from kvcy._bloom cimport BLOOM_MAX_PROBES, bloom_may_contain
from kvcy._coding cimport get_varint64, load_fixed32
from kvcy._mapped_file cimport map_run
from kvcy._table_block cimport (TableReader, ReadError, IN_FILTER, READ_CURSOR, READ_INDEX_VALUE,
                                READ_TOP_INDEX_VALUE, READ_BAD_FILTER, PART_FILTER_CHECKED,
                                PART_FILTER_CACHED, PART_INDEX_CHECKED, PART_INDEX_CACHED,
                                table_cached_block, table_read_block, table_handle_ok,
                                check_stored_block, check_block_trailer, table_mapped_failure)
from kvcy import table_format as _format

cdef uint64_t TRAILER_BYTES = _format.BLOCK_TRAILER_BYTES


cdef extern from *:
    """
    static inline unsigned char kvcy_part_flags(const unsigned char* p) {
        return __atomic_load_n(p, __ATOMIC_ACQUIRE);
    }
    static inline void kvcy_part_add(unsigned char* p, unsigned char flags) {
        __atomic_fetch_or(p, flags, __ATOMIC_RELEASE);
    }
    """
    unsigned char part_flags "kvcy_part_flags"(const unsigned char* p) noexcept nogil
    void part_add "kvcy_part_add"(unsigned char* p, unsigned char flags) noexcept nogil
    # A hint that never faults, even on an address the file no longer backs.
    void prefetch "__builtin_prefetch"(const void* p) noexcept nogil


cdef int find_handles_at(BlockCursor* c, const unsigned char* key, size_t klen, uint64_t tag,
                        uint64_t* handles, int count, int bad_value, ReadError* err) noexcept nogil:
    # find_handles with the caller's cursor, initialized over the block and
    # freed by the caller; left on the entry found (c.current).
    cdef const unsigned char* p
    cdef const unsigned char* limit
    cdef int i
    cdef int r = cursor_seek(c, key, klen, tag)
    if r < 0:
        err.in_index = True
        err.sub = c.error
        err.a = c.error_offset
        err.code = READ_CURSOR
    elif r > 0:
        p = c.value
        limit = c.value + c.value_len
        for i in range(count):
            p = get_varint64(p, limit, &handles[i])
            if p == NULL:
                break
        if p == NULL or p != limit:
            err.in_index = True
            err.a = c.current
            err.code = bad_value
            r = -1
    return r


cdef int find_handles(const unsigned char* base, uint32_t restarts, uint32_t num_restarts,
                      const unsigned char* key, size_t klen, uint64_t tag, uint64_t* handles,
                      int count, int bad_value, ReadError* err) noexcept nogil:
    # In an index block (separator -> `count` varint64s: one block handle in
    # an index, two in a top-level index), the numbers of the first entry
    # >= (key, tag): 1 found, 0 the key lies past the last entry, -1 with
    # err (bad_value: the entry does not hold exactly `count` numbers).
    cdef BlockCursor c
    cursor_init(&c, base, restarts, num_restarts)
    cdef int r = find_handles_at(&c, key, klen, tag, handles, count, bad_value, err)
    cursor_free(&c)
    return r


cdef int table_index_find(TableReader* t, const unsigned char* key, size_t klen,
                                 uint64_t tag, uint64_t* offset, uint64_t* size,
                                 ReadError* err) noexcept nogil:
    # Handle of the data block that would hold (key, tag) in an unpartitioned
    # table: 1 found, 0 the key lies past the last block, -1 with err.
    cdef uint64_t h[2]
    cdef int r = find_handles(t.index_base, t.index_restarts, t.index_num_restarts, key, klen,
                              tag, h, 2, READ_INDEX_VALUE, err)
    offset[0] = h[0]
    size[0] = h[1]
    return r


cdef inline int filter_probe(const unsigned char* data, size_t n, const unsigned char* key,
                             size_t klen, ReadError* err) noexcept nogil:
    # Probe a filter partition's n bytes (BloomFilterBuilder.finish()'s
    # bytes, checked as BloomFilter checks a whole filter): 1 may hold key,
    # 0 certainly not, -1 with err.
    cdef int k = data[n - 1] if n else 0
    if n < 2 or k < 1 or k > BLOOM_MAX_PROBES:
        err.code = READ_BAD_FILTER
        err.a = n
        err.b = <uint64_t>k
        return -1
    return 1 if bloom_may_contain(data, (n - 1) * 8, k, key, klen) else 0


cdef int filter_check(CacheHandle* h, const unsigned char* key, size_t klen,
                      ReadError* err) noexcept nogil:
    return filter_probe(h.data, h.size, key, klen, err)


cdef enum:
    IN_CACHE = 2                 # in_place_*: the partition is stored compressed


cdef struct InPlace:
    # One partition used where it lies in the table's mapping, under map_run.
    const unsigned char* src     # the partition's bytes, then its trailer
    uint64_t size
    bint checked                 # its checks passed before: trust the bytes
    const unsigned char* key
    size_t klen
    uint64_t tag
    uint64_t* handles            # in_place_index: the data block's handle
    ReadError* err
    BlockCursor cursor           # in_place_index; the caller frees it (a SIGBUS
                                 # may leave its key on the heap)


cdef int in_place_filter(void* arg) noexcept nogil:
    # The filter partition's answer for key (1, 0, -1 with err), or IN_CACHE.
    cdef InPlace* d = <InPlace*>arg
    cdef int r
    if not d.checked:
        r = check_stored_block(d.src, d.size, d.err)
        if r != 0:
            return IN_CACHE if r > 0 else -1
    return filter_probe(d.src, <size_t>d.size, d.key, d.klen, d.err)


cdef int in_place_index(void* arg) noexcept nogil:
    # find_handles over the index partition (1, 0, -1 with err), or IN_CACHE.
    cdef InPlace* d = <InPlace*>arg
    cdef uint32_t restarts, num
    cdef int r
    num = load_fixed32(d.src + d.size - 4) if d.size >= 4 else 0
    if d.checked and num != 0 and num <= (d.size - 4) // 4:
        # The restart array was checked; its count is bounded again all the
        # same, so that bytes changed behind kvcy's back since then cannot
        # send the cursor outside the block (it bounds every entry it reads).
        restarts = <uint32_t>(d.size - 4 - 4 * <uint64_t>num)
    else:
        r = check_stored_block(d.src, d.size, d.err)
        if r != 0:
            return IN_CACHE if r > 0 else -1
        if check_block_trailer(d.src, <size_t>d.size, &restarts, &num, d.err) < 0:
            return -1
    cursor_init(&d.cursor, d.src, restarts, num)
    return find_handles_at(&d.cursor, d.key, d.klen, d.tag, d.handles, 2, READ_INDEX_VALUE,
                           d.err)


cdef int in_place(TableReader* t, int (*fn)(void*) noexcept nogil, uint64_t offset,
                  uint64_t size, unsigned char* state, unsigned char checked_flag,
                  unsigned char cached_flag, const unsigned char* key, size_t klen,
                  uint64_t tag, uint64_t* handles, ReadError* err) noexcept nogil:
    # fn over the partition at (offset, size) in t's mapping: its answer, or
    # IN_CACHE (stored compressed: cached_flag is set, so the next lookups
    # go to the cache at once).  A pass of the checks sets checked_flag.
    cdef InPlace d
    cdef int r
    if not table_handle_ok(t, offset, size, err):
        return -1
    d.src = t.map + offset
    d.size = size
    d.checked = (part_flags(state) & checked_flag) != 0
    d.key = key
    d.klen = klen
    d.tag = tag
    d.handles = handles
    d.err = err
    cursor_init(&d.cursor, d.src, 0, 0)
    r = map_run(fn, &d)
    cursor_free(&d.cursor)
    if r == IN_CACHE:
        part_add(state, cached_flag)
    elif r < 0:
        table_mapped_failure(t, offset, <size_t>size + TRAILER_BYTES, r, err)
        err.offset = offset
        r = -1
    elif not d.checked:
        part_add(state, checked_flag)
    return r


cdef int partition_find_nogil(TableReader* t, const unsigned char* key, size_t klen,
                              uint64_t tag, uint64_t* offset, uint64_t* size,
                              ReadError* err) noexcept nogil:
    # table_index_find for a partitioned table: the top-level index names the
    # partition; its filter partition, then its index partition, are used
    # in place (see the module docstring) or come from the block cache.
    # REQUIRES: t.fd >= 0.
    cdef uint64_t parts[4]
    cdef uint64_t data[2]
    cdef CacheHandle* h
    cdef BlockCursor c
    cdef unsigned char* state = NULL
    cdef unsigned char flags = 0
    cdef int r
    cursor_init(&c, t.index_base, t.index_restarts, t.index_num_restarts)
    r = find_handles_at(&c, key, klen, tag, parts, 4, READ_TOP_INDEX_VALUE, err)
    if r > 0 and t.part_state != NULL:
        state = t.part_state + (c.current >> 3)        # this partition's flags
        flags = part_flags(state)
        # The first byte each step reads, the filter's probe count (its last
        # byte) and the index partition's restart count (its last 4), are
        # fetched together: in a large database neither is in the CPU's
        # caches, and the two misses then overlap.  (Fetching the whole
        # index partition measured the same, and costs 64 lines of memory
        # traffic on a lookup the filter rules out.)  Within the file
        # whatever the handles say.
        if 0 < parts[3] < t.file_size and parts[2] < t.file_size - parts[3]:
            prefetch(t.map + parts[2] + parts[3] - 1)
        if not (flags & PART_INDEX_CACHED) and 4 <= parts[1] < t.file_size \
                and parts[0] < t.file_size - parts[1]:
            prefetch(t.map + parts[0] + parts[1] - 4)
    cursor_free(&c)
    if r <= 0:
        return r
    if parts[3]:
        err.in_index = IN_FILTER
        r = IN_CACHE
        if state != NULL and not (flags & PART_FILTER_CACHED):
            r = in_place(t, in_place_filter, parts[2], parts[3], state, PART_FILTER_CHECKED,
                         PART_FILTER_CACHED, key, klen, tag, NULL, err)
        if r == IN_CACHE:
            h = table_cached_block(t, parts[2], True)
            if h == NULL:
                h = table_read_block(t, parts[2], parts[3], err, True)
                if h == NULL:
                    return -1
            r = filter_check(h, key, klen, err)
            cache_release(h)
        if r <= 0:
            err.offset = parts[2]
            return r
    err.in_index = True
    r = IN_CACHE
    if state != NULL and not (flags & PART_INDEX_CACHED):
        r = in_place(t, in_place_index, parts[0], parts[1], state, PART_INDEX_CHECKED,
                     PART_INDEX_CACHED, key, klen, tag, data, err)
    if r == IN_CACHE:
        h = table_cached_block(t, parts[0])
        if h == NULL:
            h = table_read_block(t, parts[0], parts[1], err)
            if h == NULL:
                return -1
        r = find_handles(h.data, h.restarts, h.num_restarts, key, klen, tag, data, 2,
                         READ_INDEX_VALUE, err)
        cache_release(h)
    err.offset = parts[0]
    offset[0] = data[0]
    size[0] = data[1]
    return r
