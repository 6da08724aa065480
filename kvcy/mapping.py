"""KvcyMapping: a kvcy database (or one namespace of it) as a MutableMapping.

    slow = KvcyMapping("spill/db")                       # str keys, bytes values
    buffer = zict.Buffer({}, zict.Func(pickle.dumps, pickle.loads, slow), n=2**30)

The store zict's mappings (zict.Buffer, zict.Func, zict.LRU) and so Dask's
workers can spill to, as zict.LMDB and zict.File are: keys are str
(UTF-8, as zict.LMDB has them), bytes, or with key_type="literal" any key
made of str, bytes, int, float and tuples of them (Dask's task keys, such
as ("x-1f3a", 0), stored as their repr and read back with
ast.literal_eval).  Values are bytes-like, or a list or tuple of bytes-like
frames, which are joined (what zict.File accepts, and what Dask's
serialize_bytelist returns); reads return bytes.  A value is limited to
kvcy.MAX_VALUE_BYTES.

The mapping keeps its pairs in a namespace ("zict" by default), so it can
share a database with other data; namespace=None uses the default one.
Given a path it opens (and close() closes) its own connection with the
keyword options given; given an open kvcy.Connection it uses that one and
leaves it open.  Writes are not synced (sync=False, as zict.LMDB opens
lmdb): a process crash loses nothing, power loss may lose the latest.

len() scans the namespace once, then keeps the count up to date as the
mapping writes (a set or delete first checks whether the key is there,
which it must do anyway for KeyError); writes through other handles to
the same namespace are not counted.

Thread-safety: one lock serializes the mapping's writes and its count, as
zict's mappings expect no more than that; reads take no lock.
"""
import ast
import os
import threading
from collections.abc import MutableMapping

from kvcy.connection import Connection, connect
from kvcy.errors import ProgrammingError

_KEY_TYPES = ("str", "bytes", "literal")


class KvcyMapping(MutableMapping):
    """MutableMapping over a kvcy namespace; see the module docstring."""

    def __init__(self, path_or_conn, *, namespace="zict", key_type="str", **options):
        if key_type not in _KEY_TYPES:
            raise ProgrammingError("key_type must be one of %s, got %r"
                                   % (", ".join(map(repr, _KEY_TYPES)), key_type))
        self.key_type = key_type
        if isinstance(path_or_conn, Connection):
            if options:
                raise ProgrammingError("options %s apply only when KvcyMapping opens the "
                                       "database itself (given a path), not to an open "
                                       "connection" % ", ".join(sorted(options)))
            self.conn, self._owns = path_or_conn, False
        elif isinstance(path_or_conn, (str, os.PathLike)):
            self.conn, self._owns = connect(path_or_conn, **options), True
        else:
            raise TypeError("KvcyMapping needs a path or a kvcy.Connection, not %s"
                            % type(path_or_conn).__name__)
        self._store = self.conn if namespace is None else self.conn.namespace(namespace)
        self._lock = threading.Lock()
        self._count = None            # known after the first len()

    # -- keys -------------------------------------------------------------------

    def _encode(self, key):
        kind = self.key_type
        if kind == "str":
            if type(key) is str:
                return key.encode("utf-8")
        elif kind == "bytes":
            if isinstance(key, (bytes, bytearray, memoryview)):
                return bytes(key)
        else:
            return _literal(key).encode("utf-8")
        raise TypeError("keys of this KvcyMapping (key_type=%r) must be %s, not %s"
                        % (kind, kind, type(key).__name__))

    def _decode(self, stored):
        kind = self.key_type
        if kind == "str":
            return stored.decode("utf-8")
        if kind == "bytes":
            return stored
        return ast.literal_eval(stored.decode("utf-8"))

    # -- the mapping ----------------------------------------------------------------

    def __getitem__(self, key):
        try:
            stored = self._encode(key)
        except TypeError:
            raise KeyError(key) from None      # a key of another type is not in the mapping
        value = self._store.get(stored)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key):
        try:
            stored = self._encode(key)
        except TypeError:
            return False
        return stored in self._store

    def __setitem__(self, key, value):
        stored = self._encode(key)
        if isinstance(value, (list, tuple)):
            value = b"".join(value)
        with self._lock:
            if self._count is not None and stored not in self._store:
                self._store.put(stored, value)
                self._count += 1
            else:
                self._store.put(stored, value)

    def __delitem__(self, key):
        try:
            stored = self._encode(key)
        except TypeError:
            raise KeyError(key) from None
        with self._lock:
            if stored not in self._store:
                raise KeyError(key)
            self._store.delete(stored)
            if self._count is not None:
                self._count -= 1

    def __iter__(self):
        with self._store.scan() as it:
            for stored, _ in it:
                yield self._decode(stored)

    def items(self):
        """(key, value) pairs read from one scan (a point-in-time view)."""
        with self._store.scan() as it:
            return [(self._decode(stored), value) for stored, value in it]

    def values(self):
        with self._store.scan() as it:
            return [value for _, value in it]

    def __len__(self):
        with self._lock:
            if self._count is None:
                with self._store.scan() as it:
                    self._count = sum(1 for _ in it)
            return self._count

    # -- lifetime -------------------------------------------------------------------

    def close(self):
        """Close the connection if this mapping opened it; idempotent."""
        if self._owns:
            self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return "<kvcy.mapping.KvcyMapping %r%s>" % (
            self.conn.path, "" if self._store is self.conn else " namespace %r" % self._store.name)


def _literal(key):
    """repr(key), which ast.literal_eval reads back, for keys of str, bytes,
    int, float (finite) and tuples of them; TypeError otherwise."""
    if isinstance(key, tuple):
        for part in key:
            _literal(part)
    elif type(key) not in (str, bytes, int, float, bool) or key != key:
        raise TypeError("a literal key must be made of str, bytes, int, float and tuples "
                        "of them, not %s" % type(key).__name__)
    elif type(key) is float and key in (float("inf"), float("-inf")):
        raise TypeError("a literal key cannot be an infinite float")
    return repr(key)
