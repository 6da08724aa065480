# cython: language_level=3, embedsignature=True
"""WritePath: sequence numbers, WAL record, memtable insert, in C.

Every write runs here: take the write lock, check the engine can write,
make room when the memtable is full (engine callback), encode the batch,
frame it and append it to the WAL with one write call (sync when asked),
insert it into the memtable, and publish the new last sequence.  A failed
append or sync latches the error; later writes raise OperationalError.

The write lock is a raw PyThread lock: try without blocking first, and only
when that fails wait with the GIL released, so a holder that needs the GIL
(os.write, callbacks) can always finish.  The engine takes the same lock
for memtable switches and close through acquire()/release().
"""
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.pythread cimport (PyThread_allocate_lock, PyThread_free_lock,
                               PyThread_acquire_lock, PyThread_release_lock,
                               NOWAIT_LOCK, WAIT_LOCK)

from kvcy._coding cimport put_fixed32, put_fixed64, put_varint32
from kvcy._dbformat cimport KIND_DELETE, KIND_VALUE, MAX_SEQUENCE
from kvcy._log_record cimport LogFramer
from kvcy._memtable cimport MemTable
from kvcy._write_batch cimport WriteBatch
from kvcy._write_batch import apply_batch
from kvcy.errors import DataError, OperationalError
from kvcy import options as _options

cdef size_t MAX_KEY = _options.MAX_KEY_BYTES
cdef size_t MAX_VALUE = _options.MAX_VALUE_BYTES


cdef inline bint check_sync(object sync) except -1:
    if sync is True or sync is False:
        return sync
    raise TypeError("sync must be True, False or None, not %r" % (sync,))


cdef class WritePath:
    def __cinit__(self):
        self.lock = PyThread_allocate_lock()
        if self.lock == NULL:
            raise MemoryError()
        self.error = None
        self.closed = False

    def __dealloc__(self):
        if self.lock != NULL:
            PyThread_free_lock(self.lock)

    cdef int acquire_lock(self) except -1:
        cdef int ok
        if PyThread_acquire_lock(self.lock, NOWAIT_LOCK):
            return 0
        with nogil:
            ok = PyThread_acquire_lock(self.lock, WAIT_LOCK)
        return 0

    cdef void release_lock(self) noexcept:
        PyThread_release_lock(self.lock)

    def acquire(self):
        self.acquire_lock()

    def try_acquire(self):
        """Take the write lock if it is free; True iff taken."""
        return PyThread_acquire_lock(self.lock, NOWAIT_LOCK) == 1

    def release(self):
        self.release_lock()

    def set_log(self, file, Py_ssize_t block_offset):
        """Direct WAL appends to file (an env WritableFile).  REQUIRES: lock held."""
        self.framer = LogFramer(block_offset)
        self.append = file.append
        self.sync_file = file.sync

    cdef int _ready(self) except -1:
        # REQUIRES: lock held.  Raise unless writable; make room in the memtable.
        if self.closed or self.blocked or self.error is not None or self.append is None:
            self.check_state()
        if (self.slowdown or self.mem.arena._usage - self.mem.arena._remaining
                >= self.memtable_limit):
            self.make_room()
        return 0

    cdef int _log(self, bytes framed, bint sync) except -1:
        try:
            self.append(framed)
            if sync:
                self.sync_file()
        except BaseException as exc:
            self.error = exc
            raise
        self.wal_records += 1
        self.wal_bytes += PyBytes_GET_SIZE(framed)
        if sync:
            self.wal_syncs += 1
        return 0

    def write_one(self, int kind, bytes key not None, bytes value, sync=None):
        """Put (KIND_VALUE) or delete (KIND_DELETE) one key as a one-entry batch."""
        cdef size_t klen = PyBytes_GET_SIZE(key)
        cdef size_t vlen = 0
        cdef const unsigned char* kp = <const unsigned char*>PyBytes_AS_STRING(key)
        cdef const unsigned char* vp = NULL
        cdef unsigned char small[512]
        cdef unsigned char* buf = small
        cdef unsigned char* p
        cdef size_t cap
        cdef uint64_t seq
        cdef bint do_sync = self.sync_default if sync is None else check_sync(sync)
        cdef bytes framed
        if kind == KIND_VALUE:
            if value is None:
                raise TypeError("a put needs a value")
            vlen = PyBytes_GET_SIZE(value)
            vp = <const unsigned char*>PyBytes_AS_STRING(value)
        elif kind != KIND_DELETE:
            raise ValueError("unknown entry kind %d" % kind)
        if klen > MAX_KEY:
            raise DataError("key of %d bytes exceeds the limit of %d bytes (MAX_KEY_BYTES)"
                            % (klen, MAX_KEY))
        if vlen > MAX_VALUE:
            raise DataError("value of %d bytes exceeds the limit of %d bytes (MAX_VALUE_BYTES)"
                            % (vlen, MAX_VALUE))
        cap = 12 + 11 + klen + vlen
        if cap > sizeof(small):
            buf = <unsigned char*>malloc(cap)
            if buf == NULL:
                raise MemoryError()
        self.acquire_lock()
        try:
            self._ready()
            seq = self.last_sequence + 1
            # The batch rep: sequence, count 1, one record (see _write_batch.pxd).
            p = put_fixed64(buf, seq)
            p = put_fixed32(p, 1)
            p[0] = <unsigned char>kind
            p = put_varint32(p + 1, <uint32_t>klen)
            if klen:
                memcpy(p, kp, klen)
            p += klen
            if kind == KIND_VALUE:
                p = put_varint32(p, <uint32_t>vlen)
                if vlen:
                    memcpy(p, vp, vlen)
                p += vlen
            framed = self.framer.frame_raw(buf, p - buf)
            self._log(framed, do_sync)
            self.mem.add_raw(seq, kind, kp, klen, vp, vlen)
            self.last_sequence = seq
            if kind == KIND_VALUE:
                self.puts += 1
            else:
                self.deletes += 1
            self.bytes_written += klen + vlen
        finally:
            self.release_lock()
            if buf != small:
                free(buf)

    def write_batch(self, WriteBatch batch not None, sync=None):
        """Apply batch atomically: one WAL record, then every entry in the memtable."""
        cdef bint do_sync = self.sync_default if sync is None else check_sync(sync)
        cdef uint32_t count = batch.count_
        cdef uint64_t seq
        cdef bytes rep
        self.acquire_lock()
        try:
            self._ready()
            if count == 0:
                if do_sync:
                    # An empty synced write still means "everything before me is durable".
                    try:
                        self.sync_file()
                    except BaseException as exc:
                        self.error = exc
                        raise
                    self.wal_syncs += 1
                return
            seq = self.last_sequence + 1
            if seq > MAX_SEQUENCE - count:
                raise OperationalError("sequence numbers exhausted")
            put_fixed64(batch.buf, seq)
            rep = batch.data()
            self._log(self.framer.frame_raw(batch.buf, batch.size), do_sync)
            self.last_sequence = apply_batch(rep, self.mem)
            self.batches += 1
            self.batch_entries += count
            self.bytes_written += batch.data_bytes_
        finally:
            self.release_lock()
