"""Transactions: reads and writes that commit together, with optimistic conflict checks.

    with conn.transaction() as txn:       # commits at the end, rolls back on an exception
        balance = int(txn.get(b"acct:1"))
        txn.put(b"acct:1", b"%d" % (balance - 10))

A transaction reads the snapshot taken when it began, with its own writes
laid over it (read-your-writes).  Its writes wait in a dict until commit(),
which writes them as one batch: one WAL record, all or nothing after any
crash.  It remembers what it read: the keys of get/get_many, and for each
scan the hull of the keys it looked at (kvcy/transaction_iterator.py).

commit() validates, holding the engine's write lock so that no write can
come between the check and the batch (WritePath.write_batch_checked): if an
entry written after the snapshot has a key the transaction read or wrote,
or falls in a range it scanned, it raises ConflictError and writes nothing
(optimistic concurrency control with backward validation, as RocksDB's
OptimisticTransaction).  A transaction that wrote nothing has nothing to
validate: its reads were one consistent snapshot.  The isolation is
snapshot isolation plus read-set validation, which makes committed
transactions serializable (docs/guide.md, "Transactions").

Lifecycle: active until commit(), rollback() or close() (a rollback); then
every method but close() raises ProgrammingError.  A failed commit (a
conflict, a limit, an I/O error) ends the transaction too.  Closing the
connection rolls back its open transactions.

Thread-safety: a transaction may be shared by threads (the implicit
transaction of an autocommit=False connection is); its writes and its end
are serialized by its lock.  Its iterators and cursors belong to one thread
at a time.
"""
import functools
import random
import threading
import time
import weakref

from kvcy._merge import MergingIterator
from kvcy._two_level import LevelIterator
from kvcy._write_batch import WriteBatch, iterate_batch
from kvcy._expiry import decode_expiring, expiry_for, now_micros
from kvcy.cursor import Cursor
from kvcy.dbformat import KIND_DELETE, KIND_EXPIRING_VALUE, KIND_FOR_SEEK, KIND_RANGE_DELETE, \
    MAX_SEQUENCE, as_user_bytes, encode_internal_key
from kvcy.errors import ConflictError, DataError, OperationalError, \
    ProgrammingError
from kvcy.namespace_keys import RESERVED_PREFIX, STORED_KEYS, check_batch, reserved_key_error
from kvcy.range_del import range_del_conflict, range_dels_after
from kvcy.options import MAX_KEY_BYTES, MAX_VALUE_BYTES
from kvcy.snapshot import Snapshot
from kvcy.transaction_iterator import ReadRange, TransactionIterator, deleted_ranges

_ACTIVE = "active"
_COMMITTED = "committed"
_ROLLED_BACK = "rolled-back"
_CLOSED = "closed"


def _check_sync(sync):
    if sync is None or sync is True or sync is False:
        return sync
    raise TypeError("sync must be True, False or None, not %r" % (sync,))


def _pairs_of(items):
    """(key, value) for each item of items (a mapping or an iterable of
    pairs), refusing a non-pair or a None value with TypeError."""
    if hasattr(items, "items") and callable(items.items):
        items = items.items()
    for pair in items:
        try:
            key, value = pair
        except (TypeError, ValueError):
            raise TypeError("expected (key, value) pairs, got %r" % (pair,)) from None
        if value is None:
            raise TypeError("value must be bytes-like, not None")
        yield key, value


def _entry(key, value, refuse_reserved=False):
    """(key, value) as bytes within the limits (value None: a delete), as
    WriteBatch checks them, so a bad write fails at once, not at commit.
    refuse_reserved: a default-namespace key of a database with namespaces,
    which must not lie in their reserved region (kvcy/namespace_keys.py)."""
    if type(key) is not bytes:
        key = as_user_bytes(key, "key")
    if refuse_reserved and key[:2] == RESERVED_PREFIX:
        raise reserved_key_error(key)
    if len(key) > MAX_KEY_BYTES:
        raise DataError("key of %d bytes exceeds the limit of %d bytes (MAX_KEY_BYTES)"
                        % (len(key), MAX_KEY_BYTES))
    if value is not None:
        if type(value) is not bytes:
            value = as_user_bytes(value, "value")
        if len(value) > MAX_VALUE_BYTES:
            raise DataError("value of %d bytes exceeds the limit of %d bytes (MAX_VALUE_BYTES)"
                            % (len(value), MAX_VALUE_BYTES))
    return key, value


class _Expiring:
    """A pending put with ttl: the value and its expiry (µs since the epoch),
    fixed when put() was called, as a committed expiring value's is."""

    __slots__ = ("value", "expiry")

    def __init__(self, value, expiry):
        self.value = value
        self.expiry = expiry

    @classmethod
    def from_stored(cls, stored):
        """From a batch record's stored bytes (fixed64 expiry + value)."""
        expiry, value = decode_expiring(stored)
        return cls(value, expiry)


def _short(key):
    text = repr(key)
    return text if len(text) <= 80 else text[:77] + "..."


def _conflict(what, sequence):
    return ConflictError("transaction conflict: %s written after the transaction's snapshot "
                         "(sequence %d); nothing was written, run the transaction again"
                         % (what, sequence))


def _tables_written_in(engine, version, lo, hi, since):
    """True iff a table of version holds an entry with a user key in [lo, hi)
    (None: unbounded) and a sequence after since.  The slow path of a range
    check, for a transaction that outlived the memtable of its snapshot."""
    def overlaps(meta):
        return ((hi is None or meta.smallest_user < hi)
                and (lo is None or meta.largest_user >= lo))
    table_iterator = engine.table_cache.iterator
    children = [table_iterator(meta) for meta in version.files[0] if overlaps(meta)]
    for level in range(1, len(version.files)):
        files = [meta for meta in version.files[level] if overlaps(meta)]
        if files:
            children.append(LevelIterator(files, table_iterator))
    it = MergingIterator(children)
    it.seek(encode_internal_key(lo or b"", MAX_SEQUENCE, KIND_FOR_SEEK))
    while it.valid():
        if hi is not None and it.user_key() >= hi:
            return False
        if it.sequence() > since:
            return True
        it.next()
    if it.status() is not None:
        raise it.status()
    return False


class _DeletedRange(ReadRange):
    """The whole range of a pending delete_range, checked at commit as a
    scanned range is: a key written into it after the snapshot conflicts."""
    __slots__ = ()


class Transaction:
    """conn.transaction() / conn.begin(): see the module docstring."""

    def __init__(self, conn, engine, sync=None):
        self._sync = _check_sync(sync)
        self._conn = conn
        self._engine = engine
        self._snapshot = Snapshot(conn, engine)
        self.sequence = self._snapshot.sequence
        self._writes = {}                  # key -> value, or None for a delete
        self._range_dels = []              # pending range deletes (start, stop), stored keys, in
                                           # order; _writes holds only later writes in them
        self._reads = set()                # keys read from the snapshot
        self._ranges = []                  # a ReadRange per scan
        self._children = None              # WeakSet of its iterators and cursors, once any
        self._lock = threading.Lock()      # writes and the end
        self._state = _ACTIVE
        self._readonly = conn.options.readonly
        self._sync_on_commit = False       # a write of the implicit transaction asked sync=True

    # -- state ----------------------------------------------------------------

    def _check(self):
        if self._state is not _ACTIVE:
            if self._state is _CLOSED and self._conn.closed:
                raise ProgrammingError("cannot use a transaction whose connection was closed "
                                       "(it was rolled back)")
            raise ProgrammingError("cannot use a %s transaction" % self._state)
        return self._conn._check()

    def _check_writable(self):
        self._check()
        if self._readonly:
            raise OperationalError("cannot write: the database is open read-only")

    def _adopt(self, child):
        if self._children is None:
            self._children = weakref.WeakSet()
        self._children.add(child)
        return child

    @property
    def closed(self):
        """True once committed, rolled back or closed."""
        return self._state is not _ACTIVE

    # -- reads ----------------------------------------------------------------

    def get(self, key, default=None):
        """The value of key in the snapshot with this transaction's writes over
        it, or default."""
        self._check()
        if type(key) is not bytes:
            key = as_user_bytes(key, "key")
        writes = self._writes
        if key in writes:
            value = writes[key]
            if type(value) is _Expiring:
                value = self._unexpired(value, None)
        elif self._range_dels and self._range_deleted(key):
            value = None                # deleted by this transaction's delete_range
        elif key[:2] == RESERVED_PREFIX and self._engine.writer.reserve_namespaces:
            value = None                # the namespaces' region: not the default namespace's
        else:
            self._reads.add(key)
            value = self._engine.get(key, self.sequence)
        return default if value is None else value

    def _unexpired(self, write, now):
        """A pending expiring write's value, or None once it expired (now:
        the clock's reading in µs, None to read it here)."""
        if now is None:
            now = now_micros(self._conn._clock)
        return None if write.expiry <= now else write.value

    def get_many(self, keys, default=None):
        """[get(k, default) for k in keys]."""
        self._check()
        keys = [as_user_bytes(key, "key") for key in keys]
        writes = self._writes
        hide = self._engine.writer.reserve_namespaces
        missing = [key for key in keys
                   if key not in writes and not (hide and key[:2] == RESERVED_PREFIX)
                   and not (self._range_dels and self._range_deleted(key))]
        self._reads.update(missing)
        found = dict(zip(missing, self._engine.get_many(missing, self.sequence)))
        values = [writes[key] if key in writes else found.get(key) for key in keys]
        now = None
        for i, value in enumerate(values):
            if type(value) is _Expiring:
                if now is None:
                    now = now_micros(self._conn._clock)
                values[i] = self._unexpired(value, now)
        return [default if value is None else value for value in values]

    def __contains__(self, key):
        return self.get(key) is not None

    def scan(self, start=None, stop=None, *, prefix=None, reverse=False):
        """Like Connection.scan, over the snapshot with this transaction's
        writes (those made before this call) merged in."""
        self._check()
        start, stop = self._conn._scan_bounds(start, stop, prefix)
        with self._lock:
            writes = sorted((key, value) for key, value in self._writes.items()
                            if (start is None or key >= start) and (stop is None or key < stop))
            deleted = deleted_ranges(self._range_dels, start, stop)
        if any(type(value) is _Expiring for _, value in writes):
            # Pending expiring writes are judged once, as the scan opens.
            now = now_micros(self._conn._clock)
            writes = [(key, self._unexpired(value, now) if type(value) is _Expiring else value)
                      for key, value in writes]
        base = self._conn._scan_at(self.sequence, start, stop, None, reverse, self._engine)
        read_range = ReadRange(start, stop)
        self._ranges.append(read_range)
        return self._adopt(TransactionIterator(base, writes, read_range, reverse, deleted))

    def _range_deleted(self, key):
        """True iff a pending delete_range of this transaction covers key
        (stored form) and no later write of it is pending."""
        return any(start <= key < stop for start, stop in self._range_dels)

    def cursor(self):
        """A Cursor whose scans are this transaction's."""
        self._check()
        return self._adopt(Cursor(self))

    def namespace(self, name):
        """This transaction's view of namespace name (a str, created at once
        if missing, or a handle from conn.namespace()): its reads and writes
        are the transaction's (kvcy/namespace_transaction.py)."""
        self._check()
        from kvcy.namespace_transaction import TransactionNamespace
        handle = name if not isinstance(name, str) else self._conn.namespace(name)
        return TransactionNamespace(self, handle)

    # -- writes (kept in memory until commit) ----------------------------------

    def _set(self, entries, sync=None):
        # entries: checked (key, value) pairs, applied in order; all or none.
        if _check_sync(sync):
            self._sync_on_commit = True
        with self._lock:
            self._check_writable()
            writes = self._writes
            for key, value in entries:
                writes[key] = value

    def put(self, key, value, *, sync=None, ttl=None):
        """Store value under key when the transaction commits.  sync=True
        makes that commit sync (as commit(sync=True)).  ttl=seconds: the
        pair expires that long after this call (None: never); the
        transaction's own reads stop seeing it then too."""
        if ttl is not None:
            if value is None:
                raise TypeError("value must be bytes-like, not None")
            key, value = _entry(key, value, self._engine.writer.reserve_namespaces)
            value = _Expiring(value, expiry_for(ttl, self._conn._clock))
        elif (type(key) is not bytes or type(value) is not bytes
                or len(key) > MAX_KEY_BYTES or len(value) > MAX_VALUE_BYTES
                or key[:2] == RESERVED_PREFIX):
            if value is None:
                raise TypeError("value must be bytes-like, not None")
            key, value = _entry(key, value, self._engine.writer.reserve_namespaces)
        if sync is not None and _check_sync(sync):
            self._sync_on_commit = True
        with self._lock:
            if self._state is not _ACTIVE or self._readonly or not self._conn._usable:
                self._check_writable()
            self._writes[key] = value

    def delete(self, key, *, sync=None):
        """Remove key when the transaction commits."""
        self._set((_entry(key, None, self._engine.writer.reserve_namespaces),), sync)

    def put_many(self, items, *, sync=None, ttl=None):
        """put() every (key, value) pair of items (a mapping or an iterable of
        pairs); nothing is kept if an item is bad.  ttl=seconds: every pair
        expires that long from now (None: never)."""
        expiry = None if ttl is None else expiry_for(ttl, self._conn._clock)
        entries = []
        for key, value in _pairs_of(items):
            key, value = _entry(key, value, self._engine.writer.reserve_namespaces)
            entries.append((key, value if expiry is None else _Expiring(value, expiry)))
        self._set(entries, sync)

    def delete_many(self, keys, *, sync=None):
        """delete() every key of keys; nothing is kept if a key is bad."""
        refuse = self._engine.writer.reserve_namespaces
        self._set([_entry(key, None, refuse) for key in keys], sync)

    def delete_range(self, start, stop, *, sync=None):
        """Remove every key k with start <= k < stop when the transaction
        commits, as one range tombstone (Connection.delete_range).  The
        transaction's own reads stop seeing those keys at once; its writes
        made after this call are kept.  A write into the range committed
        after the transaction's snapshot is a conflict at commit."""
        batch = WriteBatch()
        batch.delete_range(start, stop)          # checks the bounds, and names them
        check_batch(batch, self._engine.writer)  # a stop above the namespaces' region
        self._delete_range_stored(as_user_bytes(start, "start"), as_user_bytes(stop, "stop"),
                                  sync)

    def _delete_range_stored(self, start, stop, sync=None):
        # delete_range of stored keys (a namespace's, with their prefix).
        if _check_sync(sync):
            self._sync_on_commit = True
        with self._lock:
            self._check_writable()
            self._add_range_delete(start, stop)

    def _add_range_delete(self, start, stop):
        # REQUIRES: self._lock held, writable.  The pending writes it covers
        # go; at commit the tombstone comes first, then the writes left.
        writes = self._writes
        for key in [key for key in writes if start <= key < stop]:
            del writes[key]
        self._range_dels.append((start, stop))
        # Conflicts: any key of the range written after the snapshot.
        read_range = _DeletedRange(start, stop)
        read_range.add(None, None)
        self._ranges.append(read_range)

    def write(self, batch, *, sync=None):
        """Apply the entries of a kvcy.WriteBatch, in order."""
        if not isinstance(batch, WriteBatch):
            raise TypeError("write() takes a WriteBatch, not %s" % type(batch).__name__)
        check_batch(batch, self._engine.writer)
        entries = iterate_batch(batch.data())
        if not any(kind == KIND_RANGE_DELETE for kind, _, _ in entries):
            self._set([(key, None if kind == KIND_DELETE
                         else _Expiring.from_stored(value) if kind == KIND_EXPIRING_VALUE
                         else value)
                       for kind, key, value in entries], sync)
            return
        if _check_sync(sync):
            self._sync_on_commit = True
        with self._lock:                     # in the batch's order, all at once
            self._check_writable()
            for kind, key, value in entries:
                if kind == KIND_RANGE_DELETE:
                    self._add_range_delete(key, value)
                else:
                    self._writes[key] = (None if kind == KIND_DELETE
                                         else _Expiring.from_stored(value)
                                         if kind == KIND_EXPIRING_VALUE else value)

    # -- the end --------------------------------------------------------------

    def commit(self, *, sync=None):
        """Write every write of the transaction as one atomic batch, unless a
        write committed after its snapshot conflicts with what it read or
        wrote: then raise ConflictError and write nothing.  Either way the
        transaction ends.  sync=True fsyncs before returning; None uses the
        transaction's sync (or the connection's option)."""
        sync = _check_sync(sync)
        with self._lock:
            engine = self._check()
            try:
                writes = self._writes
                if writes or self._range_dels:
                    batch = WriteBatch()
                    for start, stop in self._range_dels:
                        batch.delete_range_stored(start, stop)
                    # Keys were checked as they were written; a namespace's
                    # are in stored form (STORED_KEYS: put as they are).
                    if all(type(value) is bytes for value in writes.values()):
                        batch.put_pairs(writes.items(), namespace=STORED_KEYS)
                    else:
                        for key, value in writes.items():
                            if value is None:
                                batch.delete(key, namespace=STORED_KEYS)
                            elif type(value) is _Expiring:
                                batch.put_expiring(key, value.value, value.expiry,
                                                   namespace=STORED_KEYS)
                            else:
                                batch.put(key, value, namespace=STORED_KEYS)
                    if sync is None:
                        sync = True if self._sync_on_commit else self._sync
                    engine.writer.write_batch_checked(batch, self._validate, sync)
            except BaseException:
                self._end(_ROLLED_BACK)
                raise
            self._end(_COMMITTED)

    def _validate(self):
        """REQUIRES: the write lock held.  Raise ConflictError if anything this
        transaction read or wrote was written after its snapshot."""
        since = self.sequence
        engine = self._engine
        if engine.last_sequence == since:
            return                          # nothing at all was written since
        state = engine.reader.state
        written_after = state.written_after
        for key in self._writes:
            if written_after(key, since):
                raise _conflict("key %s was" % _short(key), since)
        for key in tuple(self._reads):
            if key not in self._writes and written_after(key, since):
                raise _conflict("key %s, which it read, was" % _short(key), since)
        tombstones = range_dels_after(state, since)
        if tombstones:
            hit = range_del_conflict(
                tombstones, list(self._writes) + list(self._reads),
                [r.bounds() for r in self._ranges if not r.empty])
            if hit is not None:
                raise _conflict("the range [%s, %s), which it read or wrote, was deleted and"
                                % (_short(hit[0]), _short(hit[1])), since)
        covered = None
        for read_range in self._ranges:
            if read_range.empty:
                continue
            lo, hi = read_range.bounds()
            if covered is None:
                covered = state.covers_since(since)
            if (state.memtables_written_in(lo, hi, since) or
                    (not covered and _tables_written_in(engine, state.version, lo, hi, since))):
                raise _conflict("a key in the %s range [%s, %s) was"
                                % ("deleted" if type(read_range) is _DeletedRange
                                   else "scanned", _short(lo), _short(hi)), since)

    def rollback(self):
        """Discard every write of the transaction and end it."""
        with self._lock:
            self._check()
            self._end(_ROLLED_BACK)

    def close(self):
        """Roll back unless already ended; idempotent."""
        with self._lock:
            if self._state is _ACTIVE:
                self._end(_CLOSED)

    def _end(self, state):
        # REQUIRES: self._lock held.
        self._state = state
        self._writes = {}
        self._reads = set()
        self._ranges = []
        self._snapshot.close()
        if self._children is not None:
            for child in list(self._children):
                try:
                    child.close()
                except Exception:
                    pass

    def __enter__(self):
        self._check()
        return self

    def __exit__(self, exc_type, exc, tb):
        """Commit when the block ends normally, roll back on an exception;
        nothing when the block already committed or rolled back."""
        if exc_type is not None:
            self.close()
        elif self._state is _ACTIVE or self._state is _CLOSED:
            self.commit()                   # a closed one raises ProgrammingError

    def __repr__(self):
        return "<kvcy.Transaction at sequence %d, %s>" % (self.sequence, self._state)


def retry_transaction(conn, func=None, *, attempts=10, backoff=0.001, max_backoff=0.1,
                      sync=None):
    """Run func(txn, *args, **kwargs) in a transaction of conn, again on ConflictError.

    As a decorator, @retry_transaction(conn) makes f(*args) run
    func(txn, *args) in `with conn.transaction(sync=sync) as txn:` and return
    its result; retry_transaction(conn, func) returns the same wrapper.  After
    a conflict it sleeps a random time up to backoff * 2**n seconds (at most
    max_backoff) and runs func again from the start in a new transaction; the
    ConflictError of the last of `attempts` runs propagates.  Any other
    exception rolls back and propagates at once.  func must have no effect
    outside the transaction that a rerun would repeat.
    """
    if type(attempts) is not int or attempts < 1:
        raise ProgrammingError("attempts must be an int >= 1, got %r" % (attempts,))
    for name, value in (("backoff", backoff), ("max_backoff", max_backoff)):
        if type(value) not in (int, float) or not value >= 0:
            raise ProgrammingError("%s must be a number of seconds >= 0, got %r" % (name, value))
    _check_sync(sync)

    def decorate(func):
        @functools.wraps(func)
        def run(*args, **kwargs):
            for attempt in range(attempts):
                try:
                    with conn.transaction(sync=sync) as txn:
                        return func(txn, *args, **kwargs)
                except ConflictError:
                    if attempt + 1 == attempts:
                        raise
                    time.sleep(random.uniform(0, min(max_backoff, backoff * 2 ** attempt)))
        return run

    if func is None:
        return decorate
    if not callable(func):
        raise TypeError("retry_transaction() needs a callable, not %s" % type(func).__name__)
    return decorate(func)
