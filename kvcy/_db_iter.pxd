# cython: language_level=3
# DBIterator: the Python face (iteration, take(), cursor, lifetime) of
# DBIterCore, the user-visible entries of an internal iterator at a sequence
# number.  See kvcy/_db_iter.pyx.
from kvcy._db_iter_core cimport (DBIterCore, DBITER_FORWARD, DBITER_REVERSE, DBITER_FRESH,
                                 DBITER_PENDING, DBITER_YIELDED, DBITER_CLOSED)
from kvcy._range_del cimport RangeTombstones


cdef class DBIterator(DBIterCore):
    cdef int enter(self) except -1
    cdef int raise_invalid(self, str what) except -1
    cdef void leave(self) noexcept
    cdef void release(self) noexcept
    cdef object next_slow(self)
    cdef int check_valid(self, str what) except -1
