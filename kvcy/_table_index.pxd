# cython: language_level=3
# Which data block of a table may hold a key: the index, or a partitioned
# table's top-level index, filter partition and index partition.  See
# kvcy/_table_index.pyx.
from libc.stdint cimport uint32_t, uint64_t
from kvcy._block_cache cimport CacheHandle
from kvcy._table_block cimport TableReader, ReadError

# The `count` varint64s of the first entry >= (key, tag) of an index block:
# 1 found, 0 past the last entry, -1 with err (bad_value: not exactly count).
cdef int find_handles(const unsigned char* base, uint32_t restarts, uint32_t num_restarts,
                      const unsigned char* key, size_t klen, uint64_t tag, uint64_t* handles,
                      int count, int bad_value, ReadError* err) noexcept nogil
# The data block handle for (key, tag) in an unpartitioned table: 1, 0, -1.
cdef int table_index_find(TableReader* t, const unsigned char* key, size_t klen,
                          uint64_t tag, uint64_t* offset, uint64_t* size,
                          ReadError* err) noexcept nogil
# A filter partition's answer for key: 1 may hold it, 0 not, -1 bad filter.
cdef int filter_check(CacheHandle* h, const unsigned char* key, size_t klen,
                      ReadError* err) noexcept nogil
# table_index_find for a partitioned table (REQUIRES: t.fd >= 0).
cdef int partition_find_nogil(TableReader* t, const unsigned char* key, size_t klen,
                              uint64_t tag, uint64_t* offset, uint64_t* size,
                              ReadError* err) noexcept nogil
