# cython: language_level=3
# MergingIterator: the union of N internal iterators in internal-key order
# (LevelDB's merger.cc).  See kvcy/_merge.pyx.
from cpython.ref cimport PyObject
from libc.stdint cimport uint64_t
from kvcy._iterator cimport InternalIterator

cdef enum:
    MERGE_FORWARD = 0
    MERGE_REVERSE = 1

# One child and what it was on when it last moved (LevelDB's IteratorWrapper):
# finding the smallest or largest child reads these, never the children.
cdef struct MergeChild:
    PyObject* it                 # the InternalIterator (borrowed; `children` owns it)
    const unsigned char* key     # its internal key, valid until it moves; NULL when not valid
    size_t ukey_len              # user key bytes of key
    uint64_t tag                 # the key's fixed64 tag
    bint valid                   # it.is_valid() after its last move


cdef class MergingIterator(InternalIterator):
    cdef list children           # the child iterators, index order: lower index = newer
    cdef MergeChild* kids        # one slot per child, PyMem_Malloc'd
    cdef Py_ssize_t n            # number of children
    cdef MergeChild* current     # the child holding the current entry; NULL when not valid
    cdef MergeChild* runner_up   # after a forward step: the child next in order after current
    cdef int direction           # MERGE_FORWARD or MERGE_REVERSE: how the others are placed

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
    cdef int c_skip_older(self, const unsigned char* target, size_t n,
                          uint64_t sequence) except -1
    cdef object c_status(self)

    cdef void find_smallest(self) noexcept
    cdef void find_largest(self) noexcept
    cdef int switch_to_forward(self) except -1
    cdef int switch_to_reverse(self) except -1
