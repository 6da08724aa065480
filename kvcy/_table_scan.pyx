# cython: language_level=3, embedsignature=True
"""TableRun: a sorted run of tables read front to back in C without the GIL.

A compaction merges a few runs: each level-0 table is a run of its own, the
tables of a deeper level (sorted, disjoint) form one run.  run_first and
run_next step a run's RunState through every entry of every table, reading
each data block once: a block the block cache already holds is used from
there, any other is read with pread, checked (CRC32C, decompression,
trailer) and kept private to the run, so a compaction does not push the
readers' hot blocks out of the cache (LevelDB's fill_cache = false).

Every entry is checked as it is decoded (kvcy._block's cursor), including
its kind byte; any damage stops the run with RUN_READ_ERROR and a ReadError
that Table.read_error turns into the CorruptionError the rest of kvcy
raises for the same damage.  A table read through a Python file object
(fd < 0: the tests' fault-injecting env) takes the GIL for each block read.

Not thread-safe: one merge loop owns a TableRun.
"""
cimport cython
from libc.stdint cimport uint64_t
from libc.stdlib cimport malloc, free
from cpython.ref cimport PyObject

from kvcy._block cimport (BlockCursor, BLOCK_NO_MEMORY, cursor_init, cursor_free,
                          cursor_seek_to_first, cursor_parse_next)
from kvcy._block_cache cimport CacheHandle, cache_release
from kvcy._coding cimport get_varint64, load_fixed64
from kvcy._dbformat cimport KIND_VALUE, KIND_DELETE, KIND_EXPIRING_VALUE, TAG_BYTES
from kvcy._expiry cimport EXPIRY_BYTES
from kvcy._table cimport (Table, TableReader, ReadError, READ_OK, READ_NEEDS_GIL, READ_CURSOR,
                          READ_INDEX_VALUE, READ_TOP_INDEX_VALUE, READ_UNKNOWN_KIND, READ_SHORT_EXPIRING, READ_NO_MEMORY,
                          table_cached_block,
                          table_read_block)


cdef int run_fail(RunState* s, int code, bint in_index, int sub, uint64_t a) noexcept nogil:
    s.valid = False
    s.error = RUN_READ_ERROR
    s.err.code = code
    s.err.in_index = in_index
    s.err.sub = sub
    s.err.a = a
    return -1


cdef int run_cursor_fail(RunState* s, bint in_index, const BlockCursor* c) noexcept nogil:
    # A cursor stopped: corruption at its entry, or (BLOCK_NO_MEMORY) no memory.
    s.err.offset = 0 if in_index else s.block_offset
    if c.error == BLOCK_NO_MEMORY:
        return run_fail(s, READ_NO_MEMORY, in_index, 0, 0)
    return run_fail(s, READ_CURSOR, in_index, c.error, c.error_offset)


cdef void run_drop_block(RunState* s) noexcept nogil:
    if s.block != NULL:
        cursor_free(&s.data)
        cache_release(s.block)
        s.block = NULL


cdef void run_drop_part(RunState* s) noexcept nogil:
    cursor_free(&s.index)
    if s.part != NULL:
        cache_release(s.part)
        s.part = NULL


cdef CacheHandle* run_read(RunState* s, uint64_t offset, uint64_t size,
                           int in_index) noexcept nogil:
    # A block of the current table: from the block cache if there, else read
    # privately (with the GIL for a Python file object).  NULL with s.error.
    cdef CacheHandle* h
    s.err.code = READ_OK
    s.err.in_index = in_index
    h = table_cached_block(s.readers[s.current], offset)
    if h == NULL:
        h = table_read_block(&s.own, offset, size, &s.err)
    if h == NULL and s.err.code == READ_NEEDS_GIL:
        with gil:
            h = (<TableRun>s.owner).read_with_gil(offset, size, in_index)
        if h == NULL:
            s.valid = False
            s.error = RUN_PYTHON_ERROR
            return NULL
    if h == NULL:
        s.valid = False
        s.error = RUN_READ_ERROR
    return h


cdef int run_load_part(RunState* s) noexcept nogil:
    # Pin the index partition the top-level cursor is on and put the index
    # cursor on its first entry: 1, 0 (an empty partition), -1.
    cdef uint64_t parts[4]
    cdef const unsigned char* p = s.top.value
    cdef const unsigned char* limit = s.top.value + s.top.value_len
    cdef int i, r
    run_drop_part(s)
    for i in range(4):
        p = get_varint64(p, limit, &parts[i])
        if p == NULL:
            break
    if p == NULL or p != limit:
        s.err.offset = 0
        return run_fail(s, READ_TOP_INDEX_VALUE, True, 0, s.top.current)
    s.part = run_read(s, parts[0], parts[1], True)
    if s.part == NULL:
        return -1
    cursor_init(&s.index, s.part.data, s.part.restarts, s.part.num_restarts)
    r = cursor_seek_to_first(&s.index)
    if r < 0:
        r = run_cursor_fail(s, True, &s.index)
        s.err.offset = parts[0]
    return r


cdef int run_part_from(RunState* s, int r) noexcept nogil:
    # After a move of the top-level cursor that gave r: the first partition
    # from there with an entry (1), none left in the table (0), or -1.
    while True:
        if r < 0:
            s.err.offset = 0
            return run_cursor_fail(s, True, &s.top)
        if r == 0:
            return 0
        r = run_load_part(s)
        if r != 0:
            return r
        r = cursor_parse_next(&s.top) if s.top.current < s.top.restarts else 0


cdef inline int run_next_part(RunState* s) noexcept nogil:
    # The index cursor ran off its partition: on to the next one.
    return run_part_from(s, cursor_parse_next(&s.top) if s.top.current < s.top.restarts else 0)


cdef int run_open_table(RunState* s, size_t i) noexcept nogil:
    # Position the index cursor of table i on its first entry: 1, 0 (no
    # blocks), -1.
    cdef int r
    run_drop_part(s)
    cursor_free(&s.top)
    s.current = i
    s.own = s.readers[i][0]
    s.own.cache = NULL
    if s.own.partitioned:
        cursor_init(&s.top, s.own.index_base, s.own.index_restarts, s.own.index_num_restarts)
        return run_part_from(s, cursor_seek_to_first(&s.top))
    cursor_init(&s.index, s.own.index_base, s.own.index_restarts, s.own.index_num_restarts)
    r = cursor_seek_to_first(&s.index)
    if r < 0:
        return run_cursor_fail(s, True, &s.index)
    return r


cdef int run_load_block(RunState* s) noexcept nogil:
    # Read the data block the index cursor is on and position on its first
    # entry: 1, 0 (an empty block), -1.
    cdef uint64_t offset = 0, size = 0
    cdef const unsigned char* p = s.index.value
    cdef const unsigned char* limit = s.index.value + s.index.value_len
    cdef CacheHandle* h
    cdef int r
    p = get_varint64(p, limit, &offset)
    if p != NULL:
        p = get_varint64(p, limit, &size)
    if p == NULL or p != limit:
        s.err.offset = 0
        return run_fail(s, READ_INDEX_VALUE, True, 0, s.index.current)
    h = run_read(s, offset, size, False)
    if h == NULL:
        return -1
    s.block = h
    s.block_offset = offset
    cursor_init(&s.data, h.data, h.restarts, h.num_restarts)
    return cursor_seek_to_first(&s.data)


cdef int run_settle(RunState* s, int r) noexcept nogil:
    # After a data-cursor move that gave r: move on through blocks and
    # tables until an entry is found (1), the run ends (0) or it fails (-1).
    cdef int kind
    while True:
        if r < 0:
            return run_cursor_fail(s, False, &s.data)
        if r > 0:
            kind = <int>(load_fixed64(s.data.key + s.data.key_len - TAG_BYTES) & 0xFF)
            if kind == KIND_EXPIRING_VALUE and s.data.value_len < EXPIRY_BYTES:
                s.err.offset = s.block_offset
                s.err.b = s.data.value_len
                return run_fail(s, READ_SHORT_EXPIRING, False, 0, s.data.current)
            if kind != KIND_VALUE and kind != KIND_DELETE and kind != KIND_EXPIRING_VALUE:
                s.err.offset = s.block_offset
                return run_fail(s, READ_UNKNOWN_KIND, False, kind, s.data.current)
            s.valid = True
            return 1
        run_drop_block(s)
        r = cursor_parse_next(&s.index) if s.index.current < s.index.restarts else 0
        if r < 0:
            return run_cursor_fail(s, True, &s.index)
        if r == 0 and s.own.partitioned:
            r = run_next_part(s)
            if r < 0:
                return -1
        if r == 0:
            if s.current + 1 >= s.count:
                s.valid = False
                return 0
            r = run_open_table(s, s.current + 1)
            if r < 0:
                return -1
            if r == 0:
                continue
        r = run_load_block(s)
        if r < 0 and s.error:
            return -1


cdef int run_first(RunState* s) noexcept nogil:
    """Position on the run's first entry: 1, 0 (empty run), -1 (s.error)."""
    cdef int r
    if s.error:
        return -1
    run_drop_block(s)
    s.valid = False
    if s.count == 0:
        return 0
    r = run_open_table(s, 0)
    if r < 0:
        return -1
    if r > 0:
        r = run_load_block(s)
        if r < 0 and s.error:
            return -1
    return run_settle(s, r)


cdef int run_next(RunState* s) noexcept nogil:
    """Step to the next entry: 1, 0 (the run ended), -1 (s.error).
    REQUIRES: s.valid."""
    return run_settle(s, cursor_parse_next(&s.data))


@cython.no_gc_clear
cdef class TableRun:
    """A sorted run of tables (level 0: one table; deeper: a level's inputs).

    The collector must not clear `tables` or `caches` before __dealloc__
    gives back the block the run holds: it may be a block of a table's
    BlockCache, whose mutex lives in that object (as Block does)."""

    def __cinit__(self, tables):
        cdef size_t i, n = len(tables)
        cdef Table t
        self.tables = tuple(tables)
        self.s.count = n
        self.s.readers = <TableReader**>malloc((n or 1) * sizeof(TableReader*))
        self.s.tables = <void**>malloc((n or 1) * sizeof(void*))
        if self.s.readers == NULL or self.s.tables == NULL:
            raise MemoryError()
        for i in range(n):
            t = <Table?>self.tables[i]
            self.s.readers[i] = &t.r
            self.s.tables[i] = <void*>t
        self.caches = tuple([(<Table>x).block_cache for x in self.tables])
        self.s.owner = <void*>self
        self.s.error = RUN_OK
        cursor_init(&self.s.index, NULL, 0, 1)
        cursor_init(&self.s.top, NULL, 0, 1)
        cursor_init(&self.s.data, NULL, 0, 1)
        self.s.part = NULL

    def __dealloc__(self):
        run_drop_block(&self.s)
        run_drop_part(&self.s)
        cursor_free(&self.s.top)
        free(self.s.readers)
        free(self.s.tables)

    cdef CacheHandle* read_with_gil(self, uint64_t offset, uint64_t size, int in_index) noexcept:
        # The block through the table's Python file object; NULL with
        # self.exception when that fails.
        try:
            return (<Table>self.tables[self.s.current]).load_block(offset, size, in_index)
        except BaseException as exc:
            self.exception = exc
            return NULL

    cdef object error_exception(self):
        """The exception for a run stopped with s.error."""
        if self.s.error == RUN_PYTHON_ERROR:
            return self.exception
        return (<Table>self.tables[self.s.current]).read_error(&self.s.err)

    def release(self):
        """Give back the blocks the run holds (it stays where it is otherwise)."""
        run_drop_block(&self.s)
        run_drop_part(&self.s)
        self.s.valid = False

    def entries(self):
        """Every (internal key, value) of the run, in order (for tests)."""
        cdef int r = run_first(&self.s)
        out = []
        while r > 0:
            out.append((bytes(self.s.data.key[:self.s.data.key_len]),
                        bytes(self.s.data.value[:self.s.data.value_len])))
            r = run_next(&self.s)
        if r < 0:
            raise self.error_exception()
        return out
