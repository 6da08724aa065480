# cython: language_level=3, embedsignature=True
"""WriteQueue: the writer queue of group commit, in C (LevelDB's writers_ deque).

A writer joins the queue with its batch encoded (a Writer on its own
stack).  The writer at the head is the leader: it takes the write lock,
lets the write path check and make room (_ready), takes a group of queued
writers behind it (_take_group: up to GROUP_MAX_BYTES of records, less
behind a small leader), has the write path commit the group (_write_group:
kvcy/_write_path.pyx), and wakes the members with their result and then
the next head (_finish_group).  Members wait with the GIL released on a
wake lock of their own, so a leader's fsync is where a group gathers: one
fsync serves every writer that queued during the previous one.  Alone, a
writer finds the lock free and the queue empty, commits a group of one and
never queues.

Locks: the write lock is a raw PyThread lock, held by a leader from its
checks to its memtable inserts and by the engine for memtable switches and
close (acquire()/release()); waits for it try without blocking first and
then block with the GIL released, so a holder that needs the GIL
(callbacks) can always finish.  queue_lock guards the queue and the pool of
wake locks; it is never held while calling Python or waiting for the GIL.
A queued writer's Writer is on its own stack and stays valid until the
leader has woken it; the leader reads `next` before it wakes a member.
"""
from cpython.ref cimport PyObject, Py_INCREF, Py_XDECREF
from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock, PyThread_free_lock,
                               PyThread_acquire_lock, PyThread_release_lock,
                               NOWAIT_LOCK, WAIT_LOCK)

from libc.stdint cimport uint64_t

from kvcy._gil_spin cimport gil_spin_init, gil_locked
from kvcy._latency cimport now_ns
from kvcy._skiplist cimport load_relaxed_int, store_relaxed_int

from kvcy.errors import OperationalError
from kvcy.namespace_keys import reserved_key_error

gil_spin_init()


cdef extern from "<sched.h>" nogil:
    int sched_yield()


cdef extern from "pythread.h":
    # Cython declares it with the GIL; it needs none (it frees C memory only).
    void free_lock_nogil "PyThread_free_lock"(PyThread_type_lock lock) nogil


cdef inline long long wait_bound(long long micros) noexcept nogil:
    # A wait sized by the recent fsync time, capped at GATHER_MAX_MICROS.
    return micros if micros < GATHER_MAX_MICROS else GATHER_MAX_MICROS


cdef inline void free_wake(PyThread_type_lock wake) noexcept nogil:
    # Wake locks are kept armed (held); release before freeing.
    PyThread_release_lock(wake)
    free_lock_nogil(wake)


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


cdef class WriteQueue:
    def __cinit__(self):
        self.lock = PyThread_allocate_lock()
        self.queue_lock = PyThread_allocate_lock()
        if self.lock == NULL or self.queue_lock == NULL:
            raise MemoryError()
        self.head = NULL
        self.tail = NULL
        self.wake_spare = 0
        self.reserve_namespaces = False

    def __dealloc__(self):
        cdef int i
        for i in range(self.wake_spare):
            free_wake(self.wake_pool[i])
        self.wake_spare = 0
        if self.lock != NULL:
            PyThread_free_lock(self.lock)
        if self.queue_lock != NULL:
            PyThread_free_lock(self.queue_lock)

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
                if w.sync:
                    self._await_wake(w)
                else:
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
                if w.sync:
                    self._await_gil()
            if w.done:
                if w.error != NULL:
                    exc = <object>w.error
                    Py_XDECREF(w.error)
                    w.error = NULL
                    raise member_error(exc) from exc
                return 0
        return self._lead(w)

    cdef void _await_wake(self, Writer* w) noexcept nogil:
        # A synced member's wait: yield the core until the leader wakes w
        # (for two recent fsyncs at most; then block as other writers do),
        # and later (_await_gil) until the GIL looks free (for one fsync).
        # Blocked, a member is woken a scheduler wake-up after the fsync,
        # and then sleeps in CPython's take_gil until the member before it
        # lets go of the GIL, a second wake-up; the members of a group
        # return one after another, so these wake-ups add up to much of a
        # group's cycle.  Yielding, it takes both in microseconds (RocksDB's
        # writers yield likewise: WriteThread::AwaitState).  The fsync
        # leaves the cores idle meanwhile, and a yielding writer gives way
        # to the threads waiting for its core; the CPU it spends still
        # counts against a CPU quota (docs/impl.md).
        cdef long long micros = wait_bound(self.sync_micros)
        cdef uint64_t deadline
        if micros <= 0:
            PyThread_acquire_lock(w.wake, WAIT_LOCK)
            return
        deadline = now_ns() + <uint64_t>micros * 2000
        while not PyThread_acquire_lock(w.wake, NOWAIT_LOCK):
            if now_ns() >= deadline:
                PyThread_acquire_lock(w.wake, WAIT_LOCK)
                return
            sched_yield()

    cdef void _await_gil(self) noexcept nogil:
        # The second half of _await_wake, after the member has given back
        # its wake lock: yield until the GIL looks free (_gil_spin.h).
        cdef uint64_t deadline = now_ns() + <uint64_t>wait_bound(self.sync_micros) * 1000
        while gil_locked() and now_ns() < deadline:
            sched_yield()

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
        store_relaxed_int(&self.queued, self.queued + 1)   # read unlocked by _gather
        PyThread_release_lock(self.queue_lock)
        return 0

    cdef void _gather(self, int target) noexcept:
        # A synced leader alone (or nearly) at the head, right after a group
        # of `target` writers: wait, with the GIL released, until that many
        # are queued again or for half a recent fsync at most.  Without the
        # GIL's help the last leader, which holds it when its group ends,
        # always queues first and would lead a group of one, every other
        # time (PostgreSQL's commit_delay and commit_siblings in spirit).
        # The leader yields the CPU rather than sleeping: woken from a sleep
        # it would start the next fsync a scheduler wake-up later (20-25 us
        # on a virtual machine, a tenth of a group's cycle), and the members
        # it waits for need the GIL, not this core (RocksDB's writers yield
        # likewise before they block: WriteThread::AwaitState).
        cdef long long micros = wait_bound(self.sync_micros // 2)
        cdef uint64_t deadline
        if micros <= 0 or load_relaxed_int(&self.queued) >= target:
            return
        with nogil:
            deadline = now_ns() + <uint64_t>micros * 1000
            while load_relaxed_int(&self.queued) < target and now_ns() < deadline:
                sched_yield()

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
            store_relaxed_int(&self.queued, self.queued - 1)
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

    # -- what a leader does: the write path's (kvcy/_write_path.pyx) --------

    cdef int _ready(self) except -1:
        # REQUIRES: lock held.  Raise unless writable; make room for a group.
        raise NotImplementedError("WriteQueue._ready")

    cdef int _write_group(self, Writer* leader, Writer* last) except -1:
        # REQUIRES: lock held; leader..last taken from the queue.  Commit them.
        raise NotImplementedError("WriteQueue._write_group")
