# cython: language_level=3, embedsignature=True
"""Table: the reader of one SSTable file (format: kvcy/table_format.py and
docs/format.md, "Table files").

Opening reads and checks the footer, the index block, the bloom filter and
the properties (cold work, in Python: kvcy.table.read_table_meta).  The hot
work is here, in C: a point lookup is bloom probe -> index search -> block
cache -> (on a miss) a block read from the file's mapping or with pread,
CRC32C check, snappy decompression and trailer check (kvcy/_table_block.pyx)
-> block search, without the GIL when the table reads through a plain
file descriptor (table_lookup, used by kvcy._read_path).  Blocks live in the
C block cache (kvcy._block_cache) as pinned handles; a lookup that finds a
value hands back the pinned block so the caller can copy the value out with
the GIL held.  Iterators (kvcy._two_level) load blocks through
block_for_handle.

Every length read from disk is checked before use: a block handle must lie
inside the file's data part, the compressed length header must stay under
MAX_BLOCK_BYTES, the block's restart array is checked before any cursor
walks it, and each entry is checked as the cursor decodes it.  A failure is
a ReadError code inside the C functions (they never raise) and one
CorruptionError naming the table, the block and the offset at the boundary
(read_error).  A failed pread is an OperationalError naming the file.

Thread-safety: a Table is immutable after open; any number of threads may
look up and iterate at once, with or without the GIL (pread, the block
cache's own locks).  The file closes when the last reference to the Table
goes away, so a reader holding a Table keeps reading it even after the
table cache dropped it or the file was deleted.
"""
cimport cython
from libc.stdint cimport uint32_t, uint64_t

from cpython.bytes cimport (PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE,
                            PyBytes_CheckExact)

from kvcy._block cimport (Block, BlockCursor, BLOCK_OK, TRAILER_OK, TRAILER_NOT_INCREASING,
                          block_check_trailer, cursor_init, cursor_free, cursor_seek,
                          trailer_exception, cursor_exception)
from kvcy._block_cache cimport BlockCache, BlockCacheCore, CacheHandle, cache_release
from kvcy._table_block cimport (table_cached_block, table_read_block, table_decode_buffer,
                                table_map, table_unmap, part_state_bytes)
from kvcy._table_index cimport (find_handles, table_index_find, filter_check,
                                partition_find_nogil)
from kvcy._bloom cimport BloomFilter, BLOOM_MAX_PROBES, bloom_may_contain
from kvcy._coding cimport get_varint64, load_fixed32, load_fixed64
from kvcy._dbformat cimport (KIND_DELETE, KIND_VALUE, KIND_EXPIRING_VALUE, KIND_FOR_SEEK,
                             MAX_SEQUENCE, TAG_BYTES,
                             pack_tag, compare_user_keys)
from kvcy._expiry cimport EXPIRY_BYTES, expiring_answer

import os

from kvcy.dbformat import DELETED
from kvcy.env import RandomAccessFile, io_error
from kvcy.errors import CorruptionError
from kvcy import table_format as _format
from kvcy._table_block import mapped_table_count, set_max_mapped_tables   # re-exported

cdef uint64_t FOOTER_BYTES = _format.FOOTER_BYTES
cdef uint64_t TRAILER_BYTES = _format.BLOCK_TRAILER_BYTES
cdef uint64_t MAX_BLOCK_BYTES = _format.MAX_BLOCK_BYTES

_TableIterator = None

# Newest entry of a key in a table, whatever the reader's sequence (row cache).
cdef uint64_t NEWEST = MAX_SEQUENCE


cdef object found_value(Found* f, object clock):
    """The answer of a Found as Python sees it (value bytes, DELETED or None);
    releases the pinned block.  An expiring value that has expired by
    `clock` (kvcy/_expiry.pyx) is DELETED: it hides older entries as a
    tombstone of its sequence would."""
    cdef object value
    if f.kind < 0:
        return None
    if f.kind == KIND_DELETE:
        return DELETED
    try:
        if f.kind == KIND_EXPIRING_VALUE:
            value = expiring_answer(f.value, f.value_len, clock)
            if value is None:
                value = DELETED
        else:
            value = PyBytes_FromStringAndSize(<const char*>f.value, f.value_len)
    finally:
        if f.handle != NULL:
            cache_release(f.handle)
            f.handle = NULL
    return value


# -- C: point lookups over a TableReader -------------------------------------

cdef int table_data_find(TableReader* t, CacheHandle* h, uint64_t offset, const unsigned char* key,
                   size_t klen, uint64_t tag, Found* out, ReadError* err) noexcept nogil:
    # Search block h for the newest entry of key at or below tag.  Takes
    # over the pin of h: it moves to out.handle on a value, else it is
    # released.  0 (out.kind -1 when none), or -1 with err.
    cdef BlockCursor c
    cdef int r, kind
    cdef uint64_t found_tag
    cursor_init(&c, h.data, h.restarts, h.num_restarts)
    r = cursor_seek(&c, key, klen, tag)
    if r < 0:
        err.in_index = False
        err.offset = offset
        err.sub = c.error
        err.a = c.error_offset
        err.code = READ_CURSOR
    elif r > 0 and compare_user_keys(c.key, c.key_len - TAG_BYTES, key, klen) == 0:
        found_tag = load_fixed64(c.key + c.key_len - TAG_BYTES)
        kind = <int>(found_tag & 0xFF)
        if kind == KIND_VALUE or (kind == KIND_EXPIRING_VALUE and c.value_len >= EXPIRY_BYTES):
            out.kind = kind
            out.sequence = found_tag >> 8
            out.value = c.value
            out.value_len = c.value_len
            out.handle = h
            h = NULL
            r = 0
        elif kind == KIND_EXPIRING_VALUE:
            err.in_index = False
            err.offset = offset
            err.a = c.current
            err.b = c.value_len
            err.code = READ_SHORT_EXPIRING
            r = -1
        elif kind == KIND_DELETE:
            out.kind = KIND_DELETE
            out.sequence = found_tag >> 8
            r = 0
        else:
            err.in_index = False
            err.offset = offset
            err.sub = kind
            err.a = c.current
            err.code = READ_UNKNOWN_KIND
            r = -1
    else:
        r = 0
    cursor_free(&c)
    if h != NULL:
        cache_release(h)
    return r


cdef int table_lookup(TableReader* t, const unsigned char* key, size_t klen, uint64_t sequence,
                      Found* out, ReadError* err) noexcept nogil:
    """Newest entry of key with sequence <= `sequence` into out: 0, or -1
    with err (READ_NEEDS_GIL: the block must be read with Table.lookup();
    READ_DEFERRED: err.defer_io asked to stop before reading a block)."""
    cdef uint64_t offset = 0, size = 0, tag
    cdef CacheHandle* h
    cdef int r
    out.kind = -1
    out.handle = NULL
    if t.bloom_array != NULL and not bloom_may_contain(t.bloom_array, t.bloom_bits,
                                                          t.bloom_k, key, klen):
        return 0
    if sequence > MAX_SEQUENCE:
        sequence = MAX_SEQUENCE
    tag = pack_tag(sequence, KIND_FOR_SEEK)
    err.offset = 0
    if t.partitioned:
        if err.defer_io:
            return read_fail(err, READ_DEFERRED, DEFER_TABLE, 0)
        r = partition_find_nogil(t, key, klen, tag, &offset, &size, err)
    else:
        r = table_index_find(t, key, klen, tag, &offset, &size, err)
    if r <= 0:
        return r
    err.in_index = False
    h = table_cached_block(t, offset)
    if h == NULL:
        if err.defer_io:
            err.offset = offset
            err.size = size
            return read_fail(err, READ_DEFERRED, DEFER_BLOCK, 0)
        err.read_block = True
        h = table_read_block(t, offset, size, err)
        if h == NULL:
            return -1
    return table_data_find(t, h, offset, key, klen, tag, out, err)


@cython.final
cdef class Table:
    """An open SSTable.  Table.open(file, file_size, number, block_cache, row_cache)."""

    def __cinit__(self, file, uint64_t file_size, uint64_t number, Block index not None,
                  bloom, properties, BlockCache block_cache=None, row_cache=None,
                  bint partitioned=False):
        self.file = file
        self.path = file.path
        self.index = index
        self.r.partitioned = partitioned
        if partitioned and bloom is not None:
            raise TypeError("a partitioned table's filter is in partitions, not one BloomFilter")
        self.r.file_size = file_size
        self.r.number = number
        self.r.index_base = index.base
        self.r.index_restarts = index.restarts
        self.r.index_num_restarts = index.num_restarts_
        self.bloom = bloom
        self.r.bloom_array = NULL
        if bloom is not None:
            if not isinstance(bloom, BloomFilter):
                raise TypeError("bloom must be a kvcy._bloom.BloomFilter, not %s"
                                % type(bloom).__name__)
            self.r.bloom_array = (<BloomFilter>bloom).array
            self.r.bloom_bits = (<BloomFilter>bloom).bits
            self.r.bloom_k = (<BloomFilter>bloom).k
        self.properties = properties
        self.block_cache = block_cache
        self.r.cache = &block_cache.core if block_cache is not None else NULL
        self.row_cache = row_cache
        # Only the env's own file may be read behind its back; any other
        # object (a fault-injecting one, a test wrapper) is read through its
        # read() so that it sees every read.
        self.r.fd = file.fileno() if type(file) is RandomAccessFile else -1
        if file_size < FOOTER_BYTES:
            raise CorruptionError("table %s: %d bytes is too short to be a table"
                                  % (self.path, file_size))
        table_map(&self.r)

    def __dealloc__(self):
        table_unmap(&self.r)

    @classmethod
    def open(cls, file, file_size, number=0, block_cache=None, row_cache=None):
        """Open the table in file (file_size bytes): footer, index, filter and
        properties are read and checked now.  Raises CorruptionError."""
        from kvcy.table import read_table_meta
        index, bloom, properties, partitioned = read_table_meta(file, file_size)
        return cls(file, file_size, number, index, bloom, properties, block_cache, row_cache,
                   partitioned)

    # -- C: blocks ------------------------------------------------------------

    cdef CacheHandle* load_block(self, uint64_t offset, uint64_t size, int in_index,
                                 bint raw=False) except NULL:
        # read_block_nogil for a caller holding the GIL: reads through file.read
        # when fd < 0, releases the GIL for pread; raises on failure.
        cdef ReadError err
        cdef CacheHandle* h
        cdef unsigned char* buf
        cdef Py_ssize_t got
        err.code = READ_OK
        err.defer_io = False
        err.in_index = in_index
        h = table_cached_block(&self.r, offset, raw)
        if h != NULL:
            return h
        if self.r.fd >= 0:
            with nogil:
                h = table_read_block(&self.r, offset, size, &err, raw)
        else:
            h = table_read_block(&self.r, offset, size, &err, raw)
        if h != NULL:
            return h
        if err.code != READ_NEEDS_GIL:
            raise self.read_error(&err)
        data = self.file.read(offset, size + TRAILER_BYTES)
        if not PyBytes_CheckExact(data):
            data = bytes(data)
        got = PyBytes_GET_SIZE(data)
        if <uint64_t>got > size + TRAILER_BYTES:
            got = <Py_ssize_t>(size + TRAILER_BYTES)
        h = table_decode_buffer(&self.r, <const unsigned char*>PyBytes_AS_STRING(data),
                                <size_t>got, offset, size, &err, raw)
        if h == NULL:
            raise self.read_error(&err)
        return h

    cdef Block block_for_handle(self, const unsigned char* v, size_t n):
        # The data block an index entry's value (an encoded handle) points at.
        cdef uint64_t offset, size
        cdef const unsigned char* p = get_varint64(v, v + n, &offset)
        cdef CacheHandle* h
        if p != NULL:
            p = get_varint64(p, v + n, &size)
        if p == NULL or p != v + n:
            raise CorruptionError("table %s: bad block handle in the index" % self.path)
        h = self.load_block(offset, size, False)
        return Block.from_handle(h, self.block_cache)

    cdef Block index_partition(self, const unsigned char* v, size_t n):
        # The index partition a top-level index entry's value (two encoded
        # handles: index partition, filter partition) points at.
        cdef uint64_t parts[4]
        cdef const unsigned char* p = v
        cdef int i
        cdef CacheHandle* h
        for i in range(4):
            p = get_varint64(p, v + n, &parts[i])
            if p == NULL:
                break
        if p == NULL or p != v + n:
            raise CorruptionError("table %s: bad partition handles in the top-level index"
                                  % self.path)
        h = self.load_block(parts[0], parts[1], True)
        return Block.from_handle(h, self.block_cache)

    cdef int partition_find(self, const unsigned char* key, size_t klen, uint64_t tag,
                            uint64_t* offset, uint64_t* size) except -1:
        # partition_find_nogil for a caller holding the GIL (any file
        # object): 1 with the data block's handle, 0 none; raises on failure.
        # The env's own files take partition_find_nogil itself (partitions in
        # place when mapped), so every reader of them takes the same path.
        cdef uint64_t parts[4]
        cdef uint64_t data[2]
        cdef CacheHandle* h
        cdef ReadError err
        cdef int r
        err.code = READ_OK
        err.defer_io = False
        err.offset = 0
        if self.r.fd >= 0:
            with nogil:
                r = partition_find_nogil(&self.r, key, klen, tag, offset, size, &err)
            if r < 0:
                raise self.read_error(&err)
            return r
        r = find_handles(self.r.index_base, self.r.index_restarts, self.r.index_num_restarts,
                         key, klen, tag, parts, 4, READ_TOP_INDEX_VALUE, &err)
        if r < 0:
            raise self.read_error(&err)
        if r == 0:
            return 0
        if parts[3]:
            h = self.load_block(parts[2], parts[3], IN_FILTER, True)
            r = filter_check(h, key, klen, &err)
            cache_release(h)
            if r < 0:
                err.in_index = IN_FILTER
                err.offset = parts[2]
                raise self.read_error(&err)
            if r == 0:
                return 0
        h = self.load_block(parts[0], parts[1], True)
        r = find_handles(h.data, h.restarts, h.num_restarts, key, klen, tag, data, 2,
                         READ_INDEX_VALUE, &err)
        cache_release(h)
        if r < 0:
            err.offset = parts[0]
            raise self.read_error(&err)
        offset[0] = data[0]
        size[0] = data[1]
        return r

    # -- C: point lookups ---------------------------------------------------

    cdef int lookup(self, const unsigned char* key, size_t klen, uint64_t sequence,
                    Found* out) except -1:
        # lookup_nogil for a caller holding the GIL; raises on failure.
        cdef ReadError err
        cdef uint64_t offset = 0, size = 0, tag
        cdef CacheHandle* h
        cdef int r
        out.kind = -1
        out.handle = NULL
        err.code = READ_OK
        err.defer_io = False
        err.offset = 0
        if self.r.bloom_array != NULL and not bloom_may_contain(self.r.bloom_array, self.r.bloom_bits,
                                                              self.r.bloom_k, key, klen):
            return 0
        if sequence > MAX_SEQUENCE:
            sequence = MAX_SEQUENCE
        tag = pack_tag(sequence, KIND_FOR_SEEK)
        if self.r.partitioned:
            r = self.partition_find(key, klen, tag, &offset, &size)
        else:
            r = table_index_find(&self.r, key, klen, tag, &offset, &size, &err)
            if r < 0:
                raise self.read_error(&err)
        if r == 0:
            return 0
        h = self.load_block(offset, size, False)
        if table_data_find(&self.r, h, offset, key, klen, tag, out, &err) < 0:
            raise self.read_error(&err)
        return 0

    cdef object read_error(self, const ReadError* err):
        """The exception for a ReadError, naming the table and the block."""
        cdef str what = ("filter partition" if err.in_index == IN_FILTER
                         else "data" if not err.in_index
                         else "index partition" if self.r.partitioned and err.offset
                         else "index")
        path = self.path
        if err.code == READ_IO:
            exc = OSError(err.sub, os.strerror(err.sub))
            out = io_error("read", path, exc)
            out.__cause__ = exc
            return out
        if err.code == READ_NO_MEMORY:
            return MemoryError("no memory to read a block of table %s" % path)
        if err.code == READ_BAD_HANDLE:
            return CorruptionError("table %s: %s block handle (offset %d, size %d) lies outside "
                                   "the %d-byte file" % (path, what, err.offset, err.size,
                                                         self.r.file_size))
        if err.code == READ_TRUNCATED:
            return CorruptionError("table %s: %s block at offset %d truncated (%d of %d bytes)"
                                   % (path, what, err.offset, err.a, err.size + TRAILER_BYTES))
        if err.code == READ_CHECKSUM:
            return CorruptionError("table %s: %s block at offset %d: checksum mismatch"
                                   % (path, what, err.offset))
        if err.code == READ_BAD_LENGTH:
            return CorruptionError("table %s: %s block at offset %d claims %d bytes "
                                   "uncompressed" % (path, what, err.offset, err.a))
        if err.code == READ_DECOMPRESS:
            return CorruptionError("table %s: %s block at offset %d does not decompress"
                                   % (path, what, err.offset))
        if err.code == READ_UNKNOWN_COMPRESSION:
            return CorruptionError("table %s: %s block at offset %d: unknown compression type %d"
                                   % (path, what, err.offset, err.sub))
        if err.code == READ_TRAILER:
            inner = trailer_exception(err.sub, <size_t>err.a, <uint32_t>err.b, <uint32_t>err.c,
                                      <uint32_t>err.d, <uint32_t>err.e)
            return CorruptionError("table %s: %s block at offset %d: %s"
                                   % (path, what, err.offset, inner))
        if err.code == READ_CURSOR:
            # An index partition names its offset; the index in the footer
            # (offset 0 here) needs none.
            where = "" if err.in_index and not err.offset else " at offset %d" % err.offset
            return CorruptionError("table %s: %s block%s: %s"
                                   % (path, what, where, _cursor_message(err.sub, err.a)))
        if err.code == READ_INDEX_VALUE:
            return CorruptionError("table %s: index block: bad block handle in index entry at "
                                   "offset %d" % (path, err.a))
        if err.code == READ_TOP_INDEX_VALUE:
            return CorruptionError("table %s: top-level index block: bad partition handles in "
                                   "entry at offset %d" % (path, err.a))
        if err.code == READ_BAD_FILTER:
            return CorruptionError("table %s: filter partition at offset %d: %d bytes with "
                                   "probe count %d (a filter needs 2 bytes or more and a "
                                   "count of 1 to %d)" % (path, err.offset, err.a, err.b,
                                                          BLOOM_MAX_PROBES))
        if err.code == READ_SHORT_EXPIRING:
            return CorruptionError("table %s: data block at offset %d: expiring value of %d "
                                   "bytes at offset %d is shorter than its %d-byte expiry"
                                   % (path, err.offset, err.b, err.a, EXPIRY_BYTES))
        if err.code == READ_UNKNOWN_KIND:
            return CorruptionError("table %s: data block at offset %d: block: entry of unknown "
                                   "kind %d at offset %d" % (path, err.offset, err.sub, err.a))
        return RuntimeError("table %s: read failed with code %d (a kvcy bug)" % (path, err.code))

    # -- Python face ----------------------------------------------------------

    def _lookup(self, user_key, uint64_t sequence):
        """(sequence, kind, value) of the newest entry <= sequence, or None
        (an expiring value as stored, expiry first)."""
        cdef Found f
        if not PyBytes_CheckExact(user_key):
            user_key = bytes(memoryview(user_key))
        self.lookup(<const unsigned char*>PyBytes_AS_STRING(user_key),
                    PyBytes_GET_SIZE(user_key), sequence, &f)
        if f.kind < 0:
            return None
        if f.kind == KIND_DELETE:
            return (f.sequence, KIND_DELETE, b"")
        seq = f.sequence
        kind = f.kind
        value = PyBytes_FromStringAndSize(<const char*>f.value, f.value_len)
        if f.handle != NULL:
            cache_release(f.handle)
            f.handle = NULL
        return (seq, kind, value)

    def get(self, user_key, uint64_t sequence, clock=None):
        """Newest entry of user_key with sequence <= `sequence`: value, DELETED
        or None.  Consults the row cache when there is one.  An expiring
        value is DELETED once `clock` (kvcy/_expiry.pyx; None: real time)
        reaches its expiry; the row cache keeps it as stored, so the check
        runs on every answer and the cache never serves an expired value."""
        cdef Found f
        if sequence > MAX_SEQUENCE:
            sequence = MAX_SEQUENCE
        if not PyBytes_CheckExact(user_key):
            if isinstance(user_key, str):
                raise TypeError("user_key must be bytes-like, not str")
            user_key = bytes(memoryview(user_key))
        if self.r.bloom_array != NULL and not bloom_may_contain(
                self.r.bloom_array, self.r.bloom_bits, self.r.bloom_k,
                <const unsigned char*>PyBytes_AS_STRING(user_key), PyBytes_GET_SIZE(user_key)):
            return None
        row_cache = self.row_cache
        if row_cache is not None and row_cache.enabled:
            row = row_cache.get((self.r.number, user_key), False)
            if row is None:
                return None                       # the table holds nothing for the key
            if row is False:
                row = self._lookup(user_key, NEWEST)
                row_cache.put((self.r.number, user_key), row)
                if row is None:
                    return None
            if row[0] <= sequence:
                if row[1] == KIND_DELETE:
                    return DELETED
                if row[1] == KIND_EXPIRING_VALUE:
                    value = expiring_answer(<const unsigned char*>PyBytes_AS_STRING(row[2]),
                                            PyBytes_GET_SIZE(row[2]), clock)
                    return DELETED if value is None else value
                return row[2]
        self.lookup(<const unsigned char*>PyBytes_AS_STRING(user_key),
                    PyBytes_GET_SIZE(user_key), sequence, &f)
        return found_value(&f, clock)

    @property
    def number(self):
        return self.r.number

    @property
    def file_size(self):
        return self.r.file_size

    def may_contain(self, user_key):
        """False iff the bloom filter proves the table holds no entry for user_key."""
        return self.bloom is None or self.bloom.may_contain(user_key)

    def read_data_block(self, handle):
        """The data block at handle (a table_format.BlockHandle), cached."""
        cdef CacheHandle* h = self.load_block(handle.offset, handle.size, False)
        return Block.from_handle(h, self.block_cache)

    def block_from_index_value(self, value):
        """The data block an index entry's value (an encoded handle) points at."""
        if not PyBytes_CheckExact(value):
            value = bytes(memoryview(value))
        return self.block_for_handle(<const unsigned char*>PyBytes_AS_STRING(value),
                                     PyBytes_GET_SIZE(value))

    def iterator(self):
        """A TableIterator (kvcy._two_level) over every entry, not yet positioned."""
        global _TableIterator
        if _TableIterator is None:
            # kvcy._two_level cimports this module, so it is imported on first use.
            from kvcy._two_level import TableIterator as _TableIterator
        return _TableIterator(self)

    def approximate_offset_of(self, ikey):
        it = self.index.iterator()
        it.seek(ikey)
        if it.valid() and self.r.partitioned:
            value = it.value()
            it = self.index_partition(<const unsigned char*>PyBytes_AS_STRING(value),
                                      PyBytes_GET_SIZE(value)).iterator()
            it.seek(ikey)
        if it.valid():
            handle, _ = _format.BlockHandle.decode(it.value())
            return handle.offset
        return self.properties.stored_data_bytes

    @property
    def partitioned(self):
        """True for a table of format version 2 (index and filter in partitions)."""
        return self.r.partitioned

    @property
    def part_state_bytes(self):
        """Bytes of the flags that record which partitions were checked in
        place (kvcy/_table_index.pyx); 0 unless partitioned and mapped."""
        return part_state_bytes(self.r.index_restarts) if self.r.part_state != NULL else 0

    def __repr__(self):
        return "<kvcy Table %06d %s>" % (self.r.number, self.path)


cdef str _cursor_message(int code, uint64_t offset):
    # The text cursor_exception gives for a stopped cursor.
    cdef BlockCursor c
    c.error = code
    c.error_offset = <uint32_t>offset
    return str(cursor_exception(&c))
