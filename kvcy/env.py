"""The env: every file operation of the engine goes through this layer.

An env hands out three kinds of file (WritableFile for the WAL, tables and
MANIFEST; SequentialFile for replaying logs; RandomAccessFile for table
reads), a LOCK-file lock, and a few directory operations.  Tests swap the
POSIX implementation for tests/fault_env.FaultEnv, which drops unsynced data
at a simulated crash and injects EIO/ENOSPC, so nothing above this layer
may touch ``os`` or ``open()`` for database files.

Durability contract: WritableFile.append does no user-space buffering; once
it returns, the bytes are in the OS page cache and survive kill -9.  sync()
makes them survive power loss.  A new file's directory entry is durable only
after sync_dir() of its directory.

Thread-safety: PosixEnv is stateless and may be shared (default_env()).
RandomAccessFile.read may be called from several threads at once (pread);
close() REQUIRES that no read is in progress.  WritableFile and
SequentialFile are single-threaded; the caller serializes them.  The lock
registry is process-wide and guarded by a lock.

Errors: OSError becomes OperationalError naming the operation, the path and
the errno text ("no space left on device"), with the OSError as __cause__
and its errno as ``.errno``.  A missing file raises FileMissingError, which
is both an OperationalError and a FileNotFoundError, so callers that check
for existence may catch either.  Use of a closed file raises
ProgrammingError.
"""

import errno
import fcntl
import os
import socket
import threading
import time
import weakref

from kvcy.errors import OperationalError, ProgrammingError

__all__ = [
    "Env", "PosixEnv", "WritableFile", "SequentialFile", "RandomAccessFile",
    "FileLock", "FileMissingError", "io_error", "lock_file", "default_env",
]

_write = os.write
_pread = os.pread
_sync = getattr(os, "fdatasync", os.fsync)   # macOS has no fdatasync


class FileMissingError(OperationalError, FileNotFoundError):
    """A file or directory the operation needed does not exist."""

    def __str__(self):
        return self.strerror


def io_error(what, path, exc):
    """Return the OperationalError for OSError ``exc`` raised by ``what``
    (a verb phrase such as "append to") on ``path``.  The caller raises it
    ``from exc``.  ENOENT gives a FileMissingError."""
    code = exc.errno
    text = os.strerror(code) if code else (exc.strerror or str(exc))
    text = text[:1].lower() + text[1:]
    name = errno.errorcode.get(code, "errno %s" % code)
    msg = "cannot %s %s: %s [%s]" % (what, path, text, name)
    if code == errno.ENOENT:
        return FileMissingError(code, msg, path)
    err = OperationalError(msg)
    err.errno = code
    err.filename = path
    return err


def _closed(kind, path):
    return ProgrammingError("%s %s is closed" % (kind, path))


class WritableFile:
    """An append-only file; ``size`` is the number of bytes it holds."""

    __slots__ = ("path", "size", "_fd")

    def __init__(self, path, fd, size=0):
        self.path = path
        self.size = size
        self._fd = fd

    def append(self, data):
        """Write all of the bytes-like ``data`` at the end, unbuffered."""
        # Hot path: one call per put.  os.write on a regular file writes
        # everything unless the disk fills, so the loop is the cold path.
        try:
            n = _write(self._fd, data)
        except OSError as exc:
            raise self._error("append to", exc) from exc
        if n == len(data):
            self.size += n
            return
        self._append_rest(data, n)

    def _append_rest(self, data, done):
        view = memoryview(data).cast("B")
        total = view.nbytes
        try:
            while done < total:
                n = _write(self._fd, view[done:])
                if n == 0:   # would loop forever; treat like a full disk
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += n
        except OSError as exc:
            self.size += done
            raise self._error("append to", exc) from exc
        self.size += total

    def sync(self):
        """Make everything appended so far survive power loss."""
        if self._fd < 0:   # fdatasync(-1) raises ValueError, not OSError
            raise _closed("writable file", self.path)
        try:
            _sync(self._fd)
        except OSError as exc:
            raise self._error("sync", exc) from exc

    def flush(self):
        """No-op: append() does not buffer.  Kept for API parity."""

    def fileno(self):
        """The descriptor, for C writers that append without the GIL (they
        add what they wrote to ``size`` themselves)."""
        if self._fd < 0:
            raise _closed("writable file", self.path)
        return self._fd

    def close(self):
        fd, self._fd = self._fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError as exc:
                raise io_error("close", self.path, exc) from exc

    def _error(self, what, exc):
        if self._fd < 0:
            return _closed("writable file", self.path)
        return io_error(what, self.path, exc)

    def __repr__(self):
        return "<WritableFile %r size=%d>" % (self.path, self.size)


class SequentialFile:
    """A file read front to back (WAL and MANIFEST replay)."""

    __slots__ = ("path", "_fd")

    def __init__(self, path, fd):
        self.path = path
        self._fd = fd

    def read(self, n):
        """Return up to ``n`` bytes; fewer only at EOF, b"" at EOF."""
        try:
            data = os.read(self._fd, n)
            if len(data) == n or not data:
                return data
            parts = [data]   # short read before EOF: only for huge n
            got = len(data)
            while got < n:
                more = os.read(self._fd, n - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            return b"".join(parts)
        except OSError as exc:
            raise self._error("read", exc) from exc

    def skip(self, n):
        """Move ``n`` bytes forward; skipping past EOF is not an error."""
        try:
            os.lseek(self._fd, n, os.SEEK_CUR)
        except OSError as exc:
            raise self._error("seek in", exc) from exc

    def close(self):
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def _error(self, what, exc):
        if self._fd < 0:
            return _closed("sequential file", self.path)
        return io_error(what, self.path, exc)


class RandomAccessFile:
    """A file read at offsets (tables); reads are thread-safe."""

    __slots__ = ("path", "size", "_fd")

    def __init__(self, path, fd, size):
        self.path = path
        self.size = size   # at open; tables are immutable once written
        self._fd = fd

    def read(self, offset, n):
        """Return the ``n`` bytes at ``offset``, fewer if EOF comes first.
        The caller checks the length (a short block is corruption)."""
        try:
            data = _pread(self._fd, n, offset)
            if len(data) == n or not data:
                return data
            parts = [data]
            got = len(data)
            while got < n:
                more = _pread(self._fd, n - got, offset + got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            return b"".join(parts)
        except OSError as exc:
            if self._fd < 0:
                raise _closed("random access file", self.path) from exc
            raise io_error("read", self.path, exc) from exc

    def fileno(self):
        """The descriptor, for readers that pread without the GIL (kvcy._table)."""
        return self._fd

    def close(self):
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self):
        # Tables drop their file when the last reader lets go (table_cache.py).
        try:
            self.close()
        except Exception:
            pass


# --- LOCK file -------------------------------------------------------------
# flock() excludes other processes.  Inside one process a second flock on a
# new open file description would fail too, but the registry of held
# realpaths makes that explicit and cheap.  After fork() the child shares
# the parent's open file description, so a LOCK_UN from the child would
# free the parent's lock: release() in another pid only closes its fd.

_registry_lock = threading.Lock()
_held_paths = set()
_held_locks = weakref.WeakSet()   # FileLock objects holding a lock in this process


def _reset_registry_lock():
    # A fork while another thread held the lock would deadlock the child.
    global _registry_lock
    _registry_lock = threading.Lock()
    # The child holds no lock of its own: close its copies of the parent's
    # LOCK descriptors (the parent's flock stays: it is released only when
    # every copy is closed, and closing ours means a parent that dies does
    # not leave the database locked by us) and forget the parent's paths.
    for held in list(_held_locks):
        fd, held._fd = held._fd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
    _held_locks.clear()
    _held_paths.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_registry_lock)


class FileLock:
    """A held database LOCK; release() gives it up (the file stays)."""

    __slots__ = ("path", "_fd", "_key", "_pid", "__weakref__")

    def __init__(self, path, fd, key):
        self.path = path
        self._fd = fd
        self._key = key
        self._pid = os.getpid()
        _held_locks.add(self)

    def release(self):
        """Unlock and close; idempotent.  In a forked child this only
        closes the inherited fd and leaves the parent's lock alone."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        if os.getpid() != self._pid:
            os.close(fd)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
            with _registry_lock:
                _held_paths.discard(self._key)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()

    def __repr__(self):
        state = "held" if self._fd >= 0 else "released"
        return "<FileLock %r %s>" % (self.path, state)


def _holder(fd):
    """Return the holder line written by the lock's owner, if any."""
    try:
        line = os.pread(fd, 512, 0).decode("utf-8", "replace")
    except OSError:
        line = ""
    line = line.splitlines()[0].strip() if line.strip() else ""
    return line or "another process (holder unknown)"


def _locked_error(path, fd):
    return OperationalError(
        "database is locked by %s (LOCK file %s)" % (_holder(fd), path))


def lock_file(path):
    """Lock ``path`` exclusively, recording who holds it, or raise
    OperationalError naming the current holder."""
    key = os.path.realpath(path)
    with _registry_lock:
        fd = -1
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            if key in _held_paths:
                raise _locked_error(path, fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _locked_error(path, fd) from None
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            line = "pid=%d host=%s since=%s\n" % (
                os.getpid(), socket.gethostname(), since)
            os.ftruncate(fd, 0)
            os.pwrite(fd, line.encode(), 0)
            os.fsync(fd)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            raise io_error("lock", path, exc) from exc
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        _held_paths.add(key)
    return FileLock(path, fd, key)


class Env:
    """Base of every env: helpers built only on the primitives, so a
    wrapping env (FaultEnv) gets them with its own tracking and faults.

    Primitives: new_writable_file, new_appendable_file, new_sequential_file,
    new_random_access_file, file_exists, get_children, remove_file,
    rename_file, create_dir, get_file_size, sync_dir, lock_file, now.
    """

    def read_file(self, path):
        """Return the whole content of ``path`` (CURRENT)."""
        f = self.new_sequential_file(path)
        try:
            parts = []
            while True:
                chunk = f.read(65536)
                if not chunk:
                    return b"".join(parts)
                parts.append(chunk)
        finally:
            f.close()

    def write_file_atomically(self, path, data, sync=True):
        """Replace ``path`` with ``data`` so a crash leaves old or new
        content, never a mix: write ``path + ".tmp"``, sync, rename over,
        then sync the directory so the rename itself is durable."""
        tmp = path + ".tmp"
        f = self.new_writable_file(tmp)
        try:
            try:
                f.append(data)
                if sync:
                    f.sync()
            finally:
                f.close()
            self.rename_file(tmp, path)
        except BaseException:
            try:
                self.remove_file(tmp)
            except (OSError, OperationalError):
                pass
            raise
        if sync:
            self.sync_dir(os.path.dirname(path) or ".")


class PosixEnv(Env):
    """The real file system.  Stateless; one instance may serve everyone."""

    def _open(self, what, path, flags, mode=0o644):
        try:
            return os.open(path, flags, mode)
        except OSError as exc:
            raise io_error(what, path, exc) from exc

    def new_writable_file(self, path):
        """Create ``path`` (truncating it if it exists) for appending."""
        # Read and write: the WAL writer may map the file (kvcy/_wal_writer.pyx).
        fd = self._open("create", path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        return WritableFile(path, fd, 0)

    def new_appendable_file(self, path):
        """Open ``path`` for appending at its end, creating it if missing."""
        fd = self._open("open", path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
        try:
            size = os.fstat(fd).st_size
        except OSError as exc:
            os.close(fd)
            raise io_error("stat", path, exc) from exc
        return WritableFile(path, fd, size)

    def new_sequential_file(self, path):
        return SequentialFile(path, self._open("open", path, os.O_RDONLY))

    def new_random_access_file(self, path):
        fd = self._open("open", path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
        except OSError as exc:
            os.close(fd)
            raise io_error("stat", path, exc) from exc
        return RandomAccessFile(path, fd, size)

    def file_exists(self, path):
        return os.path.exists(path)

    def get_children(self, dirpath):
        """Return the names (not paths) of the entries in ``dirpath``."""
        try:
            return os.listdir(dirpath)
        except OSError as exc:
            raise io_error("list", dirpath, exc) from exc

    def remove_file(self, path):
        try:
            os.unlink(path)
        except OSError as exc:
            raise io_error("remove", path, exc) from exc

    def rename_file(self, src, dst):
        """Atomically replace ``dst`` with ``src`` (os.replace)."""
        try:
            os.replace(src, dst)
        except OSError as exc:
            raise io_error("rename %s to" % src, dst, exc) from exc

    def create_dir(self, path):
        """Create ``path`` and missing parents; an existing dir is fine."""
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise io_error("create directory", path, exc) from exc

    def get_file_size(self, path):
        try:
            return os.stat(path).st_size
        except OSError as exc:
            raise io_error("stat", path, exc) from exc

    def sync_dir(self, dirpath):
        """Make the entries of ``dirpath`` (new files, renames) durable."""
        fd = self._open("open directory", dirpath, os.O_RDONLY)
        try:
            os.fsync(fd)
        except OSError as exc:
            # Some file systems cannot fsync a directory; they order
            # metadata themselves, so there is nothing more we could do.
            if exc.errno != errno.EINVAL:
                raise io_error("sync directory", dirpath, exc) from exc
        finally:
            os.close(fd)

    def lock_file(self, path):
        """Take the exclusive LOCK of a database (see lock_file)."""
        return lock_file(path)

    def now(self):
        return time.monotonic()


_DEFAULT_ENV = PosixEnv()


def default_env():
    """Return the shared PosixEnv."""
    return _DEFAULT_ENV
