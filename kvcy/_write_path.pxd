# cython: language_level=3
# WritePath: the per-write hot path of the engine, in C.  See _write_path.pyx.
from libc.stdint cimport uint64_t
from cpython.pythread cimport PyThread_type_lock
from kvcy._log_record cimport LogFramer
from kvcy._memtable cimport MemTable

cdef class WritePath:
    cdef PyThread_type_lock lock     # the engine's write lock
    cdef LogFramer framer            # framing state of the current WAL
    cdef object append               # the current WAL file's append(bytes)
    cdef object sync_file            # the current WAL file's sync()
    cdef public MemTable mem         # the mutable memtable
    cdef public uint64_t last_sequence   # last sequence published to readers
    cdef public object error         # latched write error (None when healthy)
    cdef public bint closed          # set by the engine at close
    cdef public bint blocked         # a background error is latched: writes must fail
    cdef public bint sync_default    # Options.sync
    cdef public size_t memtable_limit    # switch when the memtable reaches this many bytes
    cdef public bint slowdown        # level 0 is deep: every write calls make_room
    cdef public object make_room     # engine callback, run with the lock held, when the memtable is full
    cdef public object check_state   # engine callback raising the right error when not writable
    # counters (read by Stats)
    cdef public unsigned long long puts, deletes, batches, batch_entries
    cdef public unsigned long long wal_records, wal_bytes, wal_syncs, bytes_written

    cdef int acquire_lock(self) except -1
    cdef void release_lock(self) noexcept
    cdef int _ready(self) except -1
    cdef int _log(self, bytes framed, bint sync) except -1
