# cython: language_level=3, embedsignature=True
"""TwoLevelIterator: iterate a table through its index, then its data blocks.

An InternalIterator (kvcy/_iterator.pxd) over a table's entries in internal-
key order.  The index iterator walks the index block (separator key ->
encoded block handle); the data iterator walks the data block the index
entry points at.  Moving within a block is C only; crossing into another
block asks the table for the block (kvcy._table.Table.block_for_handle, in
C: the C block cache, or pread, check and decompress; any other table
object is asked through its Python method block_from_index_value(handle)),
which returns a kvcy._block.Block.  The same block is not loaded twice in a row.  Empty data
blocks are skipped in both directions.

Errors are sticky: a corrupt block, a failed read or a bad handle leaves the
iterator invalid; status() returns the error and every later move raises it
again.  A data block's own corruption is latched by its BlockIterator and
picked up here by c_status() before anything else moves.

Thread-safety: one thread at a time; the table may be shared.
"""
cimport cython
from libc.string cimport memcmp
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE

from kvcy._block cimport Block, BlockIterator
from kvcy._dbformat cimport TAG_BYTES
from kvcy._iterator cimport InternalIterator
from kvcy._table cimport Table
from kvcy.errors import CorruptionError


@cython.final
cdef class TwoLevelIterator(InternalIterator):
    """Entries of a table: index block, then data blocks (Python face: InternalIterator)."""

    def __cinit__(self, table):
        index = table.index
        if not isinstance(index, Block):
            raise TypeError("table.index must be a kvcy._block.Block, not %s"
                            % type(index).__name__)
        self.table = table
        self.index_iter = BlockIterator(index)
        self.data_iter = None
        self.data_handle = None

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
        try:
            self.data_iter.c_next()
        except CorruptionError as exc:
            return self.fail_reset(exc)
        if self.data_iter.is_valid():
            return 0
        return self.skip_empty_forward()

    cdef int c_prev(self) except -1:
        if self.data_iter is None or not self.data_iter.is_valid():
            return self.raise_invalid("prev")
        try:
            self.data_iter.c_prev()
        except CorruptionError as exc:
            return self.fail_reset(exc)
        if self.data_iter.is_valid():
            return 0
        return self.skip_empty_backward()

    # -- block changes and seeks: may call into Python -----------------------

    cdef object c_status(self):
        cdef object status
        if self.status_ is None:
            status = self.index_iter.c_status()
            if status is None and self.data_iter is not None:
                status = self.data_iter.c_status()
            if status is not None:
                self.status_ = status
        return self.status_

    cdef int fail_reset(self, object exc) except -1:
        # Drop the data block, latch exc (the first error wins) and raise;
        # corruption is restated with the table it was found in.
        cdef str path
        self.data_iter = None
        self.data_handle = None
        if isinstance(exc, CorruptionError):
            path = str(getattr(self.table, "path", ""))
            if path and path not in str(exc):
                named = CorruptionError("table %s: %s" % (path, exc))
                named.__cause__ = exc
                exc = named
        return self.fail(exc)

    cdef int load_block(self) except -1:
        # Point data_iter at the block the index iterator is on (None when the
        # index iterator is past either end).  REQUIRES: status_ is None.
        cdef const unsigned char* v
        cdef size_t n
        if not self.index_iter.is_valid():
            self.data_iter = None
            self.data_handle = None
            return 0
        v = self.index_iter.value_ptr()
        n = self.index_iter.value_len()
        if (self.data_iter is not None and <size_t>PyBytes_GET_SIZE(self.data_handle) == n
                and memcmp(PyBytes_AS_STRING(self.data_handle), v, n) == 0):
            return 0                         # already loaded
        self.data_iter = None
        self.data_handle = None
        handle = PyBytes_FromStringAndSize(<const char*>v, n)
        if type(self.table) is Table:
            block = (<Table>self.table).block_for_handle(v, n)     # C block cache, no Python frame
        else:
            block = self.table.block_from_index_value(handle)
        if not isinstance(block, Block):
            raise TypeError("block_from_index_value must return a kvcy._block.Block, not %s"
                            % type(block).__name__)
        self.data_iter = BlockIterator(block)
        self.data_handle = handle
        return 0

    cdef int skip_empty_forward(self) except -1:
        # The data iterator ran off its block's end: on to the next non-empty block.
        try:
            while self.data_iter is None or not self.data_iter.is_valid():
                if not self.index_iter.is_valid():
                    self.data_iter = None
                    self.data_handle = None
                    return 0
                self.index_iter.c_next()
                self.load_block()
                if self.data_iter is not None:
                    self.data_iter.c_seek_to_first()
        except Exception as exc:
            return self.fail_reset(exc)
        return 0

    cdef int skip_empty_backward(self) except -1:
        try:
            while self.data_iter is None or not self.data_iter.is_valid():
                if not self.index_iter.is_valid():
                    self.data_iter = None
                    self.data_handle = None
                    return 0
                self.index_iter.c_prev()
                self.load_block()
                if self.data_iter is not None:
                    self.data_iter.c_seek_to_last()
        except Exception as exc:
            return self.fail_reset(exc)
        return 0

    cdef int c_seek_to_first(self) except -1:
        if self.c_status() is not None:
            return self.fail_reset(self.status_)
        try:
            self.index_iter.c_seek_to_first()
            self.load_block()
            if self.data_iter is not None:
                self.data_iter.c_seek_to_first()
        except Exception as exc:
            return self.fail_reset(exc)
        return self.skip_empty_forward()

    cdef int c_seek_to_last(self) except -1:
        if self.c_status() is not None:
            return self.fail_reset(self.status_)
        try:
            self.index_iter.c_seek_to_last()
            self.load_block()
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
            self.index_iter.c_seek(target, n)
            self.load_block()
            if self.data_iter is not None:
                self.data_iter.c_seek(target, n)
        except Exception as exc:
            return self.fail_reset(exc)
        return self.skip_empty_forward()
