# cython: language_level=3
# Table: the reader of one SSTable file; the point lookup and block loading
# in C.  See kvcy/_table.pyx.
from libc.stdint cimport uint32_t, uint64_t
from kvcy._block cimport Block
from kvcy._block_cache cimport BlockCache, BlockCacheCore, CacheHandle
# Re-exported: the read errors and the C face of a table live with the block reads.
from kvcy._table_block cimport (
    READ_OK, READ_BAD_HANDLE, READ_IO, READ_TRUNCATED, READ_CHECKSUM, READ_BAD_LENGTH,
    READ_DECOMPRESS, READ_UNKNOWN_COMPRESSION, READ_TRAILER, READ_CURSOR, READ_INDEX_VALUE,
    READ_UNKNOWN_KIND, READ_NO_MEMORY, READ_NEEDS_GIL, READ_SHORT_EXPIRING, READ_BAD_FILTER,
    READ_TOP_INDEX_VALUE, READ_DEFERRED, DEFER_BLOCK, DEFER_TABLE, IN_FILTER,
    ReadError, TableReader, read_fail, table_cached_block, table_read_block)

# The answer of a lookup in one table.
cdef struct Found:
    int kind                     # -1 nothing for the key, else its KIND_* (value, expiring, delete)
    uint64_t sequence            # the entry's sequence
    const unsigned char* value   # inside handle's block
    size_t value_len
    CacheHandle* handle          # pins the block; REQUIRES cache_release when not NULL


cdef class Table:
    cdef TableReader r                   # the C face, for kvcy._read_path
    cdef readonly object file            # env RandomAccessFile (or any object with read(offset, n))
    cdef readonly object path
    cdef readonly object properties      # TableProperties
    cdef readonly Block index            # the index block
    cdef readonly object bloom           # BloomFilter or None
    cdef readonly BlockCache block_cache # or None
    cdef public object row_cache         # kvcy.cache.RowCache or None
    cdef object __weakref__

    cdef int lookup(self, const unsigned char* key, size_t klen, uint64_t sequence,
                    Found* out) except -1
    cdef CacheHandle* load_block(self, uint64_t offset, uint64_t size, int in_index,
                                 bint raw=*) except NULL
    cdef Block block_for_handle(self, const unsigned char* v, size_t n)
    cdef Block index_partition(self, const unsigned char* v, size_t n)
    cdef int partition_find(self, const unsigned char* key, size_t klen, uint64_t tag,
                            uint64_t* offset, uint64_t* size) except -1
    cdef object read_error(self, const ReadError* err)


cdef int table_data_find(TableReader* t, CacheHandle* h, uint64_t offset, const unsigned char* key,
                         size_t klen, uint64_t tag, Found* out, ReadError* err) noexcept nogil
cdef int table_lookup(TableReader* t, const unsigned char* key, size_t klen, uint64_t sequence,
                      Found* out, ReadError* err) noexcept nogil
cdef object found_value(Found* f, object clock)
