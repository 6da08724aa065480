# cython: language_level=3, embedsignature=True
"""DBIterator: user-visible entries at a sequence number, forward and reverse.

A DBIterator wraps an internal iterator (a MergingIterator over memtables
and table files) and yields, for each user key in [start, stop), its newest
entry visible at `sequence` unless a tombstone, a range tombstone or an
expiry hides it: LevelDB's DBIter, whose C loops are DBIterCore
(kvcy/_db_iter_core.pyx).  This class is its Python face.  Either bound
may be None; a prefix is the bounds (prefix, prefix_stop(prefix)).

    it = DBIterator(merging_iter, sequence, start=None, stop=None,
                    reverse=False, pin=None, range_dels=None)
    for key, value in it: ...        # ascending, or descending if reverse

Cursor methods: seek(user_key) places it on the first visible key >=
user_key, seek_for_prev(user_key) on the last visible key <= user_key,
seek_to_first(), seek_to_last(), next(), prev(), valid(), key(), value(),
status().  Iteration picks up from the cursor: after a cursor move the next
__next__ yields the entry under the cursor, after that it steps (next, or
prev when reverse) before yielding.  next()/prev()/key()/value() on an
iterator that is not valid raise ValueError.  take(n) hands out up to n
pairs in one call.

Lifetime: `pin` is kept referenced until close() (a Version, memtables: what
keeps the internal iterator's data alive).  close() releases the internal
iterator and the pin; any use afterwards raises ProgrammingError.  Errors
are sticky (DBIterCore).

Thread-safety: one thread at a time.
"""
from libc.stdint cimport uint64_t
from kvcy._byte_buffer cimport buf_free
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE

from kvcy._dbformat cimport MAX_SEQUENCE, TAG_BYTES
from kvcy._iterator cimport InternalIterator, borrow_bytes
from kvcy._latency cimport now_ns
from kvcy.errors import ProgrammingError


def prefix_stop(prefix):
    """The exclusive stop bound of the keys starting with prefix, or None if
    there is none (prefix empty or all 0xff bytes): scan [prefix, prefix_stop)."""
    cdef const unsigned char* ptr
    cdef size_t n
    cdef bytes p = borrow_bytes(prefix, &ptr, &n, "prefix")
    p = p.rstrip(b"\xff")
    if not p:
        return None
    return p[:-1] + bytes((p[-1] + 1,))


cdef class DBIterator(DBIterCore):
    """User-visible (key, value) pairs of an internal iterator at a sequence number."""

    def __init__(self, InternalIterator merging_iter not None, uint64_t sequence, start=None,
                 stop=None, bint reverse=False, pin=None, RangeTombstones range_dels=None,
                 clock=None):
        cdef const unsigned char* p
        cdef size_t n
        if sequence > MAX_SEQUENCE:
            raise ValueError("sequence %d exceeds the 56-bit maximum" % sequence)
        if self.iter is not None:
            raise ProgrammingError("DBIterator.__init__ called twice")
        self.iter = merging_iter
        self.pin = pin
        self.clock = clock
        self.sequence_ = sequence
        self.range_dels = range_dels
        if start is not None:
            self.start = borrow_bytes(start, &p, &n, "start")
            self.start_p = p
            self.start_n = n
        if stop is not None:
            self.stop = borrow_bytes(stop, &p, &n, "stop")
            self.stop_p = p
            self.stop_n = n
        self.reverse_ = reverse
        self.direction = DBITER_FORWARD
        self.valid_ = False
        self.state = DBITER_FRESH

    cdef int enter(self) except -1:
        # Start a call that moves the internal iterator: open, not stopped by
        # an error, and not already inside such a call.
        if self.state == DBITER_CLOSED:
            raise ProgrammingError(self.closed_message)
        if self.busy:
            raise ProgrammingError("the iterator is already in use (shared between threads?)")
        if self.status_ is not None:
            raise self.status_.with_traceback(None)
        # An error of the internal iterator left valid_ False; its children
        # raise it again on any seek, and raise_invalid() reports it otherwise.
        self.busy = True
        self.now_known = False
        return 0

    cdef int raise_invalid(self, str what) except -1:
        # The error for a step from, or a read of, an invalid position.
        status = self.c_status()
        if status is not None:
            if self.status_ is None:
                self.status_ = status
            raise status.with_traceback(None)
        raise ValueError("%s() on an invalid iterator" % what)

    cdef void leave(self) noexcept:
        # End a call begun by enter(); finish a close() that came meanwhile.
        self.busy = False
        if self.state == DBITER_CLOSED:
            self.release()

    cdef void release(self) noexcept:
        self.valid_ = False
        self.iter = None
        self.pin = None
        buf_free(&self.saved_key)
        buf_free(&self.saved_value)
        buf_free(&self.seek_key)

    # -- Python iteration ---------------------------------------------------

    def __iter__(self):
        self.check_open()
        return self

    def __next__(self):
        cdef object item = None
        cdef uint64_t started = 0
        cdef bint timed
        if self.state == DBITER_YIELDED and self.valid_ and not self.busy:
            # The fast path: one step of the C loop, one tuple.
            timed = self.latency is not None and self.latency.should_time()
            if timed:
                started = now_ns()
            self.busy = True
            self.now_known = False
            try:
                if self.reverse_:
                    self.do_prev()
                else:
                    self.do_next()
                if self.valid_:
                    item = self.current_item()
            finally:
                self.leave()
            if timed:
                self.latency.record(now_ns() - started)
        else:
            item = self.next_slow()
        if item is None:
            raise StopIteration
        return item

    cdef object next_slow(self):
        # __next__ when fresh, after a cursor move, exhausted or stopped.
        self.enter()
        try:
            if self.state == DBITER_FRESH:
                if self.reverse_:
                    self.do_seek_to_last(NULL, 0, False)
                else:
                    self.do_seek_to_first()
            elif self.state == DBITER_YIELDED and self.valid_:
                if self.reverse_:
                    self.do_prev()
                else:
                    self.do_next()
            elif not self.valid_ and self.c_status() is not None:
                self.raise_invalid("next")      # stopped by an error: raise it again
            self.state = DBITER_YIELDED
            if self.valid_:
                return self.current_item()
            return None
        finally:
            self.leave()

    def take(self, Py_ssize_t n, int how=0):
        """Up to n (key, value) pairs in iteration order, in one call: the
        chunked face of iteration that cursors and batch consumers use.

        how: 0 starts with the entry under the cursor, 1 steps (next, or prev
        when reverse) before the first, 2 starts at the first entry of the
        scan.  Fewer than n pairs means the scan ended (or n was 0).
        Afterwards __next__ steps before it yields, as after an item it gave.
        """
        cdef list out = []
        if n < 0:
            raise ValueError("take() needs n >= 0, not %d" % n)
        self.enter()
        try:
            if n == 0:
                return out
            if how == 2:
                if self.reverse_:
                    self.do_seek_to_last(NULL, 0, False)
                else:
                    self.do_seek_to_first()
            elif how == 1 and self.valid_:
                if self.reverse_:
                    self.do_prev()
                else:
                    self.do_next()
            elif how not in (0, 1):
                raise ValueError("take() how must be 0, 1 or 2, not %d" % how)
            elif not self.valid_ and self.c_status() is not None:
                self.raise_invalid("take")
            self.state = DBITER_YIELDED
            while self.valid_:
                out.append(self.current_item())
                if len(out) >= n:
                    break
                if self.reverse_:
                    self.do_prev()
                else:
                    self.do_next()
            return out
        finally:
            self.leave()

    # -- cursor ---------------------------------------------------------------

    def valid(self):
        """True iff positioned on a visible entry."""
        self.check_open()
        return self.valid_

    def seek_to_first(self):
        """Position at the first visible key (>= start)."""
        self.enter()
        try:
            self.state = DBITER_PENDING
            self.do_seek_to_first()
        finally:
            self.leave()

    def seek_to_last(self):
        """Position at the last visible key (< stop)."""
        self.enter()
        try:
            self.state = DBITER_PENDING
            self.do_seek_to_last(NULL, 0, False)
        finally:
            self.leave()

    def seek(self, user_key):
        """Position at the first visible key >= user_key (within the bounds)."""
        cdef const unsigned char* p
        cdef size_t n
        self.check_open()
        user_key = borrow_bytes(user_key, &p, &n, "user_key")
        self.enter()
        try:
            self.state = DBITER_PENDING
            self.do_seek(p, n)
        finally:
            self.leave()

    def seek_for_prev(self, user_key):
        """Position at the last visible key <= user_key (within the bounds)."""
        cdef const unsigned char* p
        cdef size_t n
        self.check_open()
        limit = borrow_bytes(user_key, &p, &n, "user_key") + b"\x00"   # first key > user_key
        self.enter()
        try:
            self.state = DBITER_PENDING
            self.do_seek_to_last(<const unsigned char*>PyBytes_AS_STRING(limit),
                                 PyBytes_GET_SIZE(limit), True)
        finally:
            self.leave()

    def next(self):
        """Move to the next visible key.  REQUIRES: valid()."""
        self.enter()
        try:
            if not self.valid_:
                self.raise_invalid("next")
            self.state = DBITER_PENDING
            self.do_next()
        finally:
            self.leave()

    def prev(self):
        """Move to the previous visible key.  REQUIRES: valid()."""
        self.enter()
        try:
            if not self.valid_:
                self.raise_invalid("prev")
            self.state = DBITER_PENDING
            self.do_prev()
        finally:
            self.leave()

    cdef int check_valid(self, str what) except -1:
        self.check_open()
        if not self.valid_:
            return self.raise_invalid(what)
        return 0

    def key(self):
        """The current user key (bytes)."""
        self.check_valid("key")
        if self.direction == DBITER_FORWARD:
            return PyBytes_FromStringAndSize(<const char*>self.iter.key_ptr() + self.key_skip,
                                             self.iter.key_len() - TAG_BYTES - self.key_skip)
        return PyBytes_FromStringAndSize(<const char*>self.saved_key.data + self.key_skip,
                                         self.saved_key.len - self.key_skip)

    def value(self):
        """The current value (bytes)."""
        self.check_valid("value")
        if self.direction == DBITER_FORWARD:
            return PyBytes_FromStringAndSize(<const char*>self.iter.value_ptr() + self.value_skip,
                                             self.iter.value_len() - self.value_skip)
        return PyBytes_FromStringAndSize(<const char*>self.saved_value.data,
                                         self.saved_value.len)

    def item(self):
        """(key(), value())."""
        self.check_valid("item")
        return self.current_item()

    def status(self):
        """None, or the error that stopped the iterator."""
        return self.c_status()

    # -- lifetime -------------------------------------------------------------

    def close(self):
        """Release the internal iterator and the pin (at the end of a call in
        progress, if another thread is inside one).  Idempotent."""
        self.state = DBITER_CLOSED
        self.valid_ = False
        if not self.busy:
            self.release()

    @property
    def closed(self):
        return self.state == DBITER_CLOSED

    @property
    def sequence(self):
        """Entries with a larger sequence number are invisible."""
        return self.sequence_

    @property
    def reverse(self):
        return self.reverse_

    def __enter__(self):
        self.check_open()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        if self.state == DBITER_CLOSED:
            return "<DBIterator (closed)>"
        return "<DBIterator at sequence %d%s>" % (self.sequence_,
                                                   ", reverse" if self.reverse_ else "")
