# cython: language_level=3, embedsignature=True
"""Which data block of a table may hold a key, in C without the GIL.

An unpartitioned table (format version 1) answers from its index block,
held in memory by the open Table: table_index_find seeks it for the first
separator >= (key, tag).  A partitioned one (version 2, docs/format.md,
"Partitioned index and filters") answers in three steps: its top-level
index, in memory, names the partition; the partition's filter (a bloom
filter) may rule the key out; the partition's index names the block.  The
filter and index partitions come from the block cache, read and checked
like data blocks on a miss (kvcy/_table_block.pyx).  kvcy/_table.pyx then
searches the block.

Every value read from an index is checked to hold exactly its handles,
and a filter partition its probe count, before use; a failure is a
ReadError code (kvcy/_table_block.pxd).

Thread-safety: pure functions of the table's immutable state and the
block cache, which has its own locks.
"""
from libc.stdint cimport uint32_t, uint64_t

from kvcy._block cimport BlockCursor, cursor_init, cursor_free, cursor_seek
from kvcy._block_cache cimport CacheHandle, cache_release
from kvcy._bloom cimport BLOOM_MAX_PROBES, bloom_may_contain
from kvcy._coding cimport get_varint64
from kvcy._table_block cimport (TableReader, ReadError, IN_FILTER, READ_CURSOR, READ_INDEX_VALUE,
                                READ_TOP_INDEX_VALUE, READ_BAD_FILTER, table_cached_block,
                                table_read_block)


cdef int find_handles(const unsigned char* base, uint32_t restarts, uint32_t num_restarts,
                      const unsigned char* key, size_t klen, uint64_t tag, uint64_t* handles,
                      int count, int bad_value, ReadError* err) noexcept nogil:
    # In an index block (separator -> `count` varint64s: one block handle in
    # an index, two in a top-level index), the numbers of the first entry
    # >= (key, tag): 1 found, 0 the key lies past the last entry, -1 with
    # err (bad_value: the entry does not hold exactly `count` numbers).
    cdef BlockCursor c
    cdef const unsigned char* p
    cdef const unsigned char* limit
    cdef int r, i
    cursor_init(&c, base, restarts, num_restarts)
    r = cursor_seek(&c, key, klen, tag)
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


cdef int filter_check(CacheHandle* h, const unsigned char* key, size_t klen,
                      ReadError* err) noexcept nogil:
    # Probe a filter partition (BloomFilterBuilder.finish()'s bytes, checked
    # as BloomFilter checks a whole filter): 1 may hold key, 0 certainly
    # not, -1 with err.
    cdef size_t n = h.size
    cdef int k = h.data[n - 1] if n else 0
    if n < 2 or k < 1 or k > BLOOM_MAX_PROBES:
        err.code = READ_BAD_FILTER
        err.a = n
        err.b = <uint64_t>k
        return -1
    return 1 if bloom_may_contain(h.data, (n - 1) * 8, k, key, klen) else 0


cdef int partition_find_nogil(TableReader* t, const unsigned char* key, size_t klen,
                              uint64_t tag, uint64_t* offset, uint64_t* size,
                              ReadError* err) noexcept nogil:
    # table_index_find for a partitioned table: the top-level index names the
    # partition; its filter partition, then its index partition, come from
    # the block cache (read on a miss).  REQUIRES: t.fd >= 0.
    cdef uint64_t parts[4]
    cdef uint64_t data[2]
    cdef CacheHandle* h
    cdef int r = find_handles(t.index_base, t.index_restarts, t.index_num_restarts, key, klen,
                              tag, parts, 4, READ_TOP_INDEX_VALUE, err)
    if r <= 0:
        return r
    if parts[3]:
        err.in_index = IN_FILTER
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
