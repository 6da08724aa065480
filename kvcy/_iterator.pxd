# cython: language_level=3
# InternalIterator: the one protocol every internal iterator speaks (LevelDB's
# Iterator), so that iterators compose: block -> two-level -> level -> merge ->
# visible-version collapse (kvcy._db_iter), with no Python object per entry.
#
# Keys are internal keys (user key + fixed64 tag) in compare_internal order.
# The cdef face is for Cython callers:
#   is_valid, key_ptr, key_len, value_ptr, value_len never fail; the pointers
#     are valid while the iterator is valid and until it next moves.
#     REQUIRES for key_*/value_*: is_valid().
#   c_seek_to_first, c_seek_to_last, c_seek (first entry >= an internal key),
#     c_next, c_prev return 0, or -1 with an exception set.  c_next and c_prev
#     REQUIRE is_valid(); on an invalid iterator they raise the sticky error,
#     or ValueError if there is none.
#   c_status returns None or the error that stopped the iterator.
#   c_skip_older(target, n, sequence), forward only, REQUIRES is_valid():
#     if the iterator can tell cheaply that every entry from its position up
#     to the first entry >= target (an internal key) has a sequence below
#     `sequence`, it moves to that entry (as c_seek(target) would) and
#     returns 1; else it stays and returns 0 (the default).  A scan uses it
#     to step over what a range tombstone of that sequence deletes.
# Errors are sticky: an iterator that raised for a reason other than misuse
# (corruption, a failed read) stays invalid, and every later move raises the
# same error again.  The Python face (valid, seek, next, key, ...) is
# implemented once, here, on top of the cdef face.
#
# Thread-safety: an iterator belongs to one thread at a time.

from libc.stdint cimport uint64_t


cdef class InternalIterator:
    cdef object status_          # None, or the error that stopped the iterator (sticky)

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
    cdef int fail(self, object exc) except -1
    cdef int raise_invalid(self, str what) except -1


cdef class EmptyIterator(InternalIterator):
    pass


cdef class ErrorIterator(InternalIterator):
    pass


cdef object borrow_bytes(object obj, const unsigned char** p, size_t* n, str what)
