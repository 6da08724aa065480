# cython: language_level=3, embedsignature=True
"""MergingIterator: the union of several iterators in internal-key order.

MergingIterator(children) yields the union of its children's entries in
internal-key order (LevelDB's merger.cc), forward and backward, switching
direction at any point.  Each child's position (valid, key pointer, tag) is
cached in a C array, refreshed only when that child moves, so a step costs
one move of one child plus a linear scan of the C array for the new
smallest (or largest) key: no Python object per entry.  A linear scan is
what LevelDB does too; the engine merges at most a few memtables, the L0
files and one LevelIterator (kvcy._two_level) per deeper level.

Order among children: internal keys are unique within a child, and across
children only an identical entry can repeat (the same user key, sequence and
kind).  Equal keys are ordered by child index, lower index (newer) first, so
the merged sequence is sorted by (internal key, child index) and a reverse
scan yields exactly the reverse of a forward scan.

Errors are sticky: a child that raised (corruption, a failed read) leaves
the iterator invalid, status() returns the error and every later move
raises it again.

Thread-safety: one thread at a time.
"""
cimport cython
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from cpython.ref cimport PyObject
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
        # current := the valid child with the smallest key, the lowest index
        # among equals; runner_up := the next in that order (NULL if none).
        cdef MergeChild* smallest = NULL
        cdef MergeChild* second = NULL
        cdef MergeChild* c = self.kids
        cdef MergeChild* end = self.kids + self.n
        while c < end:
            if c.valid:
                if smallest == NULL or compare_children(c, smallest) < 0:
                    second = smallest
                    smallest = c
                elif second == NULL or compare_children(c, second) < 0:
                    second = c
            c += 1
        self.current = smallest
        self.runner_up = second

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
        cdef MergeChild* r
        if c == NULL:
            return self.raise_invalid("next")
        if self.direction != MERGE_FORWARD:
            self.switch_to_forward()
            self.current = NULL              # stays invalid if a child raises
            (<InternalIterator>c.it).c_next()
            refresh(c)
            self.find_smallest()
            return 0
        self.current = NULL                  # stays invalid if the child raises
        (<InternalIterator>c.it).c_next()
        refresh(c)
        # The others did not move: c stays current while it sorts before
        # the runner-up (one comparison instead of a scan of every child;
        # long runs come from one child in a scan of a leveled tree).
        r = self.runner_up
        if c.valid and (r == NULL or compare_children(c, r) < 0
                        or (c < r and compare_children(c, r) == 0)):
            self.current = c
            return 0
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

    cdef int c_skip_older(self, const unsigned char* target, size_t n,
                          uint64_t sequence) except -1:
        # Each child before target that can skip does; 1 if the current
        # entry's child moved (the current entry is then a new one).
        cdef MergeChild* c
        cdef MergeChild* was = self.current
        cdef bint any_moved = False, current_moved = False
        cdef Py_ssize_t i
        cdef uint64_t target_tag
        if was == NULL or self.direction != MERGE_FORWARD or n < TAG_BYTES:
            return 0
        target_tag = load_fixed64(target + n - TAG_BYTES)
        for i in range(self.n):
            c = &self.kids[i]
            if not c.valid or compare_internal(c.key, c.ukey_len, c.tag,
                                               target, n - TAG_BYTES, target_tag) >= 0:
                continue
            self.current = NULL              # stays invalid if the child raises
            if (<InternalIterator>c.it).c_skip_older(target, n, sequence):
                refresh(c)
                any_moved = True
                current_moved |= c == was
            self.current = was
        if not any_moved:
            return 0
        # Children only moved forward, so the smallest is found again (and
        # the runner-up, which a moved child may have been).
        self.find_smallest()
        return 1 if current_moved else 0

    @property
    def num_children(self):
        return self.n
