# cython: language_level=3
# WriteBatch: the unit of atomicity, and the payload of one WAL record.
#
# Byte grammar (docs/format.md, "Write batch"):
#     batch   := sequence:fixed64 count:fixed32 record*
#     record  := KIND_VALUE:u8 key:lenbytes value:lenbytes
#              | KIND_DELETE:u8 key:lenbytes
#     lenbytes:= length:varint32 bytes[length]
# Entry i of the batch gets sequence + i.
# Not thread-safe: one thread builds a batch, then hands it to the engine.
from libc.stdint cimport uint32_t, uint64_t
from kvcy._memtable cimport MemTable

cdef enum:
    BATCH_HEADER_BYTES = 12

cdef class WriteBatch:
    cdef unsigned char* buf      # the rep, header included
    cdef size_t size             # bytes used in buf
    cdef size_t capacity         # bytes allocated for buf
    cdef uint32_t count_         # entries in the batch
    cdef size_t data_bytes_      # sum of key and value lengths

    cdef int reserve(self, size_t extra) except -1
    cdef int append_record(self, int kind, const unsigned char* key, size_t key_len,
                           const unsigned char* value, size_t value_len) except -1
