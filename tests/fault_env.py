"""FaultEnv: LevelDB's FaultInjectionTestEnv for kvcy.

Wraps a real env (PosixEnv by default) and remembers, for every file
written through it, how many bytes were appended and how many of those a
sync() made durable, and which files were created since their directory's
last sync_dir().  simulate_crash() then does to the real files what power
loss may do: unsynced bytes vanish and files whose directory entry was
never synced disappear.  It can also make the file system fail: silently
drop writes (set_filesystem_active(False)), raise EIO/ENOSPC after a
number of operations (fail_after), or fail exactly the N-th operation of
chosen kinds, once or from then on (fail_nth: SQLite's I/O-error loops,
tests/test_ioerr.py).  An ENOSPC append writes part of its bytes first, as
a file system that fills up in the middle of a write does.

Harsher than reality in one way, as LevelDB's is: a file created or
renamed into place since the last sync_dir of its directory is removed
entirely, even if an older file of that name existed before.

Fault counting is guarded by a lock, so the engine's background thread
may share the env with the test's thread; the crash simulation is for one
thread at a time (tests).  Files opened before simulate_crash() are dead
afterwards: their operations raise OperationalError.
"""

import errno
import os
import threading
import weakref

from kvcy.env import Env, PosixEnv, WritableFile, io_error
from kvcy.errors import OperationalError

# "new_file" creates a file for writing; "open" opens one for reading.
FAULT_OPS = frozenset(
    ["append", "sync", "sync_dir", "new_file", "open", "rename", "remove", "read"])


def _key(path):
    return os.path.abspath(path)


class _FileState:
    __slots__ = ("size", "synced")

    def __init__(self, size, synced):
        self.size = size       # bytes appended so far
        self.synced = synced   # bytes that survive a crash


class _FaultFile:
    """Common part of the wrappers: the base file and crash-death."""

    def __init__(self, env, base):
        self._env = env
        self._base = base
        self._dead = False
        self.path = base.path
        env._open_files.add(self)

    def _check(self, op, fault=True):
        if self._dead:
            raise OperationalError(
                "cannot %s %s: file system crashed (simulated)"
                % (op, self.path))
        if fault:
            self._env._maybe_fail(op, self.path)

    def close(self):
        if not self._dead:
            self._base.close()


class FaultWritableFile(_FaultFile):
    def __init__(self, env, base, state):
        super().__init__(env, base)
        self._state = state
        self.size = base.size

    def append(self, data):
        env = self._env
        env.appends += 1
        n = memoryview(data).nbytes
        try:
            self._check("append")
        except OperationalError as exc:
            if getattr(exc, "errno", None) == errno.ENOSPC and env._active and n > 1:
                # A disk that fills up mid-write keeps what fitted.
                part = memoryview(data).cast("B")[:n // 2]
                self._base.append(part)
                self.size += len(part)
                self._state.size += len(part)
            raise
        if not env._active:
            if env._inactive_errno is not None:
                env._raise(env._inactive_errno, "append to", self.path)
            self.size += n   # the caller believes it was written
            return
        self._base.append(data)
        self.size += n
        self._state.size += n

    def sync(self):
        env = self._env
        env.syncs += 1
        self._check("sync")
        if not env._active:
            if env._inactive_errno is not None:
                env._raise(env._inactive_errno, "sync", self.path)
            return
        self._base.sync()
        self._state.synced = self._state.size

    def flush(self):
        self._base.flush()


class FaultSequentialFile(_FaultFile):
    def read(self, n):
        self._check("read")
        return self._base.read(n)

    def skip(self, n):
        self._check("skip", fault=False)
        self._base.skip(n)


class FaultRandomAccessFile(_FaultFile):
    def __init__(self, env, base):
        super().__init__(env, base)
        self.size = base.size

    def read(self, offset, n):
        self._check("read")
        return self._base.read(offset, n)


class _UnsyncedWritableFile(WritableFile):
    __slots__ = ()

    def sync(self):
        if self._fd < 0:
            super().sync()    # the closed-file error


class UnsyncedPosixEnv(PosixEnv):
    """The real file system with every fsync skipped: a base for FaultEnv in
    loops that never simulate power loss (tests/test_ioerr.py), where
    thousands of fsyncs would only cost time.  FaultEnv still counts and
    fails the syncs."""

    def new_writable_file(self, path):
        f = super().new_writable_file(path)
        return _UnsyncedWritableFile(f.path, f.fileno(), f.size)

    def new_appendable_file(self, path):
        f = super().new_appendable_file(path)
        return _UnsyncedWritableFile(f.path, f.fileno(), f.size)

    def sync_dir(self, dirpath):
        pass


class FaultEnv(Env):
    """An env that tracks durability and injects faults; see module doc."""

    def __init__(self, base=None):
        self.base = base if base is not None else PosixEnv()
        self._files = {}        # abspath -> _FileState, files written here
        self._new = set()       # abspaths whose dir entry is not durable
        self._open_files = weakref.WeakSet()
        self._active = True
        self._inactive_errno = None
        self.appends = 0
        self.syncs = 0
        self._fault_lock = threading.Lock()
        self.clear_faults()

    # --- fault control ----------------------------------------------------

    def set_filesystem_active(self, active, errno_code=None):
        """While inactive, appends, syncs and sync_dirs reach nothing:
        silently if ``errno_code`` is None (like LevelDB: the data is just
        lost at the next crash), else they raise that error."""
        self._active = bool(active)
        self._inactive_errno = None if active else errno_code

    def fail_after(self, n_ops, errno_code=errno.EIO, ops=("append", "sync")):
        """Let ``n_ops`` more operations of kinds ``ops`` succeed, then make
        every later one raise OperationalError for ``errno_code`` until
        clear_faults().  fail_after(0) fails the very next one."""
        self._arm(n_ops, errno_code, ops, persist=True, only=None)

    def fail_nth(self, n, errno_code=errno.EIO, ops=FAULT_OPS, persist=False,
                 only=None):
        """Make the n-th (from 1) operation of kinds ``ops`` from now raise
        OperationalError for ``errno_code``: only that one, or with
        ``persist`` that one and every later one (a disk that stays full
        or dead) until clear_faults().  ``only(path) -> bool`` limits which
        files count (None: all).  ``counted_ops`` lists the (op, path) of
        every operation counted so far, ``counted`` their number;
        ``injected`` says how many failed, ``injected_ops`` which."""
        if n < 1:
            raise ValueError("fail_nth counts from 1, got %r" % (n,))
        self._arm(n - 1, errno_code, ops, persist, only)

    def _arm(self, n_ops, errno_code, ops, persist, only):
        unknown = set(ops) - FAULT_OPS
        if unknown:
            raise ValueError("unknown fault ops %s" % sorted(unknown))
        with self._fault_lock:
            self._fail_countdown = n_ops
            self._fail_errno = errno_code
            self._fail_ops = frozenset(ops)
            self._fail_persist = persist
            self._fail_only = only
            self.counted = 0
            self.counted_ops = []
            self.injected = 0
            self.injected_ops = []

    def clear_faults(self):
        with self._fault_lock:
            self._fail_countdown = None
            self._fail_errno = None
            self._fail_ops = frozenset()
            self._fail_persist = True
            self._fail_only = None
            self.counted = 0
            self.counted_ops = []
            self.injected = 0
            self.injected_ops = []

    def _maybe_fail(self, op, path):
        if self._fail_countdown is None or op not in self._fail_ops:
            return
        with self._fault_lock:
            if self._fail_countdown is None:
                return
            if self._fail_only is not None and not self._fail_only(path):
                return
            self.counted += 1
            self.counted_ops.append((op, path))
            if self._fail_countdown > 0:
                self._fail_countdown -= 1
                return
            if not self._fail_persist:
                self._fail_countdown = None    # this one only
            self.injected += 1
            self.injected_ops.append((op, path))
            code = self._fail_errno
        self._raise(code, op.replace("_", " "), path)

    def _raise(self, code, what, path):
        exc = OSError(code, os.strerror(code), path)
        raise io_error(what, path, exc) from exc

    # --- crash simulation -------------------------------------------------

    def drop_unsynced_data(self):
        """Truncate every tracked file to the length last synced."""
        for path, state in self._files.items():
            if state.synced < state.size and os.path.exists(path):
                os.truncate(path, state.synced)
            state.size = state.synced

    def remove_unsynced_files(self):
        """Delete files created since their directory's last sync_dir."""
        for path in self._new:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            self._files.pop(path, None)
        self._new.clear()

    def simulate_crash(self):
        """Power loss: drop unsynced data and files, kill open files, and
        start tracking afresh (what is left is durable)."""
        for f in list(self._open_files):
            f._base.close()
            f._dead = True
        self.drop_unsynced_data()
        self.remove_unsynced_files()
        self._files.clear()

    def synced_size(self, path):
        """Bytes of ``path`` that would survive a crash (tracked files)."""
        return self._files[_key(path)].synced

    def is_new(self, path):
        """True iff ``path`` would vanish at a crash (dir not synced)."""
        return _key(path) in self._new

    # --- the env interface ------------------------------------------------

    def new_writable_file(self, path):
        self._maybe_fail("new_file", path)
        key = _key(path)
        existed = os.path.exists(key)
        f = self.base.new_writable_file(path)
        state = self._files[key] = _FileState(0, 0)
        if not existed:
            self._new.add(key)
        return FaultWritableFile(self, f, state)

    def new_appendable_file(self, path):
        self._maybe_fail("new_file", path)
        key = _key(path)
        existed = os.path.exists(key)
        f = self.base.new_appendable_file(path)
        state = self._files.get(key)
        if state is None:
            # Bytes already there when tracking began count as durable.
            state = self._files[key] = _FileState(f.size, f.size)
        state.size = f.size
        state.synced = min(state.synced, f.size)
        if not existed:
            self._new.add(key)
        return FaultWritableFile(self, f, state)

    def new_sequential_file(self, path):
        self._maybe_fail("open", path)
        return FaultSequentialFile(self, self.base.new_sequential_file(path))

    def new_random_access_file(self, path):
        self._maybe_fail("open", path)
        return FaultRandomAccessFile(
            self, self.base.new_random_access_file(path))

    def file_exists(self, path):
        return self.base.file_exists(path)

    def get_children(self, dirpath):
        return self.base.get_children(dirpath)

    def remove_file(self, path):
        self._maybe_fail("remove", path)
        self.base.remove_file(path)
        key = _key(path)
        self._files.pop(key, None)
        self._new.discard(key)

    def rename_file(self, src, dst):
        self._maybe_fail("rename", dst)
        self.base.rename_file(src, dst)
        skey, dkey = _key(src), _key(dst)
        self._files.pop(dkey, None)
        self._new.discard(dkey)
        state = self._files.pop(skey, None)
        if state is not None:
            self._files[dkey] = state
        if skey in self._new:
            self._new.discard(skey)
            self._new.add(dkey)

    def create_dir(self, path):
        self.base.create_dir(path)

    def get_file_size(self, path):
        return self.base.get_file_size(path)

    def sync_dir(self, dirpath):
        self._maybe_fail("sync_dir", dirpath)
        if not self._active:
            if self._inactive_errno is not None:
                self._raise(self._inactive_errno, "sync directory", dirpath)
            return
        self.base.sync_dir(dirpath)
        dkey = _key(dirpath)
        self._new = {p for p in self._new if os.path.dirname(p) != dkey}

    def lock_file(self, path):
        return self.base.lock_file(path)

    def now(self):
        return self.base.now()
