# cython: language_level=3, embedsignature=True
"""Block and BlockIterator: the validating reader of one table block.

    block := entry* restart:fixed32[num_restarts] num_restarts:fixed32
    entry := shared:varint32 non_shared:varint32 value_length:varint32
             key_delta[non_shared] value[value_length]

(written by kvcy._block_builder; docs/format.md, "Blocks").  Keys are
internal keys, user key + fixed64 tag, ordered by compare_internal: user key
ascending bytewise, then tag descending (newest first).

The bytes come from disk, so nothing in them is trusted.  Block() checks the
trailer up front: the restart count fits the block, restart[0] is 0 and the
offsets increase strictly and lie below the restart array.  Each entry is
checked as it is decoded, against the start of the restart array (lengths
are compared with what remains, never added to a pointer first): shared at
most the previous key's length, key delta and value inside the entries,
keys at least 8 bytes, restart entries with shared == 0, and entries that
land exactly on every restart point they pass (a scan that reaches the end
has met every restart point).  A failed check stops the
cursor with an error code (no exception inside the C loops); the Python
boundary turns it into CorruptionError("block: ... at offset N").

A BlockIterator that met corruption is invalid for good: status() returns
the error and every move or accessor raises it again.  Block.get() is the
point-lookup fast path: binary search over the restart points, then a
linear scan, in C, with no Python object made until the answer.

Thread-safety: a Block is immutable and can be shared (the block cache
does); a BlockIterator must be used by one thread at a time.
"""
cimport cython
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport malloc, realloc, free, abort
from libc.string cimport memcpy
from cpython.bytes cimport (PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE,
                            PyBytes_CheckExact)

from kvcy._coding cimport get_varint64, get_varint32, load_fixed32, load_fixed64
from kvcy._dbformat cimport (KIND_DELETE, KIND_VALUE, KIND_EXPIRING_VALUE, KIND_FOR_SEEK,
                             MAX_SEQUENCE, TAG_BYTES,
                             pack_tag, compare_internal, compare_user_keys)
from kvcy._debug cimport KVCY_DEBUG
from kvcy._iterator cimport InternalIterator
from kvcy._block_cache cimport CacheHandle, cache_release
from kvcy.errors import CorruptionError

cdef size_t MAX_BLOCK = 0xFFFFFFFFu


# -- the cursor: C only, never raises -----------------------------------------
#
# A cursor is valid iff current < restarts.  Its value pointer doubles as the
# "end of the current entry": the next entry starts at value + value_len (for
# a fresh cursor, value points at the restart where the scan starts).

cdef inline uint32_t restart_point(const BlockCursor* c, uint32_t i) noexcept nogil:
    if KVCY_DEBUG:
        if i >= c.num_restarts:
            abort()          # a kvcy bug, not corruption: every caller checks i
    return load_fixed32(c.data + c.restarts + 4 * <size_t>i)


cdef inline uint32_t next_entry_offset(const BlockCursor* c) noexcept nogil:
    return <uint32_t>(c.value + c.value_len - c.data)


cdef inline void cursor_invalidate(BlockCursor* c) noexcept nogil:
    c.current = c.restarts
    c.restart_index = c.num_restarts
    c.value = c.data + c.restarts
    c.value_len = 0


cdef inline int cursor_error(BlockCursor* c, int code, uint32_t offset) noexcept nogil:
    # Stop the cursor for good; returns -1 for the caller to pass on.
    c.error = code
    c.error_offset = offset
    cursor_invalidate(c)
    return -1


cdef inline void cursor_to_restart(BlockCursor* c, uint32_t index) noexcept nogil:
    # Position before the entry at restart point `index`: parse_next reads it.
    c.key_len = 0
    c.restart_index = index
    c.value = c.data + restart_point(c, index)
    c.value_len = 0


cdef inline const unsigned char* decode_entry(const unsigned char* p, const unsigned char* limit,
                                              uint32_t* shared, uint32_t* non_shared,
                                              uint32_t* value_len) noexcept nogil:
    # The three lengths of the entry at p; returns the key delta, or NULL when
    # the header is bad or the delta and value do not fit before limit.
    cdef size_t remaining
    if limit - p >= 3 and (p[0] | p[1] | p[2]) < 0x80:
        shared[0] = p[0]                     # fast path: three one-byte varints
        non_shared[0] = p[1]
        value_len[0] = p[2]
        p += 3
    else:
        p = get_varint32(p, limit, shared)
        if p == NULL:
            return NULL
        p = get_varint32(p, limit, non_shared)
        if p == NULL:
            return NULL
        p = get_varint32(p, limit, value_len)
        if p == NULL:
            return NULL
    remaining = <size_t>(limit - p)
    if non_shared[0] > remaining or value_len[0] > remaining - non_shared[0]:
        return NULL
    return p


cdef int cursor_reserve(BlockCursor* c, size_t n) noexcept nogil:
    # Grow the key buffer to n bytes, keeping the current key; -1 if out of memory.
    cdef size_t cap = c.key_cap * 2
    cdef unsigned char* grown
    if cap < n:
        cap = n
    if c.key == c.inline_key:
        grown = <unsigned char*>malloc(cap)
        if grown == NULL:
            return -1
        memcpy(grown, c.key, c.key_len)
    else:
        grown = <unsigned char*>realloc(c.key, cap)
        if grown == NULL:
            return -1
    c.key = grown
    c.key_cap = cap
    return 0


cdef void cursor_free(BlockCursor* c) noexcept nogil:
    if c.key != c.inline_key:
        free(c.key)
    c.key = c.inline_key
    c.key_cap = CURSOR_INLINE_KEY_BYTES


cdef int cursor_parse_next(BlockCursor* c) noexcept nogil:
    # Step to the entry after the current one: 1 on it, 0 past the last entry,
    # -1 stopped (c.error says why).
    cdef const unsigned char* limit = c.data + c.restarts
    cdef const unsigned char* q
    cdef uint32_t shared, non_shared, vlen, rp
    cdef size_t key_len
    c.current = next_entry_offset(c)
    if c.current >= c.restarts:
        if c.restart_index + 1 < c.num_restarts:
            # A restart point inside the last entry: the restart array lies.
            return cursor_error(c, BLOCK_BAD_RESTART, c.current)
        cursor_invalidate(c)
        return 0
    q = decode_entry(c.data + c.current, limit, &shared, &non_shared, &vlen)
    if q == NULL:
        return cursor_error(c, BLOCK_BAD_ENTRY, c.current)
    if shared > c.key_len:
        return cursor_error(c, BLOCK_BAD_SHARED, c.current)
    key_len = <size_t>shared + non_shared
    if key_len < TAG_BYTES:
        return cursor_error(c, BLOCK_SHORT_KEY, c.current)
    if key_len > c.key_cap and cursor_reserve(c, key_len) < 0:
        return cursor_error(c, BLOCK_NO_MEMORY, c.current)
    if KVCY_DEBUG:
        if (q < c.data or q > limit or non_shared > <size_t>(limit - q)
                or vlen > <size_t>(limit - q) - non_shared or key_len > c.key_cap):
            return cursor_error(c, BLOCK_INVARIANT, c.current)
    memcpy(c.key + shared, q, non_shared)
    c.key_len = key_len
    c.value = q + non_shared
    c.value_len = vlen
    # Keep restart_index on the last restart point at or before current;
    # a restart point between two entries means the restart array lies.
    while c.restart_index + 1 < c.num_restarts:
        rp = restart_point(c, c.restart_index + 1)
        if rp > c.current:
            break
        if rp != c.current:
            return cursor_error(c, BLOCK_BAD_RESTART, c.current)
        c.restart_index += 1
    if shared != 0 and restart_point(c, c.restart_index) == c.current:
        return cursor_error(c, BLOCK_BAD_RESTART, c.current)
    return 1


cdef inline int compare_cursor(const BlockCursor* c, const unsigned char* ukey, size_t ulen,
                               uint64_t tag) noexcept nogil:
    # compare_internal(current key, (ukey, tag)).  REQUIRES: c is on an entry.
    return compare_internal(c.key, c.key_len - TAG_BYTES, load_fixed64(c.key + c.key_len - TAG_BYTES),
                            ukey, ulen, tag)


cdef int cursor_seek(BlockCursor* c, const unsigned char* ukey, size_t ulen,
                     uint64_t tag) noexcept nogil:
    # First entry >= (ukey, tag): 1 on it, 0 none, -1 stopped.
    cdef const unsigned char* limit = c.data + c.restarts
    cdef const unsigned char* q
    cdef uint32_t left = 0, right = c.num_restarts - 1, mid, offset
    cdef uint32_t shared, non_shared, vlen
    cdef int r
    if c.num_restarts == 0:
        # Only a checked block reaches a cursor, and its trailer holds at
        # least one restart; never let the count underflow regardless.
        return cursor_error(c, BLOCK_BAD_RESTART, 0)
    # Binary search for the last restart point whose key is < target; restart
    # entries hold their whole key, so it is read in place.
    while left < right:
        mid = left + (right - left + 1) // 2
        offset = restart_point(c, mid)
        q = decode_entry(c.data + offset, limit, &shared, &non_shared, &vlen)
        if q == NULL:
            return cursor_error(c, BLOCK_BAD_ENTRY, offset)
        if shared != 0:
            return cursor_error(c, BLOCK_BAD_RESTART, offset)
        if non_shared < TAG_BYTES:
            return cursor_error(c, BLOCK_SHORT_KEY, offset)
        if compare_internal(q, non_shared - TAG_BYTES, load_fixed64(q + non_shared - TAG_BYTES),
                            ukey, ulen, tag) < 0:
            left = mid
        else:
            right = mid - 1
    cursor_to_restart(c, left)
    while True:
        r = cursor_parse_next(c)
        if r <= 0:
            return r
        if compare_cursor(c, ukey, ulen, tag) >= 0:
            return 1


cdef int cursor_seek_to_first(BlockCursor* c) noexcept nogil:
    cursor_to_restart(c, 0)
    return cursor_parse_next(c)


cdef int cursor_seek_to_last(BlockCursor* c) noexcept nogil:
    cdef int r
    if c.num_restarts == 0:
        return cursor_error(c, BLOCK_BAD_RESTART, 0)      # as in cursor_seek
    cursor_to_restart(c, c.num_restarts - 1)
    while True:
        r = cursor_parse_next(c)
        if r <= 0 or next_entry_offset(c) >= c.restarts:
            return r


cdef int cursor_prev(BlockCursor* c) noexcept nogil:
    # Step back one entry: rescan from the restart point before current.
    # REQUIRES: c is on an entry.
    cdef uint32_t original = c.current
    cdef uint32_t end
    cdef int r
    while restart_point(c, c.restart_index) >= original:
        if c.restart_index == 0:
            cursor_invalidate(c)             # current was the first entry
            return 0
        c.restart_index -= 1
    cursor_to_restart(c, c.restart_index)
    while True:
        r = cursor_parse_next(c)
        if r < 0:
            return r
        end = next_entry_offset(c)
        if r == 0 or end > original:
            # The rescan stepped over `original`: the restart array is wrong.
            return cursor_error(c, BLOCK_BAD_RESTART, original)
        if end == original:
            return 1


cdef object cursor_exception(const BlockCursor* c):
    # The exception for a stopped cursor.
    cdef int code = c.error
    if code == BLOCK_NO_MEMORY:
        return MemoryError("block: no memory for a key at offset %d" % c.error_offset)
    if code == BLOCK_INVARIANT:
        return RuntimeError("block: internal range check failed at offset %d (a kvcy bug)"
                            % c.error_offset)
    if code == BLOCK_BAD_ENTRY:
        what = "entry header or lengths run past the end of the entries"
    elif code == BLOCK_BAD_SHARED:
        what = "shared prefix longer than the previous key"
    elif code == BLOCK_SHORT_KEY:
        what = "key shorter than its 8-byte tag"
    elif code == BLOCK_BAD_RESTART:
        what = "restart array does not match the entries"
    else:
        what = "unknown error %d" % code
    return CorruptionError("block: %s at offset %d" % (what, c.error_offset))


cdef void cursor_init(BlockCursor* c, const unsigned char* data, uint32_t restarts,
                      uint32_t num_restarts) noexcept nogil:
    # A fresh, not yet positioned cursor over a block whose trailer checked out.
    c.data = data
    c.restarts = restarts
    c.num_restarts = num_restarts
    c.key = c.inline_key
    c.key_len = 0
    c.key_cap = CURSOR_INLINE_KEY_BYTES
    c.error = BLOCK_OK
    c.error_offset = 0
    cursor_invalidate(c)


cdef int block_check_trailer(const unsigned char* base, size_t n, uint32_t* restarts,
                             uint32_t* num, uint32_t* bad_index, uint32_t* bad_offset) noexcept nogil:
    # Check a block's restart array: TRAILER_OK with restarts/num set, or what
    # is wrong (bad_index/bad_offset name the restart entry at fault).
    cdef uint32_t count, i, offset, start, prev = 0
    if n < 4:
        return TRAILER_SHORT
    if n > MAX_BLOCK:
        return TRAILER_HUGE
    count = load_fixed32(base + n - 4)
    num[0] = count
    if count == 0:
        return TRAILER_NO_RESTARTS
    if count > (n - 4) // 4:
        return TRAILER_COUNT_TOO_BIG
    start = <uint32_t>(n - 4 - 4 * <size_t>count)
    for i in range(count):
        offset = load_fixed32(base + start + 4 * <size_t>i)
        bad_index[0] = i
        bad_offset[0] = offset
        if i == 0:
            if offset != 0:
                return TRAILER_FIRST_NOT_ZERO
        elif offset <= prev:
            return TRAILER_NOT_INCREASING
        elif offset >= start:
            return TRAILER_PAST_ENTRIES
        prev = offset
    restarts[0] = start
    return TRAILER_OK


cdef object trailer_exception(int code, size_t n, uint32_t num, uint32_t index, uint32_t offset,
                              uint32_t prev):
    # The CorruptionError for a block_check_trailer failure.
    if code == TRAILER_SHORT:
        return CorruptionError("block: %d bytes is too short for a restart count" % n)
    if code == TRAILER_HUGE:
        return CorruptionError("block: %d bytes exceeds the 4 GiB its offsets can address" % n)
    if code == TRAILER_NO_RESTARTS:
        return CorruptionError("block: restart count is 0")
    if code == TRAILER_COUNT_TOO_BIG:
        return CorruptionError("block: restart count %d does not fit in %d bytes" % (num, n))
    if code == TRAILER_FIRST_NOT_ZERO:
        return CorruptionError("block: restart 0 at offset %d, not 0" % offset)
    if code == TRAILER_NOT_INCREASING:
        return CorruptionError("block: restart %d at offset %d does not follow %d"
                               % (index, offset, prev))
    return CorruptionError("block: restart %d at offset %d lies past the %d bytes of entries"
                           % (index, offset, n - 4 - 4 * <size_t>num))


cdef inline object _borrow(object obj, const unsigned char** p, size_t* n, str what):
    # Pointer and length of a bytes-like argument.  Returns the bytes object
    # they point into (obj itself, or a copy of another buffer): the caller
    # keeps it referenced while it uses the pointer.
    if not PyBytes_CheckExact(obj):
        if isinstance(obj, str):
            raise TypeError("%s must be bytes-like, not str" % what)
        obj = bytes(memoryview(obj))
    p[0] = <const unsigned char*>PyBytes_AS_STRING(obj)
    n[0] = PyBytes_GET_SIZE(obj)
    return obj


# -- Block --------------------------------------------------------------------

# no_gc_clear: the collector must not drop owner (the BlockCache) before
# __dealloc__ gives back the pinned handle, whose shard mutex lives in it.
@cython.no_gc_clear
cdef class Block:
    """One block's bytes, checked; see the module docstring."""

    def __cinit__(self, data=None):
        # Block(data) checks data; Block.from_handle wraps a cached block
        # whose trailer was checked when it was read.
        cdef Py_ssize_t n
        cdef uint32_t num = 0, restarts = 0, index = 0, offset = 0
        cdef int code
        self.handle = NULL
        if data is None:
            self.base = <const unsigned char*>""
            self.size_ = 0
            self.restarts = 0
            self.num_restarts_ = 0
            return
        if not PyBytes_CheckExact(data):
            if isinstance(data, str):
                raise TypeError("block data must be bytes-like, not str")
            data = bytes(memoryview(data))
        n = PyBytes_GET_SIZE(data)
        self.data = data
        self.base = <const unsigned char*>PyBytes_AS_STRING(data)
        code = block_check_trailer(self.base, <size_t>n, &restarts, &num, &index, &offset)
        if code != TRAILER_OK:
            prev = (load_fixed32(self.base + n - 8 - 4 * <size_t>num + 4 * <size_t>index)
                    if code == TRAILER_NOT_INCREASING else 0)
            raise trailer_exception(code, <size_t>n, num, index, offset, prev)
        self.size_ = <uint32_t>n
        self.restarts = restarts
        self.num_restarts_ = num

    def __init__(self, data):
        if data is None:
            raise TypeError("block data must be bytes-like, not None")

    def __dealloc__(self):
        if self.handle != NULL:
            cache_release(self.handle)
            self.handle = NULL

    @staticmethod
    cdef Block from_handle(CacheHandle* handle, object owner):
        # A Block over a pinned cache block; takes over the caller's pin.
        cdef Block b = Block.__new__(Block)
        b.handle = handle
        b.owner = owner
        b.base = handle.data
        b.size_ = <uint32_t>handle.size
        b.restarts = handle.restarts
        b.num_restarts_ = handle.num_restarts
        return b

    cdef void init_cursor(self, BlockCursor* c) noexcept:
        cursor_init(c, self.base, self.restarts, self.num_restarts_)

    @property
    def size(self):
        """Bytes of the block, restart array included."""
        return self.size_

    @property
    def num_restarts(self):
        return self.num_restarts_

    def iterator(self):
        """A new BlockIterator, not yet positioned."""
        return BlockIterator(self)

    def get(self, user_key, uint64_t sequence):
        """(kind, value, sequence) of the newest entry of user_key with sequence
        <= `sequence`, or None when the block has none.

        kind is KIND_VALUE (1), KIND_EXPIRING_VALUE (2, the value as
        stored: expiry first) or KIND_DELETE (0, value b"").  A sequence above
        the 56-bit maximum is treated as the maximum.  Raises CorruptionError.
        """
        cdef const unsigned char* ukey
        cdef size_t ulen
        cdef BlockCursor c
        cdef int r, kind
        cdef uint64_t tag
        user_key = _borrow(user_key, &ukey, &ulen, "user_key")
        if self.num_restarts_ == 0:
            raise ValueError("block has no data (made without bytes)")
        if sequence > MAX_SEQUENCE:
            sequence = MAX_SEQUENCE
        self.init_cursor(&c)
        r = cursor_seek(&c, ukey, ulen, pack_tag(sequence, KIND_FOR_SEEK))
        try:
            if r < 0:
                raise cursor_exception(&c)
            if r == 0 or compare_user_keys(c.key, c.key_len - TAG_BYTES, ukey, ulen) != 0:
                return None
            tag = load_fixed64(c.key + c.key_len - TAG_BYTES)
            kind = <int>(tag & 0xFF)
            if kind == KIND_VALUE or kind == KIND_EXPIRING_VALUE:
                if kind == KIND_EXPIRING_VALUE and c.value_len < 8:
                    raise CorruptionError("block: expiring value of %d bytes at offset %d is "
                                          "shorter than its 8-byte expiry"
                                          % (c.value_len, c.current))
                return (kind,
                        PyBytes_FromStringAndSize(<const char*>c.value, c.value_len),
                        tag >> 8)
            if kind == KIND_DELETE:
                return (KIND_DELETE, b"", tag >> 8)
            raise CorruptionError("block: entry of unknown kind %d at offset %d"
                                  % (kind, c.current))
        finally:
            cursor_free(&c)

    def index_lookup(self, user_key, uint64_t sequence):
        """For an index block: (offset, size) of the data block that would hold
        the newest entry of user_key at sequence (the first separator >= the
        lookup key), or None when the key lies past the last block.  The
        point-lookup path of a table, done in C.  Raises CorruptionError.
        """
        cdef const unsigned char* ukey
        cdef size_t ulen
        cdef BlockCursor c
        cdef int r
        cdef uint64_t offset, size
        cdef const unsigned char* p
        cdef const unsigned char* limit
        user_key = _borrow(user_key, &ukey, &ulen, "user_key")
        if self.num_restarts_ == 0:
            raise ValueError("block has no data (made without bytes)")
        if sequence > MAX_SEQUENCE:
            sequence = MAX_SEQUENCE
        self.init_cursor(&c)
        r = cursor_seek(&c, ukey, ulen, pack_tag(sequence, KIND_FOR_SEEK))
        try:
            if r < 0:
                raise cursor_exception(&c)
            if r == 0:
                return None
            p = c.value
            limit = c.value + c.value_len
            p = get_varint64(p, limit, &offset)
            if p != NULL:
                p = get_varint64(p, limit, &size)
            if p == NULL or p != limit:
                raise CorruptionError("block: bad block handle in index entry at offset %d"
                                      % c.current)
            return offset, size
        finally:
            cursor_free(&c)


# -- BlockIterator ------------------------------------------------------------

@cython.final
cdef class BlockIterator(InternalIterator):
    """LevelDB's internal-iterator protocol over one Block (Python face: InternalIterator)."""

    def __cinit__(self, Block block not None):
        if block.num_restarts_ == 0:
            raise ValueError("block has no data (made without bytes)")
        self.block = block
        block.init_cursor(&self.c)

    def __dealloc__(self):
        cursor_free(&self.c)

    # cdef face for Cython callers (see kvcy/_block.pxd, kvcy/_iterator.pxd)

    cdef bint is_valid(self) noexcept:
        return self.c.current < self.c.restarts

    cdef const unsigned char* key_ptr(self) noexcept:
        return self.c.key

    cdef size_t key_len(self) noexcept:
        return self.c.key_len

    cdef const unsigned char* value_ptr(self) noexcept:
        return self.c.value

    cdef size_t value_len(self) noexcept:
        return self.c.value_len

    cdef object c_status(self):
        if self.status_ is None and self.c.error:
            self.status_ = cursor_exception(&self.c)
        return self.status_

    cdef int fail_cursor(self) except -1:
        # Latch the cursor's error as the status and raise it.
        return self.fail(self.c_status())

    cdef int c_seek_to_first(self) except -1:
        if self.c.error or cursor_seek_to_first(&self.c) < 0:
            return self.fail_cursor()
        return 0

    cdef int c_seek_to_last(self) except -1:
        if self.c.error or cursor_seek_to_last(&self.c) < 0:
            return self.fail_cursor()
        return 0

    cdef int c_seek(self, const unsigned char* target, size_t n) except -1:
        if self.c.error:
            return self.fail_cursor()
        if n < TAG_BYTES:
            raise ValueError("seek target must be an internal key (user key + 8-byte tag)")
        if cursor_seek(&self.c, target, n - TAG_BYTES, load_fixed64(target + n - TAG_BYTES)) < 0:
            return self.fail_cursor()
        return 0

    cdef int c_next(self) except -1:
        if self.c.current >= self.c.restarts:
            return self.raise_invalid("next")
        if cursor_parse_next(&self.c) < 0:
            return self.fail_cursor()
        return 0

    cdef int c_prev(self) except -1:
        if self.c.current >= self.c.restarts:
            return self.raise_invalid("prev")
        if cursor_prev(&self.c) < 0:
            return self.fail_cursor()
        return 0
