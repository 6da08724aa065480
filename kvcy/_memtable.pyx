# cython: language_level=3, embedsignature=True
"""MemTable and its iterator.

add() inserts an entry; get() finds the newest entry of a user key visible
at a sequence number and answers with its value, DELETED for a tombstone, or
None when the memtable holds nothing for the key.  The iterator speaks the
internal-iterator protocol (kvcy._iterator.InternalIterator: valid, seek,
seek_to_first, seek_to_last, next, prev, key, value, status) over internal
keys user_key + fixed64 tag.
"""
cimport cython
from libc.stdint cimport uint64_t
from cpython.bytes cimport (PyBytes_FromStringAndSize, PyBytes_CheckExact, PyBytes_AS_STRING,
                            PyBytes_GET_SIZE)

from kvcy._arena cimport Arena
from kvcy._coding cimport load_fixed64, view_ptr
from kvcy._dbformat cimport (KIND_DELETE, KIND_VALUE, KIND_EXPIRING_VALUE, KIND_FOR_SEEK,
                             MAX_SEQUENCE, TAG_BYTES,
                             pack_tag, compare_user_keys)
from kvcy._iterator cimport InternalIterator
from kvcy._skiplist cimport SkipList, SkipNode, node_value, next_node, skiplist_seek
from kvcy._expiry cimport EXPIRY_BYTES
from kvcy.dbformat import DELETED
from kvcy._range_del import add_to_layers

# Bytes a range tombstone takes besides its keys (tuple, bytes headers,
# fragments), roughly: what the arena is charged for it.
cdef size_t RANGE_DEL_OVERHEAD = 200
from kvcy.errors import CorruptionError




cdef SkipNode* memtable_find(SkipNode* head, const int* height, const unsigned char* key,
                             size_t key_len, uint64_t sequence) noexcept nogil:
    cdef SkipNode* n = skiplist_seek(head, height, key, key_len, pack_tag(sequence, KIND_FOR_SEEK))
    if n != NULL and compare_user_keys(n.key, n.key_len, key, key_len) == 0:
        return n
    return NULL


cdef class MemTable:
    def __cinit__(self, log_number=None):
        self.arena = Arena()
        self.table = SkipList(self.arena)
        self.data_bytes = 0
        self.first_seq = 0
        self.last_seq = 0
        self.log_number = log_number
        self.created = None
        self.range_dels = []
        self.range_layers = []

    cdef int add_raw(self, uint64_t sequence, int kind, const unsigned char* key, size_t key_len,
                     const unsigned char* value, size_t value_len) except -1:
        if (self.table.count == 0 and not self.range_dels) or sequence < self.first_seq:
            self.first_seq = sequence
        if sequence > self.last_seq:
            self.last_seq = sequence
        self.table.insert(key, key_len, pack_tag(sequence, kind), value, value_len)
        self.data_bytes += key_len + value_len
        return 0

    cdef int add_range_del(self, uint64_t sequence, const unsigned char* start,
                           size_t start_len, const unsigned char* stop,
                           size_t stop_len) except -1:
        # Range tombstones stay out of the skiplist: one may cover keys far
        # from its start.  Readers see the list through the published state
        # (Engine._publish_state), rebuilt before the sequence is published.
        if (self.table.count == 0 and not self.range_dels) or sequence < self.first_seq:
            self.first_seq = sequence
        if sequence > self.last_seq:
            self.last_seq = sequence
        tombstone = (PyBytes_FromStringAndSize(<const char*>start, start_len),
                     PyBytes_FromStringAndSize(<const char*>stop, stop_len), sequence)
        # Replaced whole, never changed in place: the background thread may
        # be reading the list for a read state (kvcy/_range_del.pyx).
        self.range_layers = add_to_layers(self.range_layers, tombstone)
        self.range_dels.append(tombstone)
        self.data_bytes += start_len + stop_len
        # Charged to the arena (the bytes go unused), so that the memtable's
        # size, which decides when it is switched, counts its tombstones.
        self.arena.allocate(start_len + stop_len + RANGE_DEL_OVERHEAD)
        return 0

    def add_range_deletion(self, uint64_t sequence, start, stop):
        """Add the range tombstone [start, stop) at sequence (tests; the
        write path goes through insert_records).  REQUIRES: the write lock."""
        if sequence > MAX_SEQUENCE:
            raise ValueError("sequence %d exceeds the 56-bit maximum" % sequence)
        start = bytes(start)
        stop = bytes(stop)
        self.add_range_del(sequence, <const unsigned char*>PyBytes_AS_STRING(start),
                           PyBytes_GET_SIZE(start), <const unsigned char*>PyBytes_AS_STRING(stop),
                           PyBytes_GET_SIZE(stop))

    cdef SkipNode* lookup(self, const unsigned char* key, size_t key_len,
                          uint64_t sequence) noexcept:
        # Newest entry of key with sequence <= `sequence`, or NULL.
        return memtable_find(self.table.head, &self.table.height, key, key_len, sequence)

    def add(self, uint64_t sequence, int kind, const unsigned char[::1] key not None,
            const unsigned char[::1] value=None):
        """Insert one entry.  REQUIRES: the caller holds the engine's write lock."""
        if sequence > MAX_SEQUENCE:
            raise ValueError("sequence %d exceeds the 56-bit maximum" % sequence)
        if kind != KIND_VALUE and kind != KIND_DELETE and kind != KIND_EXPIRING_VALUE:
            raise ValueError("unknown entry kind %d" % kind)
        if kind == KIND_EXPIRING_VALUE and (value is None or value.shape[0] < EXPIRY_BYTES):
            raise ValueError("an expiring value needs its %d-byte expiry" % EXPIRY_BYTES)
        if value is None:
            self.add_raw(sequence, kind, view_ptr(key), key.shape[0], NULL, 0)
        else:
            self.add_raw(sequence, kind, view_ptr(key), key.shape[0], view_ptr(value), value.shape[0])

    def get(self, key, uint64_t sequence=MAX_SEQUENCE):
        """Value of the newest entry of key visible at sequence, DELETED, or None
        (an expiring value as stored, expiry first: expiry is the readers' business)."""
        cdef SkipNode* n
        cdef const unsigned char[::1] view
        if sequence > MAX_SEQUENCE:
            raise ValueError("sequence %d exceeds the 56-bit maximum" % sequence)
        if key is None:
            raise TypeError("key must be bytes-like, not None")
        if PyBytes_CheckExact(key):
            n = self.lookup(<const unsigned char*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key),
                            sequence)
        else:
            view = key
            n = self.lookup(view_ptr(view), view.shape[0], sequence)
        if n == NULL:
            return None
        if (n.tag & 0xFF) == KIND_DELETE:
            return DELETED
        return PyBytes_FromStringAndSize(<const char*>node_value(n), n.value_len)

    def memory_usage(self):
        """Bytes of arena memory in use, the figure that triggers a memtable switch."""
        return self.arena._usage - self.arena._remaining

    def __len__(self):
        return self.table.count

    @property
    def data_bytes(self):
        return self.data_bytes

    @property
    def first_sequence(self):
        return self.first_seq

    @property
    def last_sequence(self):
        return self.last_seq

    def iterator(self):
        return MemTableIterator(self)


@cython.final
cdef class MemTableIterator(InternalIterator):
    """The internal-iterator protocol over a MemTable (Python face: InternalIterator)."""

    def __cinit__(self, MemTable mem not None):
        self.mem = mem
        self.node = NULL

    cdef bint is_valid(self) noexcept:
        return self.node != NULL

    cdef const unsigned char* key_ptr(self) noexcept:
        return self.node.key

    cdef size_t key_len(self) noexcept:
        return self.node.key_len + TAG_BYTES

    cdef const unsigned char* value_ptr(self) noexcept:
        return node_value(self.node)

    cdef size_t value_len(self) noexcept:
        return self.node.value_len

    cdef int c_seek_to_first(self) except -1:
        self.node = self.mem.table.first()
        return 0

    cdef int c_seek_to_last(self) except -1:
        self.node = self.mem.table.find_last()
        return 0

    cdef int c_seek(self, const unsigned char* target, size_t n) except -1:
        if n < TAG_BYTES:
            raise ValueError("seek target must be an internal key (user key + 8-byte tag)")
        self.node = self.mem.table.seek(target, n - TAG_BYTES, load_fixed64(target + n - TAG_BYTES),
                                        NULL)
        return 0

    cdef int c_next(self) except -1:
        if self.node == NULL:
            raise ValueError("next() on an invalid iterator")
        self.node = next_node(self.node, 0)
        return 0

    cdef int c_prev(self) except -1:
        if self.node == NULL:
            raise ValueError("prev() on an invalid iterator")
        self.node = self.mem.table.find_less_than(self.node.key, self.node.key_len, self.node.tag)
        return 0
