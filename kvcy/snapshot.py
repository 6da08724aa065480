"""Snapshots: a consistent point-in-time view, named by a sequence number.

A snapshot reads the database as it was when it was taken: every read
through it uses its sequence number and so ignores every later write.  The
SnapshotList tells compaction the oldest live sequence; compaction keeps
every entry a live snapshot can still see (kvcy/_compaction_loop.pyx), so a
snapshot reads the current memtables and files and still gets its answers
(as LevelDB's snapshots do): nothing else needs pinning, and an old
snapshot holds no memtable in memory.  Releasing it (close(), the with
block, or garbage collection) lets compaction drop what only it needed.

Thread-safety: SnapshotList is guarded by its own lock; a Snapshot may be
shared by threads (it is immutable until closed).
"""
import itertools
import threading

from kvcy.dbformat import as_user_bytes as _bytes_like
from kvcy.errors import ProgrammingError
from kvcy.namespace_keys import RESERVED_PREFIX


class SnapshotList:
    def __init__(self):
        self._lock = threading.Lock()
        self._live = {}          # token -> sequence, for every unreleased snapshot
        self._tokens = itertools.count(1)

    def add(self, current_sequence):
        """Register a snapshot at current_sequence(); returns (token, sequence).

        The sequence is read under the list's lock, as oldest() reads its
        default, so a compaction either sees the new snapshot or picked a
        smallest sequence no newer than it."""
        with self._lock:
            token = next(self._tokens)
            sequence = current_sequence()
            self._live[token] = sequence
            return token, sequence

    def remove(self, token):
        with self._lock:
            self._live.pop(token, None)

    def oldest(self, current_sequence):
        """The smallest sequence of any live snapshot, or current_sequence()."""
        with self._lock:
            return min(self._live.values(), default=current_sequence())

    def __len__(self):
        return len(self._live)


class Snapshot:
    """conn.snapshot(): get, get_many and scan as of the moment it was taken."""

    def __init__(self, conn, engine):
        self._conn = conn
        self._engine = engine
        self._token, self.sequence = engine.snapshots.add(lambda: engine.last_sequence)

    def _check(self):
        """The engine the snapshot was taken on: a read-only connection's
        refresh() replaces its engine, and the sequence belongs to the old one."""
        # The connection first: after its close() (which releases every
        # snapshot) the error says the database is closed, not "released".
        self._conn._check()
        if self._token is None:
            raise ProgrammingError("cannot use a released snapshot")
        return self._engine

    def get(self, key, default=None):
        """The value of key as of the snapshot, or default."""
        return self._conn._get_at(self._check(), key, default, self.sequence)

    def get_many(self, keys, default=None):
        engine = self._check()
        keys = [_bytes_like(key, "key") for key in keys]
        values = engine.get_many(keys, self.sequence)
        if engine.writer.reserve_namespaces:      # hide the namespaces' region
            values = [None if key[:2] == RESERVED_PREFIX else value
                      for key, value in zip(keys, values)]
        return [default if value is None else value for value in values]

    def __contains__(self, key):
        return self.get(key) is not None

    def scan(self, start=None, stop=None, *, prefix=None, reverse=False):
        """Like Connection.scan, as of the snapshot."""
        return self._conn._scan_at(self.sequence, start, stop, prefix, reverse, self._check())

    def namespace(self, name):
        """Namespace name (a str or a conn.namespace() handle) as of this
        snapshot: a kvcy.namespace.NamespaceSnapshot that reads the same
        moment as this snapshot and every other view of it."""
        self._check()
        from kvcy.namespace import NamespaceSnapshot
        handle = name if not isinstance(name, str) else self._conn.namespace(name, create=False)
        return NamespaceSnapshot(self, handle, owns=False)

    def close(self):
        """Release the snapshot; idempotent."""
        token, self._token = self._token, None
        if token is not None:
            self._engine.snapshots.remove(token)

    release = close

    @property
    def closed(self):
        return self._token is None

    def __enter__(self):
        self._check()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        return "<kvcy.Snapshot at sequence %d%s>" % (self.sequence,
                                                     " released" if self.closed else "")
