# cython: language_level=3, embedsignature=True
"""Time to live: expiry stamps, the clock, and ttl arguments.

A put with ttl=seconds stores a KIND_EXPIRING_VALUE entry whose value is
fixed64 expiry (microseconds since the epoch) + the user's value
(kvcy/_expiry.pxd has the grammar).  The expiry is fixed when the put is
made, by the clock of the connection (or WriteBatch) that makes it, so a
WAL replay or a compaction never changes it.

Readers look at the clock only when the entry they found is expiring: a
plain value costs nothing extra.  The default clock is CLOCK_REALTIME read
in C; a connection opened with clock=callable (tests, simulations) calls it
instead, with the GIL held, once per expiring entry a read meets.

Thread-safety: pure functions; a custom clock must be safe to call from
any thread that reads.
"""
from libc.math cimport isfinite, INFINITY
from libc.stdint cimport uint64_t
from libc.string cimport memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from cpython.float cimport PyFloat_AsDouble

from kvcy._coding cimport put_fixed64, load_fixed64
import numbers
import time

from kvcy.errors import CorruptionError, ProgrammingError

# Largest expiry: a ttl that reaches past it never expires in practice.
cdef uint64_t MAX_EXPIRY = 0xFFFFFFFFFFFFFFFF
cdef double MAX_EXPIRY_DOUBLE = 1.8e19


cdef inline uint64_t realtime_micros() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    if ts.tv_sec < 0:
        return 0
    return <uint64_t>ts.tv_sec * 1000000 + <uint64_t>(ts.tv_nsec // 1000)


cdef uint64_t clock_micros(object clock) except? 0:
    cdef double seconds
    if clock is None:
        return realtime_micros()
    reading = clock()
    if isinstance(reading, bool) or not isinstance(reading, numbers.Real):
        raise ProgrammingError("clock() must return seconds since the epoch as a number, "
                               "not %r" % (reading,))
    seconds = PyFloat_AsDouble(float(reading))
    if not isfinite(seconds):
        raise ProgrammingError("clock() returned %r, not a finite number of seconds"
                               % (reading,))
    if seconds <= 0:
        return 0
    if seconds * 1e6 >= MAX_EXPIRY_DOUBLE:
        return MAX_EXPIRY
    return <uint64_t>(seconds * 1e6)


cdef object expiring_answer(const unsigned char* stored, size_t n, object clock):
    if load_fixed64(stored) <= clock_micros(clock):
        return None
    return PyBytes_FromStringAndSize(<const char*>stored + EXPIRY_BYTES, n - EXPIRY_BYTES)


def normalize_clock(clock):
    """The clock to keep for a connect(clock=...) argument: None for the
    default (None or time.time: read in C), else the callable itself.
    ProgrammingError when it is not callable or does not return a number."""
    if clock is None or clock is time.time:
        return None
    if not callable(clock):
        raise ProgrammingError("clock must be a callable returning seconds since the epoch "
                               "(like time.time), not %r" % (clock,))
    clock_micros(clock)                  # a clock that returns nonsense fails here, not in a read
    return clock


def now_micros(clock=None):
    """The clock's reading in microseconds since the epoch (None: real time)."""
    return clock_micros(clock)


def ttl_micros(ttl):
    """A ttl argument as whole microseconds (at least 1); math.inf (never
    expires, even where a namespace's default TTL would apply) is the
    largest stamp.  ProgrammingError naming ttl unless it is a positive
    int or float of seconds."""
    if isinstance(ttl, bool) or not isinstance(ttl, numbers.Real):
        raise ProgrammingError("ttl must be a positive number of seconds (or None for no "
                               "expiry), not %r" % (ttl,))
    seconds = float(ttl)
    if seconds == INFINITY:
        return MAX_EXPIRY
    if not isfinite(seconds) or seconds <= 0:
        raise ProgrammingError("ttl must be a positive number of seconds, math.inf or None "
                               "(no expiry), not %r" % (ttl,))
    micros = seconds * 1e6
    if micros >= MAX_EXPIRY_DOUBLE:
        return MAX_EXPIRY
    return max(1, int(micros))


def expiry_for(ttl, clock=None):
    """The expiry stamp (µs since the epoch) of a put made now with ttl."""
    cdef uint64_t span = ttl_micros(ttl)
    cdef uint64_t now = clock_micros(clock)
    if span > MAX_EXPIRY - now:
        return MAX_EXPIRY
    return now + span


def encode_expiring(uint64_t expiry, bytes value not None):
    """The stored value of a KIND_EXPIRING_VALUE entry: fixed64 expiry + value."""
    cdef Py_ssize_t n = len(value)
    out = PyBytes_FromStringAndSize(NULL, EXPIRY_BYTES + n)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    put_fixed64(p, expiry)
    if n:
        memcpy(p + EXPIRY_BYTES, PyBytes_AS_STRING(value), n)
    return out


def decode_expiring(stored):
    """(expiry, value) of a stored expiring value; CorruptionError when it is
    shorter than its 8-byte expiry."""
    data = bytes(stored)
    if len(data) < EXPIRY_BYTES:
        raise CorruptionError("expiring value of %d bytes is shorter than its %d-byte expiry"
                              % (len(data), EXPIRY_BYTES))
    return int.from_bytes(data[:EXPIRY_BYTES], "little"), data[EXPIRY_BYTES:]


def is_expired_at(stored, uint64_t now):
    """True iff the stored expiring value has expired at now (µs)."""
    expiry, _ = decode_expiring(stored)
    return expiry <= now
