# cython: language_level=3
# ReadPath: point reads of the engine in C, the twin of _write_path.  See
# kvcy/_read_path.pyx.
from libc.stdint cimport uint64_t
from kvcy._skiplist cimport SkipNode
from kvcy._table cimport TableReader, Found, ReadError
from kvcy._write_path cimport WritePath
from kvcy._latency cimport LatencyHistogram
from kvcy._range_del cimport RangeTombstones

cdef enum:
    GET_TIMING_PERIOD = 8            # one get in this many is timed for the latency histogram
    HOLD_GIL_BELOW = 1 << 15         # search with the GIL held while under half of the
                                     # recent gets had to read a block and no other
                                     # reader wants the GIL (gil_shared, gil_long_holder)

# One table file of the published Version, as the C search sees it.
cdef struct FileSlot:
    const unsigned char* smallest    # smallest user key (bytes kept alive by ReadState.keys)
    size_t smallest_len
    const unsigned char* largest     # largest user key
    size_t largest_len
    TableReader* reader              # the open table's C face (Table kept by ReadState.tables); NULL until opened
    bint needs_gil                   # the table reads through a Python file object


# A memtable's skiplist as the search without the GIL reads it.
cdef struct MemRef:
    SkipNode* head
    const int* height

cdef class ReadState:
    cdef readonly tuple mems         # the mutable memtable, then immutable ones newest first
    cdef MemRef* memrefs             # their skiplists (alive as long as mems holds them)
    cdef Py_ssize_t num_mems
    cdef readonly object version     # the Version whose files the slots describe
    cdef readonly RangeTombstones range_dels   # the memtables' and version's range
                                     # tombstones; None when there are none
    cdef list metas                  # FileMetaData per slot
    cdef list keys                   # the key bytes the slots point into
    cdef list tables                 # Table (or None until opened) per slot
    cdef object find_table           # callable(number, file_size) -> Table (TableCache.find_table)
    cdef FileSlot* slots             # level 0 newest first, then each level by smallest key
    cdef Py_ssize_t num_slots
    cdef int num_levels
    cdef Py_ssize_t* level_start     # slots of level L: level_start[L] .. level_start[L + 1] - 1

    cdef int search(self, const unsigned char* key, size_t klen, uint64_t sequence,
                    int* level, Py_ssize_t* index, bint all_gil, Found* out,
                    ReadError* err) noexcept nogil
    cdef int probe(self, int L, Py_ssize_t i, const unsigned char* key, size_t klen,
                   uint64_t sequence, int* level, Py_ssize_t* index, bint all_gil,
                   Found* out, ReadError* err) noexcept nogil
    cdef int first_pass(self, const unsigned char* key, size_t klen, uint64_t sequence,
                        uint64_t* cover, SkipNode** n, int* level, Py_ssize_t* index,
                        bint all_gil, Found* out, ReadError* err) noexcept nogil
    cdef int finish_block(self, const unsigned char* key, size_t klen, uint64_t sequence,
                          int* level, Py_ssize_t* index, bint all_gil, Found* out,
                          ReadError* err) noexcept nogil
    cdef object open_slot(self, Py_ssize_t i)
    cdef object lookup(self, object key_obj, const unsigned char* key, size_t klen,
                       uint64_t sequence, bint all_gil, object clock, bint held, bint* read_block)


cdef class ReadPath:
    cdef public ReadState state      # replaced whole by Engine._publish_state
    cdef WritePath writer            # its last_sequence is the default read sequence
    cdef public bint row_cache       # a row cache is on: table probes go through Table.get
    cdef public unsigned long long gets
    cdef readonly LatencyHistogram get_latency   # get() and lookup(), one in GET_TIMING_PERIOD timed
    cdef public bint usable          # False once the connection closed (or forked): lookup() raises
    cdef public str unusable_message # the ProgrammingError's text then
    cdef public object clock         # decides expiry (kvcy/_expiry.pyx): None (real time) or a callable
    cdef unsigned int block_read_share   # the share of recent gets that had to read a
                                     # block, in 1/65536 (moving average, weight 1/16)

    cdef object read(self, ReadState state, object key, uint64_t sequence)
    cdef object stored_lookup(self, object key, object default)
    cdef uint64_t sequence_of(self, object sequence) except? 0
