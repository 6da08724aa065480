# cython: language_level=3, embedsignature=True
"""Snappy raw block compression in C (python-snappy's ``snappy.compress`` /
``snappy.uncompress`` format; not the framed stream format).

kvcy stores table blocks with compression byte 1 in this format.  The codec
lives here, in C, so that the read path can decompress a block without the
GIL and without a Python call per block (docs/impl.md, "Snappy codec").

Byte grammar (snappy's format_description.txt; docs/format.md, "Snappy
blocks").  The format is snappy's own: never change it.

    block    := uncompressed_length:varint32 element*
    element  := tag:u8 ...; kind = tag & 3, m = tag >> 2
      literal (kind 0): m < 60: m + 1 bytes follow;
                        m = 60..63: len-1 as (m - 59) little-endian bytes,
                        then len bytes
      copy1   (kind 1): length 4 + (m & 7), offset ((m >> 3) << 8) | u8
                        (offset < 2048, length 4..11)
      copy2   (kind 2): length m + 1, offset fixed16 (1..64 bytes)
      copy4   (kind 3): length m + 1, offset fixed32
    A copy repeats `length` bytes starting `offset` bytes back in the output;
    offset < length is legal and repeats a pattern (byte-at-a-time
    semantics).  Offset 0, an offset before the start of the output, and an
    output that is not exactly uncompressed_length bytes are corrupt.

The compressor is a greedy LZ77 matcher in snappy's usual shape: the input
is cut into fragments of 64 KiB, each compressed on its own with a hash
table (up to 16K uint16 slots, on the stack) over 4-byte sequences; lookups
skip ahead faster the longer no match is found, so incompressible data
costs little.  It emits copy1/copy2 and literals only.

Thread-safety: every function is pure and keeps no state; the Python
wrappers release the GIL for 4 KiB or more of work (the input buffer stays
acquired meanwhile, so do not mutate a bytearray being compressed).
"""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.object cimport PyObject
from cpython.ref cimport Py_DECREF
from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.stdlib cimport abort
from libc.string cimport memcpy, memset

from kvcy._coding cimport get_varint32, load_fixed32, load_fixed64, put_varint32
from kvcy._debug cimport KVCY_DEBUG

from kvcy.errors import corruption


cdef extern from *:
    """
    #include <stdint.h>
    /* Index of the lowest set bit of x; REQUIRES: x != 0. */
    static inline int kvcy_snappy_ctz64(uint64_t x) {
    #if defined(__GNUC__) || defined(__clang__)
        return __builtin_ctzll(x);
    #else
        int n = 0;
        while (!(x & 1)) { x >>= 1; n++; }
        return n;
    #endif
    }
    """
    int kvcy_snappy_ctz64(uint64_t x) noexcept nogil


cdef extern from "Python.h":
    # Raw forms, so compress() can shrink its result in place.
    PyObject* _bytes_new "PyBytes_FromStringAndSize"(const char* s, Py_ssize_t n)
    char* _bytes_data "PyBytes_AS_STRING"(PyObject* b) nogil
    int _PyBytes_Resize(PyObject** b, Py_ssize_t n)


cdef enum:
    TAG_LITERAL = 0                 # snappy element kinds; never change
    TAG_COPY1 = 1
    TAG_COPY2 = 2
    TAG_COPY4 = 3
    FRAGMENT_BYTES = 65536          # compressor fragment; offsets fit uint16
    HASH_BITS_MIN = 8
    HASH_BITS_MAX = 14              # 16K slots * 2 bytes = 32 KiB of stack
    INPUT_MARGIN_BYTES = 15         # no match search in a fragment's last 15
    NOGIL_MIN_BYTES = 4096          # below this the GIL round trip dominates

cdef unsigned char EMPTY[1]


# -- limits and header --------------------------------------------------------------

cdef size_t snappy_max_compressed_length(size_t n) noexcept nogil:
    return 32 + n + n // 6


cdef int snappy_uncompressed_length(const unsigned char* src, size_t n,
                                    size_t* out) noexcept nogil:
    cdef uint32_t v
    if get_varint32(src, src + n, &v) == NULL:
        return -1
    out[0] = v
    return 0


# -- decompression ------------------------------------------------------------------

cdef int snappy_uncompress(const unsigned char* src, size_t n,
                           unsigned char* dst, size_t dst_len) noexcept nogil:
    # Every length is checked against what remains (limit - p, dst_len - op)
    # before use, in size_t, so no pointer is ever formed past either end.
    cdef const unsigned char* limit = src + n
    cdef const unsigned char* p
    cdef uint32_t header
    cdef size_t op = 0              # bytes of dst written so far
    cdef uint64_t length            # up to 2**32: 64-bit even where size_t is not
    cdef size_t offset, room, i, nbytes, period
    cdef unsigned int tag
    p = get_varint32(src, limit, &header)
    if p == NULL or <size_t>header != dst_len:
        return -1
    while p < limit:
        tag = p[0]
        p += 1
        room = dst_len - op
        if (tag & 3) == TAG_LITERAL:
            length = tag >> 2
            if length >= 60:
                nbytes = length - 59            # 1..4 length bytes
                if <size_t>(limit - p) < nbytes:
                    return -1
                length = 0
                for i in range(nbytes):
                    length |= (<uint64_t>p[i]) << (8 * i)
                p += nbytes
            length += 1                         # at most 2**32: no overflow
            # Short literals: one fixed 16-byte move when both sides have
            # room; bytes past `length` are overwritten by later elements.
            if length <= 16 and limit - p >= 16 and room >= 16:
                memcpy(dst + op, p, 16)
            else:
                if length > <size_t>(limit - p) or length > room:
                    return -1
                memcpy(dst + op, p, <size_t>length)
            p += length
            op += <size_t>length
            if KVCY_DEBUG:
                if op > dst_len or p > limit:
                    abort()
            continue
        if (tag & 3) == TAG_COPY1:
            if limit - p < 1:
                return -1
            length = 4 + ((tag >> 2) & 7)
            offset = ((<size_t>(tag >> 5)) << 8) | p[0]
            p += 1
        elif (tag & 3) == TAG_COPY2:
            if limit - p < 2:
                return -1
            length = (tag >> 2) + 1
            offset = (<size_t>p[0]) | ((<size_t>p[1]) << 8)
            p += 2
        else:
            if limit - p < 4:
                return -1
            length = (tag >> 2) + 1
            offset = load_fixed32(p)
            p += 4
        if offset == 0 or offset > op or length > room:
            return -1
        if room >= 64:
            # Fast path (length <= 64, so every write stays below op + 64):
            # 16-byte moves, each reading only bytes at least 16 back, i.e.
            # already final.  Bytes past `length` are overwritten later.
            if offset >= 16:
                i = 0
                while i < length:
                    memcpy(dst + op + i, dst + op - offset + i, 16)
                    i += 16
            else:
                # A short pattern: write 16 bytes one at a time, then copy
                # from `period` back, the first multiple of offset >= 16
                # (and <= 16 + offset - 1, so it reads only written bytes).
                for i in range(16):
                    dst[op + i] = dst[op - offset + i]
                period = ((15 + offset) // offset) * offset
                i = 16
                while i < length:
                    memcpy(dst + op + i, dst + op - period + i, 16)
                    i += 16
        elif offset >= length:
            memcpy(dst + op, dst + op - offset, <size_t>length)
        else:
            # Overlapping copy repeats a short pattern: byte at a time.
            for i in range(length):
                dst[op + i] = dst[op - offset + i]
        op += <size_t>length
        if KVCY_DEBUG:
            if op > dst_len or p > limit:
                abort()
    return 0 if op == dst_len else -1


# -- compression --------------------------------------------------------------------

cdef inline uint32_t _hash(const unsigned char* p, int shift) noexcept nogil:
    return <uint32_t>(load_fixed32(p) * <uint32_t>0x1e35a7bd) >> shift


cdef inline size_t _match_length(const unsigned char* s1, const unsigned char* s2,
                                 size_t avail) noexcept nogil:
    # Number of equal leading bytes of s1 and s2, at most avail.
    # REQUIRES: avail readable bytes at both.
    cdef size_t i = 0
    cdef uint64_t x
    while avail - i >= 8:
        x = load_fixed64(s1 + i) ^ load_fixed64(s2 + i)
        if x != 0:
            return i + (kvcy_snappy_ctz64(x) >> 3)
        i += 8
    while i < avail and s1[i] == s2[i]:
        i += 1
    return i


cdef inline unsigned char* _emit_literal(unsigned char* op, const unsigned char* lit,
                                         size_t length) noexcept nogil:
    # REQUIRES: 1 <= length <= 2**32.
    cdef size_t v = length - 1
    cdef int nbytes = 0
    if v < 60:
        op[0] = <unsigned char>(v << 2)
        op += 1
    else:
        while (v >> (8 * nbytes)) != 0:
            op[1 + nbytes] = <unsigned char>(v >> (8 * nbytes))
            nbytes += 1
        op[0] = <unsigned char>((59 + nbytes) << 2)
        op += 1 + nbytes
    memcpy(op, lit, length)
    return op + length


cdef inline unsigned char* _emit_copy_upto64(unsigned char* op, size_t offset,
                                             size_t length) noexcept nogil:
    # REQUIRES: 1 <= offset < 65536, 4 <= length <= 64.
    if length < 12 and offset < 2048:
        op[0] = <unsigned char>(TAG_COPY1 | ((length - 4) << 2) | ((offset >> 8) << 5))
        op[1] = <unsigned char>offset
        return op + 2
    op[0] = <unsigned char>(TAG_COPY2 | ((length - 1) << 2))
    op[1] = <unsigned char>offset
    op[2] = <unsigned char>(offset >> 8)
    return op + 3


cdef inline unsigned char* _emit_copy(unsigned char* op, size_t offset,
                                      size_t length) noexcept nogil:
    # REQUIRES: 1 <= offset < 65536, length >= 4.  Long matches go out as
    # 64-byte copies; a 60 keeps the last piece at 4 bytes or more.
    while length >= 68:
        op = _emit_copy_upto64(op, offset, 64)
        length -= 64
    if length > 64:
        op = _emit_copy_upto64(op, offset, 60)
        length -= 60
    return _emit_copy_upto64(op, offset, length)


cdef unsigned char* _compress_fragment(const unsigned char* base, size_t n,
                                       unsigned char* op, uint16_t* table,
                                       int bits) noexcept nogil:
    # Compress base[0:n] (n <= FRAGMENT_BYTES) into op; returns the new op.
    # Positions are indexes into the fragment, so no pointer passes its end.
    # table[hash] holds the last position seen with that hash (0 initially:
    # a valid, earlier position, checked by comparing the bytes).
    cdef int shift = 32 - bits
    cdef size_t next_emit = 0       # start of the pending literal
    cdef size_t ip, next_ip, candidate, ip_limit, matched, step
    cdef uint32_t h, skip
    cdef bint done = False
    memset(table, 0, sizeof(uint16_t) << bits)
    if n > INPUT_MARGIN_BYTES:
        ip_limit = n - INPUT_MARGIN_BYTES
        ip = 1
        while True:
            # Find a 4-byte match at ip.  After 32 misses the step grows by
            # one byte every 32 probes.  Invariant: ip <= ip_limit.
            skip = 32
            next_ip = ip
            while True:
                ip = next_ip
                step = skip >> 5
                skip += 1
                if step > ip_limit - ip:
                    done = True
                    break
                next_ip = ip + step
                h = _hash(base + ip, shift)
                candidate = table[h]
                table[h] = <uint16_t>ip
                if load_fixed32(base + ip) == load_fixed32(base + candidate):
                    break
            if done:
                break
            if ip > next_emit:
                op = _emit_literal(op, base + next_emit, ip - next_emit)
            # Emit copies for as long as the byte after each match starts
            # another match.  candidate < ip always (table holds earlier ips).
            while True:
                matched = 4 + _match_length(base + candidate + 4, base + ip + 4,
                                            n - ip - 4)
                op = _emit_copy(op, ip - candidate, matched)
                ip += matched
                next_emit = ip
                if ip >= ip_limit:
                    done = True
                    break
                table[_hash(base + ip - 1, shift)] = <uint16_t>(ip - 1)
                h = _hash(base + ip, shift)
                candidate = table[h]
                table[h] = <uint16_t>ip
                if load_fixed32(base + ip) != load_fixed32(base + candidate):
                    break
            if done:
                break
            ip += 1
    if next_emit < n:
        op = _emit_literal(op, base + next_emit, n - next_emit)
    return op


cdef size_t snappy_compress(const unsigned char* src, size_t n,
                            unsigned char* dst) noexcept nogil:
    cdef uint16_t table[1 << HASH_BITS_MAX]
    cdef unsigned char* op
    cdef size_t pos = 0
    cdef size_t frag
    cdef int bits
    if n > <size_t>0xffffffffu:
        return 0
    op = put_varint32(dst, <uint32_t>n)
    while pos < n:
        frag = n - pos
        if frag > FRAGMENT_BYTES:
            frag = FRAGMENT_BYTES
        bits = HASH_BITS_MIN
        while bits < HASH_BITS_MAX and (<size_t>1 << bits) < frag:
            bits += 1
        op = _compress_fragment(src + pos, frag, op, table, bits)
        pos += frag
    if KVCY_DEBUG:
        if <size_t>(op - dst) > snappy_max_compressed_length(n):
            abort()
    return <size_t>(op - dst)


# -- Python face --------------------------------------------------------------------

def compress(data):
    """Snappy-compress bytes-like ``data`` (raw block format, readable by
    ``snappy.uncompress``); returns bytes.

    ``data`` is any C-contiguous buffer, read as raw bytes; str raises
    TypeError.  Inputs of 4 GiB or more raise ValueError (the format's
    length header is 32 bits).  The GIL is released for 4 KiB or more.
    """
    cdef Py_buffer view
    cdef const unsigned char* src
    cdef size_t n, cap, size
    cdef PyObject* out
    cdef unsigned char* dst
    if isinstance(data, str):
        raise TypeError("compress() needs bytes-like data, not str")
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        n = <size_t>view.len
        src = <const unsigned char*>view.buf if n else EMPTY
        if n > <size_t>0xffffffffu:
            raise ValueError("snappy blocks hold at most 2**32 - 1 bytes, got %d" % n)
        cap = snappy_max_compressed_length(n)
        out = _bytes_new(NULL, <Py_ssize_t>cap)
        if out == NULL:
            raise MemoryError()
        dst = <unsigned char*>_bytes_data(out)
        if n >= NOGIL_MIN_BYTES:
            with nogil:
                size = snappy_compress(src, n, dst)
        else:
            size = snappy_compress(src, n, dst)
    finally:
        PyBuffer_Release(&view)
    # Fresh bytes with one reference: shrink in place (no copy for the
    # usual realloc); on failure CPython frees it and sets out to NULL.
    if _PyBytes_Resize(&out, <Py_ssize_t>size) < 0:
        raise MemoryError()
    result = <object>out
    Py_DECREF(result)
    return result


def uncompress(data):
    """Decode a snappy raw block (``snappy.compress`` output); returns bytes.

    Raises kvcy.errors.CorruptionError for anything that is not a valid
    block: bad or truncated length header, a header claiming more than the
    input could possibly expand to (more than 64/3 times its size; checked
    before allocating), bad elements, copies before the start of the
    output, or an output length other than the header's.  str raises
    TypeError.  The GIL is released when input or output is 4 KiB or more.
    """
    cdef Py_buffer view
    cdef const unsigned char* src
    cdef size_t n, ulen
    cdef int rc
    cdef bytes out
    cdef unsigned char* dst
    if isinstance(data, str):
        raise TypeError("uncompress() needs bytes-like data, not str")
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        n = <size_t>view.len
        src = <const unsigned char*>view.buf if n else EMPTY
        if snappy_uncompressed_length(src, n, &ulen) != 0:
            raise corruption("snappy block: bad length header")
        # An element of k bytes yields at most 64k/3 bytes (a 3-byte copy2
        # of 64), so a larger header is a lie; refuse it before allocating.
        if n < (<size_t>1 << 32) and <uint64_t>ulen * 3 > <uint64_t>n * 64:
            raise corruption("snappy block: length header %d too large for %d input bytes"
                             % (ulen, n))
        out = _bytes_new_obj(ulen)
        dst = <unsigned char*>_bytes_data(<PyObject*>out)
        if n >= NOGIL_MIN_BYTES or ulen >= NOGIL_MIN_BYTES:
            with nogil:
                rc = snappy_uncompress(src, n, dst, ulen)
        else:
            rc = snappy_uncompress(src, n, dst, ulen)
    finally:
        PyBuffer_Release(&view)
    if rc != 0:
        raise corruption("snappy block: corrupt data")
    return out


cdef bytes _bytes_new_obj(size_t n):
    cdef PyObject* o = _bytes_new(NULL, <Py_ssize_t>n)
    if o == NULL:
        raise MemoryError()
    result = <bytes>o
    Py_DECREF(result)
    return result
