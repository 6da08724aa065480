# cython: language_level=3, embedsignature=True
"""DBIterCore: the user-visible entries of an internal iterator at a
sequence number, LevelDB's DBIter algorithm (db_iter.cc) in C.

It collapses the entries of an internal iterator (a MergingIterator over
memtables and table files): for each user key, the newest entry with
sequence <= `sequence` counts; if that entry is a tombstone, or a range
tombstone (range_dels, a kvcy._range_del.RangeTombstones) newer than the
entry and visible at `sequence` covers the key, the key is hidden.  An
expiring value (kvcy/_expiry.pyx) whose expiry the clock has reached counts
as a tombstone of its sequence; the clock is read at most once per call
(seek, step, take), and only when such an entry is met, so plain values
cost nothing.  Only user keys in [start, stop) are visible.

Forward, the internal iterator rests on the entry that yields the current
key and value.  Reverse, it rests before every entry of the current key,
so the newest visible version of the previous user key can only be known
after reading all of that key's versions: key and value are then saved
copies.  Switching direction re-positions the internal iterator (LevelDB's
algorithm, including its switches).

Errors (corruption met by a child, an entry of unknown kind, no memory for
a saved key) are sticky: the iterator stays invalid and raises the error
again on every later move.  DBIterator (kvcy/_db_iter.pyx) extends this
class with the Python face: iteration, take(), the cursor and its lifetime.
"""
from libc.stdint cimport uint64_t
from kvcy._byte_buffer cimport buf_assign, buf_free, buf_seek_key
from cpython.bytes cimport PyBytes_FromStringAndSize

from kvcy._coding cimport load_fixed64
from kvcy._expiry cimport EXPIRY_BYTES, clock_micros, is_expired
from kvcy._dbformat cimport (KIND_DELETE, KIND_VALUE, KIND_EXPIRING_VALUE, KIND_FOR_SEEK,
                             MAX_SEQUENCE, TAG_BYTES,
                             pack_tag, compare_user_keys)
from kvcy.errors import CorruptionError, ProgrammingError


cdef class DBIterCore:
    """The state and the C loops of DBIterator; see the module docstring."""

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

