# cython: language_level=3
# LatencyHistogram: C-level latency histograms for the hot paths.  See
# kvcy/_latency.pyx.
from libc.stdint cimport uint64_t
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

cdef enum:
    LAT_SUB_BITS = 3                 # 8 buckets per power of two: values within 12.5%
    LAT_SUBS = 1 << LAT_SUB_BITS
    LAT_BUCKETS = 368                # exact below 8 ns, then up to 2**48 ns (78 hours)


cdef inline uint64_t now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000 + <uint64_t>ts.tv_nsec


cdef inline int lat_bucket(uint64_t ns) noexcept nogil:
    # Bucket of a latency: ns itself below 8, else by its top four bits.
    cdef int e, b
    if ns < LAT_SUBS:
        return <int>ns
    e = 63 - __builtin_clzll(ns)
    b = LAT_SUBS + (e - LAT_SUB_BITS) * LAT_SUBS + <int>((ns >> (e - LAT_SUB_BITS)) & (LAT_SUBS - 1))
    return b if b < LAT_BUCKETS else LAT_BUCKETS - 1


cdef extern from *:
    int __builtin_clzll(unsigned long long) nogil


cdef class LatencyHistogram:
    cdef uint64_t counts[LAT_BUCKETS]
    cdef uint64_t samples            # latencies recorded
    cdef uint64_t sum_ns
    cdef uint64_t max_ns
    cdef uint64_t calls              # operations seen: one in every `period` is timed
    cdef uint64_t period_mask        # period - 1 (period a power of two)
    cdef readonly str name

    cdef inline bint should_time(self) noexcept:
        # True for the operations this histogram times (REQUIRES: the GIL, or
        # another lock that serializes its callers).
        self.calls += 1
        return (self.calls & self.period_mask) == 0

    cdef inline void record(self, uint64_t ns) noexcept:
        # REQUIRES: as should_time.
        self.counts[lat_bucket(ns)] += 1
        self.samples += 1
        self.sum_ns += ns
        if ns > self.max_ns:
            self.max_ns = ns
