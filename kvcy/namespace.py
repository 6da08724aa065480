"""Namespace: one named key space of a database (conn.namespace("users")).

    users = conn.namespace("users")      # created on first use
    users.put(b"alice", b"1"); users.get(b"alice"); b"alice" in users
    users.put_many(...); users.get_many(...); users.delete_many(...)
    for key, value in users.scan(prefix=b"a"): ...   # never leaves the namespace
    users.cursor(); users.snapshot()

A namespace has the Connection's read and write API over its own keys, as
a RocksDB column family or an LMDB named database.  Its keys are stored as
key_prefix + key in the reserved region of the one key space
(kvcy/namespace_keys.py, docs/format.md "Namespaces"): a get or put is one
bytes concatenation plus the connection's C get or put
(ReadPath.lookup_stored, WritePath.put_stored), and every scan is bounded
to the namespace's range, so it can never cross into another namespace or
the default one, and returns keys without the prefix.

Atomic writes across namespaces: a kvcy.WriteBatch takes namespace= on
put/delete (conn.write(batch)), and a transaction has txn.namespace(name)
(kvcy/namespace_transaction.py).  Consistent reads across namespaces:
conn.snapshot().namespace(name).

Lifetime: a handle works while its connection is open and its namespace is
not dropped; afterwards every call raises ProgrammingError.  With
autocommit=False the handle's reads and writes go to the connection's
implicit transaction, as the connection's own do.

Thread-safety: as the connection (a handle may be shared by threads).
"""
import functools

from kvcy._db_iter import prefix_stop
from kvcy._namespace_iter import NamespaceIterator
from kvcy._write_batch import WriteBatch
from kvcy.cursor import Cursor
from kvcy.dbformat import as_user_bytes
from kvcy.errors import DataError, ProgrammingError
from kvcy.namespace_keys import data_prefix
from kvcy.options import MAX_KEY_BYTES


def user_bounds(start, stop, prefix):
    """(start, stop) as bytes (None: unbounded), narrowed to prefix."""
    start = None if start is None else as_user_bytes(start, "start")
    stop = None if stop is None else as_user_bytes(stop, "stop")
    if prefix is not None:
        prefix = as_user_bytes(prefix, "prefix")
        if start is None or start < prefix:
            start = prefix
        end = prefix_stop(prefix)
        if end is not None and (stop is None or end < stop):
            stop = end
    return start, stop


def _key_error(key, exc):
    """The error for a key that `prefix + key` refused: TypeError naming the
    argument when it is not bytes-like, else the original error."""
    as_user_bytes(key, "key")
    return exc


class Namespace:
    """conn.namespace(name): see the module docstring."""

    def __init__(self, conn, name, namespace_id, options):
        self._conn = conn
        self.name = name
        self.id = namespace_id
        self._options = dict(options)
        self._prefix = data_prefix(namespace_id)
        self._stop = prefix_stop(self._prefix)
        self._dropped = False
        # A stored key is prefix + key, and MAX_KEY_BYTES limits stored keys.
        self.max_key_bytes = MAX_KEY_BYTES - len(self._prefix)
        self._bind_fast_paths()

    # -- state ----------------------------------------------------------------

    def _bind_fast_paths(self):
        """get, put and delete as closures over the engine's C methods
        (the connection calls this again when its engine or autocommit
        changes); the class's methods are the slow paths."""
        for name in ("get", "put", "delete"):
            self.__dict__.pop(name, None)
        conn = self._conn
        if self._dropped or conn.closed or not conn.autocommit:
            return
        engine = conn._engine
        prefix = self._prefix
        lookup = engine.reader.lookup_stored

        def get(key, default=None):
            try:
                return lookup(prefix + key, default)
            except TypeError as exc:
                raise _key_error(key, exc) from None
        get.__doc__ = Namespace.get.__doc__
        self.get = get
        if conn.options.readonly:
            return
        put_stored = engine.writer.put_stored
        delete_stored = engine.writer.delete_stored

        default_ttl = self._options.get("ttl")

        def put(key, value, *, sync=None, ttl=None):
            try:
                put_stored(prefix + key, value, sync, default_ttl if ttl is None else ttl)
            except (TypeError, DataError) as exc:
                raise self._write_error(key, exc) from None
        put.__doc__ = Namespace.put.__doc__
        self.put = put

        def delete(key, *, sync=None):
            try:
                delete_stored(prefix + key, sync)
            except (TypeError, DataError) as exc:
                raise self._write_error(key, exc) from None
        delete.__doc__ = Namespace.delete.__doc__
        self.delete = delete

    def _write_error(self, key, exc):
        key = as_user_bytes(key, "key")
        if len(key) > self.max_key_bytes:
            return DataError("key of %d bytes exceeds the limit of %d bytes for namespace %r "
                             "(MAX_KEY_BYTES less its %d-byte stored prefix)"
                             % (len(key), self.max_key_bytes, self.name, len(self._prefix)))
        return exc

    def _check(self):
        """The connection's engine; ProgrammingError once closed or dropped."""
        engine = self._conn._check()
        if self._dropped:
            raise ProgrammingError("namespace %r was dropped" % (self.name,))
        return engine

    def _implicit(self):
        # autocommit=False: this namespace in the connection's implicit transaction.
        return self._conn._implicit_transaction().namespace(self)

    def _set_options(self, options):
        # The registry record changed (a new default ttl): rebind the fast
        # paths, which hold the default.
        self._options = dict(options)
        self._bind_fast_paths()

    def _mark_dropped(self):
        self._dropped = True
        self._bind_fast_paths()

    @property
    def dropped(self):
        """True once conn.drop_namespace() dropped this namespace."""
        return self._dropped

    @property
    def key_prefix(self):
        """The bytes every stored key of this namespace starts with."""
        if self._dropped:
            raise ProgrammingError("namespace %r was dropped" % (self.name,))
        return self._prefix

    @property
    def options(self):
        """The namespace's options, as kept in its registry record (a copy)."""
        return dict(self._options)

    def _stored(self, key):
        try:
            return self._prefix + key
        except TypeError as exc:
            raise _key_error(key, exc) from None

    # -- reads ----------------------------------------------------------------

    def get(self, key, default=None):
        """The value stored under key in this namespace, or default."""
        engine = self._check()
        if not self._conn.autocommit:
            return self._implicit().get(key, default)
        return engine.reader.lookup_stored(self._stored(key), default)

    def get_many(self, keys, default=None):
        """[get(k, default) for k in keys], read at one point in time."""
        engine = self._check()
        if not self._conn.autocommit:
            return self._implicit().get_many(keys, default)
        stored = [self._stored(key) for key in keys]
        pool = self._conn._read_pool
        values = engine.get_many(stored) if pool is None else pool.get_many(engine, stored)
        return [default if value is None else value for value in values]

    def __contains__(self, key):
        return self.get(key) is not None

    def scan(self, start=None, stop=None, *, prefix=None, reverse=False):
        """(key, value) pairs of this namespace with start <= key < stop, in
        key order (descending with reverse=True); prefix keeps keys that
        start with it.  Reads the database as of this call."""
        engine = self._check()
        if not self._conn.autocommit:
            return self._implicit().scan(start, stop, prefix=prefix, reverse=reverse)
        return self._scan_at(engine, engine.last_sequence, start, stop, prefix, reverse)

    def _stored_bounds(self, start, stop):
        """User bounds (bytes or None) as the stored range, inside the namespace's."""
        lo = self._prefix if start is None else self._prefix + start
        hi = self._stop if stop is None else self._prefix + stop
        return lo, hi

    def _scan_at(self, engine, sequence, start, stop, prefix, reverse):
        start, stop = user_bounds(start, stop, prefix)
        lo, hi = self._stored_bounds(start, stop)
        it = engine.new_iterator(sequence, lo, hi, bool(reverse),
                                 factory=functools.partial(NamespaceIterator, self._prefix))
        self._conn._children.add(it)
        return it

    def cursor(self):
        """A kvcy Cursor whose scans are this namespace's."""
        self._check()
        cur = Cursor(self)
        self._conn._children.add(cur)
        return cur

    def snapshot(self):
        """A point-in-time view of this namespace (get, get_many, scan, in);
        close it, or use it as a context manager."""
        self._check()
        return NamespaceSnapshot(self._conn.snapshot(), self, owns=True)

    # -- writes ---------------------------------------------------------------

    def put(self, key, value, *, sync=None, ttl=None):
        """Store value under key in this namespace.  sync=True fsyncs first.
        ttl: seconds until the pair expires (None: the namespace's default
        ttl, if it has one, else never)."""
        engine = self._check()
        if ttl is None:
            ttl = self._options.get("ttl")
        if not self._conn.autocommit:
            return self._implicit().put(key, value, sync=sync, ttl=ttl)
        try:
            engine.writer.put_stored(self._stored(key), value, sync, ttl)
        except DataError as exc:
            raise self._write_error(key, exc) from None

    def delete(self, key, *, sync=None):
        """Remove key from this namespace (a no-op when it is absent)."""
        engine = self._check()
        if not self._conn.autocommit:
            return self._implicit().delete(key, sync=sync)
        engine.writer.delete_stored(self._stored(key), sync)

    def put_many(self, items, *, sync=None, ttl=None):
        """Store every (key, value) pair of items (a mapping or an iterable of
        pairs) as one atomic batch; ttl as in put()."""
        engine = self._check()
        if ttl is None:
            ttl = self._options.get("ttl")
        if not self._conn.autocommit:
            return self._implicit().put_many(items, sync=sync, ttl=ttl)
        if hasattr(items, "items") and callable(items.items):
            items = items.items()
        batch = WriteBatch(clock=self._conn.clock)
        batch.put_pairs(items, ttl, namespace=self)
        engine.write_batch(batch, sync)

    def delete_many(self, keys, *, sync=None):
        """Remove every key of keys as one atomic batch."""
        engine = self._check()
        if not self._conn.autocommit:
            return self._implicit().delete_many(keys, sync=sync)
        batch = WriteBatch()
        batch.delete_keys(keys, namespace=self)
        engine.write_batch(batch, sync)

    def delete_range(self, start, stop, *, sync=None):
        """Remove every key k of the namespace with start <= k < stop in one
        range tombstone (Connection.delete_range, within the namespace)."""
        engine = self._check()
        if not self._conn.autocommit:
            return self._implicit().delete_range(start, stop, sync=sync)
        batch = WriteBatch()
        batch.delete_range(start, stop, namespace=self)
        engine.write_batch(batch, sync)

    def __repr__(self):
        return "<kvcy.Namespace %r (id %d)%s>" % (self.name, self.id,
                                                 " dropped" if self._dropped else "")


class NamespaceSnapshot:
    """A namespace as of a snapshot: users.snapshot(), or
    conn.snapshot().namespace("users") (several namespaces at one moment)."""

    def __init__(self, snapshot, namespace, owns):
        self._snapshot = snapshot
        self._namespace = namespace
        self._owns = owns            # closing this view releases the snapshot
        self.sequence = snapshot.sequence
        self.name = namespace.name

    def _check(self):
        return self._snapshot._check()

    def get(self, key, default=None):
        """The value of key as of the snapshot, or default."""
        value = self._check().get(self._namespace._stored(key), self.sequence)
        return default if value is None else value

    def get_many(self, keys, default=None):
        engine = self._check()
        values = engine.get_many([self._namespace._stored(key) for key in keys], self.sequence)
        return [default if value is None else value for value in values]

    def __contains__(self, key):
        return self.get(key) is not None

    def scan(self, start=None, stop=None, *, prefix=None, reverse=False):
        """Like Namespace.scan, as of the snapshot."""
        engine = self._check()
        return self._namespace._scan_at(engine, self.sequence, start, stop, prefix, reverse)

    def close(self):
        """Release the snapshot if this view took it (users.snapshot()); idempotent."""
        if self._owns:
            self._snapshot.close()

    @property
    def closed(self):
        return self._snapshot.closed

    def __enter__(self):
        self._check()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return "<kvcy.NamespaceSnapshot %r at sequence %d>" % (self.name, self.sequence)
