"""Connection: the public handle of an open database (kvcy.connect()).

Checks arguments and state, then calls the engine.  Every public method
first checks that the connection is open and was opened in this process;
after close() or os.fork() a call raises ProgrammingError, it never crashes.
Keys and values are bytes-like (bytes, bytearray, memoryview); str and
other types raise TypeError.  bytearray and memoryview arguments are copied,
so later mutation by the caller cannot change what was stored.

Transactions (kvcy/transaction.py): transaction() and begin() start one.
With autocommit=False (sqlite3's attribute since Python 3.12) the
connection's own reads and writes go to an implicit transaction, begun by
the first of them, that commit() ends and rollback() discards; with the
default autocommit=True every write commits at once and both are no-ops.

Thread-safety: a connection may be shared by threads (kvcy.threadsafety is
2); writes are serialized inside the engine, reads take no lock.  With
read_threads or write_threads set, the connection owns worker pools
(kvcy/pools.py): get_many reads large key lists on the read pool, submit()
hands writes to the write pool, and close() lets queued writes finish.
"""
import os
import threading
import time
import warnings
import weakref

from kvcy._write_batch import WriteBatch
from kvcy._expiry import encode_expiring, expiry_for, normalize_clock
from kvcy.check import check_database
from kvcy.config import resolve_options
from kvcy.dbformat import KIND_DELETE, KIND_EXPIRING_VALUE, KIND_VALUE, \
    as_user_bytes as _bytes_like
from kvcy.env import default_env
from kvcy.errors import OperationalError, ProgrammingError
from kvcy._db_iter import DBIterator, prefix_stop
from kvcy.cursor import Cursor
from kvcy.pools import start_pools
from kvcy.ingest import ingest_files
from kvcy.namespace_keys import RESERVED_PREFIX, cap_stop, check_batch
from kvcy.namespace_registry import NamespaceRegistry, mark_namespaces
from kvcy.recovery import open_engine
from kvcy.refresher import Refresher
from kvcy.snapshot import Snapshot
from kvcy.transaction import Transaction


# Connections of this process; after os.fork() the child marks them unusable
# (checking a flag is cheaper than calling os.getpid() on every operation).
_live = weakref.WeakSet()


def _forked_message(pid):
    return ("this connection was opened in process %d and cannot be used after os.fork(); "
            "open a new one in the child" % pid)


def _after_fork_in_child():
    for conn in list(_live):
        conn._usable = False
        conn._forked = True
        conn._refresh_lock = threading.Lock()   # a parent thread may have held it
        for path in (conn._engine.reader, conn._engine.writer):
            path.usable = False
            path.unusable_message = _forked_message(conn._pid)
        # Iterators do not check their connection on every step: close the
        # child's copies (the parent's are untouched), saying why.
        for child in list(conn._children):
            if isinstance(child, DBIterator):
                child.closed_message = _forked_message(conn._pid)
                child.close()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Connection:
    """An open database.  Create with kvcy.connect()."""

    def __init__(self, path, config=None, *, env=None, autocommit=True, clock=None, **options):
        self._engine = None
        if autocommit is not True and autocommit is not False:
            raise ProgrammingError("autocommit must be True or False, got %r" % (autocommit,))
        self._clock = normalize_clock(clock)   # None: real time, read in C
        self._autocommit = autocommit
        self._implicit = None         # the implicit transaction (autocommit=False)
        self._implicit_lock = threading.Lock()
        self._refresh_lock = threading.Lock()    # one refresh() at a time
        self._read_pool = self._write_pool = None
        self._refresher = None        # read-only with refresh_interval: kvcy/refresher.py
        self._metrics_server = None   # kvcy.metrics.MetricsServer of serve_metrics()
        self._namespace_registry = None   # kvcy/namespace_registry.py, on first use
        self._usable = False          # True iff open and in the process that opened it
        self._forked = False
        self._pid = os.getpid()
        self._children = weakref.WeakSet()   # iterators, cursors, snapshots to close
        self.path = os.fspath(path)
        self.options = resolve_options(config, **options)
        self._env = env or default_env()
        self._engine = open_engine(self.path, self.options, self._env, clock=self._clock)
        mark_namespaces(self._engine)
        self._read_pool, self._write_pool = start_pools(self.options, self._engine)
        self._bind_fast_paths()
        self._usable = True
        _live.add(self)
        if self.options.refresh_interval:
            self._refresher = Refresher(self, self.options.refresh_interval)

    def _bind_fast_paths(self):
        # The methods of the class route to the implicit transaction.
        for name in ("get", "put", "delete"):
            self.__dict__.pop(name, None)
        if self._autocommit:
            # get() is the C read path itself: one call from Python into C
            # (refresh() binds the new engine's).  Likewise put() and
            # delete() are the C write path's own methods.
            self.get = self._engine.reader.lookup
            if not self.options.readonly:
                self.put = self._engine.writer.put
                self.delete = self._engine.writer.delete
        if self._namespace_registry is not None:
            self._namespace_registry.rebind()

    # -- state checks ------------------------------------------------------

    def _check(self):
        if self._usable:
            return self._engine
        if self._forked:
            raise ProgrammingError(_forked_message(self._pid))
        raise ProgrammingError("cannot operate on a closed database")

    @property
    def closed(self):
        """True once closed, and in the child of a fork (where it cannot be used)."""
        return not self._usable

    @property
    def clock(self):
        """What decides when values put with ttl= expire: the clock= given to
        connect(), or time.time."""
        return time.time if self._clock is None else self._clock

    # -- writes ------------------------------------------------------------

    def put(self, key, value, *, sync=None, ttl=None):
        """Store value under key.  sync=True fsyncs before returning.
        ttl=seconds: the pair expires that long from now, by the
        connection's clock (None: never)."""
        if not self._usable:
            self._check()
        if not self._autocommit:
            return self._implicit_transaction().put(key, value, sync=sync, ttl=ttl)
        if type(key) is not bytes:
            key = _bytes_like(key, "key")
        if type(value) is not bytes:
            value = _bytes_like(value, "value")
        if ttl is not None:
            self._engine.write_one(KIND_EXPIRING_VALUE, key,
                                   encode_expiring(expiry_for(ttl, self._clock), value), sync)
            return
        self._engine.write_one(KIND_VALUE, key, value, sync)

    def delete(self, key, *, sync=None):
        """Remove key (a no-op when it is absent)."""
        engine = self._check()
        if not self._autocommit:
            return self._implicit_transaction().delete(key, sync=sync)
        if type(key) is not bytes:
            key = _bytes_like(key, "key")
        engine.write_one(KIND_DELETE, key, None, sync)

    def put_many(self, items, *, sync=None, ttl=None):
        """Store every (key, value) pair of items as one atomic batch.
        ttl=seconds: every pair expires that long from now (None: never)."""
        engine = self._check()
        if not self._autocommit:
            return self._implicit_transaction().put_many(items, sync=sync, ttl=ttl)
        batch = WriteBatch(clock=self._clock)
        if hasattr(items, "items") and callable(items.items):
            items = items.items()
        batch.put_pairs(items, ttl)
        check_batch(batch, engine.writer)
        engine.write_batch(batch, sync)

    def delete_many(self, keys, *, sync=None):
        """Remove every key of keys as one atomic batch."""
        engine = self._check()
        if not self._autocommit:
            return self._implicit_transaction().delete_many(keys, sync=sync)
        batch = WriteBatch()
        batch.delete_keys(keys)
        check_batch(batch, engine.writer)
        engine.write_batch(batch, sync)

    def delete_range(self, start, stop, *, sync=None):
        """Remove every key k with start <= k < stop, in one atomic write of
        constant size (a range tombstone).  ProgrammingError unless start < stop."""
        engine = self._check()
        if not self._autocommit:
            return self._implicit_transaction().delete_range(start, stop, sync=sync)
        batch = WriteBatch()
        batch.delete_range(start, stop)
        check_batch(batch, engine.writer)
        engine.write_batch(batch, sync)

    def write(self, batch, *, sync=None):
        """Apply a kvcy.WriteBatch atomically."""
        engine = self._check()
        if not self._autocommit:
            return self._implicit_transaction().write(batch, sync=sync)
        if not isinstance(batch, WriteBatch):
            raise TypeError("write() takes a WriteBatch, not %s" % type(batch).__name__)
        check_batch(batch, engine.writer)
        engine.write_batch(batch, sync)

    # -- reads -------------------------------------------------------------

    def get(self, key, default=None):
        """The value stored under key, or default when there is none.

        (Each open connection binds get to its C read path,
        kvcy._read_path.ReadPath.lookup, which behaves as this method.)"""
        if not self._usable:
            self._check()
        if not self._autocommit:
            return self._implicit_transaction().get(key, default)
        if type(key) is not bytes:
            key = _bytes_like(key, "key")
        value = self._engine.get(key)
        return default if value is None else value

    def get_many(self, keys, default=None):
        """[get(k, default) for k in keys], read at one point in time."""
        engine = self._check()
        if not self._autocommit:
            return self._implicit_transaction().get_many(keys, default)
        keys = [_bytes_like(key, "key") for key in keys]
        pool = self._read_pool
        values = engine.get_many(keys) if pool is None else pool.get_many(engine, keys)
        if engine.writer.reserve_namespaces:      # hide the namespaces' region
            values = [None if key[:2] == RESERVED_PREFIX else value
                      for key, value in zip(keys, values)]
        return [default if value is None else value for value in values]

    _SUBMITTABLE = ("put", "delete", "put_many", "delete_many", "flush")

    def submit(self, method, /, *args, **kwargs):
        """Hand method(*args, **kwargs), one of this connection's put,
        delete, put_many, delete_many or flush, to the write pool and return
        a concurrent.futures.Future of its result at once.  Arguments are
        checked here; needs write_threads >= 1."""
        self._check()
        if not self._autocommit:
            raise ProgrammingError("submit() is not available with autocommit=False: its "
                                   "writes would bypass the connection's open transaction")
        name = getattr(method, "__name__", None)
        if name not in self._SUBMITTABLE or method != getattr(self, name):
            raise ProgrammingError("submit() takes this connection's put, delete, put_many, "
                                   "delete_many or flush, not %r" % (method,))
        if self._write_pool is None:
            if self.options.readonly:
                raise OperationalError("cannot write: the database is open read-only")
            raise ProgrammingError("submit() needs a write pool: connect with "
                                   "write_threads >= 1")
        return getattr(self._write_pool, name)(*args, **kwargs)

    def refresh(self):
        """Read-only connections: move to the writer's latest state (its
        MANIFEST and logs as they are now).  Until then the connection keeps
        serving the state it opened with, whatever the writer compacts or
        deletes.  Iterators, cursors and snapshots opened before keep
        reading the state they started with.  A writable connection is
        always current, so there it does nothing.  With refresh_interval
        set, a thread calls it every refresh_interval seconds."""
        self._check()
        if not self.options.readonly:
            return
        with self._refresh_lock:
            engine = self._check()
            fresh = open_engine(self.path, self.options, self._env, previous=engine,
                                clock=self._clock)
            mark_namespaces(fresh)
            if not self._usable:          # close() began meanwhile: keep its engine
                fresh.close()
                self._check()
            self._engine = fresh
            self._bind_fast_paths()
        engine.close()

    def __contains__(self, key):
        return self.get(key) is not None

    def flush(self, *, wait=True):
        """Write the memtable to a table now; with wait, return once it is on disk."""
        self._check().flush(wait=wait)

    def _get_at(self, engine, key, default, sequence):
        if type(key) is not bytes:
            key = _bytes_like(key, "key")
        if key[:2] == RESERVED_PREFIX and engine.writer.reserve_namespaces:
            return default          # the namespaces' region: not the default namespace's
        value = engine.get(key, sequence)
        return default if value is None else value

    def scan(self, start=None, stop=None, *, prefix=None, reverse=False):
        """Iterate (key, value) pairs with start <= key < stop, in key order
        (descending with reverse=True); prefix keeps keys that start with it.

        The iterator reads the database as of this call.  It is closed by its
        close() or with block, or when the connection closes; using it after
        that raises ProgrammingError.
        """
        engine = self._check()
        if not self._autocommit:
            return self._implicit_transaction().scan(start, stop, prefix=prefix, reverse=reverse)
        return self._scan_at(engine.last_sequence, start, stop, prefix, reverse)

    def _scan_bounds(self, start, stop, prefix):
        """(start, stop) as bytes (None: unbounded), narrowed to prefix, and
        stop capped below the region reserved for namespaces (once the
        database has namespaces)."""
        start = None if start is None else _bytes_like(start, "start")
        stop = None if stop is None else _bytes_like(stop, "stop")
        if prefix is not None:
            prefix = _bytes_like(prefix, "prefix")
            if start is None or start < prefix:
                start = prefix
            end = prefix_stop(prefix)
            if end is not None and (stop is None or end < stop):
                stop = end
        if self._engine.writer.reserve_namespaces:
            stop = cap_stop(stop)
        return start, stop

    def _scan_at(self, sequence, start, stop, prefix, reverse, engine=None):
        """engine: the one whose state sequence belongs to (a read-only
        connection's snapshot outlives a refresh); default the current one."""
        current = self._check()
        if engine is None:
            engine = current
        start, stop = self._scan_bounds(start, stop, prefix)
        it = engine.new_iterator(sequence, start, stop, bool(reverse))
        self._children.add(it)
        return it

    def snapshot(self):
        """A point-in-time view (get, get_many, scan); use it as a context manager
        or close() it, so compaction can drop what only it still needed."""
        engine = self._check()
        snap = Snapshot(self, engine)
        self._children.add(snap)
        return snap

    def cursor(self):
        """A DB-API flavoured Cursor (scan, fetchone/fetchmany/fetchall, seek)."""
        self._check()
        cur = Cursor(self)
        self._children.add(cur)
        return cur

    # -- namespaces (kvcy/namespace.py) ---------------------------------------

    def _namespaces(self):
        registry = self._namespace_registry
        if registry is None:
            registry = self._namespace_registry = NamespaceRegistry(self)
        return registry

    def namespace(self, name, *, create=True, ttl=None):
        """The kvcy.namespace.Namespace named name (a str): the connection's
        read and write API over a key space of its own.  It is created if
        missing, unless create=False, which raises ProgrammingError instead.
        ttl: the namespace's default time to live in seconds, used by its
        puts that give none; stored with the namespace (None: keep it)."""
        self._check()
        return self._namespaces().open(name, create, ttl)

    def namespaces(self):
        """The names of the database's namespaces, sorted."""
        self._check()
        return self._namespaces().names()

    def drop_namespace(self, name):
        """Drop namespace name: its keys are unreachable at once and removed
        (compaction reclaims the space); handles of it raise afterwards."""
        self._check()
        self._namespaces().drop(name)

    # -- transactions --------------------------------------------------------

    def begin(self, *, sync=None):
        """A new Transaction over a snapshot taken now (kvcy/transaction.py);
        sync is the default of its commit()."""
        engine = self._check()
        txn = Transaction(self, engine, sync)
        self._children.add(txn)
        return txn

    def transaction(self, *, sync=None):
        """begin(), named for `with conn.transaction() as txn:`, which commits
        at the end of the block and rolls back on an exception."""
        return self.begin(sync=sync)

    @property
    def autocommit(self):
        """True: every write commits at once.  False: writes through the
        connection wait for commit().  Setting it to True commits the open
        implicit transaction first, as sqlite3 does."""
        return self._autocommit

    @autocommit.setter
    def autocommit(self, value):
        self._check()
        if value is not True and value is not False:
            raise ProgrammingError("autocommit must be True or False, got %r" % (value,))
        if value and not self._autocommit:
            self.commit()
        self._autocommit = value
        self._bind_fast_paths()

    def _implicit_transaction(self):
        txn = self._implicit
        if txn is None or txn.closed:
            with self._implicit_lock:
                txn = self._implicit
                if txn is None or txn.closed:
                    txn = self._implicit = self.begin()
        return txn

    def commit(self):
        """PEP 249: with autocommit=False, commit the implicit transaction (its
        ConflictError ends it too); with autocommit=True, do nothing."""
        self._check()
        with self._implicit_lock:
            txn, self._implicit = self._implicit, None
        if txn is not None and not txn.closed:
            txn.commit()

    def rollback(self):
        """PEP 249: with autocommit=False, discard the implicit transaction's
        writes; with autocommit=True, do nothing."""
        self._check()
        with self._implicit_lock:
            txn, self._implicit = self._implicit, None
        if txn is not None:
            txn.close()

    def compact_range(self, start=None, stop=None):
        """Compact the user keys in [start, stop] (None: unbounded) through every
        level; waits until done."""
        engine = self._check()
        start = None if start is None else _bytes_like(start, "start")
        stop = None if stop is None else _bytes_like(stop, "stop")
        engine.compact_range(start, stop)

    def stats(self):
        """Counters and gauges as a dict (see docs/operations.md)."""
        engine = self._check()
        return engine.stats_dict()

    # -- lifecycle ---------------------------------------------------------

    def close(self):
        """Close the database and every iterator, cursor and snapshot it handed
        out; idempotent.  Later calls raise ProgrammingError."""
        self._usable = False
        if self._refresher is not None:
            self._refresher.stop()
        self._stop_metrics_server()
        with self._refresh_lock:                   # a refresh() in progress finishes first
            if self._engine is not None:
                self._engine.reader.usable = False     # the C get() checks this flag
                self._engine.writer.usable = False     # and the C put() and delete() this one
        for pool in (self._write_pool, self._read_pool):
            if pool is not None:
                pool.close()      # the write pool commits what is queued first
        for child in list(self._children):
            try:
                child.close()
            except Exception:
                pass
        engine = self._engine
        if engine is None or self._forked:
            # The child of a fork must not release the parent's lock or files.
            return
        engine.close()

    def __enter__(self):
        self._check()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __del__(self):
        self._stop_metrics_server()
        engine = getattr(self, "_engine", None)
        for pool in (getattr(self, "_write_pool", None), getattr(self, "_read_pool", None)):
            if pool is not None:
                pool.close()
        if engine is not None and not engine.closed and not self._forked:
            warnings.warn("unclosed kvcy connection %r" % self.path, ResourceWarning,
                          stacklevel=2)
            try:
                engine.close()
            except Exception:
                pass

    # -- monitoring ----------------------------------------------------------

    def serve_metrics(self, port, addr="127.0.0.1"):
        """Serve this connection's metrics in Prometheus text format over HTTP
        on addr:port (port 0: any free port) from a daemon thread, until
        close(); returns the kvcy.metrics.MetricsServer (its .port, .url and
        close()).  Binds 127.0.0.1 unless addr says otherwise.  It answers
        GET with the metrics only: no keys, no values, no way to write."""
        self._check()
        from kvcy.metrics import MetricsServer     # prometheus-client loads on first use
        running = self._metrics_server
        if running is not None and not running.closed:
            raise ProgrammingError("this connection already serves its metrics at %s; "
                                   "close() that server first" % running.url)
        self._metrics_server = MetricsServer(self, port, addr)
        return self._metrics_server

    def _stop_metrics_server(self):
        server = getattr(self, "_metrics_server", None)
        if server is not None:
            self._metrics_server = None
            server.close()

    def __repr__(self):
        return "<kvcy.Connection %r%s>" % (self.path, " closed" if self.closed else "")

    # -- checking (kvcy/check.py) -------------------------------------------

    def check(self, *, progress=None):
        """Read every table of the Version this connection uses (pinned for
        the duration), the MANIFEST and the logs; return a kvcy.check.CheckReport
        naming each damaged file, block offset and what is wrong.  progress:
        an optional callable(done, total), in bytes.  Damage never raises."""
        engine = self._check()
        version = engine.versions.current       # held here: its tables stay on disk
        return check_database(self.path, self._env, version=version, progress=progress)

    # -- bulk ingestion (kvcy/ingest.py) -------------------------------------

    def ingest(self, paths, move=False):
        """Add table files written by kvcy.TableWriter, all or none: each is
        checked whole first, then copied in with a sequence number above
        everything present, so its pairs shadow older values and snapshots
        taken before do not see them.  The memtable is flushed first.
        paths: one path or an iterable of paths whose key ranges do not
        overlap.  move=True deletes the source files once they are in.
        Returns the sequence number the pairs carry (None if there are none)."""
        engine = self._check()
        if isinstance(paths, (str, bytes, os.PathLike)):
            paths = [paths]
        if not isinstance(move, bool):
            raise TypeError("move must be True or False, not %s" % type(move).__name__)
        return ingest_files(engine, self._env, list(paths), move)

    # -- checkpoints and sizes (kvcy/checkpoint.py) ---------------------------

    def checkpoint(self, dest, *, progress=None):
        """Write an openable copy of the database, as of one moment, to the new
        directory dest while writes go on: tables hard-linked (copied across
        file systems), the logs copied up to that moment.  Returns the
        sequence number the copy holds every write up to.  progress: an
        optional callable(done, total), in table bytes."""
        engine = self._check()
        if engine.readonly:
            raise OperationalError("cannot checkpoint: the database is open read-only")
        from kvcy.checkpoint import create_checkpoint
        return create_checkpoint(engine, dest, progress)

    def approximate_size(self, start=None, stop=None):
        """Estimated bytes on disk of the tables holding keys in [start, stop)
        (None: unbounded); tables the range cuts count pro rata by their
        index.  Writes still in the memtable are not counted."""
        engine = self._check()
        start = None if start is None else _bytes_like(start, "start")
        stop = None if stop is None else _bytes_like(stop, "stop")
        from kvcy.checkpoint import approximate_size
        return approximate_size(engine, start, stop)


def connect(path, config=None, *, env=None, autocommit=True, clock=None, **options):
    """Open (by default, create) the database in directory path.

    config: a YAML file path or a dict of options; keyword options override
    it (see docs/configuration.md).  env: a kvcy.env.Env (tests inject faults).
    autocommit: False makes the connection's writes wait for commit().
    clock: a callable returning seconds since the epoch, like time.time,
    that decides when values put with ttl= expire (None: real time).
    """
    return Connection(path, config, env=env, autocommit=autocommit, clock=clock, **options)
