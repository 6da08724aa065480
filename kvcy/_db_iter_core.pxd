# cython: language_level=3
# DBIterCore: the user-visible entries of an internal iterator at a sequence
# number, LevelDB's db_iter.cc in C; DBIterator (kvcy/_db_iter.pxd) is its
# Python face.  See kvcy/_db_iter_core.pyx.
from libc.stdint cimport uint64_t
from kvcy._iterator cimport InternalIterator

cdef enum:
    DBITER_FORWARD = 0           # iter is on the entry that yields key() and value()
    DBITER_REVERSE = 1           # iter is before every entry of key(); key/value are saved copies

# Where iteration (__next__) stands relative to the cursor.
cdef enum:
    DBITER_FRESH = 0             # never positioned: __next__ starts at the first (last) key
    DBITER_PENDING = 1           # a cursor move placed it; __next__ yields the entry it is on
    DBITER_YIELDED = 2           # __next__ yielded the entry it is on; it moves first
    DBITER_CLOSED = 3            # close() was called (or __init__ never ran)

from kvcy._byte_buffer cimport Buf
from kvcy._latency cimport LatencyHistogram
from kvcy._range_del cimport RangeTombstones


cdef class DBIterCore:
    cdef InternalIterator iter   # internal entries (a MergingIterator); None once closed
    cdef object pin              # whatever keeps iter's data alive (opaque); None once closed
    cdef uint64_t sequence_      # entries with a larger sequence are invisible
    cdef RangeTombstones range_dels  # range tombstones that may hide entries; None: none
    cdef bytes start             # inclusive lower bound on user keys, or None
    cdef bytes stop              # exclusive upper bound on user keys, or None
    cdef const unsigned char* start_p    # start's bytes (NULL when None)
    cdef size_t start_n
    cdef const unsigned char* stop_p     # stop's bytes (NULL when None)
    cdef size_t stop_n
    cdef bint reverse_           # __next__ walks backward
    cdef size_t key_skip         # leading bytes of every user key that key()/items leave out
                                 # (a namespace's prefix, kvcy/_namespace_iter.pyx; else 0)
    cdef int direction           # DBITER_FORWARD or DBITER_REVERSE
    cdef bint valid_             # positioned on a visible entry
    cdef int state               # DBITER_FRESH .. DBITER_CLOSED
    cdef bint busy               # inside a call that moves iter (close() then waits for its end)
    cdef Buf saved_key           # forward: a user key to skip; reverse: key()
    cdef Buf saved_value         # reverse: value()
    cdef Buf seek_key            # scratch for internal seek targets
    cdef object status_          # None, or the error this iterator itself raised (sticky)
    cdef object clock            # decides expiry (kvcy/_expiry.pyx): None (real time) or a callable
    cdef uint64_t now_           # the clock's reading for this call, once now_known
    cdef bint now_known          # now_ was read during the current call (reset by each call)
    cdef size_t value_skip       # forward: bytes of iter's value before the user's (an expiry stamp)
    cdef readonly unsigned long long expiring_met   # expiring values it judged (live or expired)
    cdef public str closed_message   # what a use after close says (the connection sets
                                     # it to the fork message in a forked child)
    cdef public LatencyHistogram latency   # times __next__'s steps (None: not timed)
    cdef object __weakref__      # a connection tracks its open iterators weakly

    cdef bint range_deleted(self, const unsigned char* k, size_t ulen, uint64_t seq) noexcept
    cdef int find_next_user_entry(self, bint skipping) except -1
    cdef int find_prev_user_entry(self) except -1
    cdef int do_next(self) except -1
    cdef int do_prev(self) except -1
    cdef int do_seek(self, const unsigned char* ukey, size_t n) except -1
    cdef int do_seek_to_first(self) except -1
    cdef int do_seek_to_last(self, const unsigned char* limit, size_t n, bint bounded) except -1
    cdef int check_open(self) except -1
    cdef object c_status(self)
    cdef int bad_kind(self, int kind) except -1
    cdef int expired(self, const unsigned char* stored, size_t n) except -1
    cdef int no_memory(self) except -1
    cdef object current_item(self)
