"""kvcy.dbm: a drop-in for the standard library's dbm modules.

    db = kvcy.dbm.open("data/legacy", "c")     # as dbm.open(file, flag, mode)
    db["key"] = "value"; db[b"key"]            # -> b'value'

A handle is a MutableMapping of bytes to bytes over one kvcy database (a
directory).  str keys and values are stored UTF-8 encoded; reads return
bytes; a missing key raises KeyError; everything else dbm raises as
``dbm.error`` raises DbmError, listed first in ``kvcy.dbm.error``.  DbmError
is an OSError (as dbm.gnu's and dbm.sqlite3's errors are) and a
kvcy.DatabaseError; a failure that came from the engine is also an instance
of the kvcy class that names its kind (CorruptionError, OperationalError...).

len() is exact and, after its first call, O(1): a writable handle is the
database's only writer (kvcy's LOCK), so it counts the keys once with a scan
and then keeps the count itself, learning from a point read before each
write whether the key existed.  It stops keeping it (and the next len()
scans again) once the writes since the last len() outnumber the keys by
1,000, so that the extra reads never cost much more than a scan would.  The
count lives only in memory, so no crash can leave it stale.  A read-only handle's view moves only when it refreshes
(see Connection.refresh), so it keeps its count with the sequence number it
was taken at and counts again when that changes.  A count that met pairs
put with ttl= is not kept, since time alone can change it: each len() of
such a database scans.

Thread-safety: a handle may be shared by threads.  Writes through it are
serialized by its lock, so the kept count stays exact; reads take no lock.
Iterating reads the database as it was when the iteration started.
"""
import collections.abc
import errno
import os
import shutil
import tempfile
import threading

from kvcy import env as _env
from kvcy import filename as _filename
from kvcy.connection import connect
from kvcy.errors import (CorruptionError, DatabaseError, DataError, Error, NotSupportedError,
                         OperationalError, ProgrammingError)

__all__ = ["open", "error", "open_flags", "Database", "DbmError"]

# The characters open() accepts, as dbm.gnu.open_flags lists its own: one of
# "rwcn" first, then any of the modifiers "fsu".
open_flags = "rwcnfsu"

_CLOSED = "DBM object has already been closed"    # the stdlib dbm modules' words
_CLEAR_BATCH_KEYS = 10_000                        # keys per atomic batch in clear()
_KEEP_COUNT_SLACK_WRITES = 1_000                  # see Database._kept_count_paid()


# -- errors ----------------------------------------------------------------

class DbmError(DatabaseError, OSError):
    """What kvcy.dbm raises where the dbm modules raise their ``error``."""


class DbmOperationalError(DbmError, OperationalError):
    """Locked, missing, read-only, I/O: a DbmError and an OperationalError."""


class DbmCorruptionError(DbmError, CorruptionError):
    """Bytes on disk failed a check: a DbmError and a CorruptionError."""


class DbmProgrammingError(DbmError, ProgrammingError):
    """Use after close: a DbmError and a ProgrammingError."""


class DbmDataError(DbmError, DataError):
    """A key or value over kvcy's limit: a DbmError and a DataError."""


class DbmNotSupportedError(DbmError, NotSupportedError):
    """A DbmError and a NotSupportedError."""


class DbmFlagError(DbmError, ProgrammingError, ValueError):
    """A bad open() flag.  dbm.gnu raises its error here, dbm.dumb and
    dbm.sqlite3 raise ValueError: this is both."""


# As the stdlib's dbm.error: a tuple to catch, the module's own class first.
error = (DbmError, OSError)

_FLAVOURS = ((CorruptionError, DbmCorruptionError), (DataError, DbmDataError),
             (NotSupportedError, DbmNotSupportedError), (ProgrammingError, DbmProgrammingError),
             (OperationalError, DbmOperationalError))


def _as_dbm_error(exc):
    """The DbmError to raise (from exc) for kvcy.Error exc, of the same kind."""
    for kind, flavour in _FLAVOURS:
        if isinstance(exc, kind):
            break
    else:
        flavour = DbmError
    err = flavour(str(exc))
    for name in ("errno", "filename"):
        if getattr(exc, name, None) is not None:
            setattr(err, name, getattr(exc, name))
    return err


def _os_error(exc):
    """The DbmOperationalError for OSError exc from a file-system call."""
    return DbmOperationalError(exc.errno, exc.strerror or str(exc), exc.filename)


def _bytes(obj, what):
    """obj as bytes: str is encoded as UTF-8, as the dbm modules do."""
    if type(obj) is bytes:
        return obj
    if isinstance(obj, str):
        return obj.encode("utf-8")
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    raise TypeError("kvcy.dbm %ss must be bytes or str, not %s" % (what, type(obj).__name__))


# -- open ------------------------------------------------------------------

def _parse_flag(flag):
    """(create, new, readonly, sync) for a dbm flag such as "c" or "rs"."""
    if not isinstance(flag, str):
        raise TypeError("kvcy.dbm.open() flag must be str, not %s" % type(flag).__name__)
    if not flag or flag[0] not in "rwcn":
        raise DbmFlagError("First flag must be one of 'r', 'w', 'c' or 'n', not %r" % flag)
    for modifier in flag[1:]:
        if modifier not in "fsu":
            raise DbmFlagError("Flag %r is not supported (in %r): the modifiers are 'f', 's' "
                               "and 'u'" % (modifier, flag))
    # 'f' (fast: do not sync each write) is kvcy's default; 'u' (do not
    # lock) is accepted and ignored: kvcy always locks against a second writer.
    return flag[0] in "cn", flag[0] == "n", flag[0] == "r", "s" in flag


def _directory_mode(mode):
    """The directory permissions that give each class what ``mode`` gives it
    on a file: a class that may read may also list and enter."""
    dir_mode = 0
    for shift in (6, 3, 0):
        bits = (mode >> shift) & 0o7
        if bits & 0o4:
            bits |= 0o1
        dir_mode |= bits << shift
    return dir_mode


def _remove_database(path):
    """Flag 'n': remove whatever is at path, if it is a file or a kvcy database.

    The directory is renamed aside (under the database's LOCK, so a running
    writer is never pulled from under) and then deleted: after a crash at
    any point, path holds the old database or none, never half of one.  What
    such a crash left aside is deleted by the next 'n'."""
    parent = os.path.dirname(os.path.abspath(path))
    prefix = ".%s.deleting-" % os.path.basename(path)
    for name in os.listdir(parent):
        if name.startswith(prefix):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        os.unlink(path)
        return
    foreign = sorted(n for n in os.listdir(path) if _filename.parse_file_name(n) is None)
    if foreign:
        raise DbmOperationalError(
            "flag 'n' would delete %s, which is not a kvcy database: it holds %r%s"
            % (path, foreign[0], " and %d more" % (len(foreign) - 1) if len(foreign) > 1 else ""))
    lock = _env.lock_file(_filename.lock_file_name(path))
    try:
        aside = tempfile.mkdtemp(dir=parent, prefix=prefix)
        try:
            os.rename(path, os.path.join(aside, "db"))
        except OSError:
            os.rmdir(aside)
            raise
    finally:
        lock.release()
    shutil.rmtree(aside)


def open(file, flag="r", mode=0o666):
    """Open the kvcy database in directory ``file`` as a dbm handle.

    flag: 'r' read only (default), 'w' read and write, 'c' as 'w' and create
    it if missing, 'n' always a new, empty database; followed by any of 's'
    (every write is synced to disk before it returns), 'f' (writes are not
    synced one by one: the default) and 'u' (accepted for dbm.gnu code: a
    kvcy database is always locked against a second writer).
    mode: the permissions of a new database, as for a dbm file (less the
    umask); they are given to its directory, so they govern every file in it.
    """
    path = os.fsdecode(os.fspath(file))
    create, new, readonly, sync = _parse_flag(flag)
    if not isinstance(mode, int):
        raise TypeError("kvcy.dbm.open() mode must be an int, not %s" % type(mode).__name__)
    try:
        if new:
            _remove_database(path)
        if not os.path.exists(path):
            if not create:
                raise DbmOperationalError(
                    errno.ENOENT, "kvcy.dbm database does not exist; use flag 'c' or 'n' to "
                    "create it", os.fspath(file))
            try:
                os.mkdir(path, _directory_mode(mode))
            except FileExistsError:
                pass                      # created meanwhile; connect() checks what it is
        conn = connect(path, readonly=readonly, create_if_missing=create, sync=sync)
    except DbmError:
        raise
    except Error as exc:
        raise _as_dbm_error(exc) from exc
    except OSError as exc:
        raise _os_error(exc) from exc
    return Database(conn, readonly)


# -- the handle ------------------------------------------------------------

class Database(collections.abc.MutableMapping):
    """An open kvcy.dbm handle; kvcy.dbm.open() makes one."""

    def __init__(self, conn, readonly):
        self._conn = conn                 # None once closed
        self._readonly = readonly
        self.path = conn.path
        self._lock = threading.Lock()     # serializes writes with the kept count
        self._count = None                # keys in the database; None: not counted yet
        self._writes_uncounted = 0        # writes that paid for _count since the last len()
        self._count_sequence = None       # read-only handles: the sequence _count is of

    def _open_conn(self):
        conn = self._conn
        if conn is None:
            raise DbmProgrammingError(_CLOSED)
        return conn

    def _writable_conn(self, doing):
        conn = self._open_conn()
        if self._readonly:
            raise DbmOperationalError("cannot %s: the database %s was opened read-only (flag 'r')"
                                      % (doing, self.path))
        return conn

    def _reraise(self, exc):
        """Raise the DbmError for kvcy.Error exc (a closed handle says so)."""
        if self._conn is None:
            raise DbmProgrammingError(_CLOSED) from exc
        raise _as_dbm_error(exc) from exc

    # -- reads -------------------------------------------------------------

    # The hot methods check inline what _open_conn() and _bytes() would: a
    # call from Python costs about as much as kvcy's own get.

    def __getitem__(self, key):
        conn = self._conn
        if conn is None:
            raise DbmProgrammingError(_CLOSED)
        try:
            value = conn.get(key if type(key) is bytes else _bytes(key, "key"))
        except Error as exc:
            self._reraise(exc)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key, default=None):
        conn = self._open_conn()
        try:
            return conn.get(_bytes(key, "key"), default)
        except Error as exc:
            self._reraise(exc)

    def __contains__(self, key):
        conn = self._open_conn()
        try:
            return conn.get(_bytes(key, "key")) is not None
        except Error as exc:
            self._reraise(exc)

    def __iter__(self):
        """The keys in key order, as the database was when iteration began."""
        conn = self._open_conn()
        try:
            with conn.scan() as it:
                for key, _ in it:
                    yield key
        except Error as exc:
            self._reraise(exc)

    def _scan_list(self, pick):
        conn = self._open_conn()
        try:
            with conn.scan() as it:
                return [pick(item) for item in it]
        except Error as exc:
            self._reraise(exc)

    def keys(self):
        """Every key, a list in key order (dbm's keys() is a list too)."""
        return self._scan_list(lambda item: item[0])

    def values(self):
        """Every value, a list in key order, read at one point in time."""
        return self._scan_list(lambda item: item[1])

    def items(self):
        """Every (key, value) pair, a list in key order, read at one point in time."""
        return self._scan_list(lambda item: item)

    def firstkey(self):
        """The smallest key, or None when the database is empty (dbm.gnu)."""
        return self._key_from(None)

    def nextkey(self, key):
        """The smallest key greater than key, or None after the last (dbm.gnu).
        key need not exist, so deleting keys while walking is safe here."""
        return self._key_from(_bytes(key, "key") + b"\x00")

    def _key_from(self, start):
        conn = self._open_conn()
        try:
            with conn.scan(start) as it:
                for key, _ in it:
                    return key
        except Error as exc:
            self._reraise(exc)
        return None

    def __len__(self):
        """The number of keys: a scan the first time, then kept (see the module doc)."""
        conn = self._open_conn()
        try:
            if self._readonly:
                with conn.snapshot() as snap:
                    if self._count is None or self._count_sequence != snap.sequence:
                        count, expiring = self._count_keys(snap)
                        if expiring:
                            return count
                        self._count = count
                        self._count_sequence = snap.sequence
                    return self._count
            with self._lock:
                if self._count is None:
                    count, expiring = self._count_keys(conn)
                    if expiring:
                        return count
                    self._count = count
                self._writes_uncounted = 0
                return self._count
        except Error as exc:
            self._reraise(exc)

    def _kept_count_paid(self):
        # Keeping the count costs a point read per write.  Once the writes
        # since the last len() outnumber the keys (the scan that would count
        # them again), stop paying: the next len() counts again.
        # REQUIRES: self._lock held, self._count not None.
        self._writes_uncounted += 1
        if self._writes_uncounted > self._count + _KEEP_COUNT_SLACK_WRITES:
            self._count = None

    @staticmethod
    def _count_keys(source):
        # (keys, True iff some of them expire: put with ttl=, a count that
        # time alone can change, so it must not be kept).
        count = 0
        with source.scan() as it:
            for _ in it:            # the plain loop beat sum() and zip/deque tricks
                count += 1
            return count, it.expiring_met > 0

    def __bool__(self):
        # One key answers it; len() may have to count them all.
        return self._key_from(None) is not None

    # -- writes ------------------------------------------------------------

    def __setitem__(self, key, value):
        conn = self._conn
        if conn is None or self._readonly:
            conn = self._writable_conn("store")
        if type(key) is not bytes:
            key = _bytes(key, "key")
        if type(value) is not bytes:
            value = _bytes(value, "value")
        with self._lock:
            try:
                if self._count is None:
                    conn.put(key, value)
                else:
                    added = conn.get(key) is None
                    conn.put(key, value)
                    self._count += added
                    self._kept_count_paid()
            except Error as exc:
                self._count = None        # count again rather than trust it
                self._reraise(exc)

    def __delitem__(self, key):
        self.pop(key)

    _MISSING = object()

    def pop(self, key, default=_MISSING):
        """Remove key and return its value; default (or KeyError) if absent."""
        conn = self._writable_conn("delete")
        encoded = _bytes(key, "key")
        with self._lock:
            try:
                value = conn.get(encoded)
                if value is not None:
                    conn.delete(encoded)
                    if self._count is not None:
                        self._count -= 1
                        self._kept_count_paid()
            except Error as exc:
                self._count = None
                self._reraise(exc)
        if value is None:
            if default is self._MISSING:
                raise KeyError(key)
            return default
        return value

    def setdefault(self, key, default=None):
        """db[key] if present, else store default (bytes or str) and return it."""
        conn = self._writable_conn("store")
        encoded = _bytes(key, "key")
        with self._lock:
            try:
                value = conn.get(encoded)
                if value is not None:
                    return value
                conn.put(encoded, _bytes(default, "value"))
                if self._count is not None:
                    self._count += 1
                    self._kept_count_paid()
            except Error as exc:
                self._count = None
                self._reraise(exc)
        return default

    def clear(self):
        """Remove every key, in atomic batches of up to 10,000 keys (a crash
        in the middle of a large clear() leaves some keys)."""
        conn = self._writable_conn("clear")
        with self._lock:
            try:
                with conn.scan() as it:
                    batch = []
                    for key, _ in it:
                        batch.append(key)
                        if len(batch) == _CLEAR_BATCH_KEYS:
                            conn.delete_many(batch)
                            batch = []
                    conn.delete_many(batch)
                self._count = 0
            except Error as exc:
                self._count = None
                self._reraise(exc)

    # -- dbm.gnu's upkeep --------------------------------------------------

    def sync(self):
        """Make every write so far durable (fsync the write-ahead log).  On a
        read-only handle there is nothing to sync and it does nothing."""
        conn = self._open_conn()
        if self._readonly:
            return
        try:
            conn.put_many((), sync=True)     # an empty synced batch syncs what came before
        except Error as exc:
            self._reraise(exc)

    def reorganize(self):
        """Give back the space of deleted and overwritten entries
        (Connection.compact_range over every key); waits until done."""
        conn = self._writable_conn("reorganize")
        try:
            conn.compact_range()
        except Error as exc:
            self._reraise(exc)

    # -- lifecycle ---------------------------------------------------------

    def close(self):
        """Close the handle (writes are made durable first); idempotent.
        Every later operation raises DbmError, as dbm does."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Error as exc:
                raise _as_dbm_error(exc) from exc

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __del__(self):
        # As the dbm modules do, an unclosed handle closes quietly.
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        state = "closed" if self._conn is None else ("read-only" if self._readonly else "open")
        return "<kvcy.dbm.Database %r %s>" % (self.path, state)
