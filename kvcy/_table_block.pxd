# cython: language_level=3
# Reading one block of a table file in C: the handle's bounds, the file's
# mapping or pread, CRC32C, decompression, the restart array's check, and
# the block cache.  See kvcy/_table_block.pyx.
from libc.stdint cimport uint32_t, uint64_t
from kvcy._block_cache cimport BlockCacheCore, CacheHandle

# Why a C read stopped (ReadError.code); 0 when it did not.  Not on disk.
cdef enum:
    READ_OK = 0
    READ_BAD_HANDLE = 1          # block handle outside the file's data part
    READ_IO = 2                  # pread failed; sub = errno
    READ_TRUNCATED = 3           # the file ended inside the block; a = bytes read
    READ_CHECKSUM = 4            # CRC32C of contents + compression byte differs
    READ_BAD_LENGTH = 5          # snappy header claims a = bytes, over the limit
    READ_DECOMPRESS = 6          # snappy data does not decode to its claimed length
    READ_UNKNOWN_COMPRESSION = 7 # sub = the compression byte
    READ_TRAILER = 8             # block restart array bad; sub = TRAILER_*, a..e = details
    READ_CURSOR = 9              # block entry bad; sub = BLOCK_*, a = entry offset
    READ_INDEX_VALUE = 10        # index entry does not hold exactly one block handle
    READ_UNKNOWN_KIND = 11       # entry kind byte not VALUE/DELETE; sub = kind, a = entry offset
    READ_NO_MEMORY = 12
    READ_NEEDS_GIL = 13          # the table reads through a Python file object
    READ_SHORT_EXPIRING = 14     # expiring value shorter than its expiry; a = entry offset, b = length
    READ_BAD_FILTER = 15         # filter partition shorter than 2 bytes (a = size) or k byte (b) bad
    READ_TOP_INDEX_VALUE = 16    # top-level index entry does not hold exactly two block handles
    READ_DEFERRED = 17           # defer_io was set and the lookup needs a block read; sub =
                                 # DEFER_BLOCK (the data block at offset, size) or DEFER_TABLE

cdef enum:
    DEFER_BLOCK = 1              # READ_DEFERRED: read the data block err.offset/err.size next
    DEFER_TABLE = 2              # READ_DEFERRED: probe the table again (a partitioned one)

cdef enum:
    IN_FILTER = 2                # ReadError.in_index of a filter partition

cdef struct ReadError:
    int code                     # READ_*
    int sub                      # detail code (see above)
    int in_index                 # 0 a data block, 1 (True) an index block (an index
                                 # partition, a top-level index), IN_FILTER a filter partition
    uint64_t offset              # the block's offset
    uint64_t size                # the block's size (from its handle)
    uint64_t a, b, c, d, e       # numbers for the message (see above)
    bint defer_io                # set by the caller: table_lookup stops with READ_DEFERRED
                                 # where it would read a block (the caller holds the GIL and
                                 # reads it after releasing the GIL: kvcy/_read_path.pyx)
    bint read_block              # set (never cleared) by table_lookup when it reads a data
                                 # block, for the caller that initialized it

# What the C read functions need of a table; lives inside its Table object.
cdef struct TableReader:
    int fd                               # >= 0: pread without the GIL; -1: file.read with it
    const unsigned char* map             # the file mapped read-only (NULL: pread); file_size bytes
    uint64_t file_size
    uint64_t number                      # table file number: the block cache key
    bint partitioned                     # format version 2: index_* is the top-level index,
                                         # bloom_array NULL, partitions in place or cached
    const unsigned char* index_base      # the index block's bytes (owned by Table.index)
    uint32_t index_restarts
    uint32_t index_num_restarts
    const unsigned char* bloom_array     # bloom bits (NULL: no filter; owned by Table.bloom)
    size_t bloom_bits
    int bloom_k
    BlockCacheCore* cache                # NULL: blocks read are private to their reader
    unsigned char* part_state            # a mapped partitioned table: PART_* flags of each
                                         # partition, at its top-level index entry's offset / 8
                                         # (part_state_bytes(index_restarts)); else NULL


# PART_* flags: what a reader learned of a partition read in place from the
# mapping (kvcy/_table_index.pyx).  *_CHECKED: its CRC32C (and an index
# partition's restart array) checked out, so later reads trust the bytes;
# *_CACHED: stored compressed, so it is read through the block cache.
# A top-level index entry a writer makes takes at least 16 bytes (a 3-byte
# header, a key with its 8-byte tag, 4 varints), so two entries' offsets / 8
# differ: one flag byte each.  A crafted block that packs entries closer can
# make two partitions share a byte, which spares one of them its CRC check
# (a crafted file can carry valid checksums anyway) and never memory
# safety: every read in place bounds what it reads again.
cdef inline size_t part_state_bytes(uint32_t index_restarts) noexcept nogil:
    return (index_restarts >> 3) + 1

cdef enum:
    PART_FILTER_CHECKED = 1
    PART_FILTER_CACHED = 2
    PART_INDEX_CHECKED = 4
    PART_INDEX_CACHED = 8


cdef inline int read_fail(ReadError* err, int code, int sub, uint64_t a) noexcept nogil:
    err.code = code
    err.sub = sub
    err.a = a
    return -1

# The cached block at offset, if the cache holds one of the kind asked for:
# raw (a filter partition) or a block of entries.  A hostile file whose
# handles point one kind of block at the other reads it from the file again,
# where its checks refuse it, instead of walking a filter as entries.
cdef CacheHandle* table_cached_block(TableReader* t, uint64_t offset,
                                     bint raw=*) noexcept nogil
# raw: the block's contents are not a block of entries (a filter partition):
# no restart array to check.
cdef CacheHandle* table_read_block(TableReader* t, uint64_t offset, uint64_t size,
                                   ReadError* err, bint raw=*) noexcept nogil
cdef CacheHandle* table_decode_buffer(TableReader* t, const unsigned char* buf, size_t got,
                                      uint64_t offset, uint64_t size,
                                      ReadError* err, bint raw=*) noexcept nogil
# The handle (offset, size) lies in t's data part and within MAX_BLOCK_BYTES:
# 1, else 0 with err (READ_BAD_HANDLE).  Sets err.offset and err.size.
cdef bint table_handle_ok(TableReader* t, uint64_t offset, uint64_t size,
                          ReadError* err) noexcept nogil
# A block stored at src (size bytes, then its compression byte and CRC):
# 0 when its CRC32C holds and it is stored raw, 1 when it is compressed (not
# checked: the block cache path decodes it), -1 with err.
cdef int check_stored_block(const unsigned char* src, uint64_t size, ReadError* err) noexcept nogil
# The restart array of a block of entries (n bytes at data): 0 with
# *restarts and *num, or -1 with err (READ_TRAILER).
cdef int check_block_trailer(const unsigned char* data, size_t n, uint32_t* restarts,
                             uint32_t* num, ReadError* err) noexcept nogil
# After map_run(fn) over t's mapping returned rc != 0 for the block at
# offset (n bytes with its trailer): a SIGBUS, or any check that failed
# while the file no longer holds the whole block, becomes READ_TRUNCATED.
cdef void table_mapped_failure(TableReader* t, uint64_t offset, size_t n, int rc,
                               ReadError* err) noexcept nogil
# Map t's file for block reads (t.fd, t.file_size, t.partitioned and
# t.index_restarts set; t.map := the mapping or NULL, when the table should
# use pread; t.part_state for a mapped partitioned one), and undo it.  With
# the GIL.
cdef void table_map(TableReader* t) noexcept
cdef void table_unmap(TableReader* t) noexcept
