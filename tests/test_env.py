"""Tests for kvcy.env (PosixEnv, files, LOCK) and tests/fault_env.FaultEnv."""

import errno
import os
import subprocess
import sys
import threading

import pytest

from kvcy import env as envmod
from kvcy.env import FileMissingError, PosixEnv, default_env
from kvcy.errors import OperationalError, ProgrammingError

from fault_env import FaultEnv


@pytest.fixture
def env():
    return PosixEnv()


# --- WritableFile -----------------------------------------------------------

def test_append_size_and_read_back(env, tmp_path):
    p = str(tmp_path / "f")
    f = env.new_writable_file(p)
    f.append(b"hello ")
    f.append(bytearray(b"wor"))
    f.append(memoryview(b"xld")[1:])
    f.append(b"")
    assert f.size == 11
    f.flush()
    f.sync()
    f.close()
    f.close()  # idempotent
    assert env.read_file(p) == b"hello world"
    assert env.get_file_size(p) == 11


def test_append_visible_before_close(env, tmp_path):
    # No user-space buffering: another reader sees it as soon as append returns.
    p = str(tmp_path / "f")
    f = env.new_writable_file(p)
    f.append(b"abc")
    assert env.read_file(p) == b"abc"
    f.close()


def test_partial_writes_loop(env, tmp_path, monkeypatch):
    real_write = os.write
    calls = []

    def one_byte(fd, data):
        calls.append(1)
        return real_write(fd, bytes(memoryview(data)[:1]))

    monkeypatch.setattr(envmod, "_write", one_byte)
    p = str(tmp_path / "f")
    f = env.new_writable_file(p)
    f.append(b"abcdef")
    f.close()
    assert len(calls) == 6
    assert f.size == 6
    monkeypatch.undo()
    assert env.read_file(p) == b"abcdef"


def test_new_writable_truncates(env, tmp_path):
    p = str(tmp_path / "f")
    env.write_file_atomically(p, b"old content")
    f = env.new_writable_file(p)
    f.append(b"new")
    f.close()
    assert env.read_file(p) == b"new"


def test_appendable_continues_at_end(env, tmp_path):
    p = str(tmp_path / "f")
    f = env.new_appendable_file(p)   # creates
    assert f.size == 0
    f.append(b"abc")
    f.close()
    f = env.new_appendable_file(p)
    assert f.size == 3
    f.append(b"def")
    assert f.size == 6
    f.close()
    assert env.read_file(p) == b"abcdef"


def test_append_to_closed_file_raises(env, tmp_path):
    f = env.new_writable_file(str(tmp_path / "f"))
    f.close()
    with pytest.raises(ProgrammingError, match="closed"):
        f.append(b"x")
    with pytest.raises(ProgrammingError, match="closed"):
        f.sync()


def test_write_error_names_path_and_errno(env, tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    p = str(tmp_path / "f")
    f = env.new_writable_file(p)
    monkeypatch.setattr(envmod, "_write", full)
    with pytest.raises(OperationalError) as info:
        f.append(b"x")
    msg = str(info.value)
    assert p in msg and "no space left on device" in msg
    assert info.value.errno == errno.ENOSPC
    assert isinstance(info.value.__cause__, OSError)
    f.close()


# --- readers ----------------------------------------------------------------

def test_random_access_read(env, tmp_path):
    p = str(tmp_path / "f")
    env.write_file_atomically(p, b"0123456789")
    f = env.new_random_access_file(p)
    assert f.size == 10
    assert f.read(3, 4) == b"3456"
    assert f.read(8, 5) == b"89"     # short at EOF
    assert f.read(10, 5) == b""
    assert f.read(0, 0) == b""
    f.close()
    with pytest.raises(ProgrammingError):
        f.read(0, 1)


def test_random_access_concurrent_reads(env, tmp_path):
    p = str(tmp_path / "f")
    data = bytes(range(256)) * 64
    env.write_file_atomically(p, data)
    f = env.new_random_access_file(p)
    errors = []

    def reader(k):
        for i in range(200):
            off = (i * 37 + k) % (len(data) - 100)
            if f.read(off, 100) != data[off:off + 100]:
                errors.append(off)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    f.close()
    assert errors == []


def test_sequential_read_and_skip(env, tmp_path):
    p = str(tmp_path / "f")
    env.write_file_atomically(p, b"abcdefghij")
    f = env.new_sequential_file(p)
    assert f.read(3) == b"abc"
    f.skip(2)
    assert f.read(3) == b"fgh"
    assert f.read(10) == b"ij"
    assert f.read(10) == b""
    f.close()


def test_missing_file_errors(env, tmp_path):
    p = str(tmp_path / "nope")
    for call in (env.new_sequential_file, env.new_random_access_file,
                 env.read_file, env.get_file_size, env.remove_file):
        with pytest.raises(FileMissingError) as info:
            call(p)
        # Both kinds, so callers may catch whichever they check for.
        assert isinstance(info.value, OperationalError)
        assert isinstance(info.value, FileNotFoundError)
        assert p in str(info.value)
        assert "no such file" in str(info.value)


# --- directory operations ---------------------------------------------------

def test_children_rename_remove(env, tmp_path):
    d = str(tmp_path / "db" / "sub")
    env.create_dir(d)
    env.create_dir(d)  # exists: fine
    a, b = os.path.join(d, "a"), os.path.join(d, "b")
    env.write_file_atomically(a, b"A")
    env.write_file_atomically(b, b"B")
    assert sorted(env.get_children(d)) == ["a", "b"]
    env.rename_file(a, b)            # replaces atomically
    assert env.get_children(d) == ["b"]
    assert env.read_file(b) == b"A"
    assert env.file_exists(b) and not env.file_exists(a)
    env.remove_file(b)
    assert env.get_children(d) == []
    env.sync_dir(d)
    with pytest.raises(OperationalError, match="nope"):
        env.get_children(str(tmp_path / "nope"))


def test_write_file_atomically(env, tmp_path):
    p = str(tmp_path / "CURRENT")
    env.write_file_atomically(p, b"MANIFEST-000001\n")
    env.write_file_atomically(p, b"MANIFEST-000002\n", sync=False)
    assert env.read_file(p) == b"MANIFEST-000002\n"
    assert os.listdir(tmp_path) == ["CURRENT"]  # no .tmp left


def test_default_env_shared():
    assert default_env() is default_env()
    assert isinstance(default_env().now(), float)


# --- LOCK -------------------------------------------------------------------

_TRY_LOCK = """
import sys
from kvcy.env import default_env
from kvcy.errors import OperationalError
try:
    default_env().lock_file(sys.argv[1])
except OperationalError as e:
    print(e)
    sys.exit(3)
"""


def _lock_in_child(path):
    return subprocess.run([sys.executable, "-c", _TRY_LOCK, path],
                          capture_output=True, text=True, timeout=60)


def test_lock_twice_in_process(env, tmp_path):
    p = str(tmp_path / "LOCK")
    lock = env.lock_file(p)
    content = open(p).read()
    assert content.startswith("pid=%d host=" % os.getpid())
    assert content.endswith("Z\n") and "since=" in content
    with pytest.raises(OperationalError) as info:
        env.lock_file(p)
    assert "database is locked by pid=%d" % os.getpid() in str(info.value)
    assert p in str(info.value)
    lock.release()
    lock.release()  # idempotent
    assert os.path.exists(p)  # the LOCK file stays
    with env.lock_file(p):
        pass
    env.lock_file(p).release()


def test_lock_held_by_other_process(env, tmp_path):
    p = str(tmp_path / "LOCK")
    lock = env.lock_file(p)
    r = _lock_in_child(p)
    assert r.returncode == 3, r.stderr
    assert "pid=%d" % os.getpid() in r.stdout
    lock.release()
    r = _lock_in_child(p)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_release_keeps_parent_lock(env, tmp_path):
    p = str(tmp_path / "LOCK")
    lock = env.lock_file(p)
    pid = os.fork()
    if pid == 0:
        try:
            lock.release()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert _lock_in_child(p).returncode == 3
    lock.release()


# --- FaultEnv ---------------------------------------------------------------

def test_fault_drops_unsynced_keeps_synced(tmp_path):
    fenv = FaultEnv()
    d = str(tmp_path)
    p = os.path.join(d, "000001.log")
    f = fenv.new_writable_file(p)
    f.append(b"durable")
    f.sync()
    f.append(b"-lost")
    assert fenv.appends == 2 and fenv.syncs == 1
    fenv.sync_dir(d)
    fenv.simulate_crash()
    assert PosixEnv().read_file(p) == b"durable"
    with pytest.raises(OperationalError, match="crashed"):
        f.append(b"x")  # files open at the crash are dead


def test_fault_removes_new_files_unless_dir_synced(tmp_path):
    fenv = FaultEnv()
    d = str(tmp_path)
    kept, lost = os.path.join(d, "kept"), os.path.join(d, "lost")
    f = fenv.new_writable_file(kept)
    f.append(b"k")
    f.sync()
    f.close()
    fenv.sync_dir(d)
    g = fenv.new_writable_file(lost)
    g.append(b"l")
    g.sync()           # data synced but the directory entry is not
    g.close()
    assert fenv.is_new(lost) and not fenv.is_new(kept)
    fenv.simulate_crash()
    assert os.listdir(d) == ["kept"]


def test_fault_appendable_existing_data_is_durable(tmp_path):
    p = str(tmp_path / "f")
    PosixEnv().write_file_atomically(p, b"old")
    fenv = FaultEnv()
    f = fenv.new_appendable_file(p)
    f.append(b"new")
    f.close()
    fenv.simulate_crash()
    assert PosixEnv().read_file(p) == b"old"


def test_fault_fail_after_enospc(tmp_path):
    fenv = FaultEnv()
    p = str(tmp_path / "f")
    f = fenv.new_writable_file(p)
    fenv.fail_after(2, errno.ENOSPC)
    f.append(b"a")
    f.sync()
    for op in (lambda: f.append(b"b"), f.sync, lambda: f.append(b"c")):
        with pytest.raises(OperationalError) as info:
            op()
        assert "no space left on device" in str(info.value)
        assert p in str(info.value)
        assert info.value.errno == errno.ENOSPC
    fenv.clear_faults()
    f.append(b"d")
    f.close()
    assert PosixEnv().read_file(p) == b"ad"
    with pytest.raises(ValueError):
        fenv.fail_after(0, ops=("bogus",))


def test_fault_read_and_rename_ops(tmp_path):
    fenv = FaultEnv()
    p = str(tmp_path / "f")
    fenv.write_file_atomically(p, b"data")
    fenv.fail_after(0, errno.EIO, ops=("read", "rename"))
    r = fenv.new_random_access_file(p)
    with pytest.raises(OperationalError, match="input/output error"):
        r.read(0, 4)
    with pytest.raises(OperationalError, match="input/output error"):
        fenv.rename_file(p, p + "2")
    r.close()


def test_fault_inactive_filesystem(tmp_path):
    fenv = FaultEnv()
    p = str(tmp_path / "f")
    f = fenv.new_writable_file(p)
    f.append(b"a")
    f.sync()
    fenv.sync_dir(str(tmp_path))
    fenv.set_filesystem_active(False)
    f.append(b"b")     # silently lost
    f.sync()
    assert f.size == 2
    fenv.set_filesystem_active(False, errno_code=errno.EIO)
    with pytest.raises(OperationalError, match="input/output"):
        f.append(b"c")
    fenv.set_filesystem_active(True)
    fenv.simulate_crash()
    assert PosixEnv().read_file(p) == b"a"


def test_fault_rename_carries_tracking(tmp_path):
    fenv = FaultEnv()
    d = str(tmp_path)
    tmp, cur = os.path.join(d, "CURRENT.tmp"), os.path.join(d, "CURRENT")
    f = fenv.new_writable_file(tmp)
    f.append(b"MANIFEST-000001\n")
    f.sync()
    f.append(b"junk")
    f.close()
    fenv.rename_file(tmp, cur)
    assert fenv.is_new(cur) and not fenv.is_new(tmp)
    assert fenv.synced_size(cur) == 16
    fenv.drop_unsynced_data()
    assert PosixEnv().read_file(cur) == b"MANIFEST-000001\n"
    fenv.simulate_crash()          # directory never synced: gone
    assert os.listdir(d) == []


def test_fault_write_file_atomically_is_durable(tmp_path):
    fenv = FaultEnv()
    cur = str(tmp_path / "CURRENT")
    fenv.write_file_atomically(cur, b"MANIFEST-000002\n")
    fenv.simulate_crash()
    assert PosixEnv().read_file(cur) == b"MANIFEST-000002\n"
    fenv.write_file_atomically(cur, b"MANIFEST-000003\n", sync=False)
    fenv.simulate_crash()          # unsynced replacement: removed (harsh)
    assert not os.path.exists(cur)
