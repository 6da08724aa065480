# cython: language_level=3
# Block: the validating reader of one table block (format: kvcy/_block_builder.pxd
# and docs/format.md, "Blocks"):
#     block := entry* restart:fixed32[num_restarts] num_restarts:fixed32
#     entry := shared:varint32 non_shared:varint32 value_length:varint32
#              key_delta[non_shared] value[value_length]
#
# Keys are internal keys (user key + fixed64 tag) in compare_internal order.
# Block's constructor checks the trailer (count and restart offsets); every
# entry is checked as it is decoded, against the start of the restart array.
# A Block is immutable and may be shared by threads (the block cache does);
# each BlockIterator belongs to one thread.
#
# BlockIterator is an InternalIterator (kvcy/_iterator.pxd); Cython callers
# (two-level and merging iterators) use its cdef face:
# is_valid/key_ptr/key_len/value_ptr/value_len never fail; c_seek_to_first,
# c_seek_to_last, c_seek, c_next and c_prev return -1 with CorruptionError
# (sticky: the iterator stays invalid and raises again on any later move),
# MemoryError, or ValueError for next/prev on an iterator that is not valid.
# key_ptr/value_ptr point into the iterator's key buffer and the block's
# bytes: valid until the iterator moves.
cimport cython
from libc.stdint cimport uint32_t, uint64_t
from kvcy._iterator cimport InternalIterator
from kvcy._block_cache cimport CacheHandle

cdef enum:
    CURSOR_INLINE_KEY_BYTES = 128   # keys up to this size need no heap buffer

# Why a cursor stopped; 0 while it is healthy.  Not on disk.
cdef enum:
    BLOCK_OK = 0
    BLOCK_BAD_ENTRY = 1          # entry header truncated or lengths run past the entries
    BLOCK_BAD_SHARED = 2         # shared prefix longer than the previous key
    BLOCK_SHORT_KEY = 3          # key shorter than its 8-byte tag
    BLOCK_BAD_RESTART = 4        # a restart entry shares a prefix / restarts not on entries
    BLOCK_NO_MEMORY = 5          # key buffer could not grow
    BLOCK_INVARIANT = 6          # KVCY_DEBUG range check failed: a bug, not corruption

# What is wrong with a block's trailer (block_check_trailer); 0 when it checks out.
cdef enum:
    TRAILER_OK = 0
    TRAILER_SHORT = 1            # fewer than 4 bytes
    TRAILER_HUGE = 2             # 4 GiB or more: offsets cannot address it
    TRAILER_NO_RESTARTS = 3      # restart count 0
    TRAILER_COUNT_TOO_BIG = 4    # restart array does not fit
    TRAILER_FIRST_NOT_ZERO = 5   # restart 0 is not at offset 0
    TRAILER_NOT_INCREASING = 6   # a restart offset does not follow the one before
    TRAILER_PAST_ENTRIES = 7     # a restart offset lies in the restart array

# A position in a block: the state of BlockIterator and of Block.get().
cdef struct BlockCursor:
    const unsigned char* data    # the block's bytes (owned by the Block)
    uint32_t restarts            # offset of the restart array: the entries end here
    uint32_t num_restarts        # restart count, >= 1
    uint32_t current             # offset of the current entry; == restarts when not valid
    uint32_t restart_index       # last restart point at or before current
    const unsigned char* value   # current value, inside data
    uint32_t value_len           # bytes of the current value
    unsigned char* key           # current internal key: inline_key or a heap buffer
    size_t key_len               # bytes of the current key
    size_t key_cap               # bytes available at key
    int error                    # BLOCK_OK, or why the cursor stopped (sticky)
    uint32_t error_offset        # offset of the entry where it stopped
    unsigned char inline_key[CURSOR_INLINE_KEY_BYTES]


# The block functions below never raise and never need the GIL; readers in
# C (kvcy._table, kvcy._read_path) drive a BlockCursor directly with them.
cdef int block_check_trailer(const unsigned char* base, size_t n, uint32_t* restarts,
                             uint32_t* num, uint32_t* bad_index, uint32_t* bad_offset) noexcept nogil
cdef object trailer_exception(int code, size_t n, uint32_t num, uint32_t index, uint32_t offset,
                              uint32_t prev)
cdef void cursor_init(BlockCursor* c, const unsigned char* data, uint32_t restarts,
                      uint32_t num_restarts) noexcept nogil
cdef void cursor_free(BlockCursor* c) noexcept nogil
cdef int cursor_seek(BlockCursor* c, const unsigned char* ukey, size_t ulen,
                     uint64_t tag) noexcept nogil
cdef int cursor_seek_to_first(BlockCursor* c) noexcept nogil
cdef int cursor_parse_next(BlockCursor* c) noexcept nogil
cdef object cursor_exception(const BlockCursor* c)


@cython.final
cdef class Block:
    cdef bytes data              # the block's bytes when made from bytes (else None)
    cdef CacheHandle* handle     # the pinned cache block it reads, when made by from_handle
    cdef object owner            # keeps the BlockCache of handle alive
    cdef const unsigned char* base   # start of data
    cdef uint32_t size_          # len(data)
    cdef uint32_t restarts       # offset of the restart array
    cdef uint32_t num_restarts_  # restart count, >= 1

    cdef void init_cursor(self, BlockCursor* c) noexcept

    @staticmethod
    cdef Block from_handle(CacheHandle* handle, object owner)


# Final in the .pyx; not declared final here, as Cython refuses a final class
# whose .pxd declares overrides of its base class's cdef methods.
cdef class BlockIterator(InternalIterator):
    cdef Block block             # keeps the block's bytes alive
    cdef BlockCursor c           # position, key buffer and sticky error
    # status_ (inherited): None, or the CorruptionError that stopped the iterator

    cdef bint is_valid(self) noexcept
    cdef const unsigned char* key_ptr(self) noexcept
    cdef size_t key_len(self) noexcept
    cdef const unsigned char* value_ptr(self) noexcept
    cdef size_t value_len(self) noexcept
    cdef int c_seek_to_first(self) except -1
    cdef int c_seek_to_last(self) except -1
    cdef int c_seek(self, const unsigned char* target, size_t n) except -1
    cdef int c_next(self) except -1
    cdef int c_prev(self) except -1
    cdef object c_status(self)
    cdef int fail_cursor(self) except -1
