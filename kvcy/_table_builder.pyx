# cython: language_level=3, embedsignature=True
"""TableBuilder: writes one SSTable from internal keys added in order.

Data blocks are cut at about block_size bytes; each finished block gets an
index entry whose key is a short separator (LevelDB's
FindShortestSeparator: a key >= every key of the block and < every key of
the next, often much shorter than either), so the index stays small.  The
bloom filter covers every user key of the table.  Format: table_format.py and
docs/format.md ("Table files").

Everything up to the footer runs in C without the GIL (append(), which
flushes and compactions call with the GIL released): entries go into C
buffers, a finished block is compressed (kvcy._snappy) and checksummed into
an output buffer, and the output buffer is written with write(2) once it
holds OUTPUT_BUFFER_BYTES.  A file without a descriptor (a test's fault
injecting file) is written through its append() method instead, one call per
block, taking the GIL for it.  Errors inside the C part are recorded
(`error`) and turned into exceptions by raise_error() once the GIL is held;
an I/O error or running out of memory is sticky: the builder refuses more.

Not thread-safe; a flush or compaction owns its builder.  REQUIRES: keys are
added in strictly increasing internal-key order (user key ascending, tag
descending) and are at least 8 bytes long.
"""
from libc.errno cimport errno, EINTR, ENOSPC
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcmp, memcpy
from posix.unistd cimport write
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE

from kvcy._block_builder cimport (BlockBuilder, BUILD_NO_MEMORY, BUILD_TOO_BIG,
                                  BUILD_FINISHED, BUILD_OUT_OF_ORDER)
from kvcy._bloom cimport BloomFilterBuilder
from kvcy._coding cimport load_fixed64, put_fixed32, put_fixed64, put_varint64
from kvcy._crc32c cimport crc32c_extend, crc32c_mask
from kvcy._snappy cimport snappy_compress, snappy_max_compressed_length
from kvcy._dbformat cimport KIND_DELETE, KIND_EXPIRING_VALUE, KIND_FOR_SEEK, MAX_SEQUENCE, pack_tag
from kvcy._memtable cimport MemTable
from kvcy._skiplist cimport SkipNode, node_value
from kvcy.table_format import (Footer, BlockHandle, NO_COMPRESSION, SNAPPY_COMPRESSION,
                               TABLE_FORMAT_VERSION, PARTITIONED_FORMAT_VERSION,
                               BLOCK_TRAILER_BYTES)
from kvcy.table_properties import TableProperties
from kvcy.env import WritableFile, io_error
from kvcy.errors import ProgrammingError

cdef size_t TRAILER = BLOCK_TRAILER_BYTES
cdef unsigned char NO_COMPRESSION_C = NO_COMPRESSION
cdef unsigned char SNAPPY_COMPRESSION_C = SNAPPY_COMPRESSION


cdef enum:
    OUTPUT_BUFFER_BYTES = 256 * 1024   # write(2) in pieces of about this size
    HANDLE_MAX_BYTES = 20              # two varint64s


cdef inline size_t encode_handle(unsigned char* buf, uint64_t offset, uint64_t size) noexcept nogil:
    # A block handle (two varint64s) into buf (HANDLE_MAX_BYTES); its length.
    return <size_t>(put_varint64(put_varint64(buf, offset), size) - buf)


cdef size_t max_tag_key(unsigned char* out, const unsigned char* user_key, size_t n,
                        unsigned char last) noexcept nogil:
    # out = user_key[:n-1] + bytes([last]) + the largest tag: sorts before
    # every entry of a larger user key and after every entry of a smaller
    # one.  Returns its length, n + 8.
    if n > 1:
        memcpy(out, user_key, n - 1)
    out[n - 1] = last
    put_fixed64(out + n, pack_tag(MAX_SEQUENCE, KIND_FOR_SEEK))
    return n + 8


cdef size_t shortest_separator(unsigned char* out, const unsigned char* a, size_t alen,
                               const unsigned char* b, size_t blen) noexcept nogil:
    # out = an internal key k with a <= k < b, as short as cheaply possible;
    # returns its length (at most alen: out needs alen bytes).
    cdef size_t ua = alen - 8, ub = blen - 8
    cdef size_t n = ua if ua < ub else ub
    cdef size_t i = 0
    while i < n and a[i] == b[i]:
        i += 1
    if i < n and a[i] < 0xFF and a[i] + 1 < b[i]:
        return max_tag_key(out, a, i + 1, a[i] + 1)
    memcpy(out, a, alen)
    return alen


cdef size_t short_successor(unsigned char* out, const unsigned char* a, size_t alen) noexcept nogil:
    # out = an internal key k >= a, as short as cheaply possible (at most alen bytes).
    cdef size_t ua = alen - 8
    cdef size_t i
    for i in range(ua):
        if a[i] != 0xFF:
            return max_tag_key(out, a, i + 1, a[i] + 1)
    memcpy(out, a, alen)
    return alen


cdef bint reserve(unsigned char** buf, size_t* cap, size_t need) noexcept nogil:
    # Grow *buf to at least need bytes (doubling); False when memory runs out.
    cdef size_t n = cap[0] * 2
    cdef unsigned char* grown
    if need <= cap[0]:
        return True
    if n < need:
        n = need
    grown = <unsigned char*>realloc(buf[0], n)
    if grown == NULL:
        return False
    buf[0] = grown
    cap[0] = n
    return True


def shortest_separator_py(bytes start not None, bytes limit not None):
    """Python face of the index separator (for tests)."""
    if len(start) < 8 or len(limit) < 8:
        raise ValueError("internal keys are at least 8 bytes")
    out = PyBytes_FromStringAndSize(NULL, len(start))
    n = shortest_separator(<unsigned char*>PyBytes_AS_STRING(out),
                           <const unsigned char*>PyBytes_AS_STRING(start), len(start),
                           <const unsigned char*>PyBytes_AS_STRING(limit), len(limit))
    return out[:n]


def short_successor_py(bytes key not None):
    if len(key) < 8:
        raise ValueError("internal keys are at least 8 bytes")
    out = PyBytes_FromStringAndSize(NULL, len(key))
    n = short_successor(<unsigned char*>PyBytes_AS_STRING(out),
                        <const unsigned char*>PyBytes_AS_STRING(key), len(key))
    return out[:n]


cdef class TableBuilder:
    def __cinit__(self):
        self.last_cap = self.smallest_cap = self.scratch_cap = 256
        self.out_cap = OUTPUT_BUFFER_BYTES + 8192
        self.last = <unsigned char*>malloc(self.last_cap)
        self.smallest = <unsigned char*>malloc(self.smallest_cap)
        self.scratch = <unsigned char*>malloc(self.scratch_cap)
        self.out = <unsigned char*>malloc(self.out_cap)
        if self.last == NULL or self.smallest == NULL or self.scratch == NULL or self.out == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.last)
        free(self.smallest)
        free(self.scratch)
        free(self.out)

    def __init__(self, file, options, path=None):
        self.file = file
        self.append_to_file = file.append
        self.path = path or file.path
        # Only the env's own file is written behind its back: any other (a
        # test's fault-injecting file, a subclass) sees every append.
        self.fd = file.fileno() if type(file) is WritableFile else -1
        self.block_size = options.block_size
        self.snappy = options.compression == "snappy"
        self.data_block = BlockBuilder(options.restart_interval)
        self.index_block = BlockBuilder(1)
        bits = options.bloom_bits_per_key
        self.bloom = BloomFilterBuilder(bits) if bits else None
        self.partition_bytes = (options.block_size
                                if getattr(options, "partitioned_index", False) else 0)
        self.part_keys = []
        self.index_parts = []
        self.filter_parts = []
        self.offset = 0
        self.pending = False
        self.props = TableProperties()
        self.finished = False

    # -- the C part: no GIL needed ------------------------------------------

    cdef int append(self, const unsigned char* key, size_t key_len,
                    const unsigned char* value, size_t value_len) noexcept nogil:
        # Add one entry: 0, or -1 with self.error (see raise_error).
        cdef uint64_t tag
        cdef bint new_user_key
        cdef int r
        cdef size_t n
        cdef unsigned char handle[HANDLE_MAX_BYTES]
        if self.error:
            return -1                    # sticky: an I/O error or no memory
        if self.finished:
            return self.refuse(BUILD_FINISHED)
        if key_len < 8:
            return self.refuse(BUILD_SHORT_KEY)
        new_user_key = (self.num_entries_ == 0 or self.last_len != key_len
                        or memcmp(self.last, key, key_len - 8) != 0)
        if not reserve(&self.last, &self.last_cap, key_len):
            return self.fail(BUILD_NO_MEMORY)
        # The data block first: an entry it refuses leaves the builder as it was.
        r = self.data_block.append(key, key_len, value, value_len)
        if r < 0:
            return self.refuse(r) if r != BUILD_NO_MEMORY else self.fail(r)
        if self.pending:
            # The block before this key ends between its last key and this one.
            if not reserve(&self.scratch, &self.scratch_cap, self.last_len):
                return self.fail(BUILD_NO_MEMORY)
            n = shortest_separator(self.scratch, self.last, self.last_len, key, key_len)
            r = self.index_block.append(self.scratch, n, handle,
                                        encode_handle(handle, self.pending_offset,
                                                      self.pending_size))
            if r < 0:
                return self.fail(r)
            self.pending = False
            if self.partition_bytes and self.index_block.size_estimate() >= self.partition_bytes:
                if self.cut_partition(self.scratch, n) < 0:
                    return -1
        if ((new_user_key or self.bloom_restart) and self.bloom is not None
                and self.bloom.append(key, key_len - 8) < 0):
            return self.fail(BUILD_NO_MEMORY)
        self.bloom_restart = False
        tag = load_fixed64(key + key_len - 8)
        if self.num_entries_ == 0:
            if not reserve(&self.smallest, &self.smallest_cap, key_len):
                return self.fail(BUILD_NO_MEMORY)
            memcpy(self.smallest, key, key_len)
            self.smallest_len = key_len
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
        elif (tag & 0xFF) == KIND_EXPIRING_VALUE and value_len >= 8:
            # Lets a compaction find tables that hold expired values (kvcy/expiry_compaction.py).
            if self.earliest_expiry == 0 or load_fixed64(value) < self.earliest_expiry:
                self.earliest_expiry = load_fixed64(value)
        self.raw_key_bytes += key_len
        self.raw_value_bytes += value_len
        memcpy(self.last, key, key_len)
        self.last_len = key_len
        if self.data_block.size_estimate() >= self.block_size:
            return self.flush_block()
        return 0

    cdef int refuse(self, int code) noexcept nogil:
        # An entry refused for what it is; the builder stays usable.
        self.refused = code
        return -1

    cdef int fail(self, int code) noexcept nogil:
        # The builder cannot go on (no memory, a write failed).
        if not self.error:
            self.error = code
        return -1

    cdef int flush_block(self) noexcept nogil:
        cdef size_t n = self.data_block.size_estimate()
        if self.data_block.count_ == 0:
            return 0
        if not reserve(&self.scratch, &self.scratch_cap, n):
            return self.fail(BUILD_NO_MEMORY)
        self.data_block.finish_into(self.scratch)
        if self.emit_block(self.scratch, n, self.snappy, &self.pending_offset,
                           &self.pending_size) < 0:
            return -1
        self.pending = True
        self.raw_data_bytes += n
        self.data_blocks += 1
        self.data_block.clear()
        return 0

    cdef int cut_partition(self, const unsigned char* key, size_t n) noexcept nogil:
        # End the index partition (key: its last separator) and the filter
        # partition of the same data blocks.  Once per partition_bytes of
        # index, so taking the GIL here costs nothing that matters.
        with gil:
            try:
                self.part_keys.append(PyBytes_FromStringAndSize(<const char*>key, n))
                self.index_parts.append(self.index_block.finish())
                self.filter_parts.append(self.bloom.finish() if self.bloom is not None else None)
            except MemoryError:
                return self.fail(BUILD_NO_MEMORY)
        self.index_block.clear()
        # A user key whose entries straddle the cut must be in both filters.
        self.bloom_restart = True
        return 0

    cdef int emit_block(self, const unsigned char* raw, size_t n, bint try_snappy,
                        uint64_t* offset, uint64_t* size) noexcept nogil:
        # Add a block to the output: contents (snappy when it saves at least
        # an eighth, as table_format.compress_block decides), compression
        # byte, masked CRC32C.  Its handle goes to *offset, *size.
        cdef size_t clen = 0, cap
        cdef unsigned char ctype = NO_COMPRESSION_C
        cdef unsigned char* dst
        cdef uint32_t crc
        try_snappy = try_snappy and n > 64
        cap = (snappy_max_compressed_length(n) if try_snappy else n) + TRAILER
        if not reserve(&self.out, &self.out_cap, self.out_len + cap):
            return self.fail(BUILD_NO_MEMORY)
        dst = self.out + self.out_len
        if try_snappy:
            clen = snappy_compress(raw, n, dst)
            if clen != 0 and clen <= n - n // 8:
                ctype = SNAPPY_COMPRESSION_C
        if ctype == NO_COMPRESSION_C:
            memcpy(dst, raw, n)
            clen = n
        dst[clen] = ctype
        crc = crc32c_extend(crc32c_extend(0, dst, clen), dst + clen, 1)
        put_fixed32(dst + clen + 1, crc32c_mask(crc))
        offset[0] = self.offset
        size[0] = clen
        self.out_len += clen + TRAILER
        self.offset += clen + TRAILER
        if self.fd < 0 or self.out_len >= OUTPUT_BUFFER_BYTES:
            return self.drain()
        return 0

    cdef int drain(self) noexcept nogil:
        # Write the output buffer to the file.
        cdef size_t done = 0
        cdef ssize_t r
        if self.out_len == 0:
            return 0
        if self.fd < 0:
            with gil:
                try:
                    self.append_to_file(PyBytes_FromStringAndSize(<const char*>self.out,
                                                                  self.out_len))
                except BaseException as exc:
                    self.exception = exc
                    self.out_len = 0
                    return self.fail(BUILD_PYTHON_ERROR)
            self.out_len = 0
            return 0
        while done < self.out_len:
            r = write(self.fd, self.out + done, self.out_len - done)
            if r < 0 and errno == EINTR:
                continue
            if r <= 0:
                self.write_errno = errno if r < 0 else ENOSPC
                self.written += done
                self.out_len = 0
                return self.fail(BUILD_WRITE_ERROR)
            done += <size_t>r
        self.written += done
        self.out_len = 0
        return 0

    # -- the Python face ----------------------------------------------------

    cdef int raise_error(self) except -1:
        # Raise what append() or flush_block() recorded (GIL held).
        cdef int code = self.error
        self.sync_size()
        if not code:
            code = self.refused
            self.refused = 0
        if code == BUILD_FINISHED:
            raise ProgrammingError("TableBuilder.add() after finish()")
        if code == BUILD_SHORT_KEY:
            raise ValueError("internal keys are at least 8 bytes")
        if code == BUILD_TOO_BIG:
            raise ValueError("table %s: an entry would make a block exceed 4 GiB" % self.path)
        if code == BUILD_OUT_OF_ORDER:
            raise ProgrammingError("table %s: key added out of order after %r" % (
                self.path, PyBytes_FromStringAndSize(<const char*>self.last, self.last_len)))
        if code == BUILD_WRITE_ERROR:
            exc = OSError(self.write_errno, "")
            raise io_error("append to", self.path, exc) from exc
        if code == BUILD_PYTHON_ERROR:
            raise self.exception
        raise MemoryError()

    cdef void sync_size(self):
        # Count bytes written through the descriptor in the file object's size.
        if self.written:
            self.file.size += self.written
            self.written = 0

    cdef int add_raw(self, const unsigned char* key, size_t key_len,
                     const unsigned char* value, size_t value_len) except -1:
        if self.append(key, key_len, value, value_len) < 0:
            self.raise_error()
        return 0

    def add(self, ikey, value):
        """Add one entry (internal key, value); keys strictly increasing."""
        cdef const unsigned char[::1] k = ikey
        cdef const unsigned char[::1] v = value
        self.add_raw(&k[0] if k.shape[0] else <const unsigned char*>"", k.shape[0],
                     &v[0] if v.shape[0] else <const unsigned char*>"", v.shape[0])

    def add_memtable(self, MemTable mem not None):
        """Add every entry of mem in order (the flush of a memtable), without the
        GIL.  REQUIRES: mem is immutable (no writer adds to it meanwhile)."""
        cdef SkipNode* node = mem.table.first()
        cdef int r = 0
        with nogil:
            while node != NULL:
                r = self.append(node.key, node.key_len + 8, node_value(node), node.value_len)
                if r < 0:
                    break
                node = node.next[0]
        if r < 0:
            self.raise_error()

    cdef int write_block(self, bytes raw, bint try_snappy, uint64_t* offset,
                         uint64_t* size) except -1:
        cdef int r
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(raw)
        cdef size_t n = <size_t>PyBytes_GET_SIZE(raw)
        with nogil:
            r = self.emit_block(p, n, try_snappy, offset, size)
        if r < 0:
            self.raise_error()
        return 0

    def finish(self):
        """Write filter, properties, index and footer; return the file size."""
        cdef uint64_t f_off = 0, f_size = 0, p_off, p_size, i_off, i_size
        cdef unsigned char handle[HANDLE_MAX_BYTES]
        cdef size_t n
        cdef int r
        if self.finished:
            raise ProgrammingError("TableBuilder.finish() called twice")
        if self.error:
            self.raise_error()
        with nogil:
            r = self.flush_block()
        if r < 0:
            self.raise_error()
        props = self.props
        props.num_entries = self.num_entries_
        props.num_deletions = self.num_deletions
        props.earliest_expiry = self.earliest_expiry
        props.raw_key_bytes = self.raw_key_bytes
        props.raw_value_bytes = self.raw_value_bytes
        props.raw_data_bytes = self.raw_data_bytes
        props.data_blocks = self.data_blocks
        props.smallest_sequence = self.smallest_seq
        props.largest_sequence = self.largest_seq
        props.stored_data_bytes = self.offset
        props.smallest = (PyBytes_FromStringAndSize(<const char*>self.smallest, self.smallest_len)
                          if self.num_entries_ else b"")
        props.largest = PyBytes_FromStringAndSize(<const char*>self.last, self.last_len)
        if self.pending:
            if not reserve(&self.scratch, &self.scratch_cap, self.last_len):
                raise MemoryError()
            n = short_successor(self.scratch, self.last, self.last_len)
            self.index_block.add_raw(self.scratch, n, handle,
                                     encode_handle(handle, self.pending_offset,
                                                   self.pending_size))
            self.pending = False
            if self.part_keys and self.cut_partition(self.scratch, n) < 0:
                self.raise_error()
        version = TABLE_FORMAT_VERSION
        if self.part_keys:
            # Partitioned (format version 2): the properties, the partitions,
            # then the top-level index, whose entries map each partition's
            # last separator to its index and filter partitions' handles.
            # The properties come first so that the data blocks end where a
            # block that is not a data block starts, as in version 1 (repair
            # finds the data blocks of a table whose index is lost that way).
            self.write_block(props.encode(), False, &p_off, &p_size)
            top = self.write_partitions()
            self.write_block(top, self.snappy, &i_off, &i_size)
            version = PARTITIONED_FORMAT_VERSION
        else:
            if self.bloom is not None:
                self.write_block(self.bloom.finish(), False, &f_off, &f_size)
            self.write_block(props.encode(), False, &p_off, &p_size)
            self.write_block(self.index_block.finish(), self.snappy, &i_off, &i_size)
        footer = Footer(BlockHandle(i_off, i_size), BlockHandle(f_off, f_size),
                        BlockHandle(p_off, p_size), version).encode()
        if not reserve(&self.out, &self.out_cap, self.out_len + len(footer)):
            raise MemoryError()
        memcpy(self.out + self.out_len, PyBytes_AS_STRING(footer), len(footer))
        self.out_len += len(footer)
        self.offset += len(footer)
        with nogil:
            r = self.drain()
        if r < 0:
            self.raise_error()
        self.sync_size()
        self.finished = True
        return self.offset

    cdef bytes write_partitions(self):
        # Write every filter and index partition; the top-level index block.
        cdef uint64_t f_off, f_size, i_off, i_size
        cdef unsigned char value[4 * HANDLE_MAX_BYTES]
        cdef size_t n
        cdef BlockBuilder top = BlockBuilder(1)
        cdef bytes key
        for key, index_part, filter_part in zip(self.part_keys, self.index_parts,
                                                self.filter_parts):
            f_off = f_size = 0
            if filter_part is not None:
                self.write_block(filter_part, False, &f_off, &f_size)
            # Raw, as filter partitions are: a reader of a mapped table
            # searches it where it lies (kvcy/_table_index.pyx).
            self.write_block(index_part, False, &i_off, &i_size)
            n = encode_handle(value, i_off, i_size)
            n += encode_handle(value + n, f_off, f_size)
            top.add_raw(<const unsigned char*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key),
                        value, n)
        self.part_keys = self.index_parts = self.filter_parts = None
        return top.finish()

    @property
    def num_entries(self):
        return self.num_entries_

    def file_size(self):
        return self.offset
