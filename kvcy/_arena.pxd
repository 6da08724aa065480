# cython: language_level=3
# Bump allocator for the memtable: memory is handed out from large blocks and
# freed all at once when the Arena is deallocated.  Not thread-safe: the one
# writer of a memtable allocates; readers only read what was published.

cdef class Arena:
    cdef char* _ptr              # next free byte of the current block
    cdef size_t _remaining       # bytes left in the current block
    cdef char** _blocks          # every block ever allocated, freed in __dealloc__
    cdef size_t _nblocks         # used slots of _blocks
    cdef size_t _capacity        # allocated slots of _blocks
    cdef size_t _usage           # bytes requested from malloc, including block overhead

    cdef char* allocate(self, size_t n) except NULL
    cdef char* allocate_aligned(self, size_t n) except NULL
    cdef char* _allocate_fallback(self, size_t n) except NULL
    cdef char* _new_block(self, size_t n) except NULL
