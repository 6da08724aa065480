# cython: language_level=3, embedsignature=True
"""WritePath: group commit, sequence numbers, WAL records, memtable inserts, in C.

Every write runs here, LevelDB's way (db_impl.cc, DBImpl::Write).  The
writer encodes its batch first (a put or delete straight into a stack
buffer, a WriteBatch as a private copy of its rep), then joins the writer
queue.  The writer at the head of the queue is the leader: it takes the
write lock, checks the engine can write and makes room in the memtable
(engine callbacks), then takes a group of queued writers behind it (up to
GROUP_MAX_BYTES of records), gives each its sequence numbers, frames each
batch as its own WAL record and appends the whole group with one write
call, fdatasyncs once if any member asked for sync, inserts every batch
into the memtable (a range delete beside it, then the engine publishes a
read state holding it: publish_range_dels), publishes the last sequence, releases the write lock
and wakes the members with their result and the next head.  Members wait
with the GIL released on a wake lock of their own, so a leader's fsync is
where a group gathers: one fsync serves every writer that queued during
the previous one.  Alone, a writer finds the queue empty, leads a group of
one and never waits.

Errors: a failed append or sync (or memtable insert) latches the error;
the leader raises it, every other member of the group raises an
OperationalError with its message, and later writes fail in check_state.
A failure in the leader's own checks (closed, latched error, stall) fails
the leader only: the next writer leads and checks for itself.

Locks: the write lock is a raw PyThread lock, held by a leader from its
checks to its memtable inserts and by the engine for memtable switches and
close (acquire()/release()); waits for it try without blocking first and
then block with the GIL released, so a holder that needs the GIL (os.write,
callbacks) can always finish.  queue_lock guards the queue and the pool of
wake locks; it is never held while calling Python or waiting for the GIL.
A queued writer's Writer is on its own stack and stays valid until the
leader has woken it; the leader reads `next` before it wakes a member.
"""
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock, PyThread_free_lock,
                               PyThread_acquire_lock, PyThread_release_lock,
                               NOWAIT_LOCK, WAIT_LOCK)

from kvcy._dbformat cimport KIND_DELETE, KIND_VALUE, KIND_EXPIRING_VALUE, MAX_SEQUENCE
from kvcy._log_record cimport frame_bound
from kvcy._wal_writer cimport WalWriter
from kvcy._latency cimport LatencyHistogram, now_ns
from kvcy._memtable cimport MemTable
from kvcy._reserved cimport is_reserved_key
from kvcy._write_batch cimport (WriteBatch, BATCH_HEADER_BYTES, check_entry, insert_records,
                                put_batch_header, put_batch_record, record_bound,
                                set_batch_sequence)

from kvcy.dbformat import as_user_bytes
from kvcy._expiry import encode_expiring, expiry_for
from kvcy.errors import OperationalError, ProgrammingError
from kvcy.namespace_keys import reserved_key_error


cdef inline bint check_sync(object sync) except -1:
    if sync is True or sync is False:
        return sync
    raise TypeError("sync must be True, False or None, not %r" % (sync,))


cdef extern from "pythread.h":
    # Cython declares it with the GIL; it needs none (it frees C memory only).
    void free_lock_nogil "PyThread_free_lock"(PyThread_type_lock lock) nogil
    int PyThread_acquire_lock_timed(PyThread_type_lock lock, long long microseconds,
                                    int intr_flag) nogil


cdef inline void free_wake(PyThread_type_lock wake) noexcept nogil:
    # Wake locks are kept armed (held); release before freeing.
    PyThread_release_lock(wake)
    free_lock_nogil(wake)


cdef inline void init_writer(Writer* w, bint sync) noexcept:
    w.next = NULL
    w.rep = NULL
    w.rep_len = 0
    w.count = 0
    w.kind = -1
    w.key = NULL
    w.key_len = 0
    w.value = NULL
    w.value_len = 0
    w.data_bytes = 0
    w.sequence = 0
    w.sync = sync
    w.done = False
    w.error = NULL
    w.wake = NULL
    w.reserved_key = NULL


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


cdef object member_error(object exc):
    """The exception a member raises for its group's failure exc."""
    if isinstance(exc, OperationalError):
        err = OperationalError(str(exc))
        err.errno = getattr(exc, "errno", None)
    else:
        err = OperationalError("write failed in its commit group: %s: %s"
                               % (type(exc).__name__, exc))
    err.__cause__ = exc
    return err


cdef class WritePath:
    def __cinit__(self):
        self.lock = PyThread_allocate_lock()
        self.queue_lock = PyThread_allocate_lock()
        self.gather = PyThread_allocate_lock()
        if self.lock == NULL or self.queue_lock == NULL or self.gather == NULL:
            raise MemoryError()
        PyThread_acquire_lock(self.gather, NOWAIT_LOCK)     # armed
        self.head = NULL
        self.tail = NULL
        self.wake_spare = 0
        self.error = None
        self.closed = False
        self.usable = True
        self.unusable_message = "cannot operate on a closed database"
        self.reserve_namespaces = False
        self.put_latency = LatencyHistogram("put", WRITE_TIMING_PERIOD)
        self.batch_latency = LatencyHistogram("write_batch", WRITE_TIMING_PERIOD)

    def __dealloc__(self):
        cdef int i
        for i in range(self.wake_spare):
            free_wake(self.wake_pool[i])
        self.wake_spare = 0
        if self.lock != NULL:
            PyThread_free_lock(self.lock)
        if self.queue_lock != NULL:
            PyThread_free_lock(self.queue_lock)
        if self.gather != NULL:
            free_wake(self.gather)

    cdef int acquire_lock(self) except -1:
        cdef int ok
        if PyThread_acquire_lock(self.lock, NOWAIT_LOCK):
            return 0
        with nogil:
            ok = PyThread_acquire_lock(self.lock, WAIT_LOCK)
        return 0

    cdef void release_lock(self) noexcept:
        PyThread_release_lock(self.lock)

    cdef void queue_acquire(self) noexcept:
        if PyThread_acquire_lock(self.queue_lock, NOWAIT_LOCK):
            return
        with nogil:
            PyThread_acquire_lock(self.queue_lock, WAIT_LOCK)

    def acquire(self):
        self.acquire_lock()

    def try_acquire(self):
        """Take the write lock if it is free; True iff taken."""
        return PyThread_acquire_lock(self.lock, NOWAIT_LOCK) == 1

    def release(self):
        self.release_lock()

    def queue_length(self):
        """Writers queued now, the leader included (tests, monitoring)."""
        cdef int n
        self.queue_acquire()
        n = self.queued
        PyThread_release_lock(self.queue_lock)
        return n

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

    # -- the queue ---------------------------------------------------------

    cdef int _commit(self, Writer* w) except -1:
        """Queue w, wait until a leader has committed it or it is the head,
        and lead a group in the latter case.  Raises w's failure."""
        cdef object exc
        if not w.sync and PyThread_acquire_lock(self.lock, NOWAIT_LOCK):
            # Fast path: the write lock is free and no one is queued, so this
            # write is a group of one, without the queue.  Writers that come
            # meanwhile queue and wait for the lock as leaders; none is
            # overtaken.  (Synced writes always queue: see _gather.)  head
            # changes only with the GIL held, so reading it here needs no
            # queue_lock (revisit for free-threaded builds).
            if self.head == NULL:
                try:
                    self._ready()
                    self._refuse_reserved(w)
                    self._write_group(w, w)
                finally:
                    self.release_lock()
                return 0
            self.release_lock()
        self._enqueue(w)
        if w.wake != NULL:
            with nogil:
                # Woken exactly once: done by a leader, or now the head.
                PyThread_acquire_lock(w.wake, WAIT_LOCK)
                PyThread_acquire_lock(self.queue_lock, WAIT_LOCK)
                if self.wake_spare < WAKE_POOL:
                    self.wake_pool[self.wake_spare] = w.wake
                    self.wake_spare += 1
                    w.wake = NULL
                PyThread_release_lock(self.queue_lock)
                if w.wake != NULL:
                    free_wake(w.wake)
                    w.wake = NULL
            if w.done:
                if w.error != NULL:
                    exc = <object>w.error
                    Py_XDECREF(w.error)
                    w.error = NULL
                    raise member_error(exc) from exc
                return 0
        return self._lead(w)

    cdef int _enqueue(self, Writer* w) except -1:
        # A writer queued behind a head needs an armed wake lock; allocate
        # one (outside queue_lock, where MemoryError may be raised) when the
        # pool is empty.  REQUIRES: w initialized, not queued.
        cdef PyThread_type_lock fresh
        while True:
            self.queue_acquire()
            if self.head == NULL or self.wake_spare > 0:
                break
            PyThread_release_lock(self.queue_lock)
            fresh = PyThread_allocate_lock()
            if fresh == NULL:
                raise MemoryError()
            PyThread_acquire_lock(fresh, NOWAIT_LOCK)      # arm it
            self.queue_acquire()
            if self.wake_spare < WAKE_POOL:
                self.wake_pool[self.wake_spare] = fresh
                self.wake_spare += 1
                fresh = NULL
            PyThread_release_lock(self.queue_lock)
            if fresh != NULL:
                free_wake(fresh)
        if self.head == NULL:
            self.head = w
        else:
            self.wake_spare -= 1
            w.wake = self.wake_pool[self.wake_spare]
            self.tail.next = w
        self.tail = w
        self.queued += 1
        if self.gather_target and self.queued >= self.gather_target:
            self.gather_target = 0
            PyThread_release_lock(self.gather)
        PyThread_release_lock(self.queue_lock)
        return 0

    cdef void _gather(self, int target) noexcept:
        # A synced leader alone (or nearly) at the head, right after a group
        # of `target` writers: wait, with the GIL released, until that many
        # are queued again or for half a recent fsync at most.  Without the
        # GIL's help the last leader, which holds it when its group ends,
        # always queues first and would lead a group of one, every other
        # time (PostgreSQL's commit_delay and commit_siblings in spirit).
        cdef long long micros = self.sync_micros // 2
        cdef int got
        if micros > GATHER_MAX_MICROS:
            micros = GATHER_MAX_MICROS
        if micros <= 0:
            return
        self.queue_acquire()
        if self.queued >= target:
            PyThread_release_lock(self.queue_lock)
            return
        self.gather_target = target
        PyThread_release_lock(self.queue_lock)
        with nogil:
            got = PyThread_acquire_lock_timed(self.gather, micros, 0)
            PyThread_acquire_lock(self.queue_lock, WAIT_LOCK)
            if self.gather_target != 0:
                self.gather_target = 0          # timed out; nobody released it
            elif got != 1:
                PyThread_acquire_lock(self.gather, NOWAIT_LOCK)   # released late: re-arm
            PyThread_release_lock(self.queue_lock)

    cdef int _refuse_reserved(self, Writer* w) except -1:
        # REQUIRES: the write lock held.  A default-namespace write into the
        # region reserved for namespaces was checked when it was made, but
        # the first namespace may have been created (claiming the region,
        # under this lock) while it waited in the queue: refuse it here,
        # where nothing can change the flag, as the check before would have.
        if w.reserved_key != NULL and self.reserve_namespaces:
            raise reserved_key_error(<object>w.reserved_key)
        return 0

    cdef Writer* _take_group(self, Writer* leader) noexcept:
        # The leader and the writers behind it, in queue order, while the
        # records fit the cap (LevelDB's: a small leader's group grows by at
        # most GROUP_SMALL_BYTES, so small writes do not wait for big ones).
        cdef Writer* last = leader
        cdef Writer* m
        cdef size_t size = leader.rep_len
        cdef size_t cap = GROUP_MAX_BYTES
        if size <= GROUP_SMALL_BYTES:
            cap = size + GROUP_SMALL_BYTES
        self.queue_acquire()
        m = leader.next
        while m != NULL and size <= cap and m.rep_len <= cap - size:
            if m.reserved_key != NULL and self.reserve_namespaces:
                break                    # it leads a group of its own, and fails there
            size += m.rep_len
            last = m
            m = m.next
        PyThread_release_lock(self.queue_lock)
        return last

    cdef int _lead(self, Writer* w) except -1:
        # REQUIRES: w is the head of the queue.
        cdef Writer* last = w
        self.acquire_lock()
        try:
            self._ready()                # a failure here fails the leader only
            self._refuse_reserved(w)
            if w.sync and self.last_group > 1:
                self._gather(self.last_group)
            last = self._take_group(w)
            self._write_group(w, last)
        finally:
            self.release_lock()
            self._finish_group(w, last)
        return 0

    cdef void _finish_group(self, Writer* leader, Writer* last) noexcept:
        # Pop leader..last, then (queue_lock released, so a woken member
        # does not block on it at once) wake the members, done, and the next
        # head.  A member may return as soon as it is woken: read next first.
        # The popped writers and the head are touched by this leader only:
        # no one else pops, and they wait until woken.
        cdef Writer* m
        cdef Writer* following
        cdef Writer* new_head
        self.queue_acquire()
        new_head = last.next
        self.head = new_head
        if new_head == NULL:
            self.tail = NULL
        m = leader
        while True:
            self.queued -= 1
            if m == last:
                break
            m = m.next
        PyThread_release_lock(self.queue_lock)
        if last != leader:
            m = leader.next
            while True:
                following = m.next
                m.done = True
                if m == last:
                    PyThread_release_lock(m.wake)
                    break
                PyThread_release_lock(m.wake)
                m = following
        if new_head != NULL:
            PyThread_release_lock(new_head.wake)

    cdef void _fail_group(self, Writer* leader, Writer* last, object exc) noexcept:
        # Give every member but the leader (which raises exc itself) a reference to exc.
        cdef Writer* m = leader
        while m != last:
            m = m.next
            Py_INCREF(exc)
            m.error = <PyObject*>exc

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
