# cython: language_level=3, embedsignature=True
"""RangeTombstones: range deletions as reads see them, fragmented, in C.

A range tombstone (start, stop, sequence) deletes every entry of a user key
k with start <= k < stop whose sequence is below the tombstone's, for a
reader whose sequence is at least the tombstone's (RocksDB's DeleteRange).
Tombstones live beside the key space, not in it: each memtable keeps its
own (MemTable.range_dels), and a flush moves them into the Version
(VersionEdit range tombstone fields), which holds them until no entry they
could hide is left (kvcy/range_del.py).

The engine builds one RangeTombstones from the memtables' and the
Version's tombstones whenever it publishes a read state, and none at all
when there are no tombstones, so reads pay nothing then.  Building splits
the tombstones at every start and stop into non-overlapping fragments,
each with the sequences of the tombstones covering it, newest first; a
lookup is a binary search for the fragment and a walk down its sequences
to the first one the reader can see.

Thread-safety: immutable once built; any number of threads may look up,
without the GIL.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.stdint cimport uint64_t

from kvcy._dbformat cimport MAX_SEQUENCE, compare_user_keys
from kvcy.dbformat import as_user_bytes


@cython.final
cdef class RangeTombstones:
    """Fragmented range tombstones; see the module docstring.

    RangeTombstones(tombstones): tombstones is an iterable of (start, stop,
    sequence) with bytes bounds; empty ranges (start >= stop) cover nothing
    and are left out."""

    def __cinit__(self, tombstones):
        cdef Py_ssize_t i, n_seqs = 0
        cdef Fragment* f
        items = []
        for start, stop, sequence in tombstones:
            if not (PyBytes_CheckExact(start) and PyBytes_CheckExact(stop)):
                raise TypeError("range tombstone bounds must be bytes")
            if not 0 < sequence <= MAX_SEQUENCE:
                raise ValueError("range tombstone sequence %r out of range" % (sequence,))
            items.append((start, stop, sequence))
        items.sort(key=lambda t: t[2])
        self.tombstones = tuple(items)
        live = sorted((t for t in items if t[0] < t[1]), key=lambda t: t[0])
        bounds = sorted({t[0] for t in live} | {t[1] for t in live})
        # Sweep the bounds left to right with the tombstones open there.
        fragments = []                   # (start, stop, sequences newest first)
        active = []
        j = 0
        for i in range(len(bounds) - 1):
            lo = bounds[i]
            while j < len(live) and live[j][0] <= lo:
                active.append(live[j])
                j += 1
            active = [t for t in active if t[1] > lo]
            if active:
                seqs = sorted((t[2] for t in active), reverse=True)
                fragments.append((lo, bounds[i + 1], seqs))
                n_seqs += len(seqs)
        self.keys = bounds
        self.num_frags = len(fragments)
        self.frags = <Fragment*>PyMem_Malloc(sizeof(Fragment) * (self.num_frags or 1))
        self.seqs = <uint64_t*>PyMem_Malloc(sizeof(uint64_t) * (n_seqs or 1))
        if self.frags == NULL or self.seqs == NULL:
            raise MemoryError()
        n_seqs = 0
        for i, (lo, hi, seqs) in enumerate(fragments):
            f = &self.frags[i]
            f.start = <const unsigned char*>PyBytes_AS_STRING(lo)
            f.start_len = PyBytes_GET_SIZE(lo)
            f.stop = <const unsigned char*>PyBytes_AS_STRING(hi)
            f.stop_len = PyBytes_GET_SIZE(hi)
            f.seqs_begin = n_seqs
            for s in seqs:
                self.seqs[n_seqs] = s
                n_seqs += 1
            f.seqs_end = n_seqs

    def __dealloc__(self):
        PyMem_Free(self.frags)
        PyMem_Free(self.seqs)

    cdef Py_ssize_t find(self, const unsigned char* key, size_t klen) noexcept nogil:
        cdef Py_ssize_t lo = 0, hi = self.num_frags, mid
        cdef Fragment* f
        while lo < hi:
            mid = lo + (hi - lo) // 2
            f = &self.frags[mid]
            if compare_user_keys(f.start, f.start_len, key, klen) <= 0:
                lo = mid + 1
            else:
                hi = mid
        if lo == 0:
            return -1
        f = &self.frags[lo - 1]
        if compare_user_keys(key, klen, f.stop, f.stop_len) >= 0:
            return -1
        return lo - 1

    cdef uint64_t covering(self, const unsigned char* key, size_t klen,
                           uint64_t sequence) noexcept nogil:
        cdef Py_ssize_t i = self.find(key, klen)
        cdef Fragment* f
        if i < 0:
            return 0
        f = &self.frags[i]
        for i in range(f.seqs_begin, f.seqs_end):
            if self.seqs[i] <= sequence:
                return self.seqs[i]
        return 0

    def covering_sequence(self, key, uint64_t sequence=MAX_SEQUENCE):
        """Python face of covering(): the sequence of the newest tombstone
        covering key visible at sequence, or 0."""
        key = as_user_bytes(key, "key")
        return self.covering(<const unsigned char*>PyBytes_AS_STRING(key),
                             PyBytes_GET_SIZE(key), sequence)

    def fragments(self):
        """[(start, stop, [sequences newest first])] (tests, debugging)."""
        cdef Fragment* f
        out = []
        for i in range(self.num_frags):
            f = &self.frags[i]
            out.append((f.start[:f.start_len], f.stop[:f.stop_len],
                        [self.seqs[j] for j in range(f.seqs_begin, f.seqs_end)]))
        return out

    def __len__(self):
        return len(self.tombstones)

    def __repr__(self):
        return "RangeTombstones(%d tombstones, %d fragments)" % (len(self.tombstones),
                                                                 self.num_frags)


def build_range_tombstones(mems, version):
    """The RangeTombstones of memtables and a Version, or None when they hold none."""
    tombstones = list(getattr(version, "range_dels", ()))
    for mem in mems:
        tombstones.extend(mem.range_dels)
    if not tombstones:
        return None
    return RangeTombstones(tombstones)
