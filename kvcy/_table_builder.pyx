# cython: language_level=3, embedsignature=True
"""TableBuilder: writes one SSTable from internal keys added in order.

Data blocks are cut at about block_size bytes; each finished block gets an
index entry whose key is a short separator (LevelDB's
FindShortestSeparator: a key >= every key of the block and < every key of
the next, often much shorter than either), so the index stays small.  The
bloom filter covers every user key of the table.  Entries are handled in C
from add_raw(), which flushes (add_memtable) and compactions call; a
finished block is compressed (kvcy._snappy) and checksummed in C without the
GIL, then appended with one write.  Format:
table_format.py and docs/format.md ("Table files").

Not thread-safe; a flush or compaction owns its builder.  REQUIRES: keys are
added in strictly increasing internal-key order (user key ascending, tag
descending) and are at least 8 bytes long.
"""
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcmp, memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE

from kvcy._block_builder cimport BlockBuilder
from kvcy._bloom cimport BloomFilterBuilder
from kvcy._coding cimport load_fixed64, put_fixed32, put_fixed64, put_varint64
from kvcy._crc32c cimport crc32c_extend, crc32c_mask
from kvcy._snappy cimport snappy_compress, snappy_max_compressed_length
from kvcy._dbformat cimport KIND_DELETE, KIND_FOR_SEEK, MAX_SEQUENCE, pack_tag
from kvcy._memtable cimport MemTable
from kvcy._skiplist cimport SkipNode, node_value
from kvcy.table_format import (Footer, BlockHandle, NO_COMPRESSION, SNAPPY_COMPRESSION,
                               BLOCK_TRAILER_BYTES)
from kvcy.table_properties import TableProperties
from kvcy.errors import ProgrammingError

cdef size_t TRAILER = BLOCK_TRAILER_BYTES
cdef unsigned char NO_COMPRESSION_C = NO_COMPRESSION
cdef unsigned char SNAPPY_COMPRESSION_C = SNAPPY_COMPRESSION


cdef inline bytes encode_handle(uint64_t offset, uint64_t size):
    cdef unsigned char buf[20]
    cdef unsigned char* p = put_varint64(buf, offset)
    p = put_varint64(p, size)
    return PyBytes_FromStringAndSize(<char*>buf, p - buf)


cdef bytes max_tag_key(const unsigned char* user_key, size_t n, unsigned char last):
    # user_key[:n-1] + bytes([last]) + the largest tag: sorts before every
    # entry of a larger user key and after every entry of a smaller one.
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n + 8)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(out)
    if n > 1:
        memcpy(p, user_key, n - 1)
    p[n - 1] = last
    put_fixed64(p + n, pack_tag(MAX_SEQUENCE, KIND_FOR_SEEK))
    return out


cdef bytes shortest_separator(const unsigned char* a, size_t alen,
                              const unsigned char* b, size_t blen):
    # An internal key k with a <= k < b, as short as cheaply possible.
    cdef size_t ua = alen - 8, ub = blen - 8
    cdef size_t n = ua if ua < ub else ub
    cdef size_t i = 0
    while i < n and a[i] == b[i]:
        i += 1
    if i < n and a[i] < 0xFF and a[i] + 1 < b[i]:
        return max_tag_key(a, i + 1, a[i] + 1)
    return PyBytes_FromStringAndSize(<const char*>a, alen)


cdef bytes short_successor(const unsigned char* a, size_t alen):
    # An internal key k >= a, as short as cheaply possible.
    cdef size_t ua = alen - 8
    cdef size_t i
    for i in range(ua):
        if a[i] != 0xFF:
            return max_tag_key(a, i + 1, a[i] + 1)
    return PyBytes_FromStringAndSize(<const char*>a, alen)


def shortest_separator_py(bytes start not None, bytes limit not None):
    """Python face of the index separator (for tests)."""
    if len(start) < 8 or len(limit) < 8:
        raise ValueError("internal keys are at least 8 bytes")
    return shortest_separator(<const unsigned char*>PyBytes_AS_STRING(start), len(start),
                              <const unsigned char*>PyBytes_AS_STRING(limit), len(limit))


def short_successor_py(bytes key not None):
    if len(key) < 8:
        raise ValueError("internal keys are at least 8 bytes")
    return short_successor(<const unsigned char*>PyBytes_AS_STRING(key), len(key))


cdef class TableBuilder:
    def __init__(self, file, options, path=None):
        self.file = file
        self.append = file.append
        self.path = path or file.path
        self.block_size = options.block_size
        self.compression = options.compression
        self.data_block = BlockBuilder(options.restart_interval)
        self.index_block = BlockBuilder(1)
        bits = options.bloom_bits_per_key
        self.bloom = BloomFilterBuilder(bits) if bits else None
        self.offset = 0
        self.last_key = bytearray()
        self.pending = False
        self.props = TableProperties()
        self.finished = False

    cdef int add_raw(self, const unsigned char* key, size_t key_len,
                     const unsigned char* value, size_t value_len) except -1:
        cdef uint64_t tag
        cdef size_t last_len = len(self.last_key)
        cdef const unsigned char* last = <const unsigned char*>(<char*>self.last_key)
        cdef bint new_user_key
        if self.finished:
            raise ProgrammingError("TableBuilder.add() after finish()")
        if key_len < 8:
            raise ValueError("internal keys are at least 8 bytes")
        if self.pending:
            sep = shortest_separator(last, last_len, key, key_len)
            handle = encode_handle(self.pending_offset, self.pending_size)
            self.index_block.add_raw(<const unsigned char*>PyBytes_AS_STRING(sep), len(sep),
                                     <const unsigned char*>PyBytes_AS_STRING(handle), len(handle))
            self.pending = False
        new_user_key = (self.num_entries_ == 0 or last_len != key_len
                        or memcmp(last, key, key_len - 8) != 0)
        if new_user_key and self.bloom is not None:
            self.bloom.add_raw(key, key_len - 8)
        tag = load_fixed64(key + key_len - 8)
        if self.num_entries_ == 0:
            self.smallest = PyBytes_FromStringAndSize(<const char*>key, key_len)
            self.smallest_seq = tag >> 8
            self.largest_seq = tag >> 8
        else:
            if (tag >> 8) < self.smallest_seq:
                self.smallest_seq = tag >> 8
            if (tag >> 8) > self.largest_seq:
                self.largest_seq = tag >> 8
        self.num_entries_ += 1
        if (tag & 0xFF) == KIND_DELETE:
            self.num_deletions += 1
        self.raw_key_bytes += key_len
        self.raw_value_bytes += value_len
        self.last_key[:] = (<const char*>key)[:key_len]
        self.data_block.add_raw(key, key_len, value, value_len)
        if self.data_block.size_estimate() >= self.block_size:
            self.flush_block()
        return 0

    def add(self, ikey, value):
        """Add one entry (internal key, value); keys strictly increasing."""
        cdef const unsigned char[::1] k = ikey
        cdef const unsigned char[::1] v = value
        self.add_raw(&k[0] if k.shape[0] else <const unsigned char*>"", k.shape[0],
                     &v[0] if v.shape[0] else <const unsigned char*>"", v.shape[0])

    def add_memtable(self, MemTable mem not None):
        """Add every entry of mem in order (the flush of a memtable)."""
        cdef SkipNode* node = mem.table.first()
        while node != NULL:
            self.add_raw(node.key, node.key_len + 8, node_value(node), node.value_len)
            node = node.next[0]

    cdef int flush_block(self) except -1:
        if self.data_block.count_ == 0:
            return 0
        raw = self.data_block.finish()
        self.write_block(raw, self.compression, &self.pending_offset, &self.pending_size)
        self.pending = True
        self.raw_data_bytes += len(raw)
        self.data_blocks += 1
        self.data_block.reset()
        return 0

    cdef int write_block(self, bytes raw, object compression, uint64_t* offset,
                         uint64_t* size) except -1:
        # contents (snappy when it saves at least an eighth, as
        # table_format.compress_block decides) + compression byte + masked
        # CRC32C, built in C without the GIL and appended with one write.
        cdef const unsigned char* src = <const unsigned char*>PyBytes_AS_STRING(raw)
        cdef size_t n = <size_t>PyBytes_GET_SIZE(raw)
        cdef bint try_snappy = compression == "snappy" and n > 64
        cdef size_t cap = (snappy_max_compressed_length(n) if try_snappy else n) + TRAILER
        cdef unsigned char* buf = <unsigned char*>malloc(cap)
        cdef size_t clen = 0
        cdef unsigned char ctype = NO_COMPRESSION_C
        cdef uint32_t crc
        if buf == NULL:
            raise MemoryError()
        try:
            with nogil:
                if try_snappy:
                    clen = snappy_compress(src, n, buf)
                    if clen != 0 and clen <= n - n // 8:
                        ctype = SNAPPY_COMPRESSION_C
                if ctype == NO_COMPRESSION_C:
                    memcpy(buf, src, n)
                    clen = n
                buf[clen] = ctype
                crc = crc32c_extend(crc32c_extend(0, buf, clen), buf + clen, 1)
                put_fixed32(buf + clen + 1, crc32c_mask(crc))
            block = PyBytes_FromStringAndSize(<const char*>buf, clen + TRAILER)
        finally:
            free(buf)
        offset[0] = self.offset
        size[0] = clen
        self.append(block)
        self.offset += clen + TRAILER
        return 0

    def finish(self):
        """Write filter, properties, index and footer; return the file size."""
        cdef uint64_t f_off = 0, f_size = 0, p_off, p_size, i_off, i_size
        if self.finished:
            raise ProgrammingError("TableBuilder.finish() called twice")
        self.flush_block()
        props = self.props
        props.num_entries = self.num_entries_
        props.num_deletions = self.num_deletions
        props.raw_key_bytes = self.raw_key_bytes
        props.raw_value_bytes = self.raw_value_bytes
        props.raw_data_bytes = self.raw_data_bytes
        props.data_blocks = self.data_blocks
        props.smallest_sequence = self.smallest_seq
        props.largest_sequence = self.largest_seq
        props.stored_data_bytes = self.offset
        props.smallest = self.smallest if self.num_entries_ else b""
        props.largest = bytes(self.last_key)
        if self.bloom is not None:
            self.write_block(self.bloom.finish(), "none", &f_off, &f_size)
        self.write_block(props.encode(), "none", &p_off, &p_size)
        if self.pending:
            last = bytes(self.last_key)
            succ = short_successor(<const unsigned char*>PyBytes_AS_STRING(last), len(last))
            handle = encode_handle(self.pending_offset, self.pending_size)
            self.index_block.add_raw(<const unsigned char*>PyBytes_AS_STRING(succ), len(succ),
                                     <const unsigned char*>PyBytes_AS_STRING(handle),
                                     len(handle))
            self.pending = False
        self.write_block(self.index_block.finish(), self.compression, &i_off, &i_size)
        footer = Footer(BlockHandle(i_off, i_size), BlockHandle(f_off, f_size),
                        BlockHandle(p_off, p_size)).encode()
        self.append(footer)
        self.offset += len(footer)
        self.finished = True
        return self.offset

    @property
    def num_entries(self):
        return self.num_entries_

    def file_size(self):
        return self.offset
