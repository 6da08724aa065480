# cython: language_level=3
# WriteQueue: the writer queue of group commit; WritePath (kvcy/_write_path.pyx)
# extends it with what a leader does.  See _write_queue.pyx.
from libc.stdint cimport uint32_t, uint64_t
from cpython.ref cimport PyObject
from cpython.pythread cimport PyThread_type_lock

cdef enum:
    WAKE_POOL = 64                   # spare wake locks kept for waiting writers
    GROUP_MAX_BYTES = 1 << 20        # a commit group's records, at most (unless one is bigger)
    GROUP_SMALL_BYTES = 128 << 10    # a small leader's group grows by at most this much
    GATHER_MAX_MICROS = 1000         # longest a synced leader waits for its group to gather

# One queued write.  It lives on the stack of the writer's call, which does
# not return before a leader has marked it done (or it has led its own
# group), so the leader may read and write it while the writer waits.
cdef struct Writer:
    Writer* next                     # next in the queue (guarded by queue_lock)
    unsigned char* rep               # the batch rep; the leader stamps its sequence (set_batch_sequence)
    size_t rep_len                   # bytes in rep
    uint32_t count                   # entries (0: an empty batch, a sync barrier at most)
    int kind                         # KIND_VALUE / KIND_EXPIRING_VALUE / KIND_DELETE: one entry at key/value; -1: a batch
    const unsigned char* key         # the one entry (kind >= 0), owned by the writer's bytes
    size_t key_len
    const unsigned char* value
    size_t value_len
    size_t data_bytes                # user bytes (keys + values), for bytes_written
    uint64_t sequence                # first sequence, set by the leader
    bint sync                        # fdatasync before returning
    bint done                        # set by the leader that committed it
    PyObject* error                  # owned: the group's failure, NULL when it succeeded
    PyThread_type_lock wake          # held (armed) while queued behind a head; NULL for a head
    PyObject* reserved_key           # borrowed: a default-namespace key of the write in the
                                     # region reserved for namespaces, else NULL (see _refuse_reserved)

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


cdef class WriteQueue:
    cdef PyThread_type_lock lock     # the engine's write lock (a leader holds it while it commits)
    cdef PyThread_type_lock queue_lock   # guards head, tail, next links and the wake pool; pure C inside
    cdef Writer* head                # the leader (or leader to be); NULL when no writer is queued
    cdef Writer* tail                # the last queued writer
    cdef PyThread_type_lock wake_pool[WAKE_POOL]   # armed spare wake locks
    cdef int wake_spare              # how many of wake_pool are filled
    cdef int queued                  # writers in the queue, the leader included (a gathering
                                     # leader reads it without queue_lock: a hint)
    cdef int last_group              # members of the last group committed
    cdef readonly long long sync_micros  # recent fdatasync time (moving average), microseconds
    cdef public bint reserve_namespaces  # the database has namespaces: put() and delete()
                                         # refuse, and ReadPath.lookup() hides, keys starting
                                         # with b"\xff\xff" (kvcy/namespace_keys.py)

    cdef int acquire_lock(self) except -1
    cdef void release_lock(self) noexcept
    cdef void queue_acquire(self) noexcept
    cdef int _commit(self, Writer* w) except -1
    cdef void _await_wake(self, Writer* w) noexcept nogil
    cdef void _await_gil(self) noexcept nogil
    cdef int _enqueue(self, Writer* w) except -1
    cdef int _lead(self, Writer* w) except -1
    cdef void _gather(self, int target) noexcept
    cdef int _refuse_reserved(self, Writer* w) except -1
    cdef Writer* _take_group(self, Writer* leader) noexcept
    cdef void _fail_group(self, Writer* leader, Writer* last, object exc) noexcept
    cdef void _finish_group(self, Writer* leader, Writer* last) noexcept
    cdef int _ready(self) except -1
    cdef int _write_group(self, Writer* leader, Writer* last) except -1
