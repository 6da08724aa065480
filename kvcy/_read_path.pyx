# cython: language_level=3, embedsignature=True
"""ReadPath: the engine's point reads in one C call.

get(key) and get_many(keys) read, newest first: the mutable memtable, the
immutable memtables, the level-0 tables whose key range holds the key
(newest first), then at most one table per deeper level, found by binary
search over a C array of the level's largest user keys.  The first entry
found for the key decides: a value, or a tombstone (None); and a range
tombstone of the state (kvcy/_range_del.pyx) that covers the key, is
visible at the read's sequence and is newer than that entry makes it None
too.  An expiring value (kvcy/_expiry.pyx) is judged once found, with the
GIL back: at or past its expiry by the connection's clock it answers as a
tombstone of its sequence would (None; older entries stay hidden), else
with the bytes after its expiry stamp.  Only such an entry makes a read
look at the clock.

The published state (ReadState) is built by the engine whenever its
memtables or Version change (Engine._publish_state) and replaced whole, so
a reader takes one reference and sees one consistent picture; it takes the
sequence (the writer's last_sequence) only after the state, so every
compaction installed in that Version started earlier and kept every entry
visible at that sequence.

The whole search runs in C without the GIL, released once per get: the
memtables (the skiplist's readers need no lock: kvcy/_skiplist.pxd), then
for each candidate table the bloom probe, index search, block cache,
pread, CRC32C, decompression and block search (kvcy._table.table_lookup).
Only the returned value is made with the GIL held, so gets from several
threads run in parallel from the memtable to the block search.  Before it
takes the GIL back, a get spins for a few microseconds until the GIL looks
free (kvcy/_gil_spin.h): sleeping in CPython's take_gil instead costs a
scheduler wake-up, and two reader threads fall into a convoy.  The search
stops and takes the GIL back only to open a table (the table cache is
Python), for tables that read through a Python file object
(fault-injecting envs, test wrappers), and for every table while a row
cache is on (it is a cachetools cache).  While most recent gets found
their blocks cached and no other thread is taking the GIL, a get searches
with the GIL held up to its first block read (ReadPath.read; see
docs/impl.md, "Read path").

Thread-safety: any number of threads may read at once; the state is
immutable once published except for its table slots, which are filled
under the GIL the first time a reader needs them (two readers may open the
same table; the table cache returns one Table).
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.stdint cimport uint64_t

from kvcy._dbformat cimport KIND_DELETE, KIND_EXPIRING_VALUE, MAX_SEQUENCE, compare_user_keys
from kvcy._expiry cimport expiring_answer
from kvcy._memtable cimport MemTable, memtable_find
from kvcy._skiplist cimport SkipNode, node_value, load_acquire, store_release
from kvcy._table cimport (Table, TableReader, Found, ReadError, READ_OK, READ_DEFERRED,
                          DEFER_BLOCK, CacheHandle, table_lookup, table_read_block,
                          table_data_find, found_value)
from kvcy._gil_spin cimport (GIL_SPIN, gil_long_holder, gil_shared, gil_spin_init,
                             wait_gil_free)
from kvcy._latency cimport LatencyHistogram, now_ns
from kvcy._write_path cimport WritePath
from kvcy._range_del cimport RangeTombstones
from kvcy._range_del import build_range_tombstones
from kvcy._reserved cimport is_reserved_key
# For the transactions' conflict checks (the methods at the end of ReadState).
from kvcy._block_cache cimport cache_release
from kvcy._dbformat cimport KIND_FOR_SEEK, pack_tag
from kvcy._skiplist cimport next_node, skiplist_seek

from kvcy.dbformat import DELETED, as_user_bytes
from kvcy.errors import ProgrammingError

gil_spin_init()
# Whether a get waits for the GIL to look free before taking it back, and
# releases the GIL while other threads take it (_gil_spin.h).
GIL_SPIN_COMPILED = bool(GIL_SPIN)


def gil_shared_now():
    """What a get on this thread would ask next: have other threads been
    taking the GIL lately (_gil_spin.h)?  Asking counts as a get (tests)."""
    return gil_shared()


def gil_long_holder_now():
    """What a get on this thread would ask first: does another thread hold
    the GIL for long stretches, so that gets keep it (_gil_spin.h)?  Asking
    counts as a get (tests)."""
    return gil_long_holder()

# search() results besides 0 (done) and -1 (error).
cdef enum:
    SEARCH_NEEDS_GIL = 1             # slot (level, index) must be opened or read with the GIL
    PROBE_MISS = 2                   # probe(): this table holds nothing for the key


cdef inline object memtable_answer(SkipNode* n, object clock):
    # A memtable entry as get() returns it: the value, or None for a
    # tombstone or an expired value.
    cdef int kind = n.tag & 0xFF
    if kind == KIND_DELETE:
        return None
    if kind == KIND_EXPIRING_VALUE:
        return expiring_answer(node_value(n), n.value_len, clock)
    return PyBytes_FromStringAndSize(<const char*>node_value(n), n.value_len)


cdef inline void next_candidate(int* level, Py_ssize_t* index) noexcept nogil:
    # Past the table at (level, index) that lacks the key: the next level-0
    # table (newest first), or the next level, whose file search() finds.
    if level[0] == 0:
        index[0] += 1
    else:
        level[0] += 1
        index[0] = -1


@cython.final
cdef class ReadState:
    """Memtables and one Version's files, laid out for the C search."""

    def __cinit__(self, mems, version, find_table):
        cdef Py_ssize_t i = 0, n = 0
        cdef int level
        cdef FileSlot* s
        self.mems = tuple(mems)
        self.num_mems = len(self.mems)
        self.memrefs = <MemRef*>PyMem_Malloc(sizeof(MemRef) * (self.num_mems or 1))
        if self.memrefs == NULL:
            raise MemoryError()
        for i, mem in enumerate(self.mems):
            if not isinstance(mem, MemTable):
                raise TypeError("memtables must be kvcy._memtable.MemTable, not %s"
                                % type(mem).__name__)
            self.memrefs[i].head = (<MemTable>mem).table.head
            self.memrefs[i].height = &(<MemTable>mem).table.height
        i = 0
        self.version = version
        self.range_dels = build_range_tombstones(self.mems, version)
        self.find_table = find_table
        files = version.files
        self.num_levels = len(files)
        for level_files in files:
            n += len(level_files)
        self.num_slots = n
        self.metas = []
        self.keys = []
        self.tables = [None] * n
        self.slots = <FileSlot*>PyMem_Malloc(sizeof(FileSlot) * (n if n else 1))
        self.level_start = <Py_ssize_t*>PyMem_Malloc(sizeof(Py_ssize_t) * (self.num_levels + 1))
        if self.slots == NULL or self.level_start == NULL:
            raise MemoryError()
        for level in range(self.num_levels):
            self.level_start[level] = i
            for meta in files[level]:
                smallest = meta.smallest_user
                largest = meta.largest_user
                if not (PyBytes_CheckExact(smallest) and PyBytes_CheckExact(largest)):
                    raise TypeError("file key ranges must be bytes")
                self.metas.append(meta)
                self.keys.append(smallest)
                self.keys.append(largest)
                s = &self.slots[i]
                s.smallest = <const unsigned char*>PyBytes_AS_STRING(smallest)
                s.smallest_len = PyBytes_GET_SIZE(smallest)
                s.largest = <const unsigned char*>PyBytes_AS_STRING(largest)
                s.largest_len = PyBytes_GET_SIZE(largest)
                s.reader = NULL
                s.needs_gil = False
                i += 1
        self.level_start[self.num_levels] = i

    def __dealloc__(self):
        PyMem_Free(self.memrefs)
        PyMem_Free(self.slots)
        PyMem_Free(self.level_start)

    cdef int search(self, const unsigned char* key, size_t klen, uint64_t sequence,
                    int* level, Py_ssize_t* index, bint all_gil, Found* out,
                    ReadError* err) noexcept nogil:
        # Probe the candidate tables from (level, index) on: 0 with out set
        # (out.kind -1: no table holds the key), -1 with err (index names the
        # slot), or SEARCH_NEEDS_GIL with (level, index) at the slot to open or
        # read with the GIL.  index -1 at a level >= 1: not yet searched.
        cdef int L = level[0]
        cdef Py_ssize_t i = index[0], lo, hi, mid, end
        cdef FileSlot* s
        cdef int r
        out.kind = -1
        out.handle = NULL
        while L < self.num_levels:
            if L == 0:
                end = self.level_start[1]
                while i < end:
                    s = &self.slots[i]
                    if (compare_user_keys(key, klen, s.smallest, s.smallest_len) >= 0
                            and compare_user_keys(key, klen, s.largest, s.largest_len) <= 0):
                        r = self.probe(0, i, key, klen, sequence, level, index, all_gil, out, err)
                        if r != PROBE_MISS:
                            return r
                    i += 1
                L = 1
                i = -1
                continue
            if i < 0:
                # The first file whose largest key is >= key; it holds the key
                # iff its smallest key is <= key.
                lo = self.level_start[L]
                hi = self.level_start[L + 1]
                while lo < hi:
                    mid = lo + (hi - lo) // 2
                    s = &self.slots[mid]
                    if compare_user_keys(s.largest, s.largest_len, key, klen) < 0:
                        lo = mid + 1
                    else:
                        hi = mid
                if (lo == self.level_start[L + 1] or compare_user_keys(
                        self.slots[lo].smallest, self.slots[lo].smallest_len, key, klen) > 0):
                    L += 1
                    continue
                i = lo
            r = self.probe(L, i, key, klen, sequence, level, index, all_gil, out, err)
            if r != PROBE_MISS:
                return r
            L += 1
            i = -1
        return 0

    cdef inline int probe(self, int L, Py_ssize_t i, const unsigned char* key, size_t klen,
                          uint64_t sequence, int* level, Py_ssize_t* index, bint all_gil,
                          Found* out, ReadError* err) noexcept nogil:
        # Look key up in slot i (of level L): 0 found, PROBE_MISS not in this
        # table, or search()'s -1 / SEARCH_NEEDS_GIL with (level, index) set.
        cdef FileSlot* s = &self.slots[i]
        # Acquire: a reader published by open_slot comes with its needs_gil.
        cdef TableReader* reader = <TableReader*>load_acquire(<void* const*>&s.reader)
        level[0] = L
        index[0] = i
        if reader == NULL or s.needs_gil or all_gil:
            return SEARCH_NEEDS_GIL
        if table_lookup(reader, key, klen, sequence, out, err) < 0:
            return -1
        return 0 if out.kind >= 0 else PROBE_MISS

    cdef object open_slot(self, Py_ssize_t i):
        # The Table of slot i, opened through the table cache the first time.
        cdef Table table = self.tables[i]
        cdef FileSlot* s = &self.slots[i]
        if table is None:
            meta = self.metas[i]
            opened = self.find_table(meta.number, meta.file_size)   # may let other threads run
            table = self.tables[i]
            if table is None:
                # Nothing between this check and the stores releases the GIL, so a
                # slot is filled once: a Table that C readers use is never dropped.
                table = opened
                self.tables[i] = table
                s.needs_gil = table.r.fd < 0
                # Last, with a release store: C readers test it without the GIL.
                store_release(<void**>&s.reader, <void*>&table.r)
        return table

    cdef int first_pass(self, const unsigned char* key, size_t klen, uint64_t sequence,
                        uint64_t* cover, SkipNode** n, int* level, Py_ssize_t* index,
                        bint all_gil, Found* out, ReadError* err) noexcept nogil:
        # The range tombstones' cover, the memtables (n: the node found, or
        # NULL), then the tables from the start: search()'s result.
        cdef Py_ssize_t j
        if self.range_dels is not None:
            cover[0] = self.range_dels.covering(key, klen, sequence)
        for j in range(self.num_mems):
            n[0] = memtable_find(self.memrefs[j].head, self.memrefs[j].height, key, klen,
                                 sequence)
            if n[0] != NULL:
                return 0
        out.kind = -1
        if self.num_slots == 0:
            return 0
        return self.search(key, klen, sequence, level, index, all_gil, out, err)

    cdef int finish_block(self, const unsigned char* key, size_t klen, uint64_t sequence,
                          int* level, Py_ssize_t* index, bint all_gil, Found* out,
                          ReadError* err) noexcept nogil:
        # After READ_DEFERRED/DEFER_BLOCK at slot index: read the data block
        # err.offset/err.size and search it, then go on as search() would.
        cdef Py_ssize_t i = index[0]
        cdef TableReader* reader = <TableReader*>load_acquire(<void* const*>&self.slots[i].reader)
        cdef uint64_t offset = err.offset
        cdef CacheHandle* h = table_read_block(reader, offset, err.size, err)
        if h == NULL:
            return -1
        if table_data_find(reader, h, offset, key, klen,
                           pack_tag(sequence if sequence < MAX_SEQUENCE else MAX_SEQUENCE,
                                    KIND_FOR_SEEK), out, err) < 0:
            return -1
        if out.kind >= 0:
            return 0
        next_candidate(level, index)     # not in this table
        return self.search(key, klen, sequence, level, index, all_gil, out, err)

    cdef object lookup(self, object key_obj, const unsigned char* key, size_t klen,
                       uint64_t sequence, bint all_gil, object clock, bint held,
                       bint* read_block):
        # The value of key at sequence, or None (absent, deleted or expired by
        # clock).  A range tombstone newer than the entry found (and visible
        # at sequence) deletes it: `cover` is its sequence, 0 when none covers key.
        # held: search with the GIL held up to the first block read, and
        # release it only for that read: on cached data this saves handing
        # the GIL over, which costs more than the search.  Otherwise the whole
        # search runs without the GIL: one release per get.  *read_block:
        # whether the search read a data block (or deferred reading one).
        cdef SkipNode* n = NULL
        cdef Found found
        cdef ReadError err
        cdef int level = 0, r
        cdef Py_ssize_t index = 0
        cdef Table table
        cdef uint64_t cover = 0
        err.code = READ_OK
        err.read_block = False
        found.kind = -1
        if held:
            err.defer_io = True
            r = self.first_pass(key, klen, sequence, &cover, &n, &level, &index, all_gil,
                                &found, &err)
            err.defer_io = False
            if r < 0 and err.code == READ_DEFERRED:
                err.read_block = True
                err.code = READ_OK
                with nogil:
                    if err.sub == DEFER_BLOCK:
                        r = self.finish_block(key, klen, sequence, &level, &index, all_gil,
                                              &found, &err)
                    else:
                        r = self.search(key, klen, sequence, &level, &index, all_gil, &found,
                                        &err)
                    wait_gil_free()
        else:
            err.defer_io = False
            with nogil:
                r = self.first_pass(key, klen, sequence, &cover, &n, &level, &index, all_gil,
                                    &found, &err)
                wait_gil_free()
        read_block[0] = err.read_block
        if n != NULL:
            if cover > (n.tag >> 8):
                return None
            return memtable_answer(n, clock)
        while True:
            if r == 0:
                value = found_value(&found, clock)
                if found.kind >= 0 and found.sequence < cover:
                    return None
                return None if value is DELETED else value
            table = self.open_slot(index)
            if r < 0:
                raise table.read_error(&err)
            if all_gil or self.slots[index].needs_gil:
                if cover:
                    # The entry's sequence decides, and the row cache's get() hides it.
                    row = table._lookup(key_obj, sequence)
                    if row is not None:
                        if row[0] < cover or row[1] == KIND_DELETE:
                            return None
                        if row[1] == KIND_EXPIRING_VALUE:
                            return expiring_answer(
                                <const unsigned char*>PyBytes_AS_STRING(row[2]),
                                PyBytes_GET_SIZE(row[2]), clock)
                        return row[2]
                else:
                    value = table.get(key_obj, sequence, clock)
                    if value is not None:
                        return None if value is DELETED else value
                next_candidate(&level, &index)
            # else just opened: search it without the GIL
            with nogil:
                r = self.search(key, klen, sequence, &level, &index, all_gil, &found, &err)
                wait_gil_free()

    @property
    def num_files(self):
        return self.num_slots

    # -- conflict checks of transactions (kvcy/transaction.py) -----------------
    # A committing transaction asks, holding the write lock, whether anything
    # was written after its snapshot.  Sequences run on without a gap from
    # memtable to memtable, and a memtable leaves the state only together with
    # the arrival of its table, so when the oldest memtable that holds
    # anything began at since + 1 or before, every later entry is in a
    # memtable and the tables need no search: the cheap path of a short
    # transaction.

    def covers_since(self, uint64_t since):
        """True iff every entry with a sequence after `since` is in the memtables."""
        cdef Py_ssize_t j
        cdef MemTable mem
        for j in range(self.num_mems - 1, -1, -1):
            mem = <MemTable>self.mems[j]
            if mem.first_seq != 0:
                return mem.first_seq <= since + 1
        return False                     # all empty: entries live in tables only

    def written_after(self, key, uint64_t since):
        """True iff the newest entry of key (a value or a tombstone) has a
        sequence after `since`."""
        cdef SkipNode* n = NULL
        cdef Found found
        cdef ReadError err
        cdef int level = 0, r
        cdef Py_ssize_t index = 0, j
        cdef Table table
        cdef const unsigned char* kp
        cdef size_t klen
        if not PyBytes_CheckExact(key):
            key = as_user_bytes(key, "key")
        kp = <const unsigned char*>PyBytes_AS_STRING(key)
        klen = PyBytes_GET_SIZE(key)
        with nogil:
            for j in range(self.num_mems):
                n = memtable_find(self.memrefs[j].head, self.memrefs[j].height, kp, klen,
                                  MAX_SEQUENCE)
                if n != NULL:
                    break
        if n != NULL:
            return (n.tag >> 8) > since  # memtables hold the newest entries
        if self.num_slots == 0 or self.covers_since(since):
            return False
        err.code = READ_OK
        err.defer_io = False
        while True:
            with nogil:
                r = self.search(kp, klen, MAX_SEQUENCE, &level, &index, False, &found, &err)
            if r == 0:
                if found.handle != NULL:
                    cache_release(found.handle)
                return found.kind >= 0 and found.sequence > since
            table = self.open_slot(index)
            if r < 0:
                raise table.read_error(&err)
            if not self.slots[index].needs_gil:
                continue                 # just opened: search it without the GIL
            row = table._lookup(key, MAX_SEQUENCE)
            if row is not None:
                return row[0] > since
            next_candidate(&level, &index)

    def memtables_written_in(self, start, stop, uint64_t since):
        """True iff a memtable holds an entry with a user key in [start, stop)
        (None: unbounded) and a sequence after `since`.  Walks every memtable
        entry in the range."""
        cdef const unsigned char* sp = NULL
        cdef const unsigned char* tp = NULL
        cdef size_t sn = 0, tn = 0
        cdef bint has_stop = stop is not None, hit = False
        cdef SkipNode* n
        cdef Py_ssize_t j
        if start is not None:
            start = as_user_bytes(start, "start")
            sp = <const unsigned char*>PyBytes_AS_STRING(start)
            sn = PyBytes_GET_SIZE(start)
        if has_stop:
            stop = as_user_bytes(stop, "stop")
            tp = <const unsigned char*>PyBytes_AS_STRING(stop)
            tn = PyBytes_GET_SIZE(stop)
        with nogil:
            for j in range(self.num_mems):
                n = skiplist_seek(self.memrefs[j].head, self.memrefs[j].height, sp, sn,
                                  pack_tag(MAX_SEQUENCE, KIND_FOR_SEEK))
                while n != NULL:
                    if has_stop and compare_user_keys(n.key, n.key_len, tp, tn) >= 0:
                        break
                    if (n.tag >> 8) > since:
                        hit = True
                        break
                    n = next_node(n, 0)
                if hit:
                    break
        return hit


@cython.final
cdef class ReadPath:
    """get/get_many over the published ReadState; see the module docstring."""

    def __cinit__(self, WritePath writer not None, ReadState state not None):
        self.writer = writer
        self.state = state
        self.get_latency = LatencyHistogram("get", GET_TIMING_PERIOD)
        self.row_cache = False
        self.gets = 0
        self.usable = True
        self.unusable_message = "cannot operate on a closed database"
        self.clock = None

    cdef inline object read(self, ReadState state, object key, uint64_t sequence):
        # The value of key (bytes-like) in state at sequence, or None.
        if not PyBytes_CheckExact(key):
            key = as_user_bytes(key, "key")
        cdef bint read_block = False
        # On mostly cached data, release the GIL for the search only while
        # other reader threads want it: not when the GIL is not shared, nor
        # when a thread busy in Python holds it for long stretches (it would
        # take the GIL at each release and keep it for 5 ms: _gil_spin.h).
        cdef bint held = (self.block_read_share < HOLD_GIL_BELOW
                          and (gil_long_holder() or not gil_shared()))
        value = state.lookup(key, <const unsigned char*>PyBytes_AS_STRING(key),
                             PyBytes_GET_SIZE(key), sequence, self.row_cache, self.clock,
                             held, &read_block)
        # A racy update from several threads loses a step at worst.  In the
        # steady states (every get reads a block, or none does) nothing is
        # written, so reader threads on two cores do not pass the field's
        # cache line back and forth.
        if read_block:
            if self.block_read_share < 65536 - 16:
                self.block_read_share += (65536 - self.block_read_share) >> 4
        elif self.block_read_share:
            self.block_read_share -= (self.block_read_share >> 4) + 1
        return value

    def lookup(self, key, default=None):
        """Connection.get itself: the value stored under key, or default.
        Once the database has namespaces, keys in their reserved region
        (kvcy/namespace_keys.py) are never found.  Raises ProgrammingError once the connection is closed
        or forked."""
        if not self.usable:
            raise ProgrammingError(self.unusable_message)
        if not PyBytes_CheckExact(key):
            key = as_user_bytes(key, "key")
        if self.writer.reserve_namespaces and is_reserved_key(
                <const unsigned char*>PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)):
            return default
        return self.stored_lookup(key, default)

    def lookup_stored(self, bytes key not None, default=None):
        """lookup() of a stored key, which may lie in the reserved region: a
        namespace's get (kvcy/namespace.py) after adding its prefix."""
        if not self.usable:
            raise ProgrammingError(self.unusable_message)
        return self.stored_lookup(key, default)

    cdef object stored_lookup(self, object key, object default):
        cdef ReadState state = self.state       # before the sequence: see the module docstring
        cdef uint64_t started
        self.gets += 1
        if self.get_latency.should_time():
            started = now_ns()
            value = self.read(state, key, self.writer.last_sequence)
            self.get_latency.record(now_ns() - started)
        else:
            value = self.read(state, key, self.writer.last_sequence)
        return default if value is None else value

    def get(self, key, sequence=None):
        """The value of key visible at sequence (default: the latest), or None."""
        cdef ReadState state = self.state
        cdef uint64_t started
        self.gets += 1
        if self.get_latency.should_time():
            started = now_ns()
            value = self.read(state, key, self.sequence_of(sequence))
            self.get_latency.record(now_ns() - started)
            return value
        return self.read(state, key, self.sequence_of(sequence))

    def get_many(self, keys, sequence=None):
        """[get(k) for k in keys], every key read at one sequence and one state."""
        cdef ReadState state = self.state
        cdef uint64_t seq = self.sequence_of(sequence)
        cdef list out = [self.read(state, key, seq) for key in keys]
        self.gets += len(out)
        return out

    cdef inline uint64_t sequence_of(self, object sequence) except? 0:
        # The read sequence: the latest when None, else sequence clamped to the maximum.
        if sequence is None:
            return self.writer.last_sequence
        return sequence if sequence < MAX_SEQUENCE else MAX_SEQUENCE
