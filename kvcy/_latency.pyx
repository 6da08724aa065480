# cython: language_level=3, embedsignature=True
"""LatencyHistogram: latency percentiles of a hot path, kept in C.

Each hot path (get, put, write batch, scan step) owns a histogram and
times one in every `period` of its operations with two CLOCK_MONOTONIC
reads (vDSO, about 20 ns each): with a period of 8 for gets and puts and
64 for scan steps, the timing costs well under 1% of each (measured in
docs/impl.md, "Latency histograms").  Flushes and compactions time every
one.  Buckets are log-linear: exact below 8 ns, then 8 per power of two,
so a percentile is within 12.5% of the true value (HdrHistogram's idea
with 3 significant bits).

Recording needs the GIL (or a lock serializing the callers): the hot paths
record after they have taken it back, so no atomics are needed.
"""
from libc.stdint cimport uint64_t
from libc.string cimport memset

from kvcy._latency cimport LAT_BUCKETS, LAT_SUBS, LAT_SUB_BITS, lat_bucket


cdef inline double bucket_upper(int b):
    # Exclusive upper bound of bucket b, in ns.
    cdef int e
    if b < LAT_SUBS:
        return b + 1
    e = (b - LAT_SUBS) // LAT_SUBS + LAT_SUB_BITS
    return <double>((LAT_SUBS + (b - LAT_SUBS) % LAT_SUBS + 1)) * (<double>((<uint64_t>1) << (e - LAT_SUB_BITS)))


QUANTILES = (0.5, 0.9, 0.99, 0.999)


cdef class LatencyHistogram:
    def __cinit__(self, str name, unsigned int period=1):
        if period == 0 or period & (period - 1):
            raise ValueError("period must be a power of two, not %d" % period)
        self.name = name
        self.period_mask = period - 1
        memset(self.counts, 0, sizeof(self.counts))

    @property
    def period(self):
        return self.period_mask + 1

    @property
    def samples(self):
        return self.samples

    def add(self, double seconds):
        """Record one latency measured in Python (flushes, compactions)."""
        if seconds < 0:
            raise ValueError("a latency cannot be negative")
        self.calls += 1
        self.record(<uint64_t>(seconds * 1e9 + 0.5))   # nearest ns, not truncated

    def quantile(self, double q):
        """Upper bound, in seconds, of the bucket holding quantile q of the
        samples (0 when there are none); q = 1 gives the maximum."""
        cdef uint64_t rank, seen = 0
        cdef int b
        if not 0.0 <= q <= 1.0:
            raise ValueError("q must be in [0, 1], not %r" % q)
        if self.samples == 0:
            return 0.0
        if q >= 1.0:
            return self.max_ns / 1e9
        rank = <uint64_t>(q * self.samples)
        if rank >= self.samples:
            rank = self.samples - 1
        for b in range(LAT_BUCKETS):
            seen += self.counts[b]
            if seen > rank:
                return min(bucket_upper(b), <double>self.max_ns) / 1e9
        return self.max_ns / 1e9

    def summary(self):
        """{"p50", "p90", "p99", "p999", "max", "mean"} in microseconds, and
        "samples": the operations timed."""
        out = {"p%s" % ("%g" % (q * 100)).replace(".", ""): round(self.quantile(q) * 1e6, 3)
               for q in QUANTILES}
        out["max"] = round(self.max_ns / 1e3, 3)
        out["mean"] = round(self.sum_ns / 1e3 / self.samples, 3) if self.samples else 0.0
        out["samples"] = self.samples
        return out

    def buckets(self):
        """[(upper bound in seconds, count)] of the non-empty buckets, for
        exporters (Prometheus histograms), and the sum in seconds."""
        cdef int b
        return ([(bucket_upper(b) / 1e9, self.counts[b]) for b in range(LAT_BUCKETS)
                 if self.counts[b]], self.sum_ns / 1e9)

    def __repr__(self):
        return "<LatencyHistogram %s: %d samples>" % (self.name, self.samples)
