# cython: language_level=3
# MemTable: the in-memory write buffer, an arena skiplist of internal keys.
#
# Thread-safety: one writer at a time (the engine's write lock); readers need
# no lock.  Every method runs with the GIL held, which is what makes a
# published node visible to readers.  A memtable becomes immutable when the
# engine switches it; after that it is only read and then dropped whole.
from libc.stdint cimport uint64_t
from kvcy._arena cimport Arena
from kvcy._skiplist cimport SkipList, SkipNode

cdef class MemTable:
    cdef Arena arena             # owns every entry
    cdef SkipList table          # ordered index of entries
    cdef size_t data_bytes       # user-visible bytes added (keys + values)
    cdef uint64_t first_seq      # smallest sequence added (0 when empty)
    cdef uint64_t last_seq       # largest sequence added (0 when empty)
    cdef public object created   # monotonic time of creation (flush_interval)
    cdef public object log_number  # number of the WAL file that backs it

    cdef int add_raw(self, uint64_t sequence, int kind, const unsigned char* key, size_t key_len,
                     const unsigned char* value, size_t value_len) except -1
    cdef SkipNode* lookup(self, const unsigned char* key, size_t key_len,
                          uint64_t sequence) noexcept

cdef class MemTableIterator:
    cdef MemTable mem            # keeps the arena alive
    cdef SkipNode* node          # current entry, NULL when not valid
