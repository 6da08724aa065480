# cython: language_level=3, embedsignature=True
"""WritePath: sequence numbers, WAL records, memtable inserts, in C.

Every write runs here, LevelDB's way (db_impl.cc, DBImpl::Write).  The
writer encodes its batch first (a put or delete straight into a stack
buffer, a WriteBatch as a private copy of its rep), then joins the writer
queue of group commit (WriteQueue, kvcy/_write_queue.pyx, which this class
extends).  When the queue makes it a leader, it checks the engine can
write and makes room in the memtable (_ready: engine callbacks), and
commits its group (_write_group): gives each member its sequence numbers,
frames each batch as its own WAL record and appends the whole group with
one append (kvcy/_wal_writer.pyx), fdatasyncs once if any member asked
for sync, inserts every batch into the memtable (a range delete beside it,
then the engine publishes a read state holding it: publish_range_dels) and
publishes the last sequence.

Errors: a failed append or sync (or memtable insert) latches the error;
the leader raises it, every other member of the group raises an
OperationalError with its message, and later writes fail in check_state.
A failure in the leader's own checks (closed, latched error, stall) fails
the leader only: the next writer leads and checks for itself.
"""
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.ref cimport PyObject

from kvcy._dbformat cimport KIND_DELETE, KIND_VALUE, KIND_EXPIRING_VALUE, MAX_SEQUENCE
from kvcy._log_record cimport frame_bound
from kvcy._wal_writer cimport WalWriter
from kvcy._latency cimport LatencyHistogram, now_ns
from kvcy._memtable cimport MemTable
from kvcy._reserved cimport is_reserved_key
from kvcy._write_batch cimport (WriteBatch, BATCH_HEADER_BYTES, check_entry, insert_records,
                                put_batch_header, put_batch_record, record_bound,
                                set_batch_sequence)
from kvcy._write_queue cimport Writer, WriteQueue, init_writer

from kvcy.dbformat import as_user_bytes
from kvcy._expiry import encode_expiring, expiry_for
from kvcy.errors import OperationalError, ProgrammingError
from kvcy.namespace_keys import reserved_key_error


cdef inline bint check_sync(object sync) except -1:
    if sync is True or sync is False:
        return sync
    raise TypeError("sync must be True, False or None, not %r" % (sync,))


cdef int batch_writer(Writer* w, WriteBatch batch, bint sync) except -1:
    # w := a writer for batch, with a private copy of its rep (the batch may
    # change in another thread while w waits); the caller frees w.rep.
    init_writer(w, sync)
    if batch.reserved_key is not None:
        w.reserved_key = <PyObject*>batch.reserved_key     # the batch outlives the commit
    w.count = batch.count_
    w.data_bytes = batch.data_bytes_
    if w.count:
        w.rep = <unsigned char*>malloc(batch.size)
        if w.rep == NULL:
            raise MemoryError()
        memcpy(w.rep, batch.buf, batch.size)
        w.rep_len = batch.size
    return 0


cdef class WritePath(WriteQueue):
    def __cinit__(self):
        self.error = None
        self.closed = False
        self.usable = True
        self.unusable_message = "cannot operate on a closed database"
        self.put_latency = LatencyHistogram("put", WRITE_TIMING_PERIOD)
        self.batch_latency = LatencyHistogram("write_batch", WRITE_TIMING_PERIOD)

    def set_log(self, file, Py_ssize_t block_offset):
        """Direct WAL appends to file (an env WritableFile), retiring the
        previous file's writer (see retire_log).  REQUIRES: lock held."""
        self.retire_log()
        self.wal = WalWriter(file, block_offset)

    def retire_log(self):
        """Stop appending to the current WAL file and cut it to the bytes
        written (kvcy/_wal_writer.pyx); call before that file is closed."""
        if self.wal is not None:
            self.wal.retire()

    @property
    def log_size(self):
        """Bytes in the current WAL file."""
        return self.wal.size if self.wal is not None else 0

    cdef int _ready(self) except -1:
        # REQUIRES: lock held.  Raise unless writable; make room in the memtable.
        if self.closed or self.blocked or self.error is not None or self.wal is None:
            self.check_state()
        if (self.slowdown or self.mem.arena._usage - self.mem.arena._remaining
                >= self.memtable_limit):
            self.make_room()
        return 0

    # -- committing a group ------------------------------------------------

    cdef int _write_group(self, Writer* leader, Writer* last) except -1:
        # REQUIRES: write lock held; leader..last taken from the queue.
        cdef Writer* m
        cdef uint64_t seq = self.last_sequence
        cdef bint do_sync = False
        cdef unsigned long long members = 0, records = 0
        cdef size_t framed = 0, bound = 0
        cdef long long started, took
        cdef Py_ssize_t range_dels
        # Sequence numbers first: nothing is framed unless all of them fit.
        m = leader
        while True:
            members += 1
            do_sync |= m.sync
            if m.count:
                if seq > MAX_SEQUENCE - m.count:
                    exc = OperationalError("sequence numbers exhausted")
                    self._fail_group(leader, last, exc)
                    raise exc
                m.sequence = seq + 1
                seq += m.count
            if m == last:
                break
            m = m.next
        # Each batch its own WAL record, the group in one append.  The
        # framer has moved on once anything is framed, so any failure from
        # here on leaves the log in an unknown state: latch it.
        try:
            m = leader
            while True:
                if m.count:
                    bound += frame_bound(m.rep_len)
                if m == last:
                    break
                m = m.next
            self.wal.reserve(bound)
            m = leader
            while True:
                if m.count:
                    set_batch_sequence(m.rep, m.sequence)
                    self.wal.add(m.rep, m.rep_len)
                    records += 1
                if m == last:
                    break
                m = m.next
            framed = self.wal.write()
            if do_sync:
                # An empty synced write still means "everything before me is durable".
                started = <long long>(now_ns() // 1000)
                self.wal.sync()
                took = <long long>(now_ns() // 1000) - started
                self.sync_micros = took if self.sync_micros == 0 else (3 * self.sync_micros + took) // 4
        except BaseException as exc:
            self.error = exc
            self._fail_group(leader, last, exc)
            raise
        if framed:
            self.wal_records += records
            self.wal_bytes += framed
        if do_sync:
            self.wal_syncs += 1
        self.group_commits += 1
        self.grouped_writes += members - 1
        self.last_group = <int>members
        # The memtable; a failure here would leave it short of the WAL.
        # Range tombstones must reach the published read state before their
        # sequence does, or a reader at that sequence would miss them.
        range_dels = len(self.mem.range_dels)
        try:
            m = leader
            while True:
                if m.count:
                    self._insert(m)
                if m == last:
                    break
                m = m.next
            if len(self.mem.range_dels) != range_dels:
                self.publish_range_dels()
        except BaseException as exc:
            self.error = exc
            self._fail_group(leader, last, exc)
            raise
        self.last_sequence = seq
        return 0

    cdef int _insert(self, Writer* m) except -1:
        # Insert m's entries into the memtable at m.sequence onwards and count them.
        if m.kind >= 0:
            self.mem.add_raw(m.sequence, m.kind, m.key, m.key_len, m.value, m.value_len)
            if m.kind != KIND_DELETE:
                self.puts += 1
            else:
                self.deletes += 1
        else:
            # The rep came from a WriteBatch, which checked it as it grew;
            # insert_records checks each record only to keep a bad rep from
            # reading out of bounds.
            insert_records(self.mem, m.rep, m.rep_len, m.sequence)
            self.batches += 1
            self.batch_entries += m.count
        self.bytes_written += m.data_bytes
        return 0

    # -- entry points --------------------------------------------------------

    def put(self, key, value, *, sync=None, ttl=None):
        """Connection.put itself (one call from Python into C): store value
        under key; sync=True fsyncs before returning; ttl=seconds makes the
        pair expire that long from now (by the connection's clock).  Raises
        ProgrammingError once the connection is closed or forked."""
        if not self.usable:
            raise ProgrammingError(self.unusable_message)
        if type(key) is not bytes:
            key = as_user_bytes(key, "key")
        if type(value) is not bytes:
            value = as_user_bytes(value, "value")
        cdef bint reserved = is_reserved_key(<const unsigned char*>PyBytes_AS_STRING(key),
                                             PyBytes_GET_SIZE(key))
        if reserved and self.reserve_namespaces:
            raise reserved_key_error(key)
        if ttl is not None:
            self._write_one(KIND_EXPIRING_VALUE, key,
                            encode_expiring(expiry_for(ttl, self.clock), value), sync, reserved)
            return
        self._write_one(KIND_VALUE, key, value, sync, reserved)

    def delete(self, key, *, sync=None):
        """Connection.delete itself: remove key (a no-op when it is absent)."""
        if not self.usable:
            raise ProgrammingError(self.unusable_message)
        if type(key) is not bytes:
            key = as_user_bytes(key, "key")
        cdef bint reserved = is_reserved_key(<const unsigned char*>PyBytes_AS_STRING(key),
                                             PyBytes_GET_SIZE(key))
        if reserved and self.reserve_namespaces:
            raise reserved_key_error(key)
        self._write_one(KIND_DELETE, key, None, sync, reserved)

    def put_stored(self, bytes key not None, value, sync=None, ttl=None):
        """put() of a stored key, which may lie in the reserved region: a
        namespace's put (kvcy/namespace.py) after adding its prefix."""
        if not self.usable:
            raise ProgrammingError(self.unusable_message)
        if type(value) is not bytes:
            value = as_user_bytes(value, "value")
        if ttl is not None:
            self._write_one(KIND_EXPIRING_VALUE, key,
                            encode_expiring(expiry_for(ttl, self.clock), value), sync)
            return
        self._write_one(KIND_VALUE, key, value, sync)

    def delete_stored(self, bytes key not None, sync=None):
        """delete() of a stored key, which may lie in the reserved region."""
        if not self.usable:
            raise ProgrammingError(self.unusable_message)
        self._write_one(KIND_DELETE, key, None, sync)

    def write_one(self, int kind, bytes key not None, bytes value, sync=None):
        """Put (KIND_VALUE, or KIND_EXPIRING_VALUE with its stored value) or
        delete (KIND_DELETE) one key as a one-entry batch."""
        self._write_one(kind, key, value, sync)

    cdef int _write_one(self, int kind, bytes key, bytes value, object sync,
                        bint reserved=False) except -1:
        # reserved: key is a default-namespace key in the reserved region
        # (allowed until the database has namespaces; see _refuse_reserved).
        cdef size_t klen = PyBytes_GET_SIZE(key)
        cdef size_t vlen = 0
        cdef const unsigned char* kp = <const unsigned char*>PyBytes_AS_STRING(key)
        cdef const unsigned char* vp = NULL
        cdef unsigned char small[512]
        cdef unsigned char* buf = small
        cdef unsigned char* p
        cdef size_t cap
        cdef bint do_sync = self.sync_default if sync is None else check_sync(sync)
        cdef Writer w
        cdef uint64_t started = 0
        cdef bint timed = self.put_latency.should_time()
        if timed:
            started = now_ns()
        if kind != KIND_DELETE:
            if value is None:
                raise TypeError("a put needs a value")
            vlen = PyBytes_GET_SIZE(value)
            vp = <const unsigned char*>PyBytes_AS_STRING(value)
        check_entry(kind, klen, vlen)
        cap = BATCH_HEADER_BYTES + record_bound(klen, vlen)
        if cap > sizeof(small):
            buf = <unsigned char*>malloc(cap)
            if buf == NULL:
                raise MemoryError()
        try:
            # A one-entry batch rep; the leader fills in the sequence.
            p = put_batch_header(buf, 0, 1)
            p = put_batch_record(p, kind, kp, klen, vp, vlen)
            init_writer(&w, do_sync)
            w.rep = buf
            w.rep_len = p - buf
            w.count = 1
            w.kind = kind
            w.key = kp
            w.key_len = klen
            w.value = vp
            w.value_len = vlen
            w.data_bytes = klen + vlen
            if reserved:
                w.reserved_key = <PyObject*>key
            self._commit(&w)
        finally:
            if buf != small:
                free(buf)
        if timed:
            self.put_latency.record(now_ns() - started)
        return 0

    def write_batch(self, WriteBatch batch not None, sync=None):
        """Apply batch atomically: one WAL record, then every entry in the memtable."""
        cdef bint do_sync = self.sync_default if sync is None else check_sync(sync)
        cdef Writer w
        cdef uint64_t started = 0
        cdef bint timed = self.batch_latency.should_time()
        if timed:
            started = now_ns()
        batch_writer(&w, batch, do_sync)
        try:
            self._commit(&w)
        finally:
            free(w.rep)
        if timed:
            self.batch_latency.record(now_ns() - started)

    def write_batch_checked(self, WriteBatch batch not None, check not None, sync=None):
        """write_batch(batch, sync), after check() returned, with no other
        write between the two: check runs holding the write lock, after the
        engine's own checks and make_room, and raises to refuse the batch (a
        transaction's conflict check, kvcy/transaction.py).  Nothing is
        written when it raises.  The batch is a group of its own: it takes
        the lock without queueing, as a memtable switch does, so writers
        already queued wait for it."""
        cdef bint do_sync = self.sync_default if sync is None else check_sync(sync)
        cdef Writer w
        cdef int last_group
        batch_writer(&w, batch, do_sync)
        try:
            self.acquire_lock()
            try:
                self._ready()
                check()
                self._refuse_reserved(&w)
                last_group = self.last_group
                self._write_group(&w, &w)
                self.last_group = last_group    # the queue's groups guide _gather, not this one
            finally:
                self.release_lock()
        finally:
            free(w.rep)
