# cython: language_level=3, embedsignature=True
"""WriteBatch building, decoding, and applying a batch to a memtable.

The byte grammar is coded once, in the inline helpers of _write_batch.pxd,
which kvcy._write_path uses too.  Limits (kvcy.options.MAX_KEY_BYTES,
MAX_VALUE_BYTES, MAX_BATCH_BYTES) are checked as entries are added, by
check_entry (which the write path's one-entry fast path calls as well), so
an oversized entry is refused before the batch ever reaches the WAL.
apply_batch() validates the whole rep before it inserts anything, so a
damaged rep is never half applied.
"""
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport malloc, realloc, free
from cpython.bytes cimport (PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE,
                            PyBytes_CheckExact)
from cpython.tuple cimport PyTuple_GET_SIZE, PyTuple_GET_ITEM

from kvcy._coding cimport view_ptr
from kvcy._dbformat cimport KIND_DELETE, KIND_VALUE, KIND_EXPIRING_VALUE, KIND_RANGE_DELETE, MAX_SEQUENCE
from kvcy._memtable cimport MemTable
from kvcy._reserved cimport is_reserved_key
from kvcy.errors import CorruptionError, DataError, ProgrammingError
from kvcy import options as _options
from kvcy._expiry import encode_expiring, expiry_for, normalize_clock

cdef size_t MAX_KEY = _options.MAX_KEY_BYTES
cdef bytes RESERVED_REGION_START = b"\xff\xff"   # kvcy/_reserved.pxd
cdef size_t MAX_VALUE = _options.MAX_VALUE_BYTES
cdef size_t MAX_BATCH = _options.MAX_BATCH_BYTES


cdef inline bytes as_bytes(object obj, str what):
    """obj as bytes (bytearray and memoryview are copied); TypeError otherwise."""
    if PyBytes_CheckExact(obj):
        return <bytes>obj
    if isinstance(obj, (bytes, bytearray)):
        return bytes(obj)
    if isinstance(obj, memoryview):
        return obj.tobytes()
    if isinstance(obj, str):
        raise TypeError("%s must be bytes-like, not str (encode it, e.g. with .encode())" % what)
    raise TypeError("%s must be bytes-like (bytes, bytearray or memoryview), not %s"
                    % (what, type(obj).__name__))


cdef int check_entry(int kind, size_t key_len, size_t value_len) except -1:
    if kind == KIND_EXPIRING_VALUE:
        if value_len < EXPIRY_BYTES:
            raise ValueError("an expiring value needs its %d-byte expiry" % EXPIRY_BYTES)
        value_len -= EXPIRY_BYTES
    elif kind != KIND_VALUE and kind != KIND_DELETE and kind != KIND_RANGE_DELETE:
        raise ValueError("unknown entry kind %d" % kind)
    if key_len > MAX_KEY:
        raise DataError("key of %d bytes exceeds the limit of %d bytes (MAX_KEY_BYTES)"
                        % (key_len, MAX_KEY))
    if kind == KIND_RANGE_DELETE and value_len > MAX_KEY:
        raise DataError("range stop key of %d bytes exceeds the limit of %d bytes "
                        "(MAX_KEY_BYTES)" % (value_len, MAX_KEY))
    if value_len > MAX_VALUE:
        raise DataError("value of %d bytes exceeds the limit of %d bytes (MAX_VALUE_BYTES)"
                        % (value_len, MAX_VALUE))
    return 0


def check_range(bytes start, bytes stop):
    """ProgrammingError unless start < stop: a range tombstone covers [start, stop)."""
    if not start < stop:
        raise ProgrammingError("delete_range needs start < stop, got start=%r stop=%r"
                               % (start[:40], stop[:40]))


cdef class WriteBatch:
    """An ordered set of puts and deletes applied atomically.

    clock: what fixes the expiry of put(..., ttl=) (a callable returning
    seconds like time.time; None: real time).  Pass the connection's
    conn.clock when it was opened with a clock of its own."""

    def __init__(self, *, clock=None):
        """An empty batch; clock fixes the expiry of put(..., ttl=)."""
        self.clock = normalize_clock(clock)

    def __cinit__(self):
        self.capacity = 256
        self.buf = <unsigned char*>malloc(self.capacity)
        if self.buf == NULL:
            raise MemoryError()
        self.size = BATCH_HEADER_BYTES
        self.count_ = 0
        self.data_bytes_ = 0
        put_batch_header(self.buf, 0, 0)

    def __dealloc__(self):
        free(self.buf)

    cdef int reserve(self, size_t extra) except -1:
        cdef size_t need = self.size + extra
        cdef size_t cap
        cdef unsigned char* grown
        if need <= self.capacity:
            return 0
        if need > MAX_BATCH:
            raise DataError("batch would exceed the limit of %d bytes (MAX_BATCH_BYTES)" % MAX_BATCH)
        cap = self.capacity * 2
        if cap < need:
            cap = need
        grown = <unsigned char*>realloc(self.buf, cap)
        if grown == NULL:
            raise MemoryError()
        self.buf = grown
        self.capacity = cap
        return 0

    cdef int append_record(self, int kind, const unsigned char* key, size_t key_len,
                           const unsigned char* value, size_t value_len) except -1:
        cdef unsigned char* p
        check_entry(kind, key_len, value_len)
        self.reserve(record_bound(key_len, value_len))
        p = put_batch_record(self.buf + self.size, kind, key, key_len, value, value_len)
        self.size = p - self.buf
        self.count_ += 1
        self.data_bytes_ += key_len + value_len
        set_batch_count(self.buf, self.count_)
        return 0

    def put(self, key, value, ttl=None, namespace=None):
        """Add a put of value under key (both bytes-like) in namespace (a
        conn.namespace() handle; None: the default namespace).  ttl: seconds
        until the pair expires, counted from now by the batch's clock
        (None: never)."""
        key = self.stored_key(as_bytes(key, "key"), namespace)
        value = as_bytes(value, "value")
        if ttl is not None:
            self._put_expiring(key, value, expiry_for(ttl, self.clock))
            return
        self.append_record(KIND_VALUE, <const unsigned char*>PyBytes_AS_STRING(key),
                           PyBytes_GET_SIZE(key), <const unsigned char*>PyBytes_AS_STRING(value),
                           PyBytes_GET_SIZE(value))

    def put_expiring(self, key, value, expiry, namespace=None):
        """Add a put of value under key that expires at `expiry`
        (microseconds since the epoch), in namespace."""
        key = self.stored_key(as_bytes(key, "key"), namespace)
        self._put_expiring(key, value, expiry)

    cdef _put_expiring(self, bytes key, value, expiry):
        # key is already as stored (namespace prefix included).
        stored = encode_expiring(expiry, as_bytes(value, "value"))
        self.append_record(KIND_EXPIRING_VALUE, <const unsigned char*>PyBytes_AS_STRING(key),
                           PyBytes_GET_SIZE(key), <const unsigned char*>PyBytes_AS_STRING(stored),
                           PyBytes_GET_SIZE(stored))

    def delete(self, key, namespace=None):
        """Add a delete of key (bytes-like) in namespace (None: the default one)."""
        key = self.stored_key(as_bytes(key, "key"), namespace)
        self.append_record(KIND_DELETE, <const unsigned char*>PyBytes_AS_STRING(key),
                           PyBytes_GET_SIZE(key), NULL, 0)

    def delete_range(self, start, stop, namespace=None):
        """Add a range tombstone deleting every key k with start <= k < stop
        (both bytes-like) in namespace; it takes one sequence number of the
        batch.  In the default namespace a range reaching into the region
        reserved for namespaces is noted like a reserved key, for the
        connection to refuse if its database has namespaces."""
        start = as_bytes(start, "start")
        stop = as_bytes(stop, "stop")
        check_range(start, stop)
        if namespace is None:
            self.stored_key(start, None)
            if stop > RESERVED_REGION_START:
                self.stored_key(stop, None)
        else:
            start = self.stored_key(start, namespace)
            stop = self.stored_key(stop, namespace)
        self.append_record(KIND_RANGE_DELETE, <const unsigned char*>PyBytes_AS_STRING(start),
                           PyBytes_GET_SIZE(start), <const unsigned char*>PyBytes_AS_STRING(stop),
                           PyBytes_GET_SIZE(stop))

    def delete_range_stored(self, start, stop):
        """A range tombstone over stored keys [start, stop), unchecked against
        the reserved region: for dropping a namespace's whole key range."""
        start = as_bytes(start, "start")
        stop = as_bytes(stop, "stop")
        check_range(start, stop)
        self.append_record(KIND_RANGE_DELETE, <const unsigned char*>PyBytes_AS_STRING(start),
                           PyBytes_GET_SIZE(start), <const unsigned char*>PyBytes_AS_STRING(stop),
                           PyBytes_GET_SIZE(stop))

    cdef bytes stored_key(self, bytes key, object namespace):
        # The key as stored: a namespace's prefix + key, or key itself; the
        # first such key in the region reserved for namespaces is kept, for
        # the connection to refuse if its database has namespaces.
        if namespace is None:
            if self.reserved_key is None and is_reserved_key(
                    <const unsigned char*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)):
                self.reserved_key = key
            return key
        try:
            prefix = namespace.key_prefix       # raises once the namespace is dropped
        except AttributeError:
            raise TypeError("namespace must be a handle from conn.namespace(), not %s"
                            % type(namespace).__name__) from None
        return <bytes>prefix + key

    def put_pairs(self, pairs, ttl=None, namespace=None):
        """Add a put for every (key, value) pair of an iterable, in namespace;
        with ttl, every pair expires at the same moment, ttl seconds from now."""
        cdef object key, value
        expiry = None if ttl is None else expiry_for(ttl, self.clock)
        for pair in pairs:
            if type(pair) is tuple and PyTuple_GET_SIZE(pair) == 2:
                key = <object>PyTuple_GET_ITEM(pair, 0)
                value = <object>PyTuple_GET_ITEM(pair, 1)
            else:
                try:
                    key, value = pair
                except (TypeError, ValueError):
                    raise TypeError("expected (key, value) pairs, got %r" % (pair,)) from None
            if expiry is None:
                self.put(key, value, None, namespace)
            else:
                self._put_expiring(self.stored_key(as_bytes(key, "key"), namespace), value,
                                   expiry)

    def delete_keys(self, keys, namespace=None):
        """Add a delete for every key of an iterable, in namespace."""
        for key in keys:
            self.delete(key, namespace)

    def clear(self):
        self.reserved_key = None
        self.size = BATCH_HEADER_BYTES
        self.count_ = 0
        self.data_bytes_ = 0
        put_batch_header(self.buf, 0, 0)

    def set_sequence(self, uint64_t sequence):
        if sequence > MAX_SEQUENCE:
            raise ValueError("sequence %d exceeds the 56-bit maximum" % sequence)
        set_batch_sequence(self.buf, sequence)

    @property
    def sequence(self):
        return batch_sequence(self.buf)

    @property
    def count(self):
        return self.count_

    @property
    def byte_size(self):
        return self.size

    @property
    def data_bytes(self):
        """Sum of key and value lengths."""
        return self.data_bytes_

    def data(self):
        """The rep as bytes (header with the current sequence, then records)."""
        return PyBytes_FromStringAndSize(<const char*>self.buf, self.size)

    def __len__(self):
        return self.count_


def encode_single(uint64_t sequence, int kind, const unsigned char[::1] key not None,
                  const unsigned char[::1] value=None):
    """The rep of a one-entry batch; the fast path of put() and delete()."""
    cdef size_t klen = key.shape[0]
    cdef size_t vlen = 0 if value is None else value.shape[0]
    cdef unsigned char small[512]
    cdef unsigned char* buf = small
    cdef unsigned char* p
    cdef size_t cap = BATCH_HEADER_BYTES + record_bound(klen, vlen)
    check_entry(kind, klen, vlen)
    if sequence > MAX_SEQUENCE:
        raise ValueError("sequence %d exceeds the 56-bit maximum" % sequence)
    if cap > sizeof(small):
        buf = <unsigned char*>malloc(cap)
        if buf == NULL:
            raise MemoryError()
    try:
        p = put_batch_header(buf, sequence, 1)
        p = put_batch_record(p, kind, view_ptr(key), klen,
                             view_ptr(value) if vlen else NULL, vlen)
        return PyBytes_FromStringAndSize(<const char*>buf, p - buf)
    finally:
        if buf != small:
            free(buf)


cdef int raise_bad_record(const BatchRecord* r, uint32_t index) except -1:
    # The boundary where get_batch_record's sentinel becomes CorruptionError.
    if r.problem == RECORD_BAD_KEY:
        raise CorruptionError("write batch record %d: bad key length" % index)
    if r.problem == RECORD_BAD_VALUE:
        raise CorruptionError("write batch record %d: bad value length" % index)
    if r.problem == RECORD_SHORT_EXPIRING:
        raise CorruptionError("write batch record %d: expiring value shorter than its %d-byte "
                              "expiry" % (index, EXPIRY_BYTES))
    raise CorruptionError("write batch record %d: unknown kind %d" % (index, r.kind))


cdef Py_ssize_t check_rep(const unsigned char* base, size_t n) except -1:
    # Validate a rep; returns the entry count or raises CorruptionError.
    cdef const unsigned char* p
    cdef const unsigned char* limit = base + n
    cdef uint32_t count, found = 0
    cdef BatchRecord r
    if n < BATCH_HEADER_BYTES:
        raise CorruptionError("write batch of %d bytes is shorter than its 12-byte header" % n)
    count = batch_count(base)
    p = base + BATCH_HEADER_BYTES
    while p < limit:
        p = get_batch_record(p, limit, &r)
        if p == NULL:
            raise_bad_record(&r, found)
        found += 1
    if found != count:
        raise CorruptionError("write batch header says %d records, found %d" % (count, found))
    if count and batch_sequence(base) > MAX_SEQUENCE - (count - 1):
        raise CorruptionError("write batch sequence numbers exceed the 56-bit maximum")
    return count


cdef int insert_records(MemTable mem, const unsigned char* rep, size_t rep_len,
                        uint64_t sequence) except -1:
    cdef const unsigned char* p = rep + BATCH_HEADER_BYTES
    cdef const unsigned char* limit = rep + rep_len
    cdef uint32_t index = 0
    cdef BatchRecord r
    while p < limit:
        p = get_batch_record(p, limit, &r)
        if p == NULL:
            raise_bad_record(&r, index)
        if r.kind == KIND_RANGE_DELETE:
            mem.add_range_del(sequence + index, r.key, r.key_len, r.value, r.value_len)
        else:
            mem.add_raw(sequence + index, r.kind, r.key, r.key_len, r.value, r.value_len)
        index += 1
    return 0


def batch_header(const unsigned char[::1] rep not None):
    """(sequence, count) of a rep, validating the whole rep first."""
    cdef const unsigned char* base = view_ptr(rep)
    cdef Py_ssize_t count = check_rep(base, rep.shape[0])
    return batch_sequence(base), count


def apply_batch(const unsigned char[::1] rep not None, MemTable mem not None):
    """Insert every entry of rep into mem (entry i at sequence + i).

    The rep is validated completely before the first insert.  Returns the
    last sequence used (sequence - 1 for an empty batch).
    """
    cdef size_t n = rep.shape[0]
    cdef const unsigned char* base = view_ptr(rep)
    cdef Py_ssize_t count = check_rep(base, n)
    cdef uint64_t seq = batch_sequence(base)
    insert_records(mem, base, n, seq)
    return <object>seq + count - 1


def iterate_batch(const unsigned char[::1] rep not None):
    """List of (kind, key, value) for a rep (value None for deletes; a range
    delete's value is its stop key; an expiring value's stored bytes, expiry
    first); validates first."""
    cdef size_t n = rep.shape[0]
    cdef const unsigned char* base = view_ptr(rep)
    check_rep(base, n)
    cdef const unsigned char* limit = base + n
    cdef const unsigned char* p = base + BATCH_HEADER_BYTES
    cdef BatchRecord r
    out = []
    while p < limit:
        p = get_batch_record(p, limit, &r)
        if p == NULL:
            raise_bad_record(&r, len(out))
        out.append((r.kind, PyBytes_FromStringAndSize(<const char*>r.key, r.key_len),
                    None if r.value == NULL
                    else PyBytes_FromStringAndSize(<const char*>r.value, r.value_len)))
    return out
