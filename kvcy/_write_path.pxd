# cython: language_level=3
# WritePath: the per-write hot path of the engine, in C, on the writer queue
# of group commit (WriteQueue).  See _write_path.pyx.
from libc.stdint cimport uint32_t, uint64_t
from kvcy._wal_writer cimport WalWriter
from kvcy._latency cimport LatencyHistogram
from kvcy._memtable cimport MemTable
from kvcy._write_queue cimport Writer, WriteQueue

cdef enum:
    WRITE_TIMING_PERIOD = 8          # one write in this many is timed for the latency histograms

cdef class WritePath(WriteQueue):
    cdef readonly WalWriter wal      # appends to the current WAL; None until set_log()
    cdef readonly LatencyHistogram put_latency     # put() and delete(), one in WRITE_TIMING_PERIOD
    cdef readonly LatencyHistogram batch_latency   # write_batch(), likewise
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
    cdef public object publish_range_dels   # engine callback, run with the lock held after a
                                     # group added range tombstones, before its sequence is published
    cdef public bint usable          # False once the connection closed (or forked): put() raises
    cdef public str unusable_message # the ProgrammingError's text then
    cdef public object clock         # fixes the expiry of put(..., ttl=): None (real time) or a callable
    # counters (read by Stats)
    cdef public unsigned long long puts, deletes, batches, batch_entries
    cdef public unsigned long long wal_records, wal_bytes, wal_syncs, bytes_written
    cdef public unsigned long long group_commits    # groups committed (one WAL append, at most one sync)
    cdef public unsigned long long grouped_writes   # writes committed by another writer's group

    cdef int _ready(self) except -1
    cdef int _write_one(self, int kind, bytes key, bytes value, object sync,
                        bint reserved=*) except -1
    cdef int _write_group(self, Writer* leader, Writer* last) except -1
    cdef int _insert(self, Writer* m) except -1
