# cython: language_level=3
# TwoLevelIterator: a table's entries, read through its index block and then
# one data block at a time (LevelDB's two_level_iterator.cc, specialised to
# tables).  See kvcy/_two_level.pyx.
from kvcy._block cimport BlockIterator
from kvcy._iterator cimport InternalIterator


cdef class TwoLevelIterator(InternalIterator):
    cdef object table            # has .index (a Block) and block_from_index_value(bytes) -> Block
    cdef BlockIterator index_iter    # over the index block: separator key -> encoded handle
    cdef BlockIterator data_iter     # over the current data block; None when none is loaded
    cdef bytes data_handle       # index value that data_iter was loaded from; None with it

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

    cdef int load_block(self) except -1
    cdef int skip_empty_forward(self) except -1
    cdef int skip_empty_backward(self) except -1
    cdef int fail_reset(self, object exc) except -1
