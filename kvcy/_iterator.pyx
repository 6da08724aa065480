# cython: language_level=3, embedsignature=True
"""InternalIterator: the internal-iterator protocol, and its trivial members.

Every internal iterator (MemTableIterator, BlockIterator, TableIterator,
LevelIterator, MergingIterator) subclasses InternalIterator and implements
its cdef face (see kvcy/_iterator.pxd); Cython callers drive each other
through that face without making a Python object per entry.  The Python
face below is written once, on top of the cdef face:

    valid()          True iff positioned on an entry (never after an error)
    seek_to_first()  seek_to_last()
    seek(target)     first entry >= target, an internal key (user key + tag)
    next()  prev()   REQUIRE valid(); otherwise raise the sticky error, or
                     ValueError when there is none
    key()            the internal key, bytes
    value()          bytes
    user_key(), sequence(), kind()   the parts of key()
    status()         None, or the error that stopped the iterator

EmptyIterator holds no entry; ErrorIterator(exc) holds none and raises exc
on every move (LevelDB's NewEmptyIterator / NewErrorIterator).

Thread-safety: an iterator belongs to one thread at a time.
"""
from libc.stdint cimport uint64_t
from cpython.bytes cimport (PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE,
                            PyBytes_CheckExact)

from kvcy._coding cimport load_fixed64
from kvcy._dbformat cimport TAG_BYTES


cdef object borrow_bytes(object obj, const unsigned char** p, size_t* n, str what):
    # Pointer and length of a bytes-like argument.  Returns the bytes object
    # they point into (obj itself, or a copy of another buffer): the caller
    # keeps it referenced while it uses the pointer.
    if not PyBytes_CheckExact(obj):
        if isinstance(obj, str):
            raise TypeError("%s must be bytes-like, not str" % what)
        if obj is None:
            raise TypeError("%s must be bytes-like, not None" % what)
        obj = bytes(memoryview(obj))
    p[0] = <const unsigned char*>PyBytes_AS_STRING(obj)
    n[0] = <size_t>PyBytes_GET_SIZE(obj)
    return obj


cdef class InternalIterator:
    """Base of every internal iterator; not useful on its own (holds nothing)."""

    # -- cdef face: the defaults describe an iterator with no entries -------

    cdef bint is_valid(self) noexcept:
        return False

    cdef const unsigned char* key_ptr(self) noexcept:
        return NULL

    cdef size_t key_len(self) noexcept:
        return 0

    cdef const unsigned char* value_ptr(self) noexcept:
        return NULL

    cdef size_t value_len(self) noexcept:
        return 0

    cdef int c_seek_to_first(self) except -1:
        if self.status_ is not None:
            return self.fail(self.status_)
        return 0

    cdef int c_seek_to_last(self) except -1:
        if self.status_ is not None:
            return self.fail(self.status_)
        return 0

    cdef int c_seek(self, const unsigned char* target, size_t n) except -1:
        if self.status_ is not None:
            return self.fail(self.status_)
        return 0

    cdef int c_next(self) except -1:
        return self.raise_invalid("next")

    cdef int c_prev(self) except -1:
        return self.raise_invalid("prev")

    cdef int c_skip_older(self, const unsigned char* target, size_t n,
                          uint64_t sequence) except -1:
        return 0                         # cannot tell: step entry by entry

    cdef object c_status(self):
        return self.status_

    cdef int fail(self, object exc) except -1:
        # Latch exc as the status (the first error wins) and raise the status.
        if self.status_ is None:
            self.status_ = exc
        raise self.status_.with_traceback(None)

    cdef int raise_invalid(self, str what) except -1:
        # The error for a move or accessor on an iterator that is not valid.
        status = self.c_status()
        if status is not None:
            return self.fail(status)
        raise ValueError("%s() on an invalid iterator" % what)

    # -- Python face ---------------------------------------------------------

    def valid(self):
        """True iff positioned on an entry (never after an error)."""
        return self.is_valid()

    def status(self):
        """None, or the error that stopped the iterator."""
        return self.c_status()

    def seek_to_first(self):
        self.c_seek_to_first()

    def seek_to_last(self):
        self.c_seek_to_last()

    def seek(self, target):
        """Position at the first entry >= target (an internal key, bytes-like)."""
        cdef const unsigned char* p
        cdef size_t n
        target = borrow_bytes(target, &p, &n, "target")
        if n < TAG_BYTES:
            raise ValueError("seek target must be an internal key (user key + 8-byte tag)")
        self.c_seek(p, n)

    def next(self):
        self.c_next()

    def prev(self):
        self.c_prev()

    def key(self):
        """The internal key: user key + fixed64 tag."""
        if not self.is_valid():
            self.raise_invalid("key")
        return PyBytes_FromStringAndSize(<const char*>self.key_ptr(), self.key_len())

    def value(self):
        if not self.is_valid():
            self.raise_invalid("value")
        return PyBytes_FromStringAndSize(<const char*>self.value_ptr(), self.value_len())

    def user_key(self):
        if not self.is_valid():
            self.raise_invalid("user_key")
        return PyBytes_FromStringAndSize(<const char*>self.key_ptr(),
                                         self.key_len() - TAG_BYTES)

    def sequence(self):
        if not self.is_valid():
            self.raise_invalid("sequence")
        return load_fixed64(self.key_ptr() + self.key_len() - TAG_BYTES) >> 8

    def kind(self):
        if not self.is_valid():
            self.raise_invalid("kind")
        return <int>(load_fixed64(self.key_ptr() + self.key_len() - TAG_BYTES) & 0xFF)

    def __repr__(self):
        if self.is_valid():
            return "<%s at %r>" % (type(self).__name__, self.key())
        return "<%s (not valid)>" % type(self).__name__


cdef class EmptyIterator(InternalIterator):
    """An iterator with no entries: every seek leaves it invalid."""


cdef class ErrorIterator(InternalIterator):
    """An iterator with no entries whose every move raises exc (sticky)."""

    def __init__(self, exc):
        if not isinstance(exc, BaseException):
            raise TypeError("ErrorIterator needs an exception, not %r" % (exc,))
        self.status_ = exc
