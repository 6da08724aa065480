"""Worker pools of a connection: the read pool and the write pool.

ReadPool (read_threads threads, a concurrent.futures.ThreadPoolExecutor)
reads a large get_many() in chunks on several threads at once, every chunk
at one sequence number pinned as a snapshot is, and runs the reads that
kvcy.aio hands it.  A get releases the GIL from the memtable search to the
block search (pread, checksum, decompression), so chunks of keys whose
blocks are not cached overlap on several cores; cached gets gain little.

WritePool (write_threads threads) takes submitted writes (put, delete,
put_many, delete_many, flush) from a FIFO queue and returns a
concurrent.futures.Future for each, so the submitter never waits for a WAL
write or an fsync.  A free worker takes every write queued at the head (up
to GROUP_BYTES) and commits them as one atomic batch: one WAL record and at
most one fsync, which is group commit before the C write path's own (which
still groups the batches of several workers and of direct callers).  With
one thread, writes are applied in the order they were submitted; with more,
writes pending at the same time may be applied in any order, as writes from
that many threads would.  A flush waits until every write taken before it
is committed.  A write whose Future was cancelled before a worker took it is
dropped whole; once taken it cannot be cancelled and is applied whole.

Every write is checked (types, size limits) and copied when submitted, so
a bad argument raises in the submitter and never fails the batch it would
have joined, and a bytearray changed afterwards does not change what is
written.

Lifetime: close() refuses new work, lets the write pool commit everything
queued, then stops both pools' threads.  In the child of os.fork() the
threads do not exist: the pools refuse work with ProgrammingError and fail
every Future still pending, so nothing waits forever.

Thread-safety: both pools may be used from any number of threads.
"""
import atexit
import collections
import functools
import os
import threading
import weakref
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor

from kvcy._write_batch import WriteBatch
from kvcy.namespace_keys import check_batch
from kvcy.dbformat import KIND_DELETE, KIND_VALUE, as_user_bytes
from kvcy.errors import ProgrammingError

# A write pool worker commits at most this many bytes of queued batches
# as one batch (a larger single write still goes, alone).
GROUP_BYTES = 1 << 20

# get_many reads in parallel only when every thread gets at least this many
# keys: below it, handing chunks to threads costs more than it saves.
MIN_CHUNK_KEYS = 64

_live_pools = weakref.WeakSet()

_FORKED = ("the %s pool was started in process %d and has no threads after os.fork(); "
           "open a new connection in the child")


def _bytes(obj):
    # An already-checked bytes-like object as immutable bytes of its own.
    return obj if type(obj) is bytes else bytes(obj)


def _check_sync(sync):
    if sync is None or sync is True or sync is False:
        return sync
    raise TypeError("sync must be True, False or None, not %r" % (sync,))


class _Pool:
    """What both pools share: a name, a closed flag and the fork check."""

    def __init__(self, name, threads):
        self.name = name
        self.threads = threads
        self._pid = os.getpid()
        self._forked = False
        self._closed = False
        _live_pools.add(self)

    def _check(self):
        if self._forked:
            raise ProgrammingError(_FORKED % (self.name, self._pid))
        if self._closed:
            raise ProgrammingError("cannot operate on a closed database")


def _fail(futures, exc):
    for future in futures:
        try:
            future.set_exception(exc)
        except InvalidStateError:
            pass                     # done or cancelled meanwhile


# -- the read pool --------------------------------------------------------------

class ReadPool(_Pool):
    """read_threads reader threads; see the module docstring."""

    def __init__(self, threads):
        super().__init__("read", threads)
        self._idents = set()         # the reader threads (close() must not join its own)
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="kvcy-read",
                                            initializer=self._started)
        self._pending = set()        # Futures not done yet (failed in a forked child)
        self._lock = threading.Lock()

    def _started(self):
        self._idents.add(threading.get_ident())

    def submit(self, fn, *args):
        """Run fn(*args) on a reader thread; returns its Future."""
        self._check()
        future = self._executor.submit(fn, *args)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._discard)
        return future

    def _discard(self, future):
        with self._lock:
            self._pending.discard(future)

    def _chunks(self, keys):
        """keys cut into one chunk per thread plus one, or None when too few."""
        parts = min(self.threads + 1, len(keys) // MIN_CHUNK_KEYS)
        if parts < 2:
            return None
        size = -(-len(keys) // parts)
        return [keys[i:i + size] for i in range(0, len(keys), size)]

    def get_many(self, engine, keys):
        """engine.get_many(keys) with the chunks read by the pool's threads
        and the calling thread together, every key at one sequence."""
        chunks = self._chunks(keys)
        if chunks is None:
            return engine.get_many(keys)
        self._check()
        token, sequence = engine.snapshots.add(lambda: engine.last_sequence)
        try:
            futures = [self.submit(engine.get_many, chunk, sequence) for chunk in chunks[1:]]
            try:
                out = engine.get_many(chunks[0], sequence)
            finally:
                # Wait for every chunk before the snapshot goes, even on error.
                for future in futures:
                    future.exception()
            for future in futures:
                out.extend(future.result())
            return out
        finally:
            engine.snapshots.remove(token)

    def submit_get_many(self, engine, keys):
        """engine.get_many(keys) with every chunk read in the pool; returns a
        Future of the values, for callers that must not wait (kvcy.aio)."""
        chunks = self._chunks(keys)
        if chunks is None:
            return self.submit(engine.get_many, keys)
        self._check()
        result = Future()
        result.set_running_or_notify_cancel()
        token, sequence = engine.snapshots.add(lambda: engine.last_sequence)
        futures = []
        remaining = [len(chunks)]
        lock = threading.Lock()

        def chunk_done(_):
            with lock:
                remaining[0] -= 1
                if remaining[0]:
                    return
            engine.snapshots.remove(token)
            errors = [f.exception() for f in futures if f.exception() is not None]
            if errors:
                result.set_exception(errors[0])
            else:
                result.set_result([value for f in futures for value in f.result()])

        try:
            for chunk in chunks:
                futures.append(self.submit(engine.get_many, chunk, sequence))
        except BaseException:
            engine.snapshots.remove(token)
            raise
        for future in futures:
            future.add_done_callback(chunk_done)
        return result

    def close(self):
        """Refuse new reads; wait for those running (unless called by one)."""
        self._closed = True
        if not self._forked:
            self._executor.shutdown(wait=threading.get_ident() not in self._idents)

    def _after_fork_in_child(self):
        self._forked = True
        self._lock = threading.Lock()
        pending, self._pending = list(self._pending), set()
        _fail(pending, ProgrammingError(_FORKED % (self.name, self._pid)))


# -- the write pool -------------------------------------------------------------

class _Job:
    """One submitted write, checked (batch set) or not (call set), or a
    flush (call and barrier set), and its Future."""
    __slots__ = ("future", "kind", "batch", "puts", "deletes", "sync", "call", "barrier")

    def __init__(self, batch=None, puts=(), deletes=(), sync=False, call=None, barrier=False,
                 kind=None):
        self.future = Future()
        self.kind = kind             # KIND_VALUE or KIND_DELETE for a put or delete
        self.batch = batch           # the write alone, checked (WriteBatch)
        self.puts = puts             # its (key, value) pairs as bytes, to join a group
        self.deletes = deletes       # its keys as bytes
        self.sync = sync
        self.call = call             # runs alone: a write checked by the worker, or a flush
        self.barrier = barrier       # runs after every group taken before it (flush)


class WritePool(_Pool):
    """write_threads writer threads; see the module docstring."""

    def __init__(self, threads, engine):
        super().__init__("write", threads)
        self._engine = engine
        self._sync_default = engine.options.sync
        self._queue = collections.deque()
        self._cond = threading.Condition()
        self._active = 0             # workers committing a group now
        self._running = {}           # worker thread ident -> the jobs it runs
        self._workers = [threading.Thread(target=self._work, name="kvcy-write-%d" % i,
                                          daemon=True) for i in range(threads)]
        for worker in self._workers:
            worker.start()

    # -- submitting (argument checks here, in the submitter's thread) ------

    def put(self, key, value, *, sync=None, ttl=None):
        key = as_user_bytes(key, "key")
        value = as_user_bytes(value, "value")
        if ttl is not None:
            return self._submit_expiring([(key, value)], sync, ttl)
        batch = WriteBatch()
        batch.put(key, value)
        self._refuse_reserved(batch)
        return self._submit(_Job(batch, puts=((key, value),), sync=self._sync(sync),
                                 kind=KIND_VALUE))

    def delete(self, key, *, sync=None):
        key = as_user_bytes(key, "key")
        batch = WriteBatch()
        batch.delete(key)
        self._refuse_reserved(batch)
        return self._submit(_Job(batch, deletes=(key,), sync=self._sync(sync),
                                 kind=KIND_DELETE))

    def put_many(self, items, *, sync=None, check_here=True, ttl=None):
        """check_here=False: iterate and check items on the writer thread (a
        large batch does not hold up the submitter, kvcy.aio's event loop);
        errors then come from the Future, and the batch is committed alone."""
        if hasattr(items, "items") and callable(items.items):
            items = items.items()
        if ttl is not None:
            return self._submit_expiring(items, sync, ttl)
        sync = self._sync(sync)
        if not check_here:
            return self._submit(_Job(call=functools.partial(self._write_pairs, items, sync)))
        items = list(items)
        batch = WriteBatch()
        batch.put_pairs(items)       # checks every pair, as Connection.put_many does
        self._refuse_reserved(batch)
        puts = [(_bytes(key), _bytes(value)) for key, value in items]
        return self._submit(_Job(batch, puts=puts, sync=sync))

    def delete_many(self, keys, *, sync=None, check_here=True):
        sync = self._sync(sync)
        if not check_here:
            return self._submit(_Job(call=functools.partial(self._write_deletes, keys, sync)))
        keys = list(keys)
        batch = WriteBatch()
        batch.delete_keys(keys)
        self._refuse_reserved(batch)
        return self._submit(_Job(batch, deletes=[_bytes(key) for key in keys], sync=sync))

    def delete_range(self, start, stop, *, sync=None):
        """A range tombstone, checked here; committed alone, in queue order."""
        sync = self._sync(sync)
        batch = WriteBatch()
        batch.delete_range(start, stop)
        engine = self._engine
        return self._submit(_Job(call=lambda: engine.write_batch(batch, sync)))
    def _submit_expiring(self, items, sync, ttl):
        # Puts with ttl: the batch is built (expiry fixed, pairs checked) now
        # and committed alone, so a group never has to mix in expiring pairs.
        sync = self._sync(sync)
        batch = WriteBatch(clock=self._engine.clock)
        batch.put_pairs(items, ttl)
        return self._submit(_Job(call=functools.partial(self._engine.write_batch, batch, sync)))

    def flush(self, *, wait=True):
        engine = self._engine
        return self._submit(_Job(call=lambda: engine.flush(wait=wait), barrier=True))

    def _write_pairs(self, items, sync):
        batch = WriteBatch()
        batch.put_pairs(items)
        self._refuse_reserved(batch)
        self._engine.write_batch(batch, sync)

    def _write_deletes(self, keys, sync):
        batch = WriteBatch()
        batch.delete_keys(keys)
        self._refuse_reserved(batch)
        self._engine.write_batch(batch, sync)

    def _refuse_reserved(self, batch):
        # A default-namespace key in the namespaces' region (kvcy/namespace_keys.py).
        check_batch(batch, self._engine.writer)

    def _sync(self, sync):
        sync = _check_sync(sync)
        return self._sync_default if sync is None else sync

    def _submit(self, job):
        with self._cond:
            self._check()
            self._queue.append(job)
            self._cond.notify()
        return job.future

    # -- the workers -------------------------------------------------------

    def _take(self):
        """REQUIRES: _cond held.  The jobs to run next, in queue order: a
        flush alone, or writes up to GROUP_BYTES; [] when stopped and empty."""
        queue = self._queue
        while True:
            if self._forked or (not queue and self._closed):
                return []
            if not queue:
                self._cond.wait()
                continue
            head = queue[0]
            if head.call is not None:
                if head.barrier and self._active:
                    # A flush waits until the groups taken before it are
                    # committed; the jobs behind it wait too.
                    self._cond.wait()
                    continue
                queue.popleft()
                if head.future.set_running_or_notify_cancel():
                    return [head]
                continue
            run, size = [], 0
            while queue and queue[0].call is None:
                job = queue[0]
                n = job.batch.byte_size
                if run and size + n > GROUP_BYTES:
                    break
                queue.popleft()
                if job.future.set_running_or_notify_cancel():
                    run.append(job)
                    size += n
            if run:
                return run

    def _work(self):
        while True:
            with self._cond:
                run = self._take()
                if not run:
                    return
                self._active += 1
                self._running[threading.get_ident()] = run
            try:
                self._run(run)
            finally:
                with self._cond:
                    self._active -= 1
                    del self._running[threading.get_ident()]
                    self._cond.notify_all()

    def _run(self, run):
        try:
            first = run[0]
            if first.call is not None:
                result = first.call()
            elif len(run) == 1:
                # Counted as a put or delete, as conn.put's; the write path
                # checks the reserved region again once it holds its lock.
                if first.kind == KIND_VALUE:
                    key, value = first.puts[0]
                    result = self._engine.writer.put(key, value, sync=first.sync)
                elif first.kind == KIND_DELETE:
                    result = self._engine.writer.delete(first.deletes[0], sync=first.sync)
                else:
                    result = self._engine.write_batch(first.batch, first.sync)
            else:
                group = WriteBatch()
                sync = False
                for job in run:
                    group.put_pairs(job.puts)
                    group.delete_keys(job.deletes)
                    sync = sync or job.sync
                result = self._engine.write_batch(group, sync)
        except BaseException as exc:
            _fail([job.future for job in run], exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for job in run:
                job.future.set_result(result)

    # -- lifecycle ---------------------------------------------------------

    def close(self):
        """Refuse new writes, commit every queued one, stop the threads."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._forked:
            return
        current = threading.current_thread()
        for worker in self._workers:
            if worker is not current:
                worker.join()

    def _after_fork_in_child(self):
        self._forked = True
        self._cond = threading.Condition()   # a parent thread may have held the old one
        jobs, self._queue = list(self._queue), collections.deque()
        for run in self._running.values():
            jobs.extend(run)         # their workers do not exist here
        self._running = {}
        _fail([job.future for job in jobs], ProgrammingError(_FORKED % (self.name, self._pid)))


def start_pools(options, engine):
    """(ReadPool or None, WritePool or None) as read_threads and write_threads ask."""
    read_pool = ReadPool(options.read_threads) if options.read_threads else None
    write_pool = WritePool(options.write_threads, engine) if options.write_threads else None
    return read_pool, write_pool


def _after_fork_in_child():
    for pool in list(_live_pools):
        pool._after_fork_in_child()


def _close_at_exit():
    # Worker threads are daemons (an unclosed connection must not keep the
    # interpreter alive), so commit what is still queued before exit.
    for pool in list(_live_pools):
        if isinstance(pool, WritePool) and not pool._forked:
            pool.close()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_close_at_exit)
