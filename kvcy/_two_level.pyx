# cython: language_level=3, embedsignature=True
"""TwoLevelIterator: an index whose entries each lead to a child iterator.

One concept (LevelDB's TwoLevelIterator) in two uses:
  * TableIterator(table): a table's entries.  The index is the table's index
    block (separator key -> encoded block handle); a child is a data block
    (kvcy._table.Table.block_for_handle, in C: the C block cache, or pread,
    check and decompress; any other table object is asked through its
    Python method block_from_index_value(handle)).  The same block is not
    loaded twice in a row.
  * LevelIterator(files, open_table_iterator): one level L1+ of sorted,
    disjoint files (FileMetaData with .smallest/.largest internal keys).
    The index is the file list, searched by largest key; a child is a
    file's iterator, opened (open_table_iterator(meta), for example
    TableCache.iterator) only when the iteration reaches the file.  The last
    LEVEL_RECENT_ITERATORS opened are kept (without their data blocks),
    since random seeks revisit them: opening one costs more than a block
    read from the cache.

The base class moves the index and the child together: the per-entry path
(key, value, next and prev inside a child) is C only; crossing into the next
child, in either direction, skips empty children.

Errors are sticky: a corrupt block, a failed read, a bad handle or a child
that raised leaves the iterator invalid; status() returns the error and
every later move raises it again.  A TableIterator restates corruption with
the path of its table.

Thread-safety: one thread at a time; tables and files may be shared.
"""
cimport cython
from libc.stdint cimport uint64_t
from libc.string cimport memcmp, memcpy
from cpython.bytes cimport (PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE,
                            PyBytes_CheckExact)
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE

from kvcy._block cimport Block, BlockIterator, cursor_parse_next
from kvcy._coding cimport load_fixed64
from kvcy._dbformat cimport TAG_BYTES, compare_internal
from kvcy._iterator cimport InternalIterator
from kvcy._table cimport Table
from kvcy.errors import CorruptionError


cdef class TwoLevelIterator(InternalIterator):
    """Base of TableIterator and LevelIterator; not used on its own."""

    def __cinit__(self, *args, **kwargs):
        if type(self) is TwoLevelIterator:
            raise TypeError("TwoLevelIterator is the base class of TableIterator and "
                            "LevelIterator; make one of those")

    # -- per-entry path: C only ---------------------------------------------

    cdef bint is_valid(self) noexcept:
        return self.data_iter is not None and self.data_iter.is_valid()

    cdef const unsigned char* key_ptr(self) noexcept:
        return self.data_iter.key_ptr()

    cdef size_t key_len(self) noexcept:
        return self.data_iter.key_len()

    cdef const unsigned char* value_ptr(self) noexcept:
        return self.data_iter.value_ptr()

    cdef size_t value_len(self) noexcept:
        return self.data_iter.value_len()

    cdef int c_next(self) except -1:
        # A child that raises has latched its error; c_status() picks it up.
        if self.data_iter is None or not self.data_iter.is_valid():
            return self.raise_invalid("next")
        self.data_iter.c_next()
        if self.data_iter.is_valid():
            return 0
        return self.skip_empty_forward()

    cdef int c_prev(self) except -1:
        if self.data_iter is None or not self.data_iter.is_valid():
            return self.raise_invalid("prev")
        self.data_iter.c_prev()
        if self.data_iter.is_valid():
            return 0
        return self.skip_empty_backward()

    # -- the index (overridden) ---------------------------------------------

    cdef bint index_valid(self) noexcept:
        return False

    cdef int index_seek_to_first(self) except -1:
        return 0

    cdef int index_seek_to_last(self) except -1:
        return 0

    cdef int index_seek(self, const unsigned char* target, size_t n) except -1:
        return 0

    cdef int index_next(self) except -1:
        return 0

    cdef int index_prev(self) except -1:
        return 0

    cdef object index_status(self):
        return None

    cdef int load_child(self) except -1:
        self.data_iter = None
        return 0

    cdef void drop_child(self):
        self.data_iter = None

    cdef object restate(self, object exc):
        return exc

    # -- child changes and seeks: may call into Python ----------------------

    cdef object c_status(self):
        cdef object status
        if self.status_ is None:
            status = self.index_status()
            if status is None and self.data_iter is not None:
                status = self.data_iter.c_status()
            if status is not None:
                self.status_ = self.restate(status)
        return self.status_

    cdef int fail_reset(self, object exc) except -1:
        # Drop the child, latch exc (the first error wins) and raise it.
        self.drop_child()
        return self.fail(self.restate(exc))

    cdef int skip_empty_forward(self) except -1:
        # The child ran off its end: on to the next child that has an entry.
        try:
            while self.data_iter is None or not self.data_iter.is_valid():
                if not self.index_valid():
                    self.data_iter = None
                    return 0
                self.index_next()
                self.load_child()
                if self.data_iter is not None:
                    self.data_iter.c_seek_to_first()
        except Exception as exc:
            return self.fail_reset(exc)
        return 0

    cdef int skip_empty_backward(self) except -1:
        try:
            while self.data_iter is None or not self.data_iter.is_valid():
                if not self.index_valid():
                    self.data_iter = None
                    return 0
                self.index_prev()
                self.load_child()
                if self.data_iter is not None:
                    self.data_iter.c_seek_to_last()
        except Exception as exc:
            return self.fail_reset(exc)
        return 0

    cdef int c_seek_to_first(self) except -1:
        if self.c_status() is not None:
            return self.fail_reset(self.status_)
        try:
            self.index_seek_to_first()
            self.load_child()
            if self.data_iter is not None:
                self.data_iter.c_seek_to_first()
        except Exception as exc:
            return self.fail_reset(exc)
        return self.skip_empty_forward()

    cdef int c_seek_to_last(self) except -1:
        if self.c_status() is not None:
            return self.fail_reset(self.status_)
        try:
            self.index_seek_to_last()
            self.load_child()
            if self.data_iter is not None:
                self.data_iter.c_seek_to_last()
        except Exception as exc:
            return self.fail_reset(exc)
        return self.skip_empty_backward()

    cdef int c_seek(self, const unsigned char* target, size_t n) except -1:
        if self.c_status() is not None:
            return self.fail_reset(self.status_)
        if n < TAG_BYTES:
            raise ValueError("seek target must be an internal key (user key + 8-byte tag)")
        try:
            self.index_seek(target, n)
            self.load_child()
            if self.data_iter is not None:
                self.data_iter.c_seek(target, n)
        except Exception as exc:
            return self.fail_reset(exc)
        return self.skip_empty_forward()


@cython.final
cdef class TableIterator(TwoLevelIterator):
    """Entries of a table: index block, then data blocks (Python face: InternalIterator)."""

    def __cinit__(self, table, bint partitions=False):
        # partitions=True: the entries of a partitioned table's index (its
        # top-level index leads to the index partitions), which is what a
        # TableIterator over such a table uses as its index.
        index = table.index
        if not isinstance(index, Block):
            raise TypeError("table.index must be a kvcy._block.Block, not %s"
                            % type(index).__name__)
        self.table = table
        self.partitions = partitions
        if not partitions and type(table) is Table and (<Table>table).r.partitioned:
            self.index_iter = TableIterator(table, True)
        else:
            self.index_iter = BlockIterator(index)
        self.data_iter = None
        self.data_handle_len = 0
        # 0 (unknown, or a TableWriter file's sequence 0): never skipped.
        self.largest_sequence = getattr(getattr(table, "properties", None),
                                        "largest_sequence", 0) or 0

    cdef int c_skip_older(self, const unsigned char* target, size_t n,
                          uint64_t sequence) except -1:
        # Every entry of the table is older than `sequence` when its newest is.
        cdef const unsigned char* k
        cdef size_t klen
        if self.largest_sequence == 0 or self.largest_sequence >= sequence or not self.is_valid():
            return 0
        k = self.key_ptr()
        klen = self.key_len()
        if compare_internal(k, klen - TAG_BYTES, load_fixed64(k + klen - TAG_BYTES),
                            target, n - TAG_BYTES, load_fixed64(target + n - TAG_BYTES)) >= 0:
            return 0
        self.c_seek(target, n)
        return 1

    cdef int c_next(self) except -1:
        # The common step, inside a block, without a try block (which costs
        # an exception-state save per entry); block ends and errors go the
        # general way.
        cdef BlockIterator d
        cdef int r
        if self.data_iter is not None:
            d = <BlockIterator>self.data_iter     # load_child only makes BlockIterators
            if d.c.current < d.c.restarts and not d.c.error:
                r = cursor_parse_next(&d.c)
                if r > 0:
                    return 0
                if r == 0:
                    return self.skip_empty_forward()
                try:
                    d.fail_cursor()              # stopped on damage: latch it as step() does
                except CorruptionError as exc:
                    return self.fail_reset(exc)
        return self.step(True)

    cdef int c_prev(self) except -1:
        return self.step(False)

    cdef int step(self, bint forward) except -1:
        # As the base's c_next/c_prev, but a block's corruption is latched
        # here, named with the table.
        if self.data_iter is None or not self.data_iter.is_valid():
            return self.raise_invalid("next" if forward else "prev")
        try:
            if forward:
                self.data_iter.c_next()
            else:
                self.data_iter.c_prev()
        except CorruptionError as exc:
            return self.fail_reset(exc)
        if self.data_iter.is_valid():
            return 0
        return self.skip_empty_forward() if forward else self.skip_empty_backward()

    cdef bint index_valid(self) noexcept:
        return self.index_iter.is_valid()

    cdef int index_seek_to_first(self) except -1:
        return self.index_iter.c_seek_to_first()

    cdef int index_seek_to_last(self) except -1:
        return self.index_iter.c_seek_to_last()

    cdef int index_seek(self, const unsigned char* target, size_t n) except -1:
        return self.index_iter.c_seek(target, n)

    cdef int index_next(self) except -1:
        return self.index_iter.c_next()

    cdef int index_prev(self) except -1:
        return self.index_iter.c_prev()

    cdef object index_status(self):
        return self.index_iter.c_status()

    cdef void drop_child(self):
        self.data_iter = None
        self.data_handle_len = 0

    cdef object restate(self, object exc):
        # Corruption is restated with the table it was found in.
        cdef str path
        if isinstance(exc, CorruptionError):
            path = str(getattr(self.table, "path", ""))
            if path and path not in str(exc):
                named = CorruptionError("table %s: %s" % (path, exc))
                named.__cause__ = exc
                return named
        return exc

    cdef int load_child(self) except -1:
        # data_iter := the data block the index iterator is on.
        cdef const unsigned char* v
        cdef size_t n
        if not self.index_iter.is_valid():
            self.drop_child()
            return 0
        v = self.index_iter.value_ptr()
        n = self.index_iter.value_len()
        if (self.data_iter is not None and n != 0 and self.data_handle_len == n
                and memcmp(self.data_handle, v, n) == 0):
            return 0                         # already loaded
        self.drop_child()
        if self.partitions:
            block = (<Table>self.table).index_partition(v, n)
        elif type(self.table) is Table:
            block = (<Table>self.table).block_for_handle(v, n)     # C block cache, no Python frame
        else:
            block = self.table.block_from_index_value(
                PyBytes_FromStringAndSize(<const char*>v, n))
        if not isinstance(block, Block):
            raise TypeError("block_from_index_value must return a kvcy._block.Block, not %s"
                            % type(block).__name__)
        self.data_iter = BlockIterator.__new__(BlockIterator, block)   # no type call
        if n <= MAX_HANDLE_BYTES:            # a longer value cannot repeat: never "already loaded"
            memcpy(self.data_handle, v, n)
            self.data_handle_len = n
        return 0


@cython.final
cdef class LevelIterator(TwoLevelIterator):
    """The entries of one level's sorted, disjoint files, each opened when reached."""

    def __cinit__(self, files, open_table_iterator):
        files = list(files)
        largest = []
        for meta in files:
            key = meta.largest
            if not PyBytes_CheckExact(key) or PyBytes_GET_SIZE(key) < TAG_BYTES:
                raise TypeError("FileMetaData.largest must be an internal key (bytes), not %r"
                                % (key,))
            largest.append(key)
        if not callable(open_table_iterator):
            raise TypeError("open_table_iterator must be callable")
        self.files = files
        self.largest = largest
        self.open_table_iterator = open_table_iterator
        self.position = -1
        self.loaded = -1
        self.data_iter = None
        self.recent = {}

    cdef bint index_valid(self) noexcept:
        return 0 <= self.position < PyList_GET_SIZE(self.files)

    cdef int index_seek_to_first(self) except -1:
        self.position = 0
        return 0

    cdef int index_seek_to_last(self) except -1:
        self.position = PyList_GET_SIZE(self.files) - 1
        return 0

    cdef int index_seek(self, const unsigned char* target, size_t n) except -1:
        self.position = self.find_file(target, n)
        return 0

    cdef int index_next(self) except -1:
        self.position += 1
        return 0

    cdef int index_prev(self) except -1:
        self.position -= 1
        return 0

    cdef void drop_child(self):
        self.data_iter = None
        self.loaded = -1
        self.recent.clear()              # an iterator that failed is never reused

    cdef int c_skip_older(self, const unsigned char* target, size_t n,
                          uint64_t sequence) except -1:
        # File by file: the current file's iterator skips if its table is
        # older than `sequence`; one that runs out hands over to the next
        # file, which must prove the same for itself.
        cdef int moved = 0
        cdef const unsigned char* k
        cdef size_t klen
        while self.data_iter is not None and self.data_iter.is_valid():
            k = self.data_iter.key_ptr()
            klen = self.data_iter.key_len()
            if compare_internal(k, klen - TAG_BYTES, load_fixed64(k + klen - TAG_BYTES),
                                target, n - TAG_BYTES, load_fixed64(target + n - TAG_BYTES)) >= 0:
                break
            try:
                if not self.data_iter.c_skip_older(target, n, sequence):
                    break
            except Exception as exc:
                return self.fail_reset(exc)
            moved = 1
            if self.data_iter.is_valid():
                break
            self.skip_empty_forward()        # nothing >= target in that file: the next one
        return moved

    cdef Py_ssize_t find_file(self, const unsigned char* target, size_t n) except -2:
        # Index of the first file whose largest key is >= target; len(files) if none.
        cdef Py_ssize_t lo = 0, hi = PyList_GET_SIZE(self.largest), mid
        cdef object key
        while lo < hi:
            mid = lo + (hi - lo) // 2
            key = <object>PyList_GET_ITEM(self.largest, mid)
            if compare_internal(<const unsigned char*>PyBytes_AS_STRING(key),
                                PyBytes_GET_SIZE(key) - TAG_BYTES,
                                load_fixed64(<const unsigned char*>PyBytes_AS_STRING(key)
                                             + PyBytes_GET_SIZE(key) - TAG_BYTES),
                                target, n - TAG_BYTES, load_fixed64(target + n - TAG_BYTES)) < 0:
                lo = mid + 1
            else:
                hi = mid
        return lo

    cdef int load_child(self) except -1:
        # data_iter := an iterator over files[position] (reused if already open).
        cdef Py_ssize_t i = self.position
        if not self.index_valid():
            self.data_iter = None
            self.loaded = -1
            return 0
        if i == self.loaded and self.data_iter is not None:
            return 0
        if isinstance(self.data_iter, TwoLevelIterator):
            # The file left behind keeps its iterator for a later seek but
            # not its data block: one pinned block per level, not per file kept.
            (<TwoLevelIterator>self.data_iter).drop_child()
        self.data_iter = None
        self.loaded = -1
        it = self.recent.get(i)
        if it is None:
            it = self.open_table_iterator(self.files[i])
            if not isinstance(it, InternalIterator):
                raise TypeError("open_table_iterator must return an InternalIterator, not %s"
                                % type(it).__name__)
            if len(self.recent) >= LEVEL_RECENT_ITERATORS:
                del self.recent[next(iter(self.recent))]     # the one opened longest ago
            self.recent[i] = it
        self.data_iter = it
        self.loaded = i
        return 0

    @property
    def num_files(self):
        return len(self.files)
