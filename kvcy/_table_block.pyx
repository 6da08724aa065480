# cython: language_level=3, embedsignature=True
"""Reading one block of a table file, in C without the GIL.

table_read_block(t, offset, size) checks the handle against the file's data
part, then reads the block's size + 5 bytes: straight from the table's
mapping when it has one (kvcy/_mapped_file.h: LevelDB maps tables on 64-bit
hosts too), else with pread into a scratch buffer.  decode_block checks the
CRC32C of contents and compression byte, decompresses (snappy) or copies the
contents into a new block cache handle (one allocation with the handle) and
checks the restart array, so no cursor walks an unchecked block; the handle
is then inserted into the block cache (kvcy/_block_cache.pyx) and returned
pinned.  A failure is a ReadError code (kvcy/_table_block.pxd), never an
exception: kvcy._table.Table.read_error words it at the boundary.

Mapped reads.  Touching a page past the end of a file cut short behind
kvcy's back raises SIGBUS; every read of a mapping runs under map_run (kvcy/_mapped_file.pyx),
whose jump target the SIGBUS handler returns to, so the read fails as
"truncated" instead.  The handler, its per-thread jump target and every
mapped read live in this one module: the header's statics are per module.

Thread-safety: every function may run in any thread without the GIL,
except table_map/table_unmap (GIL held: they keep the count of mappings).
"""
from libc.errno cimport errno
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport calloc, malloc, free
from libc.string cimport memcpy
from posix.unistd cimport pread
from posix.stat cimport fstat, struct_stat

from kvcy._mapped_file cimport MAP_FAULT, map_install, map_run, map_open, map_close

from kvcy._block cimport TRAILER_OK, TRAILER_NOT_INCREASING, block_check_trailer
from kvcy._block_cache cimport (CacheHandle, cache_lookup, cache_insert, cache_release,
                                handle_alloc)
from kvcy._coding cimport load_fixed32
from kvcy._crc32c cimport crc32c_extend, crc32c_unmask
from kvcy._snappy cimport snappy_uncompressed_length, snappy_uncompress

from kvcy import table_format as _format

cdef uint64_t FOOTER_BYTES = _format.FOOTER_BYTES
cdef uint64_t TRAILER_BYTES = _format.BLOCK_TRAILER_BYTES
cdef uint64_t MAX_BLOCK_BYTES = _format.MAX_BLOCK_BYTES
cdef int NO_COMPRESSION = _format.NO_COMPRESSION
cdef int SNAPPY_COMPRESSION = _format.SNAPPY_COMPRESSION

# Tables read through a mapping (kvcy/_mapped_file.h); past this many, new
# tables use pread, which keeps the process well inside the kernel's map
# count limit (vm.max_map_count, 65530 by default) at any database size.
cdef Py_ssize_t MAX_MAPPED_TABLES = 4096
cdef Py_ssize_t mapped_tables = 0


def mapped_table_count():
    """How many open tables are read through a mapping (for stats and tests)."""
    return mapped_tables


def set_max_mapped_tables(Py_ssize_t n):
    """Map at most n tables from now on (tables past it use pread); returns
    the previous limit.  For tests and for hosts with a low map count."""
    global MAX_MAPPED_TABLES
    previous, MAX_MAPPED_TABLES = MAX_MAPPED_TABLES, n
    return previous

cdef void table_map(TableReader* t) noexcept:
    # On any failure (no room, an odd file system) the table keeps using pread.
    global mapped_tables
    t.map = NULL
    t.part_state = NULL
    if t.fd < 0 or mapped_tables >= MAX_MAPPED_TABLES or map_install() != 0:
        return
    t.map = map_open(t.fd, t.file_size)
    if t.map != NULL:
        mapped_tables += 1
        if t.partitioned:
            # Without it (no memory) partitions are read through the cache.
            t.part_state = <unsigned char*>calloc(part_state_bytes(t.index_restarts), 1)


cdef void table_unmap(TableReader* t) noexcept:
    global mapped_tables
    if t.map != NULL:
        map_close(t.map, t.file_size)
        t.map = NULL
        mapped_tables -= 1
    free(t.part_state)
    t.part_state = NULL


cdef bint table_handle_ok(TableReader* t, uint64_t offset, uint64_t size,
                          ReadError* err) noexcept nogil:
    cdef uint64_t limit = t.file_size - FOOTER_BYTES
    err.offset = offset
    err.size = size
    if offset > limit or limit - offset < TRAILER_BYTES or size > limit - offset - TRAILER_BYTES \
            or size > MAX_BLOCK_BYTES:
        read_fail(err, READ_BAD_HANDLE, 0, 0)
        return False
    return True


cdef int check_stored_block(const unsigned char* src, uint64_t size, ReadError* err) noexcept nogil:
    cdef int compression = src[size]
    cdef uint32_t crc = crc32c_extend(crc32c_extend(0, src, <size_t>size), src + size, 1)
    if crc32c_unmask(load_fixed32(src + size + 1)) != crc:
        return read_fail(err, READ_CHECKSUM, 0, 0)
    if compression == NO_COMPRESSION:
        return 0
    if compression == SNAPPY_COMPRESSION:
        return 1
    return read_fail(err, READ_UNKNOWN_COMPRESSION, compression, 0)


cdef int check_block_trailer(const unsigned char* data, size_t n, uint32_t* restarts,
                             uint32_t* num, ReadError* err) noexcept nogil:
    cdef uint32_t index = 0, bad = 0
    cdef int code = block_check_trailer(data, n, restarts, num, &index, &bad)
    if code == TRAILER_OK:
        return 0
    err.a = n
    err.b = num[0]
    err.c = index
    err.d = bad
    # The message of TRAILER_NOT_INCREASING names the offset before it.
    err.e = (load_fixed32(data + n - 8 - 4 * <size_t>num[0] + 4 * <size_t>index)
             if code == TRAILER_NOT_INCREASING else 0)
    return read_fail(err, READ_TRAILER, code, n)


cdef void table_mapped_failure(TableReader* t, uint64_t offset, size_t n, int rc,
                               ReadError* err) noexcept nogil:
    cdef struct_stat st
    if rc == MAP_FAULT:
        read_fail(err, READ_TRUNCATED, 0, 0)
    if fstat(t.fd, &st) == 0 and <uint64_t>st.st_size < offset + n:
        # The bytes past a shortened file's end read as zeros up to the
        # page's end, and whatever check met them first failed (a checksum,
        # a filter's probe count, a restart array): name the cause, as
        # pread's short read would.
        read_fail(err, READ_TRUNCATED, 0,
                  <uint64_t>st.st_size - offset if <uint64_t>st.st_size > offset else 0)


cdef struct BlockDecode:
    # One block to check and decode (decode_block), passed through
    # map_run when src lies in a mapping.
    TableReader* t
    const unsigned char* src     # the block's size + 5 bytes
    uint64_t size
    uint64_t offset
    CacheHandle* h               # allocated by decode_block; the caller frees
                                 # it on failure (a SIGBUS may leave it set)
    ReadError* err
    bint raw                     # no restart array to check (a filter partition)


cdef int decode_block(void* arg) noexcept nogil:
    # Check the CRC32C and compression byte of d.src, decompress or copy it
    # into a new handle and check its restart array: 0 with d.h filled, or
    # -1 with d.err set.  Allocates nothing while it reads src (so a jump out
    # of a read of a cut mapping leaks nothing but d.h, which the caller owns).
    cdef BlockDecode* d = <BlockDecode*>arg
    cdef const unsigned char* src = d.src
    cdef uint64_t size = d.size
    cdef ReadError* err = d.err
    cdef uint32_t restarts = 0, num = 0
    cdef size_t raw_len
    cdef int compressed = check_stored_block(src, size, err)
    cdef CacheHandle* h
    if compressed < 0:
        return -1
    if not compressed:
        raw_len = <size_t>size
    else:
        if snappy_uncompressed_length(src, <size_t>size, &raw_len) != 0:
            raw_len = MAX_BLOCK_BYTES + 1
        if raw_len > MAX_BLOCK_BYTES:
            return read_fail(err, READ_BAD_LENGTH, 0, raw_len)
    h = handle_alloc(raw_len)
    if h == NULL:
        return read_fail(err, READ_NO_MEMORY, 0, 0)
    d.h = h
    if not compressed:
        memcpy(h.data, src, raw_len)
    elif snappy_uncompress(src, <size_t>size, h.data, raw_len) != 0:
        return read_fail(err, READ_DECOMPRESS, 0, 0)
    if d.raw:
        return 0
    if check_block_trailer(h.data, raw_len, &restarts, &num, err) < 0:
        return -1
    h.restarts = restarts
    h.num_restarts = num
    return 0


cdef CacheHandle* table_cached_block(TableReader* t, uint64_t offset,
                                     bint raw=False) noexcept nogil:
    # The pinned block at offset if the block cache has it as the kind asked
    # for (a checked block of entries has at least one restart, a raw one
    # none), else NULL.
    cdef CacheHandle* h
    if t.cache == NULL:
        return NULL
    h = cache_lookup(t.cache, t.number, offset)
    if h != NULL and (h.num_restarts == 0) != raw:
        cache_release(h)
        return NULL
    return h


cdef CacheHandle* table_read_block(TableReader* t, uint64_t offset, uint64_t size,
                                   ReadError* err, bint raw=False) noexcept nogil:
    # Read the block at (offset, size), check it and cache it: the pinned
    # handle, or NULL with err (READ_NEEDS_GIL when fd < 0).  A mapped table
    # is checked and decompressed straight from its mapping; otherwise the
    # block is read with pread into a scratch buffer first.
    cdef size_t n, got = 0
    cdef ssize_t r
    cdef unsigned char* buf = NULL
    cdef BlockDecode d
    cdef int rc
    if not table_handle_ok(t, offset, size, err):
        return NULL
    if t.fd < 0:
        read_fail(err, READ_NEEDS_GIL, 0, 0)
        return NULL
    n = <size_t>size + TRAILER_BYTES
    d.t = t
    d.size = size
    d.offset = offset
    d.h = NULL
    d.err = err
    d.raw = raw
    if t.map != NULL:
        # The bounds above hold for the mapping (file_size bytes); a file cut
        # short behind kvcy's back reads as truncated, not as a crash.
        d.src = t.map + offset
        rc = map_run(decode_block, &d)
        if rc != 0:
            table_mapped_failure(t, offset, n, rc, err)
    else:
        buf = <unsigned char*>malloc(n)
        if buf == NULL:
            read_fail(err, READ_NO_MEMORY, 0, 0)
            return NULL
        while got < n:
            r = pread(t.fd, buf + got, n - got, <long>(offset + got))
            if r < 0:
                if errno == 4:               # EINTR
                    continue
                free(buf)
                read_fail(err, READ_IO, errno, 0)
                return NULL
            if r == 0:
                break
            got += <size_t>r
        d.h = table_decode_buffer(t, buf, got, offset, size, err, raw)
        free(buf)
        return d.h
    return decoded_block(t, &d, rc)


cdef CacheHandle* decoded_block(TableReader* t, BlockDecode* d, int rc) noexcept nogil:
    # decode_block's result rc as a pinned, cached handle, or NULL.
    if rc != 0:
        if d.h != NULL:
            free(d.h)                        # detached, never shared
        return NULL
    if t.cache == NULL:
        return d.h                           # detached: the caller's release frees it
    return cache_insert(t.cache, t.number, d.offset, d.h)


cdef CacheHandle* table_decode_buffer(TableReader* t, const unsigned char* buf, size_t got,
                                      uint64_t offset, uint64_t size,
                                      ReadError* err, bint raw=False) noexcept nogil:
    # The block's size + 5 bytes read into buf (got of them), checked,
    # decoded and cached: the pinned handle, or NULL with err.
    cdef BlockDecode d
    if got != <size_t>size + TRAILER_BYTES:
        read_fail(err, READ_TRUNCATED, 0, got)
        return NULL
    d.t = t
    d.src = buf
    d.size = size
    d.offset = offset
    d.h = NULL
    d.err = err
    d.raw = raw
    return decoded_block(t, &d, decode_block(&d))
