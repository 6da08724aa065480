# cython: language_level=3
# TableRun: reads a sorted run of tables front to back in C, without the GIL,
# for flushes' and compactions' merge loops.  See kvcy/_table_scan.pyx.
cimport cython
from libc.stdint cimport uint64_t
from kvcy._block cimport BlockCursor
from kvcy._block_cache cimport CacheHandle
from kvcy._table cimport TableReader, ReadError

# Why a run stopped (RunState.error); 0 while it is healthy.
cdef enum:
    RUN_OK = 0
    RUN_READ_ERROR = 1           # err says what; tables[current] names the file
    RUN_PYTHON_ERROR = 2         # a read through a Python file object raised; see TableRun

# The position of a run, as the C merge loop sees it.
cdef struct RunState:
    TableReader** readers        # the run's tables in key order (owned by TableRun.tables)
    void** tables                # the Table objects themselves (borrowed PyObject*)
    size_t count                 # tables in the run
    size_t current               # the table being read
    TableReader own              # readers[current] without its block cache: blocks
                                 # read here are not cached (a scan would evict hot blocks)
    BlockCursor index            # over readers[current]'s index block, or its index
                                 # partition `part` when the table is partitioned
    BlockCursor top              # a partitioned table's top-level index
    CacheHandle* part            # the pinned index partition `index` walks, or NULL
    CacheHandle* block           # the pinned data block being read, or NULL
    uint64_t block_offset        # its offset, for messages
    BlockCursor data             # over block; on the current entry while valid
    bint valid                   # on an entry: data.key / data.value hold it
    int error                    # RUN_*; sticky
    ReadError err                # when error == RUN_READ_ERROR
    void* owner                  # the TableRun (PyObject*), for reads that need the GIL


@cython.no_gc_clear
cdef class TableRun:
    cdef RunState s
    cdef readonly tuple tables   # Table objects, keep readers alive
    cdef tuple caches            # their BlockCaches: a held block goes back to one at dealloc
    cdef object exception        # what a read with the GIL raised (RUN_PYTHON_ERROR)

    cdef CacheHandle* read_with_gil(self, uint64_t offset, uint64_t size, int in_index) noexcept
    cdef object error_exception(self)


cdef int run_first(RunState* s) noexcept nogil
cdef int run_next(RunState* s) noexcept nogil
