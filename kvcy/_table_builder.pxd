# cython: language_level=3
# TableBuilder: writes one SSTable; see _table_builder.pyx and table_format.py.
cimport cython
from libc.stdint cimport uint64_t
from kvcy._block_builder cimport BlockBuilder
from kvcy._bloom cimport BloomFilterBuilder
from kvcy._memtable cimport MemTable

# Why TableBuilder.append failed, beyond the BlockBuilder's BUILD_* codes.
cdef enum:
    BUILD_SHORT_KEY = -10        # key shorter than its 8-byte tag
    BUILD_WRITE_ERROR = -11      # write(2) failed; write_errno says why
    BUILD_PYTHON_ERROR = -12     # the file object's append raised `exception`


@cython.final
cdef class TableBuilder:
    cdef object file             # env WritableFile being written
    cdef object append_to_file   # file.append: used when fd < 0
    cdef int fd                  # file.fileno(), written without the GIL; -1: none
    cdef public object path      # for messages
    cdef size_t block_size       # cut a data block at about this many bytes
    cdef bint snappy             # compress blocks that shrink enough
    cdef BlockBuilder data_block # the data block being filled
    cdef BlockBuilder index_block    # separator -> handle, restart interval 1
    cdef BloomFilterBuilder bloom    # None when bloom_bits_per_key == 0
    cdef size_t partition_bytes  # cut the index (and filter) into partitions this big; 0: never
    cdef list part_keys          # each finished partition's last separator (bytes)
    cdef list index_parts        # each finished index partition (bytes)
    cdef list filter_parts       # each finished filter partition (bytes), or None without bloom
    cdef bint bloom_restart      # the next key starts a filter partition: add it even if
                                 # its user key is the last one's
    cdef public uint64_t offset  # bytes of the table so far (written or in `out`)
    cdef unsigned char* last     # last internal key added
    cdef size_t last_len, last_cap
    cdef unsigned char* smallest # first internal key added
    cdef size_t smallest_len, smallest_cap
    cdef unsigned char* scratch  # a finished raw block, or an index key being made
    cdef size_t scratch_cap
    cdef unsigned char* out      # finished blocks not yet written to the file
    cdef size_t out_len, out_cap
    cdef uint64_t written        # bytes written through fd, not yet in file.size
    cdef bint pending            # a finished data block awaits its index entry
    cdef uint64_t pending_offset, pending_size   # its handle
    cdef int error               # sticky failure (BUILD_*), 0 while healthy
    cdef int refused             # why the last entry was refused (the builder goes on)
    cdef int write_errno         # errno of a failed write
    cdef object exception        # what the file object's append raised
    cdef public object props     # TableProperties, completed by finish()
    cdef uint64_t num_entries_, num_deletions, raw_key_bytes, raw_value_bytes
    cdef uint64_t raw_data_bytes, data_blocks, smallest_seq, largest_seq
    cdef uint64_t earliest_expiry    # smallest expiry of its expiring values; 0: it holds none
    cdef public bint finished

    cdef int append(self, const unsigned char* key, size_t key_len,
                    const unsigned char* value, size_t value_len) noexcept nogil
    cdef int refuse(self, int code) noexcept nogil
    cdef int fail(self, int code) noexcept nogil
    cdef int flush_block(self) noexcept nogil
    cdef int cut_partition(self, const unsigned char* key, size_t n) noexcept nogil
    cdef bytes write_partitions(self)
    cdef int emit_block(self, const unsigned char* raw, size_t n, bint try_snappy,
                        uint64_t* offset, uint64_t* size) noexcept nogil
    cdef int drain(self) noexcept nogil
    cdef int raise_error(self) except -1
    cdef void sync_size(self)
    cdef int add_raw(self, const unsigned char* key, size_t key_len,
                     const unsigned char* value, size_t value_len) except -1
    cdef int write_block(self, bytes raw, bint try_snappy, uint64_t* offset,
                         uint64_t* size) except -1
