# cython: language_level=3
# WriteBatch: the unit of atomicity, and the payload of one WAL record.
#
# Byte grammar (docs/format.md, "Write batch"):
#     batch   := sequence:fixed64 count:fixed32 record*
#     record  := KIND_VALUE:u8 key:lenbytes value:lenbytes
#              | KIND_EXPIRING_VALUE:u8 key:lenbytes stored:lenbytes
#              | KIND_DELETE:u8 key:lenbytes
#              | KIND_RANGE_DELETE:u8 start:lenbytes stop:lenbytes   (deletes [start, stop))
#     stored  := expiry:fixed64 value     (at least 8 bytes; kvcy/_expiry.pxd)
#     lenbytes:= length:varint32 bytes[length]
# Entry i of the batch gets sequence + i.
# Not thread-safe: one thread builds a batch, then hands it to the engine.
#
# The grammar is coded once, by the inline helpers below: every writer of a
# rep (WriteBatch, encode_single, kvcy._write_path's one-entry fast path) and
# every reader of one (check_rep, apply_batch, iterate_batch, the write
# path's memtable inserts through insert_records) goes through them, and
# every entry is checked by check_entry before it is encoded.
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy
from kvcy._coding cimport (put_fixed32, put_fixed64, put_varint32, load_fixed32, load_fixed64,
                           get_varint32)
from kvcy._dbformat cimport KIND_DELETE, KIND_VALUE, KIND_EXPIRING_VALUE, KIND_RANGE_DELETE
from kvcy._expiry cimport EXPIRY_BYTES
from kvcy._memtable cimport MemTable

cdef enum:
    BATCH_HEADER_BYTES = 12          # sequence:fixed64 count:fixed32
    BATCH_COUNT_OFFSET = 8           # where count starts in the header
    RECORD_OVERHEAD_BYTES = 11       # a record's bytes besides key and value, at most:
                                     # the kind byte and two varint32 lengths

# What get_batch_record found wrong (BatchRecord.problem when it returns NULL).
cdef enum:
    RECORD_BAD_KEY = 1               # the key length is malformed or runs past the rep
    RECORD_BAD_VALUE = 2             # the value length is malformed or runs past the rep
    RECORD_BAD_KIND = 3              # the kind byte is not KIND_VALUE, KIND_EXPIRING_VALUE, KIND_DELETE or KIND_RANGE_DELETE
    RECORD_SHORT_EXPIRING = 4        # an expiring value shorter than its 8-byte expiry

# One decoded record; key and value point into the rep.
cdef struct BatchRecord:
    int kind                         # KIND_VALUE, KIND_EXPIRING_VALUE, KIND_DELETE or KIND_RANGE_DELETE
    const unsigned char* key         # a range delete's start
    uint32_t key_len
    const unsigned char* value       # NULL for a delete; a range delete's stop
    uint32_t value_len               # 0 for a delete
    int problem                      # a RECORD_BAD_* code, set only when decoding failed


# -- the header ---------------------------------------------------------------

cdef inline unsigned char* put_batch_header(unsigned char* dst, uint64_t sequence,
                                            uint32_t count) noexcept nogil:
    # REQUIRES: BATCH_HEADER_BYTES writable bytes at dst.
    return put_fixed32(put_fixed64(dst, sequence), count)

cdef inline void set_batch_sequence(unsigned char* rep, uint64_t sequence) noexcept nogil:
    put_fixed64(rep, sequence)

cdef inline void set_batch_count(unsigned char* rep, uint32_t count) noexcept nogil:
    put_fixed32(rep + BATCH_COUNT_OFFSET, count)

cdef inline uint64_t batch_sequence(const unsigned char* rep) noexcept nogil:
    # REQUIRES: BATCH_HEADER_BYTES readable bytes at rep.
    return load_fixed64(rep)

cdef inline uint32_t batch_count(const unsigned char* rep) noexcept nogil:
    # REQUIRES: BATCH_HEADER_BYTES readable bytes at rep.
    return load_fixed32(rep + BATCH_COUNT_OFFSET)


# -- records ------------------------------------------------------------------

cdef inline size_t record_bound(size_t key_len, size_t value_len) noexcept nogil:
    # The most bytes put_batch_record writes for an entry of these lengths.
    return RECORD_OVERHEAD_BYTES + key_len + value_len

cdef inline unsigned char* put_batch_record(unsigned char* dst, int kind,
                                            const unsigned char* key, size_t key_len,
                                            const unsigned char* value,
                                            size_t value_len) noexcept nogil:
    # Encode one record at dst; returns the pointer just past it.  value is
    # ignored for a delete.  REQUIRES: kind and lengths passed check_entry;
    # record_bound(key_len, value_len) writable bytes at dst.
    dst[0] = <unsigned char>kind
    dst = put_varint32(dst + 1, <uint32_t>key_len)
    if key_len:
        memcpy(dst, key, key_len)
    dst += key_len
    if kind != KIND_DELETE:
        dst = put_varint32(dst, <uint32_t>value_len)
        if value_len:
            memcpy(dst, value, value_len)
        dst += value_len
    return dst

cdef inline const unsigned char* get_batch_record(const unsigned char* p,
                                                  const unsigned char* limit,
                                                  BatchRecord* r) noexcept nogil:
    # Decode the record at p into r; returns the pointer just past it, or
    # NULL (r.problem says why) when a length runs past limit or the kind is
    # unknown.  Never reads at or beyond limit.  REQUIRES: p < limit.
    r.kind = p[0]
    p = get_varint32(p + 1, limit, &r.key_len)
    if p == NULL or r.key_len > <size_t>(limit - p):
        r.problem = RECORD_BAD_KEY
        return NULL
    r.key = p
    p += r.key_len
    if r.kind == KIND_VALUE or r.kind == KIND_EXPIRING_VALUE or r.kind == KIND_RANGE_DELETE:
        p = get_varint32(p, limit, &r.value_len)
        if p == NULL or r.value_len > <size_t>(limit - p):
            r.problem = RECORD_BAD_VALUE
            return NULL
        if r.kind == KIND_EXPIRING_VALUE and r.value_len < EXPIRY_BYTES:
            r.problem = RECORD_SHORT_EXPIRING
            return NULL
        r.value = p
        return p + r.value_len
    if r.kind != KIND_DELETE:
        r.problem = RECORD_BAD_KIND
        return NULL
    r.value = NULL
    r.value_len = 0
    return p


# -- checked entry points -----------------------------------------------------

# Refuse an entry a batch must not hold: ValueError for a kind other than
# KIND_VALUE/KIND_EXPIRING_VALUE/KIND_DELETE/KIND_RANGE_DELETE or an expiring
# value shorter than its expiry, DataError for a key or value over
# MAX_KEY_BYTES / MAX_VALUE_BYTES (an expiring value's expiry does not count;
# a range delete's stop is a key).  Every encoder calls it before encoding.
cdef int check_entry(int kind, size_t key_len, size_t value_len) except -1

# Insert the records of rep[BATCH_HEADER_BYTES:rep_len] into mem, the first
# at sequence.  Each record is checked as it is inserted, and a bad one
# raises CorruptionError after the ones before it went in: a rep that must
# not be half applied is checked whole (check_rep) first.  A range delete
# goes to mem's range tombstones (MemTable.add_range_del), not its skiplist.
cdef int insert_records(MemTable mem, const unsigned char* rep, size_t rep_len,
                        uint64_t sequence) except -1

cdef class WriteBatch:
    cdef unsigned char* buf      # the rep, header included
    cdef size_t size             # bytes used in buf
    cdef size_t capacity         # bytes allocated for buf
    cdef uint32_t count_         # entries in the batch
    cdef size_t data_bytes_      # sum of key and value lengths
    cdef object clock            # fixes the expiry of put(..., ttl=): None (real time) or a callable
    cdef readonly bytes reserved_key     # the first default-namespace key starting with
                                         # b"\xff\xff", or None: a connection whose database
                                         # has namespaces refuses the batch (namespace_keys.py)

    cdef int reserve(self, size_t extra) except -1
    cdef int append_record(self, int kind, const unsigned char* key, size_t key_len,
                           const unsigned char* value, size_t value_len) except -1
    cdef bytes stored_key(self, bytes key, object namespace)
    cdef _put_expiring(self, bytes key, value, expiry)
