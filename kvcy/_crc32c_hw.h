/*
 * Hardware CRC32C (Castagnoli) for kvcy/_crc32c.pyx: the SSE4.2 crc32
 * instruction on x86_64 with GCC or clang.
 *
 * Every function here works on the raw CRC register: the caller inverts
 * before and after (crc ^ 0xffffffff), exactly as the software slicing-by-8
 * path in _crc32c.pyx does, so both paths are interchangeable mid-stream.
 *
 *   kvcy_crc32c_hw_available()  1 iff the CPU has SSE4.2 and this build can
 *                               use it; 0 on every other platform.
 *   kvcy_crc32c_hw_init()       build the stream-combining tables; call once,
 *                               before any kvcy_crc32c_sse42() call (the
 *                               module does it at import, under the GIL).
 *   kvcy_crc32c_sse42(s, p, n)  raw register after feeding n bytes at p to
 *                               register s.  REQUIRES: available() and init().
 *                               On other platforms a stub never called.
 *
 * The functions are compiled with __attribute__((target("sse4.2"))) so the
 * module builds without -msse4.2 and still runs on CPUs without it (the
 * instruction is only reached after the runtime check).  Large inputs run
 * three independent crc32 streams (the instruction has a latency of 3 cycles
 * but a throughput of 1 per cycle) and combine them with a "shift by N zero
 * bytes" operator, the method of Mark Adler's crc32c.c.
 *
 * Thread-safety: after init() the tables are read-only; all functions are
 * pure and safe to call from any thread without the GIL.
 */
#ifndef KVCY_CRC32C_HW_H
#define KVCY_CRC32C_HW_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))

#include <nmmintrin.h>

#define KVCY_CRC32C_POLY 0x82f63b78u   /* reflected Castagnoli polynomial */
#define KVCY_CRC32C_LONG 8192          /* per-stream bytes, big blocks; a power of two */
#define KVCY_CRC32C_SHORT 256          /* per-stream bytes, small blocks; a power of two */

/* zeros[k][b]: the register after shifting (byte b at position k) through
 * LONG (resp. SHORT) zero bytes.  Filled once by kvcy_crc32c_hw_init(). */
static uint32_t kvcy_crc32c_long[4][256];
static uint32_t kvcy_crc32c_short[4][256];

/* GF(2) matrix (32 column vectors) times vector. */
static uint32_t kvcy_gf2_times(const uint32_t *mat, uint32_t vec) {
    uint32_t sum = 0;
    while (vec) {
        if (vec & 1)
            sum ^= *mat;
        vec >>= 1;
        mat++;
    }
    return sum;
}

static void kvcy_gf2_square(uint32_t *square, const uint32_t *mat) {
    int n;
    for (n = 0; n < 32; n++)
        square[n] = kvcy_gf2_times(mat, mat[n]);
}

/* Operator that feeds len zero bytes to the register.  REQUIRES: len is a
 * power of two, len >= 1. */
static void kvcy_crc32c_zeros_op(uint32_t *even, size_t len) {
    uint32_t odd[32];
    uint32_t row = 1;
    int n;
    odd[0] = KVCY_CRC32C_POLY;     /* one zero bit */
    for (n = 1; n < 32; n++) {
        odd[n] = row;
        row <<= 1;
    }
    kvcy_gf2_square(even, odd);    /* two zero bits */
    kvcy_gf2_square(odd, even);    /* four zero bits */
    /* Each square doubles: even = 1 byte, odd = 2 bytes, ... until len is
     * shifted down to zero. */
    do {
        kvcy_gf2_square(even, odd);
        len >>= 1;
        if (len == 0)
            return;
        kvcy_gf2_square(odd, even);
        len >>= 1;
    } while (len);
    memcpy(even, odd, sizeof(odd));
}

static void kvcy_crc32c_zeros(uint32_t zeros[][256], size_t len) {
    uint32_t op[32];
    uint32_t n;
    kvcy_crc32c_zeros_op(op, len);
    for (n = 0; n < 256; n++) {
        zeros[0][n] = kvcy_gf2_times(op, n);
        zeros[1][n] = kvcy_gf2_times(op, n << 8);
        zeros[2][n] = kvcy_gf2_times(op, n << 16);
        zeros[3][n] = kvcy_gf2_times(op, n << 24);
    }
}

static inline uint32_t kvcy_crc32c_shift(uint32_t zeros[][256], uint32_t crc) {
    return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^
           zeros[2][(crc >> 16) & 0xff] ^ zeros[3][crc >> 24];
}

static void kvcy_crc32c_hw_init(void) {
    kvcy_crc32c_zeros(kvcy_crc32c_long, KVCY_CRC32C_LONG);
    kvcy_crc32c_zeros(kvcy_crc32c_short, KVCY_CRC32C_SHORT);
}

static int kvcy_crc32c_hw_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
}

static inline uint64_t kvcy_load64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);              /* one mov; no alignment or aliasing UB */
    return v;
}

/* Three streams of `block` bytes each over [p, p + 3*block): stream 0
 * continues *crc0, streams 1 and 2 start from 0 and are shifted in. */
#define KVCY_CRC32C_3WAY(block, zeros)                                        \
    while (n >= 3 * (size_t)(block)) {                                        \
        uint64_t c1 = 0, c2 = 0;                                              \
        const unsigned char *end = p + (block);                               \
        do {                                                                  \
            c0 = _mm_crc32_u64(c0, kvcy_load64(p));                           \
            c1 = _mm_crc32_u64(c1, kvcy_load64(p + (block)));                 \
            c2 = _mm_crc32_u64(c2, kvcy_load64(p + 2 * (block)));             \
            p += 8;                                                           \
        } while (p < end);                                                    \
        c0 = kvcy_crc32c_shift(zeros, (uint32_t)c0) ^ (uint32_t)c1;           \
        c0 = kvcy_crc32c_shift(zeros, (uint32_t)c0) ^ (uint32_t)c2;           \
        p += 2 * (block);                                                     \
        n -= 3 * (size_t)(block);                                             \
    }

__attribute__((target("sse4.2")))
static uint32_t kvcy_crc32c_sse42(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c0 = crc;
    const unsigned char *end;
    /* Head: bring p to an 8-byte boundary. */
    while (n && ((uintptr_t)p & 7) != 0) {
        c0 = _mm_crc32_u8((uint32_t)c0, *p);
        p++;
        n--;
    }
    KVCY_CRC32C_3WAY(KVCY_CRC32C_LONG, kvcy_crc32c_long)
    KVCY_CRC32C_3WAY(KVCY_CRC32C_SHORT, kvcy_crc32c_short)
    /* Remaining whole words, then the tail. */
    end = p + (n & ~(size_t)7);
    while (p < end) {
        c0 = _mm_crc32_u64(c0, kvcy_load64(p));
        p += 8;
    }
    n &= 7;
    while (n) {
        c0 = _mm_crc32_u8((uint32_t)c0, *p);
        p++;
        n--;
    }
    return (uint32_t)c0;
}

#undef KVCY_CRC32C_3WAY

#else  /* no SSE4.2 path on this platform/compiler */

static void kvcy_crc32c_hw_init(void) {}

static int kvcy_crc32c_hw_available(void) { return 0; }

static uint32_t kvcy_crc32c_sse42(uint32_t crc, const unsigned char *p, size_t n) {
    (void)p;
    (void)n;
    return crc;                    /* never called: available() is 0 */
}

#endif

#endif  /* KVCY_CRC32C_HW_H */
