"""Public API behaviour of kvcy.connect() and Connection.

Argument types and limits, atomic batches, lifecycle (close, context
manager, fork), locking against a second writer (same process and another
process), options, stats, threads, and the latched write
error after an injected ENOSPC.
"""
import errno
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import kvcy
from kvcy import DataError, OperationalError, ProgrammingError

from fault_env import FaultEnv


@pytest.fixture
def conn(db_path):
    c = kvcy.connect(db_path)
    yield c
    c.close()


def reopen(path, **options):
    return kvcy.connect(path, **options)


# --- basic reads and writes --------------------------------------------------

def test_put_get_delete_default(conn):
    assert conn.get(b"k") is None
    assert conn.get(b"k", b"dflt") == b"dflt"
    sentinel = object()
    assert conn.get(b"k", sentinel) is sentinel
    conn.put(b"k", b"v1")
    assert conn.get(b"k") == b"v1"
    assert type(conn.get(b"k")) is bytes
    conn.put(b"k", b"v2")
    assert conn.get(b"k", b"dflt") == b"v2"
    assert b"k" in conn
    conn.delete(b"k")
    assert conn.get(b"k") is None
    assert conn.get(b"k", b"dflt") == b"dflt"
    assert b"k" not in conn
    conn.delete(b"never-there")          # deleting a missing key is a no-op
    assert conn.get(b"never-there") is None
    conn.put(b"k", b"v3")                # a put after a delete resurrects the key
    assert conn.get(b"k") == b"v3"


def test_keys_are_distinct_by_exact_bytes(conn):
    conn.put(b"a", b"1")
    conn.put(b"a\x00", b"2")
    conn.put(b"A", b"3")
    conn.put(b"ab", b"4")
    assert conn.get_many([b"a", b"a\x00", b"A", b"ab", b"a\x00\x00"]) == [
        b"1", b"2", b"3", b"4", None]


@pytest.mark.parametrize("make", [bytes, bytearray, memoryview,
                                  lambda b: memoryview(bytearray(b))],
                         ids=["bytes", "bytearray", "memoryview", "memoryview-of-bytearray"])
def test_bytes_like_keys_and_values(conn, make):
    conn.put(make(b"key"), make(b"value"))
    assert conn.get(make(b"key")) == b"value"
    assert conn.get(b"key") == b"value"
    assert make(b"key") in conn
    assert conn.get_many([make(b"key")]) == [b"value"]
    conn.put_many([(make(b"k2"), make(b"v2"))])
    assert conn.get(b"k2") == b"v2"
    conn.delete(make(b"key"))
    assert conn.get(b"key") is None
    conn.delete_many([make(b"k2")])
    assert conn.get(b"k2") is None


def test_mutating_a_bytearray_after_put_does_not_change_the_stored_value(db_path):
    with kvcy.connect(db_path) as conn:
        key, value = bytearray(b"key"), bytearray(b"value")
        conn.put(key, value)
        value[0:5] = b"XXXXX"
        key[0:3] = b"zzz"
        buf = bytearray(b"mv-value")
        conn.put(b"mv", memoryview(buf))
        buf[0:2] = b"!!"
        bkey, bval = bytearray(b"bk"), bytearray(b"bv")
        conn.put_many([(bkey, bval)])
        bkey[0] = ord("X")
        bval[0] = ord("X")
        assert conn.get(b"key") == b"value"
        assert conn.get(b"zzz") is None
        assert conn.get(b"mv") == b"mv-value"
        assert conn.get(b"bk") == b"bv"
    with kvcy.connect(db_path) as conn:
        assert conn.get(b"key") == b"value"
        assert conn.get(b"mv") == b"mv-value"
        assert conn.get(b"bk") == b"bv"


@pytest.mark.parametrize("call", [
    lambda c: c.put("k", b"v"),
    lambda c: c.put(b"k", "v"),
    lambda c: c.get("k"),
    lambda c: c.delete("k"),
    lambda c: c.get_many(["k"]),
    lambda c: c.put_many([("k", b"v")]),
    lambda c: c.put_many([(b"k", "v")]),
    lambda c: c.put_many({"k": b"v"}),
    lambda c: c.delete_many(["k"]),
    lambda c: "k" in c,
], ids=["put-key", "put-value", "get", "delete", "get_many", "put_many-key",
        "put_many-value", "put_many-dict", "delete_many", "contains"])
def test_str_is_rejected_with_type_error_naming_str(conn, call):
    with pytest.raises(TypeError, match="str"):
        call(conn)
    assert conn.get(b"k") is None


@pytest.mark.parametrize("call", [
    lambda c: c.put(1, b"v"),
    lambda c: c.put(b"k", 1),
    lambda c: c.put(None, b"v"),
    lambda c: c.put(b"k", None),
    lambda c: c.get(1),
    lambda c: c.delete(1),
    lambda c: c.put_many([(1, b"v")]),
    lambda c: c.delete_many([1]),
    lambda c: c.get_many([1]),
    lambda c: c.write([(b"k", b"v")]),
], ids=["put-int-key", "put-int-value", "put-none-key", "put-none-value", "get-int",
        "delete-int", "put_many-int", "delete_many-int", "get_many-int", "write-list"])
def test_other_types_are_rejected_with_type_error(conn, call):
    with pytest.raises(TypeError):
        call(conn)
    assert conn.get(b"k") is None


def test_empty_key_and_empty_value(db_path):
    with kvcy.connect(db_path) as conn:
        conn.put(b"", b"empty-key")
        conn.put(b"ev", b"")
        assert conn.get(b"") == b"empty-key"
        assert conn.get(b"ev") == b""
        assert conn.get(b"ev", b"default") == b""     # empty is a value, not absence
        assert b"ev" in conn
        assert b"" in conn
        assert conn.get_many([b"ev", b""], default=b"d") == [b"", b"empty-key"]
    with kvcy.connect(db_path) as conn:
        assert conn.get(b"") == b"empty-key"
        assert conn.get(b"ev", b"default") == b""
        conn.delete(b"")
        assert conn.get(b"") is None


# --- limits --------------------------------------------------------------------

def test_limit_constants():
    assert kvcy.MAX_KEY_BYTES == 64 * 1024
    assert kvcy.MAX_VALUE_BYTES == 64 * 1024 * 1024


def test_key_at_the_limit_is_accepted(db_path):
    key = b"k" * kvcy.MAX_KEY_BYTES
    with kvcy.connect(db_path) as conn:
        conn.put(key, b"v")
        conn.put_many([(key[:-1] + b"x", b"w")])
        assert conn.get(key) == b"v"
    with kvcy.connect(db_path) as conn:
        assert conn.get(key) == b"v"
        assert conn.get(key[:-1] + b"x") == b"w"


def test_limits_raise_data_error_and_store_nothing(db_path):
    big_key = b"k" * (kvcy.MAX_KEY_BYTES + 1)
    big_value = bytes(kvcy.MAX_VALUE_BYTES + 1)
    with kvcy.connect(db_path) as conn:
        conn.put(b"before", b"1")
        size_before = conn.stats()["log_bytes"]
        with pytest.raises(DataError, match="MAX_KEY_BYTES"):
            conn.put(big_key, b"v")
        with pytest.raises(DataError, match="MAX_VALUE_BYTES"):
            conn.put(b"bigv", big_value)
        with pytest.raises(DataError):
            conn.delete(big_key)
        with pytest.raises(DataError):
            conn.put_many([(b"p1", b"1"), (b"p2", big_value), (b"p3", b"3")])
        with pytest.raises(DataError):
            conn.put_many([(b"q1", b"1"), (big_key, b"2")])
        with pytest.raises(DataError):
            conn.delete_many([b"before", big_key])
        batch = kvcy.WriteBatch()
        batch.put(b"w1", b"1")
        with pytest.raises(DataError):
            batch.put(big_key, b"2")
        with pytest.raises(DataError):
            batch.put(b"w2", big_value)
        assert conn.stats()["log_bytes"] == size_before      # nothing reached the WAL
        conn.put(b"after", b"2")                             # not latched: a caller error
        for k in (big_key, b"bigv", b"p1", b"p3", b"q1"):
            assert conn.get(k) is None
        assert conn.get(b"before") == b"1"
    with kvcy.connect(db_path) as conn:
        for k in (big_key, b"bigv", b"p1", b"p2", b"p3", b"q1"):
            assert conn.get(k) is None
        assert conn.get(b"before") == b"1"
        assert conn.get(b"after") == b"2"
        assert conn.stats()["last_sequence"] == 2


# --- batches -------------------------------------------------------------------

def test_put_many_with_list_dict_and_generator(db_path):
    with kvcy.connect(db_path) as conn:
        conn.put_many([(b"a", b"1"), (b"b", b"2")])
        conn.put_many({b"c": b"3", b"d": b"4"})
        conn.put_many((k, k + b"!") for k in (b"e", b"f"))
        conn.put_many([(b"g", b"1"), (b"g", b"2")])        # later pair wins
        conn.put_many([])                                   # empty batch is fine
        expected = {b"a": b"1", b"b": b"2", b"c": b"3", b"d": b"4",
                    b"e": b"e!", b"f": b"f!", b"g": b"2"}
        assert conn.get_many(list(expected)) == list(expected.values())
        before = conn.stats()
    with kvcy.connect(db_path) as conn:
        assert conn.get_many(list(expected)) == list(expected.values())
        assert conn.stats()["last_sequence"] == before["last_sequence"] == 8


def test_put_many_is_one_batch(conn):
    before = conn.stats()
    conn.put_many([(b"k%d" % i, b"v") for i in range(10)])
    after = conn.stats()
    assert after["wal_records"] - before["wal_records"] == 1
    assert after["batches"] - before["batches"] == 1
    assert after["last_sequence"] - before["last_sequence"] == 10


@pytest.mark.parametrize("items", [
    [(b"a", b"1"), b"xyz"],
    [(b"a", b"1"), (b"b", b"2", b"3")],
    [(b"a", b"1"), (b"b",)],
    [(b"a", b"1"), None],
    [(b"a", b"1"), 5],
    [(b"a", b"1"), (b"b", "two")],
    [(b"a", b"1"), ("b", b"2")],
    {b"a": b"1", b"b": None},
], ids=["bytes-item", "triple", "single", "none", "int", "str-value", "str-key", "dict-none"])
def test_put_many_bad_pair_raises_type_error_and_writes_nothing(db_path, items):
    with kvcy.connect(db_path) as conn:
        seq = conn.stats()["last_sequence"]
        with pytest.raises(TypeError):
            conn.put_many(items)
        assert conn.get(b"a") is None
        assert conn.get(b"b") is None
        assert conn.stats()["last_sequence"] == seq
    with kvcy.connect(db_path) as conn:
        assert conn.get(b"a") is None
        assert conn.get(b"b") is None


def test_put_many_iterator_that_raises_writes_nothing(db_path):
    def pairs():
        yield b"a", b"1"
        yield b"b", b"2"
        raise ValueError("source failed")

    with kvcy.connect(db_path) as conn:
        with pytest.raises(ValueError, match="source failed"):
            conn.put_many(pairs())
        assert conn.get_many([b"a", b"b"]) == [None, None]
    with kvcy.connect(db_path) as conn:
        assert conn.get_many([b"a", b"b"]) == [None, None]


def test_delete_many_and_write_batch(db_path):
    with kvcy.connect(db_path) as conn:
        conn.put_many([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])
        conn.delete_many([b"a", b"c", b"missing"])
        batch = kvcy.WriteBatch()
        batch.put(b"d", b"4")
        batch.delete(b"b")
        batch.put(b"b", b"5")           # later entry in a batch wins
        conn.write(batch)
        assert conn.get_many([b"a", b"b", b"c", b"d"]) == [None, b"5", None, b"4"]
    with kvcy.connect(db_path) as conn:
        assert conn.get_many([b"a", b"b", b"c", b"d"]) == [None, b"5", None, b"4"]


def test_get_many(conn):
    conn.put(b"a", b"1")
    conn.put(b"c", b"3")
    assert conn.get_many([]) == []
    assert conn.get_many([b"a", b"b", b"c", b"a"]) == [b"1", None, b"3", b"1"]
    assert conn.get_many(iter([b"c", b"b"]), default=b"-") == [b"3", b"-"]
    assert conn.get_many((k for k in [b"b"]), b"zz") == [b"zz"]


# --- lifecycle -------------------------------------------------------------------

PUBLIC_CALLS = {
    "put": lambda c: c.put(b"k", b"v"),
    "get": lambda c: c.get(b"k"),
    "delete": lambda c: c.delete(b"k"),
    "put_many": lambda c: c.put_many([(b"k", b"v")]),
    "delete_many": lambda c: c.delete_many([b"k"]),
    "write": lambda c: c.write(kvcy.WriteBatch()),
    "get_many": lambda c: c.get_many([b"k"]),
    "contains": lambda c: b"k" in c,
    "stats": lambda c: c.stats(),
    "enter": lambda c: c.__enter__(),
}


@pytest.mark.parametrize("name", sorted(PUBLIC_CALLS))
def test_use_after_close_raises_programming_error(db_path, name):
    conn = kvcy.connect(db_path)
    conn.put(b"k", b"v")
    conn.close()
    assert conn.closed
    with pytest.raises(ProgrammingError, match="closed"):
        PUBLIC_CALLS[name](conn)


def test_close_is_idempotent_and_releases_the_lock(db_path):
    conn = kvcy.connect(db_path)
    assert not conn.closed
    conn.close()
    conn.close()
    assert conn.closed
    with kvcy.connect(db_path) as again:   # the lock was released
        again.put(b"x", b"y")


def test_context_manager_closes(db_path):
    with kvcy.connect(db_path) as conn:
        assert isinstance(conn, kvcy.Connection)
        conn.put(b"k", b"v")
    assert conn.closed
    with pytest.raises(ProgrammingError):
        conn.get(b"k")
    with pytest.raises(RuntimeError):
        with kvcy.connect(db_path) as conn2:
            raise RuntimeError("boom")
    assert conn2.closed
    with kvcy.connect(db_path) as conn3:
        assert conn3.get(b"k") == b"v"


def test_second_connect_in_process_names_the_pid(db_path):
    with kvcy.connect(db_path) as conn:
        conn.put(b"k", b"v")
        for _ in range(2):   # a failed attempt must not release the holder's lock
            with pytest.raises(OperationalError, match=r"pid=%d\b" % os.getpid()):
                kvcy.connect(db_path)
        conn.put(b"k2", b"v2")
        assert conn.get(b"k") == b"v"
    with kvcy.connect(db_path) as conn:
        assert conn.get(b"k2") == b"v2"


def _run_python(code, *args, timeout=60):
    """Run code in a child python that imports the same kvcy as this process."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(kvcy.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_second_process_gets_operational_error_naming_the_holder(db_path):
    code = """
        import sys, kvcy
        try:
            kvcy.connect(sys.argv[1])
        except kvcy.OperationalError as exc:
            print("LOCKED", exc)
            sys.exit(0)
        print("OPENED")
        sys.exit(1)
    """
    with kvcy.connect(db_path) as conn:
        conn.put(b"k", b"v")
        result = _run_python(code, db_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "LOCKED" in result.stdout
        assert "pid=%d" % os.getpid() in result.stdout
        assert conn.get(b"k") == b"v"
        conn.put(b"k", b"v2")            # still the writer
    result = _run_python(code, db_path)  # lock released at close: the child opens it
    assert result.returncode == 1, result.stdout + result.stderr
    assert "OPENED" in result.stdout


def test_create_if_missing_false_on_missing_dir(db_path):
    with pytest.raises(OperationalError, match="does not exist"):
        kvcy.connect(db_path, create_if_missing=False)
    assert not db_path.exists()


def test_create_if_missing_false_on_empty_dir(db_path):
    db_path.mkdir()
    with pytest.raises(OperationalError, match="does not exist"):
        kvcy.connect(db_path, create_if_missing=False).close()
    assert os.listdir(db_path) == []


def test_path_that_is_a_file_raises(db_path):
    db_path.write_bytes(b"not a database")
    with pytest.raises(OperationalError):
        kvcy.connect(db_path)
    assert db_path.read_bytes() == b"not a database"


def test_create_if_missing_false_on_existing_db_opens(db_path):
    with kvcy.connect(db_path) as conn:
        conn.put(b"a", b"1")
    with kvcy.connect(db_path, create_if_missing=False) as conn:
        assert conn.get(b"a") == b"1"


def test_error_if_exists(db_path):
    with kvcy.connect(db_path, error_if_exists=True) as conn:   # new: fine
        conn.put(b"a", b"1")
    with pytest.raises(kvcy.DatabaseError, match="exists"):
        kvcy.connect(db_path, error_if_exists=True)
    with kvcy.connect(db_path) as conn:                          # untouched, unlocked
        assert conn.get(b"a") == b"1"


def test_unknown_option_raises_programming_error_naming_it(db_path):
    with pytest.raises(ProgrammingError, match="no_such_option"):
        kvcy.connect(db_path, no_such_option=1)
    with pytest.raises(ProgrammingError, match="paranoid_chekcs"):
        kvcy.connect(db_path, paranoid_chekcs=True)
    with pytest.raises(ProgrammingError, match="sync"):
        kvcy.connect(db_path, sync="yes")
    assert not db_path.exists()      # options are checked before anything is created


def test_every_call_after_close_raises_programming_error(db_path):
    conn = kvcy.connect(db_path)
    conn.put(b"k", b"v")
    conn.close()
    for call in (lambda: conn.get(b"k"), lambda: conn.put(b"k", b"v"),
                 lambda: conn.delete(b"k"), lambda: conn.put_many([(b"k", b"v")]),
                 lambda: conn.get_many([b"k"]), lambda: conn.scan()):
        with pytest.raises(ProgrammingError, match="closed"):
            call()


def test_use_after_fork_in_child_raises(db_path):
    conn = kvcy.connect(db_path)
    try:
        conn.put(b"k", b"v")
        pid = os.fork()
        if pid == 0:   # child: report through the exit status only
            status = 10
            try:
                try:
                    conn.get(b"k")
                    status = 1
                except ProgrammingError as exc:
                    status = 2 if "fork" in str(exc) else 3
                for write in (lambda: conn.put(b"k", b"child"), lambda: conn.delete(b"k")):
                    if status == 2:
                        try:
                            write()
                            status = 4
                        except ProgrammingError as exc:
                            if "fork" not in str(exc):
                                status = 6
                if status == 2:
                    conn.close()      # must not release the parent's lock
                    status = 0
            except BaseException:
                status = 5
            os._exit(status)
        _, wait_status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(wait_status) == 0
        # The parent is unaffected and still holds the lock.
        assert conn.get(b"k") == b"v"
        conn.put(b"k2", b"v2")
        with pytest.raises(OperationalError, match="locked"):
            kvcy.connect(db_path)
    finally:
        conn.close()
    with kvcy.connect(db_path) as conn:
        assert conn.get_many([b"k", b"k2"]) == [b"v", b"v2"]


def test_stats_reflect_writes(conn):
    s0 = conn.stats()
    assert isinstance(s0, dict)
    conn.put(b"a", b"123")
    conn.put(b"b", b"45")
    conn.delete(b"a")
    conn.put_many([(b"c", b"1"), (b"d", b"2")])
    s1 = conn.stats()
    assert s1["puts"] - s0["puts"] == 2
    assert s1["deletes"] - s0["deletes"] == 1
    assert s1["batches"] - s0["batches"] == 1
    assert s1["last_sequence"] - s0["last_sequence"] == 5
    assert s1["wal_records"] - s0["wal_records"] == 4
    assert s1["wal_bytes"] > s0["wal_bytes"]
    assert s1["memtable_entries"] - s0["memtable_entries"] == 5
    s1["puts"] = -1                       # a copy: changing it changes nothing
    assert conn.stats()["puts"] == s0["puts"] + 2
    assert s1["wal_syncs"] == s0["wal_syncs"]
    conn.put(b"e", b"5", sync=True)
    conn.put_many([(b"f", b"6")], sync=True)
    assert conn.stats()["wal_syncs"] - s0["wal_syncs"] == 2


def test_module_attributes():
    assert kvcy.threadsafety in (1, 2, 3)
    assert kvcy.apilevel == "2.0"
    assert isinstance(kvcy.__version__, str) and kvcy.__version__
    assert issubclass(kvcy.InterfaceError, kvcy.Error)
    assert issubclass(kvcy.DatabaseError, kvcy.Error)
    for name in ("OperationalError", "CorruptionError", "ProgrammingError", "DataError",
                 "NotSupportedError"):
        assert issubclass(getattr(kvcy, name), kvcy.DatabaseError)


# --- threads -------------------------------------------------------------------

def test_threads_writing_disjoint_keys(db_path):
    n_threads, n_keys = 4, 400
    errors = []
    start = threading.Barrier(n_threads)

    def work(t):
        try:
            start.wait()
            for i in range(n_keys):
                key = b"t%d-%04d" % (t, i)
                if i % 10 == 0:
                    conn.put_many([(key, b"v%d" % i), (key + b"-b", b"b")])
                else:
                    conn.put(key, b"v%d" % i)
                if i % 7 == 0:
                    assert conn.get(key) == b"v%d" % i
        except BaseException as exc:     # pragma: no cover - reported below
            errors.append(exc)

    def check(c):
        keys = [b"t%d-%04d" % (t, i) for t in range(n_threads) for i in range(n_keys)]
        assert c.get_many(keys) == [b"v%d" % (i % n_keys) for i in range(len(keys))]
        batch_keys = [b"t%d-%04d-b" % (t, i) for t in range(n_threads)
                      for i in range(0, n_keys, 10)]
        assert c.get_many(batch_keys) == [b"b"] * len(batch_keys)
        total = n_threads * (n_keys + n_keys // 10)
        assert c.stats()["last_sequence"] == total

    conn = kvcy.connect(db_path)
    try:
        threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        check(conn)
    finally:
        conn.close()
    with kvcy.connect(db_path) as conn:
        check(conn)


def test_close_while_threads_write(db_path):
    # Writers racing close() get ProgrammingError, never anything else, and
    # every write that returned before is there after reopening.
    conn = kvcy.connect(db_path)
    acked = {t: [] for t in range(4)}
    errors = []
    started = threading.Barrier(5)

    def work(t):
        started.wait()
        i = 0
        while True:
            key = b"t%d-%06d" % (t, i)
            try:
                if i % 3 == 0:
                    conn.put_many([(key, b"v"), (key + b"-b", b"v")])
                else:
                    conn.put(key, b"v")
                acked[t].append(key)
                conn.get(key)
            except ProgrammingError:
                return
            except BaseException as exc:     # pragma: no cover - reported below
                errors.append(exc)
                return
            i += 1

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    started.wait()
    while sum(map(len, acked.values())) < 200:
        time.sleep(0.001)
    conn.close()
    for th in threads:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in threads)
    assert not errors, errors
    with kvcy.connect(db_path) as conn:
        for keys in acked.values():
            assert conn.get_many(keys) == [b"v"] * len(keys)


# --- write errors are latched ----------------------------------------------------

def test_enospc_is_latched_and_acknowledged_writes_survive(db_path, fault_env):
    conn = kvcy.connect(db_path, env=fault_env)
    try:
        acked = {}
        for i in range(20):
            conn.put(b"k%02d" % i, b"v%d" % i)
            acked[b"k%02d" % i] = b"v%d" % i
        conn.put_many([(b"b1", b"x"), (b"b2", b"y")])
        acked.update({b"b1": b"x", b"b2": b"y"})
        fault_env.fail_after(0, errno.ENOSPC, ops=("append",))
        with pytest.raises(OperationalError, match="(?i)no space"):
            conn.put(b"failed", b"1")
        fault_env.clear_faults()
        # Latched: the file system is fine again, but the log state is unknown.
        for call in (lambda: conn.put(b"later", b"1"), lambda: conn.delete(b"k00"),
                     lambda: conn.put_many([(b"later2", b"2")]),
                     lambda: conn.delete_many([b"k01"])):
            with pytest.raises(OperationalError, match="(?i)no space"):
                call()
        # Reads keep working and see exactly the acknowledged writes.
        assert conn.get_many(list(acked)) == list(acked.values())
        assert conn.get(b"failed") is None
        assert conn.get(b"later") is None
        assert conn.stats()["write_error"]
    finally:
        conn.close()
    with kvcy.connect(db_path) as conn:
        assert conn.get_many(list(acked)) == list(acked.values())
        assert conn.get(b"later") is None
        assert conn.get(b"later2") is None
        conn.put(b"after-reopen", b"ok")     # the latch does not outlive the connection
        assert conn.get(b"after-reopen") == b"ok"


def test_failed_sync_is_latched(db_path, fault_env):
    conn = kvcy.connect(db_path, env=fault_env)
    try:
        conn.put(b"a", b"1", sync=True)
        fault_env.fail_after(0, errno.EIO, ops=("sync",))
        with pytest.raises(OperationalError):
            conn.put(b"b", b"2", sync=True)
        fault_env.clear_faults()
        with pytest.raises(OperationalError):
            conn.put(b"c", b"3")
        assert conn.get(b"a") == b"1"
    finally:
        conn.close()
    with kvcy.connect(db_path) as conn:
        assert conn.get(b"a") == b"1"
        assert conn.get(b"c") is None
        assert conn.get(b"b") in (None, b"2")   # reached the OS, fsync unconfirmed
