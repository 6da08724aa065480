# cython: language_level=3
# TwoLevelIterator: an index whose entries each lead to a child iterator
# (LevelDB's TwoLevelIterator), in its two uses: TableIterator (a table's
# index block -> its data blocks) and LevelIterator (a level's sorted file
# list -> each file's TableIterator).  See kvcy/_two_level.pyx.
from libc.stdint cimport uint64_t

from kvcy._block cimport BlockIterator
from kvcy._iterator cimport InternalIterator

cdef enum:
    LEVEL_RECENT_ITERATORS = 64  # table iterators a LevelIterator keeps for later seeks
    MAX_HANDLE_BYTES = 40        # a top-level index value: four varint64s (an index's: two)


cdef class TwoLevelIterator(InternalIterator):
    cdef InternalIterator data_iter  # the child the index is on; None when none is loaded

    cdef bint is_valid(self) noexcept
    cdef const unsigned char* key_ptr(self) noexcept
    cdef size_t key_len(self) noexcept
    cdef const unsigned char* value_ptr(self) noexcept
    cdef size_t value_len(self) noexcept
    cdef int c_seek_to_first(self) except -1
    cdef int c_seek_to_last(self) except -1
    cdef int c_seek(self, const unsigned char* target, size_t n) except -1
    cdef int c_next(self) except -1
    cdef int c_prev(self) except -1
    cdef object c_status(self)

    # What each index provides.
    cdef bint index_valid(self) noexcept
    cdef int index_seek_to_first(self) except -1
    cdef int index_seek_to_last(self) except -1
    cdef int index_seek(self, const unsigned char* target, size_t n) except -1
    cdef int index_next(self) except -1
    cdef int index_prev(self) except -1
    cdef object index_status(self)
    cdef int load_child(self) except -1      # data_iter := the child at the index (None past either end)
    cdef void drop_child(self)               # forget data_iter (and what a failed child leaves cached)
    cdef object restate(self, object exc)    # exc as this iterator reports it

    cdef int skip_empty_forward(self) except -1
    cdef int skip_empty_backward(self) except -1
    cdef int fail_reset(self, object exc) except -1


cdef class TableIterator(TwoLevelIterator):
    cdef object table            # has .index (a Block) and block_from_index_value(bytes) -> Block
    cdef InternalIterator index_iter # separator key -> encoded handle: over the index block,
                                     # or a partitioned table's index partitions
    cdef bint partitions         # this iterates index entries: its children are index partitions
    cdef unsigned char data_handle[MAX_HANDLE_BYTES]   # index value data_iter was loaded from
    cdef size_t data_handle_len  # its bytes; 0 when no block is loaded

    cdef uint64_t largest_sequence   # the table's newest entry (properties); 0: unknown
    cdef int step(self, bint forward) except -1
    cdef int c_skip_older(self, const unsigned char* target, size_t n,
                          uint64_t sequence) except -1


cdef class LevelIterator(TwoLevelIterator):
    cdef list files              # FileMetaData of one level L1+: sorted by smallest, disjoint
    cdef list largest            # their largest internal keys (bytes), for the binary search
    cdef object open_table_iterator  # callable: FileMetaData -> InternalIterator
    cdef Py_ssize_t position     # the index: a file number in 0..len(files)-1, else off either end
    cdef Py_ssize_t loaded       # file data_iter belongs to; -1 when none
    cdef dict recent             # file index -> its iterator, the last few opened (seeks revisit them)

    cdef Py_ssize_t find_file(self, const unsigned char* target, size_t n) except -2
    cdef int c_skip_older(self, const unsigned char* target, size_t n,
                          uint64_t sequence) except -1
