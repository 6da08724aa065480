# cython: language_level=3
# Bloom filters over user keys, LevelDB's BuiltinBloomFilter2 format.
#
# Byte grammar (docs/format.md, "Bloom filter block"):
#     filter := bits[m / 8] k:u8
# m = max(64, n * bits_per_key) rounded up to a whole byte, k = number of
# probes (1..30).  Key i sets bits (h + j * delta) mod m for j in 0..k-1,
# with h = bloom_hash(key) and delta = h rotated right by 17 bits (all
# arithmetic mod 2**32).  Bit b lives in byte b // 8 at mask 1 << (b % 8).
# The hash, the seed and the probe sequence are on disk: never change them.
cimport cython
from libc.stdint cimport uint32_t, uint64_t

from kvcy._coding cimport load_fixed32

cdef extern from *:
    """
    #define KVCY_BLOOM_SEED ((uint32_t)0xbc9f1d34u)
    """
    const uint32_t BLOOM_SEED "KVCY_BLOOM_SEED"   # on disk, never change

cdef enum:
    BLOOM_MIN_BITS = 64          # smallest bit array a builder writes
    BLOOM_MAX_PROBES = 30        # largest k a reader accepts


cdef inline uint32_t leveldb_hash(const unsigned char* data, size_t n, uint32_t seed) noexcept nogil:
    # LevelDB's Hash(): murmur-like, 4 bytes at a time, then the 1..3 byte tail.
    # REQUIRES: n readable bytes at data.
    cdef uint32_t m = 0xc6a4a793u
    cdef uint32_t h = seed ^ <uint32_t>(<uint64_t>n * m)
    cdef const unsigned char* limit = data + n
    cdef size_t rest
    while limit - data >= 4:
        h += load_fixed32(data)
        h *= m
        h ^= h >> 16
        data += 4
    rest = <size_t>(limit - data)
    if rest == 3:
        h += (<uint32_t>data[2]) << 16
    if rest >= 2:
        h += (<uint32_t>data[1]) << 8
    if rest >= 1:
        h += data[0]
        h *= m
        h ^= h >> 24
    return h


cdef inline uint32_t bloom_hash_raw(const unsigned char* key, size_t n) noexcept nogil:
    return leveldb_hash(key, n, BLOOM_SEED)


cdef inline bint bloom_may_contain(const unsigned char* array, size_t bits, int k,
                                   const unsigned char* key, size_t n) noexcept nogil:
    # False iff some probed bit is clear, i.e. key was certainly not added.
    # REQUIRES: bits > 0 readable bits at array, 1 <= k <= BLOOM_MAX_PROBES.
    cdef uint32_t h = bloom_hash_raw(key, n)
    cdef uint32_t delta = (h >> 17) | (h << 15)
    cdef size_t bit
    cdef int j
    for j in range(k):
        bit = h % bits
        if not (array[bit >> 3] & (1 << (bit & 7))):
            return False
        h += delta
    return True


@cython.final
cdef class BloomFilterBuilder:
    cdef int bits_per_key        # 1..64
    cdef int k                   # probes per key: bits_per_key * 0.69 clamped to 1..30
    cdef uint32_t* hashes        # bloom_hash of every key added since the last finish
    cdef size_t count_           # used slots of hashes
    cdef size_t capacity         # allocated slots of hashes

    cdef int append(self, const unsigned char* key, size_t n) noexcept nogil
    cdef int add_raw(self, const unsigned char* key, size_t n) except -1


@cython.final
cdef class BloomFilter:
    cdef bytes data              # the filter; keeps `array` alive
    cdef const unsigned char* array  # the bit array (data without its k byte)
    cdef size_t bits             # bits in array: (len(data) - 1) * 8, > 0
    cdef int k                   # probes per key, 1..30

    cdef bint may_contain_raw(self, const unsigned char* key, size_t n) noexcept nogil
