# cython: language_level=3, embedsignature=True
"""BlockBuilder: builds one table block (format in kvcy/_block_builder.pxd
and docs/format.md, "Blocks").

    block := entry* restart:fixed32[num_restarts] num_restarts:fixed32
    entry := shared:varint32 non_shared:varint32 value_length:varint32
             key_delta[non_shared] value[value_length]

add() appends one entry, sharing the longest common prefix with the previous
key except at restart points (every restart_interval entries).  finish()
returns the block's bytes; reset() starts a new block in the same buffers.

REQUIRES: keys are added in strictly increasing order of the table's
comparator (internal keys, kvcy._dbformat.compare_internal).  The builder
does not compare keys, except in KVCY_DEBUG builds, where an internal key
shorter than its 8-byte tag or out of order raises ProgrammingError.
Not thread-safe: one table builder owns it.
"""
from libc.stdint cimport uint32_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy
from cpython.bytes cimport (PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE,
                            PyBytes_CheckExact)

from kvcy._coding cimport put_fixed32, put_varint32, load_fixed64, view_ptr
from kvcy._dbformat cimport TAG_BYTES, compare_internal
from kvcy._debug cimport KVCY_DEBUG
from kvcy.errors import ProgrammingError

# Largest block the 32-bit offsets can describe.
cdef size_t MAX_BLOCK = 0xFFFFFFFFu


cdef void* _grown(void* buf, size_t* cap, size_t need, size_t item) noexcept nogil:
    # buf with room for `need` items of `item` bytes (capacity at least
    # doubled when it grows; *cap updated), or NULL with buf untouched when
    # memory runs out.  REQUIRES: buf is not NULL.
    cdef size_t n = cap[0] * 2
    cdef void* grown
    if need <= cap[0]:
        return buf
    if n < need:
        n = need
    grown = realloc(buf, n * item)
    if grown == NULL:
        return NULL
    cap[0] = n
    return grown


cdef bint _out_of_order(const unsigned char* last, size_t last_len,
                        const unsigned char* key, size_t key_len) noexcept nogil:
    # KVCY_DEBUG only: True unless key is an internal key sorting after last.
    if key_len < TAG_BYTES:
        return True
    return last_len >= TAG_BYTES and compare_internal(
        last, last_len - TAG_BYTES, load_fixed64(last + last_len - TAG_BYTES),
        key, key_len - TAG_BYTES, load_fixed64(key + key_len - TAG_BYTES)) >= 0


cdef class BlockBuilder:
    """Builds one block of sorted entries; see the module docstring."""

    def __cinit__(self, int restart_interval=16):
        if restart_interval < 1:
            raise ValueError("restart_interval must be >= 1, not %d" % restart_interval)
        self.restart_interval = restart_interval
        self.capacity = 4096
        self.buf = <unsigned char*>malloc(self.capacity)
        self.restarts_cap = 64
        self.restarts = <uint32_t*>malloc(self.restarts_cap * sizeof(uint32_t))
        self.last_cap = 64
        self.last = <unsigned char*>malloc(self.last_cap)
        if self.buf == NULL or self.restarts == NULL or self.last == NULL:
            raise MemoryError()
        self.reset()

    def __dealloc__(self):
        free(self.buf)
        free(self.restarts)
        free(self.last)

    def reset(self):
        """Forget every entry; the builder is ready for a new block."""
        self.clear()

    cdef size_t size_estimate(self) noexcept nogil:
        return self.size + self.num_restarts * 4 + 4

    cdef int append(self, const unsigned char* key, size_t key_len,
                    const unsigned char* value, size_t value_len) noexcept nogil:
        # add() in C, without the GIL: 0, or one of BUILD_* with the builder
        # unchanged.
        cdef size_t shared = 0, non_shared, limit
        cdef unsigned char* p
        cdef void* grown
        if self.finished:
            return BUILD_FINISHED
        if KVCY_DEBUG and _out_of_order(self.last, self.last_len if self.count_ else 0,
                                        key, key_len):
            return BUILD_OUT_OF_ORDER
        # Refuse anything the 32-bit lengths and offsets could not describe;
        # 15 is the most three varint32s take, 4 a new restart slot.
        if (key_len > MAX_BLOCK or value_len > MAX_BLOCK
                or key_len + value_len + 19 > MAX_BLOCK - self.size_estimate()):
            return BUILD_TOO_BIG
        # Grow every buffer before changing anything, so running out of
        # memory leaves the builder as it was.
        grown = _grown(self.restarts, &self.restarts_cap, self.num_restarts + 1, sizeof(uint32_t))
        if grown == NULL:
            return BUILD_NO_MEMORY
        self.restarts = <uint32_t*>grown
        grown = _grown(self.buf, &self.capacity, self.size + 15 + key_len + value_len, 1)
        if grown == NULL:
            return BUILD_NO_MEMORY
        self.buf = <unsigned char*>grown
        grown = _grown(self.last, &self.last_cap, key_len, 1)
        if grown == NULL:
            return BUILD_NO_MEMORY
        self.last = <unsigned char*>grown
        if self.counter < self.restart_interval:
            limit = key_len if key_len < self.last_len else self.last_len
            while shared < limit and self.last[shared] == key[shared]:
                shared += 1
        else:
            self.restarts[self.num_restarts] = <uint32_t>self.size
            self.num_restarts += 1
            self.counter = 0
        non_shared = key_len - shared
        p = self.buf + self.size
        p = put_varint32(p, <uint32_t>shared)
        p = put_varint32(p, <uint32_t>non_shared)
        p = put_varint32(p, <uint32_t>value_len)
        if non_shared:
            memcpy(p, key + shared, non_shared)
            p += non_shared
        if value_len:
            memcpy(p, value, value_len)
            p += value_len
        self.size = <size_t>(p - self.buf)
        if non_shared:
            memcpy(self.last + shared, key + shared, non_shared)
        self.last_len = key_len
        self.counter += 1
        self.count_ += 1
        return 0

    cdef int add_raw(self, const unsigned char* key, size_t key_len,
                     const unsigned char* value, size_t value_len) except -1:
        cdef int r = self.append(key, key_len, value, value_len)
        if r == 0:
            return 0
        if r == BUILD_FINISHED:
            raise ProgrammingError("BlockBuilder.add() after finish(); call reset() first")
        if r == BUILD_OUT_OF_ORDER:
            if key_len < TAG_BYTES:
                raise ProgrammingError("BlockBuilder.add: key of %d bytes is not an internal key"
                                       % key_len)
            raise ProgrammingError("BlockBuilder.add: key %r does not sort after the last key %r"
                                   % (PyBytes_FromStringAndSize(<const char*>key, key_len),
                                      PyBytes_FromStringAndSize(<const char*>self.last,
                                                                self.last_len)))
        if r == BUILD_TOO_BIG:
            raise ValueError("block would exceed %d bytes" % MAX_BLOCK)
        raise MemoryError()

    cdef void finish_into(self, unsigned char* p) noexcept nogil:
        # Write the block (size_estimate() bytes) to p; add() is refused until reset.
        cdef size_t i
        if self.size:
            memcpy(p, self.buf, self.size)
        p += self.size
        for i in range(self.num_restarts):
            p = put_fixed32(p, self.restarts[i])
        put_fixed32(p, <uint32_t>self.num_restarts)
        self.finished = True

    cdef void clear(self) noexcept nogil:
        self.size = 0
        self.restarts[0] = 0
        self.num_restarts = 1
        self.counter = 0
        self.count_ = 0
        self.last_len = 0
        self.finished = False

    def add(self, key, value):
        """Append an entry.  REQUIRES: key sorts after every key added since reset()."""
        cdef const unsigned char[::1] kview
        cdef const unsigned char[::1] vview
        cdef const unsigned char* kp
        cdef const unsigned char* vp
        cdef size_t kn, vn
        if PyBytes_CheckExact(key):
            kp = <const unsigned char*>PyBytes_AS_STRING(key)
            kn = PyBytes_GET_SIZE(key)
        else:
            if isinstance(key, str):
                raise TypeError("key must be bytes-like, not str")
            kview = key
            kp = view_ptr(kview)
            kn = kview.shape[0]
        if PyBytes_CheckExact(value):
            vp = <const unsigned char*>PyBytes_AS_STRING(value)
            vn = PyBytes_GET_SIZE(value)
        else:
            if isinstance(value, str):
                raise TypeError("value must be bytes-like, not str")
            vview = value
            vp = view_ptr(vview)
            vn = vview.shape[0]
        self.add_raw(kp, kn, vp, vn)

    def current_size_estimate(self):
        """Bytes finish() would return now."""
        return self.size_estimate()

    def finish(self):
        """The block's bytes: the entries, then the restart array and its length.

        add() is refused until reset(); calling finish() again returns the
        same bytes.
        """
        cdef bytes out = PyBytes_FromStringAndSize(NULL, self.size_estimate())
        self.finish_into(<unsigned char*>PyBytes_AS_STRING(out))
        return out

    def empty(self):
        """True iff no entry was added since reset()."""
        return self.count_ == 0

    @property
    def count(self):
        """Entries added since reset()."""
        return self.count_

    @property
    def last_key(self):
        """The last key added (b"" when empty)."""
        return PyBytes_FromStringAndSize(<const char*>self.last, self.last_len)

    @property
    def restart_interval(self):
        return self.restart_interval
