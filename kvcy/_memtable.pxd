# cython: language_level=3
# MemTable: the in-memory write buffer, an arena skiplist of internal keys.
#
# Thread-safety: one writer at a time (the engine's write lock); readers need
# no lock.  Every method runs with the GIL held, which is what makes a
# published node visible to readers.  A memtable becomes immutable when the
# engine switches it; after that it is only read and then dropped whole.
from libc.stdint cimport uint64_t
from kvcy._arena cimport Arena
from kvcy._iterator cimport InternalIterator
from kvcy._skiplist cimport SkipList, SkipNode

# Newest entry of key with sequence <= `sequence` in the memtable whose
# skiplist has this head and height, or NULL; needs no GIL (see _skiplist.pxd).
cdef SkipNode* memtable_find(SkipNode* head, const int* height, const unsigned char* key,
                             size_t key_len, uint64_t sequence) noexcept nogil

cdef class MemTable:
    cdef Arena arena             # owns every entry
    cdef SkipList table          # ordered index of entries
    cdef size_t data_bytes       # user-visible bytes added (keys + values)
    cdef uint64_t first_seq      # smallest sequence added (0 when empty)
    cdef uint64_t last_seq       # largest sequence added (0 when empty)
    cdef public object created   # monotonic time of creation (flush_interval)
    cdef public object log_number  # number of the WAL file that backs it
    cdef readonly list range_dels  # range tombstones (start, stop, sequence), in sequence
                                   # order; kept beside the skiplist (kvcy/_range_del.pyx)
    cdef readonly list range_layers  # the same, fragmented (kvcy._range_del.add_to_layers)

    cdef int add_raw(self, uint64_t sequence, int kind, const unsigned char* key, size_t key_len,
                     const unsigned char* value, size_t value_len) except -1
    cdef int add_range_del(self, uint64_t sequence, const unsigned char* start,
                           size_t start_len, const unsigned char* stop,
                           size_t stop_len) except -1
    cdef SkipNode* lookup(self, const unsigned char* key, size_t key_len,
                          uint64_t sequence) noexcept

# The internal-iterator protocol over a memtable (kvcy/_iterator.pxd).  It
# never fails: the only errors are next()/prev() on an invalid iterator.
# Final in the .pyx; not declared final here, as Cython refuses a final class
# whose .pxd declares overrides of its base class's cdef methods.
cdef class MemTableIterator(InternalIterator):
    cdef MemTable mem            # keeps the arena alive
    cdef SkipNode* node          # current entry, NULL when not valid

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
