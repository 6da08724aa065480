# cython: language_level=3, embedsignature=True
"""MergingIterator and LevelIterator: iterators made of other iterators.

MergingIterator(children) yields the union of its children's entries in
internal-key order (LevelDB's merger.cc), forward and backward, switching
direction at any point.  Each child's position (valid, key pointer, tag) is
cached in a C array, refreshed only when that child moves, so a step costs
one move of one child plus a linear scan of the C array for the new
smallest (or largest) key: no Python object per entry.  A linear scan is
what LevelDB does too; the engine merges at most a few memtables, the L0
files and one LevelIterator per deeper level.

Order among children: internal keys are unique within a child, and across
children only an identical entry can repeat (the same user key, sequence and
kind).  Equal keys are ordered by child index, lower index (newer) first, so
the merged sequence is sorted by (internal key, child index) and a reverse
scan yields exactly the reverse of a forward scan.

LevelIterator(files, open_table_iterator) concatenates the sorted, disjoint
files of one level L1+ (FileMetaData with .smallest/.largest internal keys):
a seek binary-searches the files by largest key, next/prev cross file
boundaries, and a file is opened (open_table_iterator(meta), which returns
an InternalIterator, for example TableCache.iterator) only when the
iteration reaches it; the last few opened are kept for later seeks.  Files that turn out empty are skipped both ways.

Errors are sticky: a child that raised (corruption, a failed read) leaves
the iterator invalid, status() returns the error and every later move
raises it again.

Thread-safety: one thread at a time.
"""
cimport cython
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.ref cimport PyObject
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_CheckExact
from libc.stdint cimport uint64_t

from kvcy._coding cimport load_fixed64
from kvcy._dbformat cimport TAG_BYTES, compare_internal
from kvcy._iterator cimport InternalIterator


# -- the cached child state: C only -------------------------------------------

cdef inline void refresh(MergeChild* c) noexcept:
    # Re-read a child's position after it moved.
    if (<InternalIterator>c.it).is_valid():
        c.key = (<InternalIterator>c.it).key_ptr()
        c.ukey_len = (<InternalIterator>c.it).key_len() - TAG_BYTES
        c.tag = load_fixed64(c.key + c.ukey_len)
        c.valid = True
    else:
        c.key = NULL
        c.valid = False


cdef inline int compare_children(const MergeChild* a, const MergeChild* b) noexcept:
    # compare_internal of two valid children's keys.
    return compare_internal(a.key, a.ukey_len, a.tag, b.key, b.ukey_len, b.tag)


@cython.final
cdef class MergingIterator(InternalIterator):
    """The union of child InternalIterators in internal-key order (ties: lower index first)."""

    def __cinit__(self, children):
        cdef Py_ssize_t i
        children = list(children)
        seen = set()
        for child in children:
            if not isinstance(child, InternalIterator):
                raise TypeError("MergingIterator children must be InternalIterators, not %s"
                                % type(child).__name__)
            if id(child) in seen:
                raise ValueError("the same iterator appears twice among the children")
            seen.add(id(child))
        self.children = children
        self.n = len(children)
        self.kids = <MergeChild*>PyMem_Malloc(sizeof(MergeChild) * (self.n if self.n else 1))
        if self.kids == NULL:
            raise MemoryError()
        for i in range(self.n):
            self.kids[i].it = <PyObject*>children[i]
            self.kids[i].key = NULL
            self.kids[i].ukey_len = 0
            self.kids[i].tag = 0
            self.kids[i].valid = False
        self.current = NULL
        self.direction = MERGE_FORWARD

    def __dealloc__(self):
        PyMem_Free(self.kids)

    # -- per-entry path: C only ---------------------------------------------

    cdef bint is_valid(self) noexcept:
        return self.current != NULL

    cdef const unsigned char* key_ptr(self) noexcept:
        return self.current.key

    cdef size_t key_len(self) noexcept:
        return self.current.ukey_len + TAG_BYTES

    cdef const unsigned char* value_ptr(self) noexcept:
        return (<InternalIterator>self.current.it).value_ptr()

    cdef size_t value_len(self) noexcept:
        return (<InternalIterator>self.current.it).value_len()

    cdef void find_smallest(self) noexcept:
        # current := the valid child with the smallest key, the lowest index among equals.
        cdef MergeChild* smallest = NULL
        cdef MergeChild* c = self.kids
        cdef MergeChild* end = self.kids + self.n
        while c < end:
            if c.valid and (smallest == NULL or compare_children(c, smallest) < 0):
                smallest = c
            c += 1
        self.current = smallest

    cdef void find_largest(self) noexcept:
        # current := the valid child with the largest key, the highest index among equals.
        cdef MergeChild* largest = NULL
        cdef MergeChild* c = self.kids + self.n
        while c > self.kids:
            c -= 1
            if c.valid and (largest == NULL or compare_children(c, largest) > 0):
                largest = c
        self.current = largest

    cdef int c_next(self) except -1:
        cdef MergeChild* c = self.current
        if c == NULL:
            return self.raise_invalid("next")
        if self.direction != MERGE_FORWARD:
            self.switch_to_forward()
        self.current = NULL                  # stays invalid if the child raises
        (<InternalIterator>c.it).c_next()
        refresh(c)
        self.find_smallest()
        return 0

    cdef int c_prev(self) except -1:
        cdef MergeChild* c = self.current
        if c == NULL:
            return self.raise_invalid("prev")
        if self.direction != MERGE_REVERSE:
            self.switch_to_reverse()
        self.current = NULL
        (<InternalIterator>c.it).c_prev()
        refresh(c)
        self.find_largest()
        return 0

    # -- direction switches and seeks ---------------------------------------

    cdef int switch_to_forward(self) except -1:
        # Place every other child on its first entry after (key(), current's
        # index) in (internal key, child index) order.  The current child does
        # not move, so its key pointer stays valid throughout.
        cdef MergeChild* cur = self.current
        cdef MergeChild* c
        cdef Py_ssize_t i
        self.current = NULL                  # invalid if a child raises
        for i in range(self.n):
            c = &self.kids[i]
            if c == cur:
                continue
            (<InternalIterator>c.it).c_seek(cur.key, cur.ukey_len + TAG_BYTES)
            refresh(c)
            if c < cur and c.valid and compare_children(c, cur) == 0:
                # An equal key of a newer child comes before the current entry.
                (<InternalIterator>c.it).c_next()
                refresh(c)
        self.direction = MERGE_FORWARD
        self.current = cur
        return 0

    cdef int switch_to_reverse(self) except -1:
        # Place every other child on its last entry before (key(), current's index).
        cdef MergeChild* cur = self.current
        cdef MergeChild* c
        cdef Py_ssize_t i
        self.current = NULL
        for i in range(self.n):
            c = &self.kids[i]
            if c == cur:
                continue
            (<InternalIterator>c.it).c_seek(cur.key, cur.ukey_len + TAG_BYTES)
            refresh(c)
            if c < cur and c.valid and compare_children(c, cur) == 0:
                continue                     # an equal key of a newer child comes before
            if c.valid:
                (<InternalIterator>c.it).c_prev()
            else:
                (<InternalIterator>c.it).c_seek_to_last()
            refresh(c)
        self.direction = MERGE_REVERSE
        self.current = cur
        return 0

    cdef object c_status(self):
        cdef object status
        cdef Py_ssize_t i
        if self.status_ is None:
            for i in range(self.n):
                status = (<InternalIterator>self.kids[i].it).c_status()
                if status is not None:
                    self.status_ = status
                    break
        return self.status_

    # Seeks need no status check of their own: children are sticky, so a
    # child that failed before raises its error again when it is sought.

    cdef int c_seek_to_first(self) except -1:
        cdef Py_ssize_t i
        self.current = NULL
        for i in range(self.n):
            (<InternalIterator>self.kids[i].it).c_seek_to_first()
            refresh(&self.kids[i])
        self.direction = MERGE_FORWARD
        self.find_smallest()
        return 0

    cdef int c_seek_to_last(self) except -1:
        cdef Py_ssize_t i
        self.current = NULL
        for i in range(self.n):
            (<InternalIterator>self.kids[i].it).c_seek_to_last()
            refresh(&self.kids[i])
        self.direction = MERGE_REVERSE
        self.find_largest()
        return 0

    cdef int c_seek(self, const unsigned char* target, size_t n) except -1:
        cdef Py_ssize_t i
        if n < TAG_BYTES:
            raise ValueError("seek target must be an internal key (user key + 8-byte tag)")
        self.current = NULL
        for i in range(self.n):
            (<InternalIterator>self.kids[i].it).c_seek(target, n)
            refresh(&self.kids[i])
        self.direction = MERGE_FORWARD
        self.find_smallest()
        return 0

    @property
    def num_children(self):
        return self.n


# -- LevelIterator ------------------------------------------------------------

# Table iterators a LevelIterator keeps after moving on: random seeks come
# back to the same files, and reopening one costs Python calls (table cache)
# and new iterator objects.  Each kept iterator pins at most one block.
cdef enum:
    LEVEL_RECENT_ITERATORS = 8

@cython.final
cdef class LevelIterator(InternalIterator):
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
        self.index = -1
        self.data_iter = None
        self.recent = {}

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

    # -- file changes and seeks: may call into Python ------------------------

    cdef object c_status(self):
        cdef object status
        if self.status_ is None and self.data_iter is not None:
            status = self.data_iter.c_status()
            if status is not None:
                self.status_ = status
        return self.status_

    cdef int fail_reset(self, object exc) except -1:
        self.data_iter = None
        self.index = -1
        self.recent.clear()              # an iterator that failed is never reused
        return self.fail(exc)

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

    cdef int open_file(self, Py_ssize_t i) except -1:
        # data_iter := an iterator over files[i] (reused if already open); None
        # when i lies outside the level.
        if i < 0 or i >= PyList_GET_SIZE(self.files):
            self.data_iter = None
            self.index = -1
            return 0
        if i == self.index and self.data_iter is not None:
            return 0
        self.data_iter = None
        self.index = -1
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
        self.index = i
        return 0

    cdef int skip_empty_forward(self) except -1:
        try:
            while self.data_iter is not None and not self.data_iter.is_valid():
                self.open_file(self.index + 1)
                if self.data_iter is not None:
                    self.data_iter.c_seek_to_first()
        except Exception as exc:
            return self.fail_reset(exc)
        return 0

    cdef int skip_empty_backward(self) except -1:
        try:
            while self.data_iter is not None and not self.data_iter.is_valid():
                self.open_file(self.index - 1)
                if self.data_iter is not None:
                    self.data_iter.c_seek_to_last()
        except Exception as exc:
            return self.fail_reset(exc)
        return 0

    cdef int c_seek_to_first(self) except -1:
        if self.c_status() is not None:
            return self.fail_reset(self.status_)
        try:
            self.open_file(0)
            if self.data_iter is not None:
                self.data_iter.c_seek_to_first()
        except Exception as exc:
            return self.fail_reset(exc)
        return self.skip_empty_forward()

    cdef int c_seek_to_last(self) except -1:
        if self.c_status() is not None:
            return self.fail_reset(self.status_)
        try:
            self.open_file(PyList_GET_SIZE(self.files) - 1)
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
            self.open_file(self.find_file(target, n))
            if self.data_iter is not None:
                self.data_iter.c_seek(target, n)
        except Exception as exc:
            return self.fail_reset(exc)
        return self.skip_empty_forward()

    @property
    def num_files(self):
        return len(self.files)
