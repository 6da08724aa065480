"""kvcy.aio: the asyncio facade of a connection, over its worker pools.

    async with kvcy.aio.connect(path) as db:
        await db.put(b"k", b"v", sync=True)
        await db.get(b"k")
        async for key, value in db.scan(prefix=b"user:"):
            ...

Every call runs on the connection's pools (kvcy/pools.py), never in the
event loop's thread: reads on the read pool, writes and flushes on the write
pool (which groups the writes queued while a commit runs into one batch with
one fsync), the open and the close on the loop's default executor.  A scan
fetches its pairs in chunks on the read pool, the next chunk while the
caller works through this one.  The event loop only checks arguments that
are cheap to check (a put's key and value, a small put_many) and waits.

Transactions: ``async with db.transaction() as txn`` wraps
Connection.transaction(); its writes fill the in-memory write set in the
loop's thread, its reads and its commit run on the read pool.

Cancellation: cancelling a pending read stops the wait.  Cancelling a
pending write withdraws it if no worker has taken it yet (then nothing of it
is written); once taken it is applied whole and the cancellation only stops
the wait.  Either way a write is all or nothing.  close() lets every queued
write finish first.

Thread-safety: an AsyncConnection belongs to the event loop that opened it;
the Connection under it (``db.connection``) may be used from threads too.
"""
import asyncio
import functools

from kvcy.config import resolve_options
from kvcy.connection import Connection

# Pool sizes kvcy.aio uses where read_threads or write_threads is 0 (the
# default): every call needs a pool to run on.
AIO_READ_THREADS = 2
AIO_WRITE_THREADS = 1

# put_many/delete_many of at most this many entries (given as a list, tuple
# or dict) are checked in the event loop and can join a group; larger ones
# are checked by the writer thread and committed alone.
CHECK_IN_LOOP_ENTRIES = 1024

# Chunk sizes of a scan: small first (the first pair comes quickly), doubling
# up to the largest (fewer hops between threads on long scans).
FIRST_CHUNK = 64
MAX_CHUNK = 4096


def _open(path, config, env, clock, options):
    resolved = resolve_options(config, **options)
    changes = {}
    if not resolved.read_threads:
        changes["read_threads"] = AIO_READ_THREADS
    if not resolved.write_threads and not resolved.readonly:
        changes["write_threads"] = AIO_WRITE_THREADS
    if changes:
        resolved = resolved.replace(**changes)
    return Connection(path, resolved, env=env, clock=clock)


def connect(path, config=None, *, env=None, clock=None, **options):
    """Open the database in a worker thread: ``db = await connect(...)`` or
    ``async with connect(...) as db``.  Takes kvcy.connect()'s arguments;
    read_threads and write_threads of 0 become AIO_READ_THREADS and
    AIO_WRITE_THREADS (a read-only connection has no write pool)."""
    return _Opener(functools.partial(_open, path, config, env, clock, options))


class _Opener:
    """What connect() returns: awaitable, and an async context manager."""

    def __init__(self, open_connection):
        self._open_connection = open_connection
        self._db = None

    async def _open(self):
        future = asyncio.get_running_loop().run_in_executor(None, self._open_connection)
        try:
            conn = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The open goes on in its thread; close what it opens.
            future.add_done_callback(_close_opened)
            raise
        return AsyncConnection(conn)

    def __await__(self):
        return self._open().__await__()

    async def __aenter__(self):
        self._db = await self._open()
        return self._db

    async def __aexit__(self, *exc_info):
        await self._db.close()


def _close_opened(future):
    if not future.cancelled() and future.exception() is None:
        # Closing syncs the WAL: not in the event loop's thread either.
        asyncio.get_running_loop().run_in_executor(None, future.result().close)


class AsyncConnection:
    """An open database for asyncio code.  Create with kvcy.aio.connect()."""

    def __init__(self, connection):
        self.connection = connection      # the kvcy.Connection underneath

    @property
    def closed(self):
        return self.connection.closed

    def _pools(self):
        conn = self.connection
        conn._check()
        return conn._read_pool, conn._write_pool

    # -- reads -------------------------------------------------------------

    async def get(self, key, default=None):
        """The value stored under key, or default."""
        read_pool, _ = self._pools()
        return await asyncio.wrap_future(read_pool.submit(self.connection.get, key, default))

    async def get_many(self, keys, default=None):
        """[get(k, default) for k in keys], read at one point in time, in
        parallel chunks on the read pool."""
        read_pool, _ = self._pools()
        keys = list(keys)
        values = await asyncio.wrap_future(
            read_pool.submit_get_many(self.connection._engine, keys))
        if default is not None:
            values = [default if value is None else value for value in values]
        return values

    def scan(self, start=None, stop=None, *, prefix=None, reverse=False):
        """An async iterator of (key, value) pairs, as Connection.scan
        selects them, read as of this call."""
        read_pool, _ = self._pools()
        snapshot = self.connection.snapshot()     # pins "as of this call"
        return AsyncScan(self.connection._check, read_pool,
                         lambda: snapshot.scan(start, stop, prefix=prefix, reverse=reverse),
                         snapshot)

    # -- writes ------------------------------------------------------------

    async def put(self, key, value, *, sync=None, ttl=None):
        """Store value under key; sync=True returns once it is fsynced; ttl
        as Connection.put."""
        _, write_pool = self._writer()
        await asyncio.wrap_future(write_pool.put(key, value, sync=sync, ttl=ttl))

    async def delete(self, key, *, sync=None):
        """Remove key."""
        _, write_pool = self._writer()
        await asyncio.wrap_future(write_pool.delete(key, sync=sync))

    async def put_many(self, items, *, sync=None, ttl=None):
        """Store every (key, value) pair of items as one atomic batch; ttl
        as Connection.put_many."""
        _, write_pool = self._writer()
        await asyncio.wrap_future(write_pool.put_many(
            items, sync=sync, check_here=_small(items), ttl=ttl))

    async def delete_many(self, keys, *, sync=None):
        """Remove every key of keys as one atomic batch."""
        _, write_pool = self._writer()
        await asyncio.wrap_future(write_pool.delete_many(
            keys, sync=sync, check_here=_small(keys)))

    async def delete_range(self, start, stop, *, sync=None):
        """Remove every key in [start, stop) (one range tombstone)."""
        _, write_pool = self._writer()
        await asyncio.wrap_future(write_pool.delete_range(start, stop, sync=sync))

    async def flush(self, *, wait=True):
        """Connection.flush() after every write queued before it."""
        _, write_pool = self._writer()
        await asyncio.wrap_future(write_pool.flush(wait=wait))

    def _writer(self):
        pools = self._pools()
        if pools[1] is None:
            # A read-only connection: raise what its writes raise.
            self.connection.put_many(())
        return pools

    # -- transactions ------------------------------------------------------

    def transaction(self, *, sync=None):
        """``async with db.transaction() as txn:``, Connection.transaction()
        for asyncio: commits when the block ends, rolls back on an exception."""
        self._pools()
        return AsyncTransaction(self, self.connection.begin(sync=sync))

    # -- lifecycle ---------------------------------------------------------

    async def close(self):
        """Close the connection once every queued write is committed (in a
        worker thread); idempotent."""
        await asyncio.get_running_loop().run_in_executor(None, self.connection.close)

    async def __aenter__(self):
        self._pools()
        return self

    async def __aexit__(self, *exc_info):
        await self.close()

    def __repr__(self):
        return "<kvcy.aio.AsyncConnection %r%s>" % (self.connection.path,
                                                   " closed" if self.closed else "")


def _small(entries):
    return isinstance(entries, (list, tuple, dict)) and len(entries) <= CHECK_IN_LOOP_ENTRIES


class AsyncScan:
    """db.scan(), txn.scan(): ``async for key, value in ...``; close with
    aclose() or ``async with``.  Errors in its arguments raise from the
    first step."""

    def __init__(self, check, read_pool, open_iterator, pinned=None):
        self._check = check              # raises once the owner is closed
        self._read_pool = read_pool
        self._open_iterator = open_iterator   # () -> an iterator with take(n, how)
        self._snapshot = pinned          # what pins "as of this call" until then
        self._iterator = None
        self._fetch = None           # (Future, size) of the chunk being read, if any
        self._chunk = []
        self._pos = 0
        self._size = FIRST_CHUNK
        self._ended = False

    def _read_chunk(self, size):
        # On a reader thread, one fetch at a time: the iterator is used by
        # one thread at a time.
        self._check()
        if self._iterator is None:
            snapshot, self._snapshot = self._snapshot, None
            try:
                self._iterator = self._open_iterator()
            finally:
                if snapshot is not None:
                    snapshot.close()     # the iterator holds what it reads from now on
            return self._iterator.take(size, 2)
        return self._iterator.take(size, 1)

    def _start_fetch(self, size):
        self._fetch = (self._read_pool.submit(self._read_chunk, size), size)

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._pos < len(self._chunk):
            item = self._chunk[self._pos]
            self._pos += 1
            return item
        if self._ended:
            raise StopAsyncIteration
        if self._fetch is None or self._fetch[0].cancelled():
            self._start_fetch(self._size)
        # A cancelled wait leaves _fetch set: the next call waits for it again.
        future, size = self._fetch
        try:
            chunk = await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._fetch = None
            self._ended = True           # an iterator that failed stays failed
            raise
        self._fetch = None
        if len(chunk) < size:
            self._ended = True
        else:
            self._size = min(size * 2, MAX_CHUNK)
            self._start_fetch(self._size)    # read ahead while the caller works
        if not chunk:
            raise StopAsyncIteration
        self._chunk, self._pos = chunk, 1
        return chunk[0]

    async def aclose(self):
        """Stop the scan and release what it holds; idempotent."""
        self._ended = True
        self._chunk = []
        fetch, self._fetch = self._fetch, None
        if fetch is not None and not fetch[0].cancel():
            try:
                await asyncio.wrap_future(fetch[0])
            except Exception:
                pass
        if self._iterator is not None:
            self._iterator.close()
        if self._snapshot is not None:
            self._snapshot.close()
            self._snapshot = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        await self.aclose()


class AsyncTransaction:
    """A kvcy.Transaction for asyncio code: ``async with db.transaction() as txn``.

    Its writes only fill the transaction's in-memory write set, so they run
    in the event loop's thread; reads and the commit, which read tables and
    write the WAL, run on the pools.  A cancelled commit is still decided
    whole: the batch is written or not, all or nothing, and the
    transaction has ended either way (``txn.transaction.closed``)."""

    def __init__(self, db, transaction):
        self._db = db
        self.transaction = transaction    # the kvcy.Transaction underneath

    @property
    def closed(self):
        return self.transaction.closed

    def _read_pool(self):
        self.transaction._check()
        return self._db._pools()[0]

    async def get(self, key, default=None):
        return await asyncio.wrap_future(
            self._read_pool().submit(self.transaction.get, key, default))

    async def get_many(self, keys, default=None):
        return await asyncio.wrap_future(
            self._read_pool().submit(self.transaction.get_many, list(keys), default))

    def scan(self, start=None, stop=None, *, prefix=None, reverse=False):
        """Like db.scan, over the transaction's snapshot with its writes
        (those made before this call) merged in."""
        iterator = self.transaction.scan(start, stop, prefix=prefix, reverse=reverse)
        return AsyncScan(self.transaction._check, self._read_pool(), lambda: iterator)

    async def put(self, key, value, *, sync=None, ttl=None):
        self.transaction.put(key, value, sync=sync, ttl=ttl)

    async def delete(self, key, *, sync=None):
        self.transaction.delete(key, sync=sync)

    async def put_many(self, items, *, sync=None, ttl=None):
        self.transaction.put_many(items, sync=sync, ttl=ttl)

    async def delete_many(self, keys, *, sync=None):
        self.transaction.delete_many(keys, sync=sync)

    async def commit(self, *, sync=None):
        """Transaction.commit() on a pool thread: ConflictError when a write
        after the snapshot conflicts (nothing written)."""
        await asyncio.wrap_future(
            self._read_pool().submit(functools.partial(self.transaction.commit, sync=sync)))

    async def rollback(self):
        self.transaction.rollback()

    async def __aenter__(self):
        self.transaction._check()
        return self

    async def __aexit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.transaction.close()       # a rollback: nothing to write
        else:
            # What the with-block's end does for a Transaction (commit, or
            # raise for one its connection closed), on a pool thread.
            await asyncio.wrap_future(self._db._pools()[0].submit(
                self.transaction.__exit__, None, None, None))

    def __repr__(self):
        return "<kvcy.aio.AsyncTransaction %r>" % (self.transaction,)
