"""TransactionNamespace: a namespace seen through a transaction (txn.namespace(name)).

    with conn.transaction() as txn:
        users, orders = txn.namespace("users"), txn.namespace("orders")
        users.put(b"alice", b"1"); orders.delete(b"o-7"); txn.put(b"k", b"v")

Its reads and writes are the transaction's, with the namespace's key
prefix added (kvcy/namespace_keys.py): writes wait in the transaction and
commit with all its others as one atomic batch; reads see the transaction's
snapshot with its writes laid over it and are checked for conflicts at
commit like any other read; a scan's read range is kept as stored keys
(PrefixedReadRange), so the conflict check covers exactly the part of the
namespace it looked at.

A namespace that existed at the transaction's snapshot counts as read
(its registry record): if it is dropped before the commit, the commit
raises ConflictError and writes nothing, so no write lands in a dropped
namespace.  Creating a namespace is not part of any transaction: it
happens at once, as in RocksDB.

Thread-safety: as the transaction.
"""
from kvcy.cursor import Cursor
from kvcy.dbformat import as_user_bytes
from kvcy.errors import ProgrammingError
from kvcy.namespace import Namespace, user_bounds
from kvcy.namespace_keys import registry_key
from kvcy._expiry import expiry_for
from kvcy.transaction import _Expiring, _entry, _pairs_of
from kvcy.transaction_iterator import ReadRange, TransactionIterator, deleted_ranges
from kvcy._write_batch import WriteBatch


class PrefixedReadRange(ReadRange):
    """A namespace scan's ReadRange: tracked in the namespace's keys,
    reported (bounds()) as stored keys."""

    __slots__ = ("prefix", "prefix_stop")

    def __init__(self, prefix, stop_of_prefix, start, stop):
        super().__init__(start, stop)
        self.prefix = prefix
        self.prefix_stop = stop_of_prefix

    def bounds(self):
        lo, hi = super().bounds()
        return (self.prefix + (lo or b""),
                self.prefix_stop if hi is None else self.prefix + hi)


class TransactionNamespace:
    """txn.namespace(name): see the module docstring."""

    def __init__(self, txn, namespace):
        if not isinstance(namespace, Namespace):
            raise TypeError("expected a Namespace, not %s" % type(namespace).__name__)
        engine = txn._check()
        self._txn = txn
        self._namespace = namespace
        self.name = namespace.name
        self._prefix = namespace.key_prefix        # raises if dropped
        key = registry_key(namespace.name)
        if engine.get(key, txn.sequence) is not None:
            txn._reads.add(key)

    def _check(self):
        return self._txn._check()

    def _stored(self, key):
        try:
            return self._prefix + key
        except TypeError as exc:
            as_user_bytes(key, "key")
            raise exc from None

    # -- reads ----------------------------------------------------------------

    def get(self, key, default=None):
        """The value of key in the transaction's view of this namespace, or default."""
        txn = self._txn
        engine = txn._check()
        key = self._stored(key)
        writes = txn._writes
        if key in writes:
            value = writes[key]
        elif txn._range_dels and txn._range_deleted(key):
            value = None
        else:
            txn._reads.add(key)
            value = engine.get(key, txn.sequence)
        return default if value is None else value

    def get_many(self, keys, default=None):
        """[get(k, default) for k in keys]."""
        return [self.get(key, default) for key in keys]

    def __contains__(self, key):
        return self.get(key) is not None

    def scan(self, start=None, stop=None, *, prefix=None, reverse=False):
        """Like Transaction.scan, within this namespace."""
        txn = self._txn
        engine = txn._check()
        namespace = self._namespace
        start, stop = user_bounds(start, stop, prefix)
        lo, hi = namespace._stored_bounds(start, stop)
        cut = len(self._prefix)
        with txn._lock:
            writes = sorted((key[cut:], value) for key, value in txn._writes.items()
                            if lo <= key < hi)
            deleted = [(a[cut:], b[cut:]) for a, b in deleted_ranges(txn._range_dels, lo, hi)]
        base = namespace._scan_at(engine, txn.sequence, start, stop, None, reverse)
        read_range = PrefixedReadRange(self._prefix, namespace._stop, start, stop)
        txn._ranges.append(read_range)
        return txn._adopt(TransactionIterator(base, writes, read_range, reverse, deleted))

    def cursor(self):
        """A Cursor whose scans are this view's."""
        self._txn._check()
        return self._txn._adopt(Cursor(self))

    # -- writes (kept in the transaction until commit) -------------------------

    def put(self, key, value, *, sync=None, ttl=None):
        """Store value under key in this namespace when the transaction
        commits; ttl as in Namespace.put (the namespace's default if None)."""
        if value is None:
            raise TypeError("value must be bytes-like, not None")
        self._txn._set((self._expiring(self._entry(key, value), self._expiry(ttl)),), sync)

    def delete(self, key, *, sync=None):
        """Remove key from this namespace when the transaction commits."""
        self._txn._set((self._entry(key, None),), sync)

    def put_many(self, items, *, sync=None, ttl=None):
        """put() every (key, value) pair of items; nothing is kept if one is bad."""
        expiry = self._expiry(ttl)
        self._txn._set([self._expiring(self._entry(key, value), expiry)
                        for key, value in _pairs_of(items)], sync)

    def _expiry(self, ttl):
        # The expiry (µs) of a put with ttl, or None: counted from the call.
        if ttl is None:
            ttl = self._namespace.options.get("ttl")
        return None if ttl is None else expiry_for(ttl, self._txn._conn._clock)

    @staticmethod
    def _expiring(entry, expiry):
        return entry if expiry is None else (entry[0], _Expiring(entry[1], expiry))

    def delete_range(self, start, stop, *, sync=None):
        """Transaction.delete_range within this namespace."""
        self._txn._check()
        WriteBatch().delete_range(start, stop, namespace=self._namespace)   # checks the bounds
        self._txn._delete_range_stored(self._stored(as_user_bytes(start, "start")),
                                       self._stored(as_user_bytes(stop, "stop")), sync)

    def delete_many(self, keys, *, sync=None):
        """delete() every key of keys; nothing is kept if one is bad."""
        self._txn._set([self._entry(key, None) for key in keys], sync)

    def _entry(self, key, value):
        if self._namespace.dropped:
            raise ProgrammingError("namespace %r was dropped" % (self.name,))
        return _entry(self._stored(key), value)

    def __repr__(self):
        return "<kvcy.TransactionNamespace %r of %r>" % (self.name, self._txn)
