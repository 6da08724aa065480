"""NamespaceRegistry: a connection's namespaces by name (create, list, drop).

The name -> id registry lives in the database itself, in the reserved
region (kvcy/namespace_keys.py): creating a namespace writes its registry
record and the advanced next-id counter in one atomic batch.  The registry
hands out one Namespace handle per name and connection.

The region is reserved once the database has namespaces (the next-id key
exists): mark_namespaces() sets WritePath.reserve_namespaces when a
connection opens, and creating the first namespace sets it, under the
write lock, after checking that no key of the default namespace lies in
the region (a database written before namespaces existed may hold such
keys: it keeps them, and cannot have namespaces until they are moved).

Dropping deletes the registry record (one atomic write: the handle is
marked dropped at once and a namespace created later under the same name
gets a new id, so the old data is unreachable from then on), then removes
the old id's key range with one range tombstone (WriteBatch.delete_range_stored).
Compaction then reclaims the space.  A crash between the two steps leaves keys under
an id that no registry record names; the first namespace call of each
writable connection, and every drop, sweeps such orphans away.

Thread-safety: creation, drops and sweeps are serialized by the registry's
lock, so a sweep never mistakes a namespace being created for an orphan
(its record is written before any of its keys).
"""
import math
import threading

from kvcy._expiry import ttl_micros

from kvcy._db_iter import prefix_stop
from kvcy._write_batch import WriteBatch
from kvcy.errors import OperationalError, ProgrammingError
from kvcy.namespace import Namespace
from kvcy.namespace_keys import (DATA_REGION, NEXT_ID_KEY, REGISTRY_PREFIX, RESERVED_PREFIX,
                                 STORED_KEYS,
                                 KeyRegion, check_name, data_range, decode_record,
                                 decode_varint, encode_record, encode_varint)



_REGISTRY = KeyRegion(REGISTRY_PREFIX)


def mark_namespaces(engine):
    """Set engine's reserve_namespaces: True iff the database has had a namespace.

    One point read of the next-id key, which touches only a table whose key
    range covers it (so it is free for a database without namespaces), and
    is not counted as a read in stats().  If that table cannot be read, the
    open goes on, and reads of the region then report the damage: the
    region is taken as reserved (the damaged table does reach into it)."""
    try:
        found = engine.get(NEXT_ID_KEY) is not None
    except Exception:
        found = True
    finally:
        engine.reader.gets -= 1         # kvcy's own read, not the user's
    engine.writer.reserve_namespaces = found


# namespace(name, ttl=math.inf): the stored default TTL is removed.
_NO_DEFAULT = object()


class NamespaceRegistry:
    def __init__(self, conn):
        self._conn = conn
        self._lock = threading.Lock()
        self._handles = {}         # name -> Namespace handed out
        self._swept = False

    # -- lookup and creation ----------------------------------------------------

    def open(self, name, create, ttl=None):
        """The handle of namespace name, created (with create) if missing.
        ttl: the namespace's default time to live, stored in its registry
        record (set at creation, or changed; None leaves it as it is;
        math.inf removes it)."""
        encoded = check_name(name)
        if ttl is not None:
            ttl_micros(ttl)                    # a bad ttl fails before anything is written
            if ttl == math.inf:
                ttl = _NO_DEFAULT
        conn = self._conn
        with self._lock:
            engine = conn._check()
            self._sweep_once(engine)
            record = engine.get(REGISTRY_PREFIX + encoded)
            if record is None:
                if not create:
                    raise ProgrammingError("no namespace named %r" % (name,))
                if engine.readonly:
                    raise OperationalError("cannot create namespace %r: the database is open "
                                           "read-only" % (name,))
                options = {} if ttl is None or ttl is _NO_DEFAULT else {"ttl": ttl}
                namespace_id = self._create(engine, encoded, options)
            else:
                namespace_id, options = decode_record(name, record)
                if ttl is not None and options.get("ttl", _NO_DEFAULT) != ttl:
                    if engine.readonly:
                        raise OperationalError("cannot change namespace %r: the database is "
                                               "open read-only" % (name,))
                    options = dict(options, ttl=ttl)
                    if ttl is _NO_DEFAULT:
                        del options["ttl"]
                    batch = WriteBatch()
                    batch.put(encoded, encode_record(namespace_id, options), namespace=_REGISTRY)
                    engine.write_batch(batch, None)
            handle = self._handles.get(name)
            if handle is None or handle.id != namespace_id:
                if handle is not None:
                    handle._mark_dropped()     # a read-only view of a name the writer re-created
                handle = self._handles[name] = Namespace(conn, name, namespace_id, options)
            elif handle.options != options:
                handle._set_options(options)
            return handle

    def _create(self, engine, encoded, options):
        # REQUIRES: self._lock held.
        value = engine.get(NEXT_ID_KEY)
        namespace_id = 1 if value is None else decode_varint(value)[0]
        batch = WriteBatch()
        batch.put(encoded, encode_record(namespace_id, options), namespace=_REGISTRY)
        batch.put(NEXT_ID_KEY, encode_varint(namespace_id + 1), namespace=STORED_KEYS)
        writer = engine.writer
        if writer.reserve_namespaces:
            engine.write_batch(batch, None)
            return namespace_id

        def claim_region():
            # The first namespace: the region must be empty; from now on the
            # default namespace may not write it.  Runs under the write lock.
            it = engine.new_iterator(None, RESERVED_PREFIX, None)
            try:
                found = it.take(1, 2)
            finally:
                it.close()
            if found:
                raise ProgrammingError(
                    "cannot create namespace %r: the database holds keys starting with "
                    "b'\\xff\\xff' (such as %r), the region namespaces are stored in; "
                    "move those keys first" % (encoded.decode("utf-8"), found[0][0]))
            writer.reserve_namespaces = True
        writer.write_batch_checked(batch, claim_region, None)
        return namespace_id

    def names(self):
        """The names of every namespace, sorted."""
        with self._lock:
            engine = self._conn._check()
            self._sweep_once(engine)
            return [name for name, _ in self._records(engine)]

    def _records(self, engine):
        """(name, namespace id) of every registry record, in name order."""
        it = engine.new_iterator(None, REGISTRY_PREFIX, prefix_stop(REGISTRY_PREFIX))
        try:
            out = []
            for key, value in it:
                name = key[len(REGISTRY_PREFIX):].decode("utf-8")
                out.append((name, decode_record(name, value)[0]))
            return out
        finally:
            it.close()

    # -- drop ---------------------------------------------------------------------

    def drop(self, name):
        """Drop namespace name: unreachable at once, its keys removed."""
        encoded = check_name(name)
        conn = self._conn
        with self._lock:
            engine = conn._check()
            if engine.readonly:
                raise OperationalError("cannot drop namespace %r: the database is open "
                                       "read-only" % (name,))
            record = engine.get(REGISTRY_PREFIX + encoded)
            if record is None:
                raise ProgrammingError("no namespace named %r" % (name,))
            namespace_id = decode_record(name, record)[0]
            batch = WriteBatch()
            batch.delete(encoded, _REGISTRY)
            engine.write_batch(batch, None)
            handle = self._handles.pop(name, None)
            if handle is not None:
                handle._mark_dropped()
            self._remove_data(engine, namespace_id)
            self._sweep(engine)

    def _remove_data(self, engine, namespace_id):
        # One range tombstone over the id's whole key range; compaction then
        # drops the keys it covers.
        start, stop = data_range(namespace_id)
        batch = WriteBatch()
        batch.delete_range_stored(start, stop)
        engine.write_batch(batch, None)

    # -- orphans ------------------------------------------------------------------

    def _sweep_once(self, engine):
        # REQUIRES: self._lock held.  Only a database with namespaces: without
        # them the region may hold the default namespace's own keys.
        if not self._swept and not engine.readonly and engine.writer.reserve_namespaces:
            self._sweep(engine)
            self._swept = True

    def _sweep(self, engine):
        """Remove the keys of every id no registry record names (a drop cut
        short by a crash).  REQUIRES: self._lock held."""
        live = {namespace_id for _, namespace_id in self._records(engine)}
        start, region_stop = DATA_REGION, prefix_stop(DATA_REGION)
        while True:
            it = engine.new_iterator(None, start, region_stop)
            try:
                first = it.take(1, 2)
            finally:
                it.close()
            if not first:
                return
            namespace_id = decode_varint(first[0][0], len(DATA_REGION))[0]
            if namespace_id not in live:
                self._remove_data(engine, namespace_id)
            start = data_range(namespace_id)[1]

    def rebind(self):
        """The connection's engine or autocommit changed: rebind every handle."""
        for handle in list(self._handles.values()):
            handle._bind_fast_paths()
