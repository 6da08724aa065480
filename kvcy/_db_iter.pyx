# cython: language_level=3, embedsignature=True
"""DBIterator: user-visible entries at a sequence number, forward and reverse.

A DBIterator wraps an internal iterator (a MergingIterator over memtables
and table files) and collapses its entries as LevelDB's DBIter does: for
each user key, the newest entry with sequence <= `sequence` counts; if that
entry is a tombstone, or a range tombstone (range_dels, a
kvcy._range_del.RangeTombstones) newer than the entry and visible at
`sequence` covers the key, the key is hidden.  An expiring value
(kvcy/_expiry.pyx) whose expiry the clock has reached counts as a tombstone
of its sequence; the clock is read at most once per call (seek, step, take),
and only when such an entry is met, so plain values cost nothing.  Only user keys in [start, stop)
are visible (either bound may be None; a prefix is the bounds
(prefix, prefix_stop(prefix))).

    it = DBIterator(merging_iter, sequence, start=None, stop=None,
                    reverse=False, pin=None, range_dels=None)
    for key, value in it: ...        # ascending, or descending if reverse

Cursor methods: seek(user_key) places it on the first visible key >=
user_key, seek_for_prev(user_key) on the last visible key <= user_key,
seek_to_first(), seek_to_last(), next(), prev(), valid(), key(), value(),
status().  Iteration picks up from the cursor: after a cursor move the next
__next__ yields the entry under the cursor, after that it steps (next, or
prev when reverse) before yielding.  next()/prev()/key()/value() on an
iterator that is not valid raise ValueError.

Forward, the internal iterator rests on the entry that yields key() and
value().  Reverse, it rests before every entry of key(), so the newest
visible version of the previous user key can only be known after reading
all of that key's versions: key() and value() are then saved copies.
Switching direction re-positions the internal iterator (LevelDB's
algorithm, including its switches).

Lifetime: `pin` is kept referenced until close() (a Version, memtables: what
keeps the internal iterator's data alive).  close() releases the internal
iterator and the pin; any use afterwards raises ProgrammingError.  Errors
(corruption met by a child, an entry of unknown kind) are sticky: the
iterator stays invalid and raises the error again on every later move.

Thread-safety: one thread at a time.
"""
from libc.stdint cimport uint64_t
from kvcy._byte_buffer cimport Buf, buf_assign, buf_free, buf_seek_key
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE

from kvcy._coding cimport load_fixed64
from kvcy._expiry cimport EXPIRY_BYTES, clock_micros, is_expired
from kvcy._dbformat cimport (KIND_DELETE, KIND_VALUE, KIND_EXPIRING_VALUE, KIND_FOR_SEEK,
                             MAX_SEQUENCE, TAG_BYTES,
                             pack_tag, compare_user_keys)
from kvcy._iterator cimport InternalIterator, borrow_bytes
from kvcy._latency cimport now_ns
from kvcy.errors import CorruptionError, ProgrammingError


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


cdef class DBIterator:
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

    def __cinit__(self):
        self.state = DBITER_CLOSED       # until __init__ has run: unusable, never a crash
        self.closed_message = "the iterator is closed"

    def __dealloc__(self):
        buf_free(&self.saved_key)
        buf_free(&self.saved_value)
        buf_free(&self.seek_key)

    # -- the per-entry loops: C only ----------------------------------------

    cdef inline bint range_deleted(self, const unsigned char* k, size_t ulen,
                                   uint64_t seq) noexcept:
        # True iff a range tombstone visible at sequence_ deletes entry (k, seq).
        return (self.range_dels is not None
                and self.range_dels.covering(k, ulen, self.sequence_) > seq)

    cdef int find_next_user_entry(self, bint skipping) except -1:
        # From the entry iter is on, forward to the first visible entry whose
        # user key is not hidden: not <= saved_key when skipping.
        # REQUIRES: iter.is_valid().
        cdef const unsigned char* k
        cdef size_t ulen
        cdef uint64_t tag, cover
        cdef int kind
        cdef const unsigned char* cover_stop
        cdef size_t cover_stop_len
        while True:
            k = self.iter.key_ptr()
            ulen = self.iter.key_len() - TAG_BYTES
            if self.stop_p != NULL and compare_user_keys(k, ulen, self.stop_p, self.stop_n) >= 0:
                break
            tag = load_fixed64(k + ulen)
            if (tag >> 8) <= self.sequence_:
                kind = <int>(tag & 0xFF)
                if ((kind == KIND_VALUE or kind == KIND_EXPIRING_VALUE)
                        and self.range_dels is not None):
                    cover = self.range_dels.covering_until(k, ulen, self.sequence_,
                                                           &cover_stop, &cover_stop_len)
                    if cover > (tag >> 8):
                        # Deleted by a range tombstone, which deletes every
                        # older entry up to cover_stop as well: the children
                        # whose entries are all older jump there at once
                        # instead of being read entry by entry.
                        if buf_assign(&self.saved_key, k, ulen) < 0:
                            return self.no_memory()
                        skipping = True
                        if buf_seek_key(&self.seek_key, cover_stop, cover_stop_len,
                                        pack_tag(MAX_SEQUENCE, KIND_FOR_SEEK)) < 0:
                            return self.no_memory()
                        if self.iter.c_skip_older(self.seek_key.data, self.seek_key.len, cover):
                            if not self.iter.is_valid():
                                break
                            continue         # the entry it is on now is another one
                        kind = KIND_DELETE   # as a tombstone: it hides older entries too
                if kind == KIND_VALUE or kind == KIND_EXPIRING_VALUE:
                    if skipping and compare_user_keys(k, ulen, self.saved_key.data,
                                                      self.saved_key.len) <= 0:
                        pass                 # an older version of a key already decided
                    elif kind == KIND_EXPIRING_VALUE and self.expired(
                            self.iter.value_ptr(), self.iter.value_len()):
                        # Expired: a tombstone of its sequence.
                        if buf_assign(&self.saved_key, k, ulen) < 0:
                            return self.no_memory()
                        skipping = True
                    else:
                        self.value_skip = EXPIRY_BYTES if kind == KIND_EXPIRING_VALUE else 0
                        self.valid_ = True
                        return 0
                elif kind == KIND_DELETE:
                    # The tombstone hides every older entry of its key.
                    if buf_assign(&self.saved_key, k, ulen) < 0:
                        return self.no_memory()
                    skipping = True
                else:
                    return self.bad_kind(kind)
            self.iter.c_next()
            if not self.iter.is_valid():
                break
        self.valid_ = False
        self.saved_key.len = 0
        return 0

    cdef int find_prev_user_entry(self) except -1:
        # Backward from the entry iter is on: the newest visible version of the
        # nearest user key that has a live value, saved in saved_key/value;
        # iter ends before all of that key's entries.
        cdef const unsigned char* k
        cdef size_t ulen
        cdef uint64_t tag
        cdef int kind, value_kind = KIND_DELETE
        cdef size_t skip
        while self.iter.is_valid():
            k = self.iter.key_ptr()
            ulen = self.iter.key_len() - TAG_BYTES
            if self.start_p != NULL and compare_user_keys(k, ulen, self.start_p,
                                                          self.start_n) < 0:
                break
            tag = load_fixed64(k + ulen)
            if (tag >> 8) <= self.sequence_:
                kind = <int>(tag & 0xFF)
                skip = 0
                if kind == KIND_EXPIRING_VALUE:
                    # An expired value hides older versions as a tombstone does.
                    if self.expired(self.iter.value_ptr(), self.iter.value_len()):
                        kind = KIND_DELETE
                    else:
                        kind = KIND_VALUE
                        skip = EXPIRY_BYTES
                elif kind != KIND_VALUE and kind != KIND_DELETE:
                    return self.bad_kind(kind)
                if kind == KIND_VALUE and self.range_deleted(k, ulen, tag >> 8):
                    kind = KIND_DELETE
                if value_kind != KIND_DELETE and compare_user_keys(
                        k, ulen, self.saved_key.data, self.saved_key.len) < 0:
                    break                    # an older key: saved_key's newest version is found
                value_kind = kind
                if kind == KIND_DELETE:
                    self.saved_key.len = 0
                    self.saved_value.len = 0
                else:
                    if (buf_assign(&self.saved_value, self.iter.value_ptr() + skip,
                                   self.iter.value_len() - skip) < 0
                            or buf_assign(&self.saved_key, k, ulen) < 0):
                        return self.no_memory()
            self.iter.c_prev()
        if value_kind == KIND_DELETE:
            self.valid_ = False
            self.saved_key.len = 0
            self.saved_value.len = 0
            self.direction = DBITER_FORWARD
        else:
            self.valid_ = True
        return 0

    cdef int do_next(self) except -1:
        # REQUIRES: valid_.
        if self.direction == DBITER_REVERSE:
            # iter is before the entries of key() (saved_key): step into them,
            # then skip them below.
            self.direction = DBITER_FORWARD
            self.valid_ = False
            if self.iter.is_valid():
                self.iter.c_next()
            else:
                self.iter.c_seek_to_first()
        else:
            if buf_assign(&self.saved_key, self.iter.key_ptr(),
                          self.iter.key_len() - TAG_BYTES) < 0:
                return self.no_memory()
            self.valid_ = False
            self.iter.c_next()
        if not self.iter.is_valid():
            self.saved_key.len = 0
            return 0
        return self.find_next_user_entry(True)

    cdef int do_prev(self) except -1:
        # REQUIRES: valid_.
        cdef size_t ulen
        if self.direction == DBITER_FORWARD:
            # iter is on the entry of key(): back up until the user key changes.
            if buf_assign(&self.saved_key, self.iter.key_ptr(),
                          self.iter.key_len() - TAG_BYTES) < 0:
                return self.no_memory()
            self.valid_ = False
            while True:
                self.iter.c_prev()
                if not self.iter.is_valid():
                    self.saved_key.len = 0
                    self.saved_value.len = 0
                    return 0
                ulen = self.iter.key_len() - TAG_BYTES
                if compare_user_keys(self.iter.key_ptr(), ulen, self.saved_key.data,
                                     self.saved_key.len) < 0:
                    break
            self.direction = DBITER_REVERSE
        self.valid_ = False
        return self.find_prev_user_entry()

    # -- seeks --------------------------------------------------------------

    cdef int do_seek(self, const unsigned char* ukey, size_t n) except -1:
        # First visible key >= ukey (and >= start).
        if self.start_p != NULL and compare_user_keys(ukey, n, self.start_p, self.start_n) < 0:
            ukey = self.start_p
            n = self.start_n
        self.direction = DBITER_FORWARD
        self.valid_ = False
        self.saved_key.len = 0
        self.saved_value.len = 0
        if buf_seek_key(&self.seek_key, ukey, n, pack_tag(self.sequence_, KIND_FOR_SEEK)) < 0:
            return self.no_memory()
        self.iter.c_seek(self.seek_key.data, self.seek_key.len)
        if self.iter.is_valid():
            self.find_next_user_entry(False)
        return 0

    cdef int do_seek_to_first(self) except -1:
        if self.start_p != NULL:
            return self.do_seek(self.start_p, self.start_n)
        self.direction = DBITER_FORWARD
        self.valid_ = False
        self.saved_key.len = 0
        self.saved_value.len = 0
        self.iter.c_seek_to_first()
        if self.iter.is_valid():
            self.find_next_user_entry(False)
        return 0

    cdef int do_seek_to_last(self, const unsigned char* limit, size_t n, bint bounded) except -1:
        # Last visible key < limit (when bounded) and < stop.
        if self.stop_p != NULL and (not bounded or compare_user_keys(
                self.stop_p, self.stop_n, limit, n) < 0):
            limit = self.stop_p
            n = self.stop_n
            bounded = True
        self.direction = DBITER_REVERSE
        self.valid_ = False
        self.saved_key.len = 0
        self.saved_value.len = 0
        if bounded:
            # Before the first entry whose user key is >= limit.
            if buf_seek_key(&self.seek_key, limit, n, pack_tag(MAX_SEQUENCE, KIND_FOR_SEEK)) < 0:
                return self.no_memory()
            self.iter.c_seek(self.seek_key.data, self.seek_key.len)
            if self.iter.is_valid():
                self.iter.c_prev()
            else:
                self.iter.c_seek_to_last()
        else:
            self.iter.c_seek_to_last()
        return self.find_prev_user_entry()

    # -- state and errors ---------------------------------------------------

    cdef int check_open(self) except -1:
        if self.state == DBITER_CLOSED:
            raise ProgrammingError(self.closed_message)
        return 0

    cdef object c_status(self):
        if self.status_ is not None or self.iter is None:
            return self.status_
        return self.iter.c_status()

    cdef int no_memory(self) except -1:
        # Out of memory for a saved key or value: sticky, like corruption (a
        # scan that went on would silently skip entries).
        self.valid_ = False
        if self.status_ is None:
            self.status_ = MemoryError("iterator: no memory for a saved key or value")
        raise self.status_.with_traceback(None)

    cdef int bad_kind(self, int kind) except -1:
        self.valid_ = False
        if self.status_ is None:
            self.status_ = CorruptionError("iterator: entry of unknown kind %d" % kind)
        raise self.status_.with_traceback(None)

    cdef int expired(self, const unsigned char* stored, size_t n) except -1:
        # 1 iff the expiring value stored[0:n] has expired by the clock read
        # (once) in this call; a value shorter than its expiry is corruption.
        if n < EXPIRY_BYTES:
            self.valid_ = False
            if self.status_ is None:
                self.status_ = CorruptionError(
                    "iterator: expiring value of %d bytes is shorter than its %d-byte expiry"
                    % (n, EXPIRY_BYTES))
            raise self.status_.with_traceback(None)
        self.expiring_met += 1
        if not self.now_known:
            self.now_ = clock_micros(self.clock)
            self.now_known = True
        return is_expired(stored, self.now_)

    cdef object current_item(self):
        # (key, value) of the current entry.  REQUIRES: valid_.
        cdef size_t ulen
        # key_skip <= every visible key's length: the bounds lie inside the
        # range of keys that start with the skipped prefix.
        if self.direction == DBITER_FORWARD:
            ulen = self.iter.key_len() - TAG_BYTES
            return (PyBytes_FromStringAndSize(<const char*>self.iter.key_ptr() + self.key_skip,
                                              ulen - self.key_skip),
                    PyBytes_FromStringAndSize(<const char*>self.iter.value_ptr() + self.value_skip,
                                              self.iter.value_len() - self.value_skip))
        return (PyBytes_FromStringAndSize(<const char*>self.saved_key.data + self.key_skip,
                                          self.saved_key.len - self.key_skip),
                PyBytes_FromStringAndSize(<const char*>self.saved_value.data,
                                          self.saved_value.len))

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
