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
when there are no tombstones, so reads pay nothing then.  Fragmenting
splits tombstones at every start and stop into non-overlapping fragments,
each with the sequences of the tombstones covering it, newest first; a
lookup is a binary search for the fragment and a walk down its sequences
to the first one the reader can see.  The Version's tombstones are
fragmented once per Version and a memtable's in O(log n) layers
(add_to_layers), so a read state is assembled from layers without
fragmenting anything again, and a lookup searches each layer.

Thread-safety: immutable once built; any number of threads may look up,
without the GIL.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.stdint cimport uint64_t

from kvcy._dbformat cimport MAX_SEQUENCE, compare_user_keys
from kvcy.dbformat import as_user_bytes


cdef Py_ssize_t find_fragment(const Layer* layer, const unsigned char* key,
                              size_t klen) noexcept nogil:
    # The index of the fragment of layer holding key, or -1.
    cdef Py_ssize_t lo = 0, hi = layer.num_frags, mid
    cdef const Fragment* f
    while lo < hi:
        mid = lo + (hi - lo) // 2
        f = &layer.frags[mid]
        if compare_user_keys(f.start, f.start_len, key, klen) <= 0:
            lo = mid + 1
        else:
            hi = mid
    if lo == 0:
        return -1
    f = &layer.frags[lo - 1]
    if compare_user_keys(key, klen, f.stop, f.stop_len) >= 0:
        return -1
    return lo - 1


@cython.final
cdef class RangeTombstones:
    """Fragmented range tombstones; see the module docstring.

    RangeTombstones(tombstones, layers=()): tombstones is an iterable of
    (start, stop, sequence) with bytes bounds, fragmented here; empty
    ranges (start >= stop) cover nothing.  layers: other RangeTombstones
    that count as well, each looked up on its own (so a read state reuses
    the fragments of the Version and of each memtable instead of
    rebuilding them all when one tombstone is added)."""

    def __cinit__(self, tombstones, layers=()):
        cdef Py_ssize_t i, n_seqs = 0
        cdef Fragment* f
        cdef RangeTombstones layer
        items = []
        for start, stop, sequence in tombstones:
            if not (PyBytes_CheckExact(start) and PyBytes_CheckExact(stop)):
                raise TypeError("range tombstone bounds must be bytes")
            if not 0 < sequence <= MAX_SEQUENCE:
                raise ValueError("range tombstone sequence %r out of range" % (sequence,))
            items.append((start, stop, sequence))
        items.sort(key=lambda t: t[2])
        self.own = tuple(items)
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
        # Layers: this one's fragments first, then every other's own (a
        # layer's own layers are flattened in, so lookups never recurse).
        flat = []
        for other in layers:
            flat.append(<RangeTombstones?>other)
            flat.extend((<RangeTombstones>other).layers)
        self.layers = tuple(flat)
        self.num_layers = 1 + len(flat)
        self.c_layers = <Layer*>PyMem_Malloc(sizeof(Layer) * self.num_layers)
        if self.c_layers == NULL:
            raise MemoryError()
        self.c_layers[0].frags = self.frags
        self.c_layers[0].num_frags = self.num_frags
        self.c_layers[0].seqs = self.seqs
        self.count = len(self.own)
        for i, layer in enumerate(flat):
            self.c_layers[i + 1].frags = layer.frags
            self.c_layers[i + 1].num_frags = layer.num_frags
            self.c_layers[i + 1].seqs = layer.seqs
            self.count += len(layer.own)

    def __dealloc__(self):
        PyMem_Free(self.frags)
        PyMem_Free(self.seqs)
        PyMem_Free(self.c_layers)

    cdef uint64_t covering(self, const unsigned char* key, size_t klen,
                           uint64_t sequence) noexcept nogil:
        cdef const unsigned char* stop
        cdef size_t stop_len
        return self.covering_until(key, klen, sequence, &stop, &stop_len)

    cdef uint64_t covering_until(self, const unsigned char* key, size_t klen,
                                 uint64_t sequence, const unsigned char** stop,
                                 size_t* stop_len) noexcept nogil:
        # A fragment's tombstones cover all of it, so the best one found
        # covers key up to its fragment's stop.
        cdef Py_ssize_t L, i, j
        cdef const Layer* layer
        cdef const Fragment* f
        cdef uint64_t best = 0
        for L in range(self.num_layers):
            layer = &self.c_layers[L]
            i = find_fragment(layer, key, klen)
            if i < 0:
                continue
            f = &layer.frags[i]
            for j in range(f.seqs_begin, f.seqs_end):
                if layer.seqs[j] <= sequence:
                    if layer.seqs[j] > best:
                        best = layer.seqs[j]
                        stop[0] = f.stop
                        stop_len[0] = f.stop_len
                    break
        return best

    def covering_sequence(self, key, uint64_t sequence=MAX_SEQUENCE):
        """Python face of covering(): the sequence of the newest tombstone
        covering key visible at sequence, or 0."""
        key = as_user_bytes(key, "key")
        return self.covering(<const unsigned char*>PyBytes_AS_STRING(key),
                             PyBytes_GET_SIZE(key), sequence)

    @property
    def tombstones(self):
        """Every (start, stop, sequence), of all layers, by sequence."""
        if not self.layers:
            return self.own
        out = list(self.own)
        for layer in self.layers:
            out.extend((<RangeTombstones>layer).own)
        out.sort(key=lambda t: t[2])
        return tuple(out)

    def fragments(self):
        """[(start, stop, [sequences newest first])] of this layer (tests, debugging)."""
        cdef Fragment* f
        out = []
        for i in range(self.num_frags):
            f = &self.frags[i]
            out.append((f.start[:f.start_len], f.stop[:f.stop_len],
                        [self.seqs[j] for j in range(f.seqs_begin, f.seqs_end)]))
        return out

    def __len__(self):
        return self.count

    def __repr__(self):
        return "RangeTombstones(%d tombstones, %d layers)" % (self.count, self.num_layers)


def add_to_layers(list layers, tombstone):
    """A new list: layers (RangeTombstones kept as a binary counter, a
    memtable's) with one more tombstone: a new layer of one, merged with the
    layer before while that one is no larger, so each tombstone is
    fragmented again O(log n) times and there are O(log n) layers to look
    up.  layers is left as it was: a reader holding it sees a whole set."""
    layers = list(layers)
    merged = [tombstone]
    while layers and len(<RangeTombstones>layers[-1]) <= len(merged):
        merged = list((<RangeTombstones>layers.pop()).own) + merged
    layers.append(RangeTombstones(merged))
    return layers


def build_range_tombstones(mems, version):
    """The RangeTombstones of memtables and a Version, or None when they hold
    none.  The Version's are fragmented once per Version, a memtable's as
    add_to_layers keeps them."""
    layers = []
    if version is not None and getattr(version, "range_dels", ()):
        cached = version.range_tombstones
        if cached is None:
            cached = version.range_tombstones = RangeTombstones(version.range_dels)
        layers.append(cached)
    for mem in mems:
        layers.extend(mem.range_layers)
    if not layers:
        return None
    if len(layers) == 1:
        return layers[0]
    return RangeTombstones((), layers)
