# cython: language_level=3, embedsignature=True
"""Bloom filters: BloomFilterBuilder writes one filter per table,
BloomFilter probes it (the format is in kvcy/_bloom.pxd and docs/format.md).

The filter is LevelDB's: hash every user key once with LevelDB's Hash()
(seed 0xbc9f1d34), derive k probe positions by double hashing, so a filter
of 10 bits per key answers "maybe" for about 1% of absent keys and never
answers "no" for a key that was added.

BloomFilterBuilder keeps only the 32-bit hash of each key in a C array.
Not thread-safe: the table builder that owns it uses it from one thread.
BloomFilter is immutable after construction and may be probed from any
thread; Cython callers use may_contain_raw() (never fails, no Python
objects).  A filter whose k byte is outside 1..30 or that has no bit array
is refused with CorruptionError when it is constructed.
"""
from libc.stdint cimport uint32_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memset
from cpython.bytes cimport (PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE,
                            PyBytes_CheckExact)

from kvcy._coding cimport view_ptr
from kvcy._bloom cimport BLOOM_MIN_BITS, BLOOM_MAX_PROBES, bloom_hash_raw
from kvcy.errors import CorruptionError




cdef inline void _set_probes(unsigned char* array, size_t bits, uint32_t h, int k) noexcept nogil:
    cdef uint32_t delta = (h >> 17) | (h << 15)     # rotate right 17 bits
    cdef size_t bit
    cdef int j
    for j in range(k):
        bit = h % bits
        array[bit >> 3] |= <unsigned char>(1 << (bit & 7))
        h += delta


def bloom_hash(key):
    """LevelDB's Hash(key, len(key), 0xbc9f1d34): the hash the filter probes with."""
    cdef const unsigned char[::1] view
    if PyBytes_CheckExact(key):
        return bloom_hash_raw(<const unsigned char*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
    view = key
    return bloom_hash_raw(view_ptr(view), view.shape[0])


cdef class BloomFilterBuilder:
    """Collects user keys and writes a filter for them with finish()."""

    def __cinit__(self, int bits_per_key):
        if bits_per_key < 1 or bits_per_key > 64:
            raise ValueError("bits_per_key must be 1..64, not %d" % bits_per_key)
        self.bits_per_key = bits_per_key
        # 0.69 ~ ln 2 probes per bit of key minimises the false-positive rate.
        self.k = <int>(bits_per_key * 0.69)
        if self.k < 1:
            self.k = 1
        if self.k > BLOOM_MAX_PROBES:
            self.k = BLOOM_MAX_PROBES
        self.capacity = 256
        self.count_ = 0
        self.hashes = <uint32_t*>malloc(self.capacity * sizeof(uint32_t))
        if self.hashes == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.hashes)

    cdef int append(self, const unsigned char* key, size_t n) noexcept nogil:
        # add_raw without the GIL: 0, or -1 when memory runs out.
        cdef size_t cap
        cdef uint32_t* grown
        if self.count_ == self.capacity:
            cap = self.capacity * 2
            grown = <uint32_t*>realloc(self.hashes, cap * sizeof(uint32_t))
            if grown == NULL:
                return -1
            self.hashes = grown
            self.capacity = cap
        self.hashes[self.count_] = bloom_hash_raw(key, n)
        self.count_ += 1
        return 0

    cdef int add_raw(self, const unsigned char* key, size_t n) except -1:
        if self.append(key, n) < 0:
            raise MemoryError()
        return 0

    def add_key(self, key):
        """Add one user key (bytes-like); duplicates are harmless."""
        cdef const unsigned char[::1] view
        if PyBytes_CheckExact(key):
            self.add_raw(<const unsigned char*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key))
        else:
            if isinstance(key, str):
                raise TypeError("key must be bytes-like, not str")
            view = key
            self.add_raw(view_ptr(view), view.shape[0])

    def finish(self):
        """The filter of every key added since the last finish(); then starts afresh."""
        cdef size_t bits = self.count_ * <size_t>self.bits_per_key
        cdef size_t nbytes, i
        cdef unsigned char* array
        cdef bytes out
        if bits < BLOOM_MIN_BITS:
            bits = BLOOM_MIN_BITS
        nbytes = (bits + 7) // 8
        bits = nbytes * 8
        out = PyBytes_FromStringAndSize(NULL, nbytes + 1)
        array = <unsigned char*>PyBytes_AS_STRING(out)
        # A table's filter takes a few probes per key: without the GIL, so a
        # flush or compaction finishing a table does not hold up the writers.
        with nogil:
            memset(array, 0, nbytes)
            array[nbytes] = <unsigned char>self.k
            for i in range(self.count_):
                _set_probes(array, bits, self.hashes[i], self.k)
        self.count_ = 0
        return out

    @property
    def count(self):
        """Keys added since the last finish()."""
        return self.count_

    @property
    def bits_per_key(self):
        return self.bits_per_key

    @property
    def num_probes(self):
        """k: bit probes per key."""
        return self.k


cdef class BloomFilter:
    """A filter written by BloomFilterBuilder.finish(), ready to probe."""

    def __cinit__(self, data):
        cdef Py_ssize_t n
        cdef int k
        if not PyBytes_CheckExact(data):
            if isinstance(data, str):
                raise TypeError("filter data must be bytes-like, not str")
            data = bytes(memoryview(data))
        n = PyBytes_GET_SIZE(data)
        if n == 0:
            raise CorruptionError("bloom filter: empty (no bit array and no probe count)")
        if n == 1:
            raise CorruptionError("bloom filter: 1 byte, no bit array")
        k = (<const unsigned char*>PyBytes_AS_STRING(data))[n - 1]
        if k < 1 or k > BLOOM_MAX_PROBES:
            raise CorruptionError("bloom filter: probe count k=%d outside 1..%d"
                                  % (k, BLOOM_MAX_PROBES))
        self.data = data
        self.array = <const unsigned char*>PyBytes_AS_STRING(data)
        self.bits = <size_t>(n - 1) * 8
        self.k = k

    cdef bint may_contain_raw(self, const unsigned char* key, size_t n) noexcept nogil:
        return bloom_may_contain(self.array, self.bits, self.k, key, n)

    def may_contain(self, key):
        """False iff key (a bytes-like user key) was certainly not added."""
        cdef const unsigned char[::1] view
        if PyBytes_CheckExact(key):
            return self.may_contain_raw(<const unsigned char*>PyBytes_AS_STRING(key),
                                        PyBytes_GET_SIZE(key))
        if isinstance(key, str):
            raise TypeError("key must be bytes-like, not str")
        view = key
        return self.may_contain_raw(view_ptr(view), view.shape[0])

    @property
    def size(self):
        """Bytes of the filter, k byte included."""
        return PyBytes_GET_SIZE(self.data)

    @property
    def num_probes(self):
        return self.k

    @property
    def bits(self):
        return self.bits
