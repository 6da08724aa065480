# cython: language_level=3
# TableBuilder: writes one SSTable; see _table_builder.pyx and table_format.py.
cimport cython
from libc.stdint cimport uint64_t
from kvcy._block_builder cimport BlockBuilder
from kvcy._bloom cimport BloomFilterBuilder
from kvcy._memtable cimport MemTable


@cython.final
cdef class TableBuilder:
    cdef object file             # env WritableFile being written
    cdef object append           # file.append
    cdef public object path      # for messages
    cdef size_t block_size       # cut a data block at about this many bytes
    cdef object compression      # "snappy" or "none"
    cdef BlockBuilder data_block # the data block being filled
    cdef BlockBuilder index_block    # separator -> handle, restart interval 1
    cdef BloomFilterBuilder bloom    # None when bloom_bits_per_key == 0
    cdef public uint64_t offset  # bytes written so far
    cdef bytearray last_key      # last internal key added
    cdef bint pending            # a finished data block awaits its index entry
    cdef uint64_t pending_offset, pending_size   # its handle
    cdef public object props     # TableProperties, completed by finish()
    cdef uint64_t num_entries_, num_deletions, raw_key_bytes, raw_value_bytes
    cdef uint64_t raw_data_bytes, data_blocks, smallest_seq, largest_seq
    cdef bytes smallest          # first internal key added
    cdef public bint finished

    cdef int add_raw(self, const unsigned char* key, size_t key_len,
                     const unsigned char* value, size_t value_len) except -1
    cdef int flush_block(self) except -1
    cdef int write_block(self, bytes raw, object compression, uint64_t* offset,
                         uint64_t* size) except -1
