# cython: language_level=3
# Expiring values (time to live): the value part of a KIND_EXPIRING_VALUE
# entry, and the clock that decides whether it has expired.  See
# kvcy/_expiry.pyx and docs/format.md ("Expiring values").
#
# Byte grammar of the stored value of a KIND_EXPIRING_VALUE entry:
#     stored := expiry:fixed64 value:bytes
# expiry is microseconds since the Unix epoch (UTC), little-endian; the pair
# is expired, and reads treat it as a tombstone of its sequence, once the
# clock reads expiry or later.  A stored value shorter than EXPIRY_BYTES is
# corruption.
from libc.stdint cimport uint64_t
from kvcy._coding cimport load_fixed64

cdef enum:
    EXPIRY_BYTES = 8                 # the fixed64 expiry before the user's value

# Microseconds since the epoch by `clock` (None: CLOCK_REALTIME read in C,
# no Python call; otherwise a callable returning seconds like time.time).
# A clock before the epoch reads as 0.  Raises what the clock raises, or
# ProgrammingError when it returns something other than a finite number.
cdef uint64_t clock_micros(object clock) except? 0

cdef inline bint is_expired(const unsigned char* stored, uint64_t now) noexcept nogil:
    # True iff the expiring value at stored has expired at `now`.
    # REQUIRES: EXPIRY_BYTES readable bytes at stored.
    return load_fixed64(stored) <= now

# The answer of a read that found the expiring value stored[0:n]: the
# user's value as bytes, or None once it has expired.  REQUIRES: n >=
# EXPIRY_BYTES (checked where the entry was decoded).
cdef object expiring_answer(const unsigned char* stored, size_t n, object clock)
