"""Namespaces (kvcy/namespace.py, namespace_registry.py, namespace_transaction.py).

Every method of a namespace handle; isolation between namespaces and from
the default namespace, with adversarial keys (empty, b"\\xff\\xff..."); scans
forward, reverse and by prefix that never cross a boundary; reopen; drop and
re-create; atomic cross-namespace batches and transactions (with a
rollback and conflicts); kill -9 during cross-namespace batches.
"""
import math
import os
import random
import signal
import subprocess
import sys
import time

import pytest

import kvcy
from kvcy.namespace_keys import (DATA_REGION, RESERVED_PREFIX, REGISTRY_PREFIX, KeyRegion,
                                 data_range, decode_record, encode_record)

# Keys chosen to sit on the edges of a namespace's range and of the reserved region.
EDGE_KEYS = [b"", b"\x00", b"a", b"\xfe", b"\xff", b"\xff\xff", b"\xff\xff\xff", b"\xff" * 40]


def _stored_keys(conn, start=RESERVED_PREFIX):
    """Every stored key at or after start, the reserved region included."""
    it = conn._engine.new_iterator(None, start, None)
    try:
        return [key for key, _ in it]
    finally:
        it.close()


def _batch_with(key):
    batch = kvcy.WriteBatch()
    batch.put(b"ok", b"1")
    batch.put(key, b"x")
    return batch


@pytest.fixture
def conn(db_path):
    with kvcy.connect(db_path) as conn:
        yield conn


# -- the key scheme -------------------------------------------------------------

def test_each_namespace_id_has_one_contiguous_range_that_no_other_id_enters():
    ranges = sorted(data_range(i) for i in range(0, 20000, 7))
    for (start, stop), (next_start, _) in zip(ranges, ranges[1:]):
        assert start < stop <= next_start


def test_registry_record_is_versioned_and_refuses_a_newer_version():
    assert decode_record("x", encode_record(300, {"a": 1})) == (300, {"a": 1})
    with pytest.raises(kvcy.NotSupportedError, match="version 2"):
        decode_record("x", b"\x02\x01{}")
    with pytest.raises(kvcy.CorruptionError, match="'x'"):
        decode_record("x", b"\x01\x01[")


# -- every method -----------------------------------------------------------------

def test_get_put_delete_contains(conn):
    users = conn.namespace("users")
    assert users.get(b"alice") is None and users.get(b"alice", b"-") == b"-"
    users.put(b"alice", b"1")
    users.put(bytearray(b"bob"), memoryview(b"2"))
    assert users.get(b"alice") == b"1" and users.get(memoryview(b"bob")) == b"2"
    assert b"alice" in users and b"carol" not in users
    users.delete(b"alice")
    assert users.get(b"alice") is None and b"alice" not in users
    users.delete(b"never-there")


def test_many_methods_are_atomic_batches(conn):
    users = conn.namespace("users")
    users.put_many([(b"a", b"1"), (b"b", b"2")])
    users.put_many({b"c": b"3"})
    assert users.get_many([b"a", b"x", b"c"], b"-") == [b"1", b"-", b"3"]
    users.delete_many([b"a", b"c"])
    assert list(users.scan()) == [(b"b", b"2")]
    with pytest.raises(TypeError):
        users.put_many([(b"d", b"4"), ("e", b"5")])
    assert users.get(b"d") is None            # nothing of a refused batch is written


def test_bad_arguments_name_the_problem(conn):
    users = conn.namespace("users")
    with pytest.raises(TypeError, match="key must be bytes-like, not str"):
        users.get("alice")
    with pytest.raises(TypeError, match="key must be bytes-like, not str"):
        users.put("alice", b"1")
    with pytest.raises(TypeError, match="value must be bytes-like"):
        users.put(b"alice", "1")
    with pytest.raises(TypeError, match="namespace name must be a str"):
        conn.namespace(b"users")
    with pytest.raises(kvcy.ProgrammingError, match="must not be empty"):
        conn.namespace("")
    with pytest.raises(kvcy.ProgrammingError, match="no namespace named 'ghost'"):
        conn.namespace("ghost", create=False)
    with pytest.raises(kvcy.ProgrammingError, match="no namespace named 'ghost'"):
        conn.drop_namespace("ghost")
    assert conn.namespaces() == ["users"]


def test_key_limit_is_max_key_bytes_less_the_prefix(conn):
    users = conn.namespace("users")
    users.put(b"k" * users.max_key_bytes, b"v")
    with pytest.raises(kvcy.DataError, match="namespace 'users'"):
        users.put(b"k" * (users.max_key_bytes + 1), b"v")


def test_scan_bounds_prefix_reverse_and_cursor(conn):
    users = conn.namespace("users")
    users.put_many([(b"a1", b"1"), (b"a2", b"2"), (b"b1", b"3"), (b"c1", b"4")])
    assert [k for k, _ in users.scan(b"a2", b"c1")] == [b"a2", b"b1"]
    assert [k for k, _ in users.scan(prefix=b"a")] == [b"a1", b"a2"]
    assert [k for k, _ in users.scan(reverse=True)] == [b"c1", b"b1", b"a2", b"a1"]
    assert [k for k, _ in users.scan(prefix=b"a", reverse=True)] == [b"a2", b"a1"]
    cur = users.cursor()
    assert cur.scan(b"a2").fetchmany(2) == [(b"a2", b"2"), (b"b1", b"3")]
    cur.seek(b"b")
    assert cur.fetchone() == (b"b1", b"3")
    assert cur.fetchall() == [(b"c1", b"4")]
    cur.scan(reverse=True).seek(b"b9")
    assert cur.fetchone() == (b"b1", b"3")
    it = users.scan()
    it.seek(b"b")
    assert it.key() == b"b1" and it.item() == (b"b1", b"3")
    cur.close()


def test_snapshots_of_one_and_of_several_namespaces(conn):
    users, orders = conn.namespace("users"), conn.namespace("orders")
    users.put(b"alice", b"1")
    orders.put(b"o1", b"alice")
    with users.snapshot() as snap:
        users.put(b"alice", b"2")
        users.put(b"bob", b"3")
        assert snap.get(b"alice") == b"1" and b"bob" not in snap
        assert list(snap.scan()) == [(b"alice", b"1")]
        assert snap.get_many([b"alice", b"bob"]) == [b"1", None]
    with conn.snapshot() as snap:
        u, o = snap.namespace("users"), snap.namespace(orders)
        users.delete(b"alice")
        orders.delete(b"o1")
        assert u.get(b"alice") == b"2" and o.get(b"o1") == b"alice"
        assert [k for k, _ in u.scan(reverse=True)] == [b"bob", b"alice"]
    with pytest.raises(kvcy.ProgrammingError, match="released snapshot"):
        u.get(b"alice")


# -- isolation ----------------------------------------------------------------------

def test_namespaces_and_the_default_namespace_never_see_each_other(conn):
    names = ["a", "b", "c"]
    spaces = [conn.namespace(n) for n in names]
    for i, space in enumerate(spaces):
        space.put_many([(key, b"%d:%r" % (i, key)) for key in EDGE_KEYS])
    conn.put_many([(key, b"default") for key in EDGE_KEYS if not key.startswith(b"\xff\xff")])
    for i, space in enumerate(spaces):
        expect = sorted((key, b"%d:%r" % (i, key)) for key in EDGE_KEYS)
        assert list(space.scan()) == expect
        assert list(space.scan(reverse=True)) == expect[::-1]
        assert list(space.scan(prefix=b"\xff")) == [p for p in expect if p[0][:1] == b"\xff"]
        assert list(space.scan(b"\xff\xff")) == [p for p in expect if p[0] >= b"\xff\xff"]
        assert list(space.scan(stop=b"")) == []
        assert space.get(b"") == b"%d:b''" % i
    # The default namespace sees its own keys and nothing of the reserved region.
    default = [key for key in EDGE_KEYS if not key.startswith(b"\xff\xff")]
    assert [k for k, _ in conn.scan()] == default
    assert [k for k, _ in conn.scan(reverse=True)] == default[::-1]
    assert [k for k, _ in conn.scan(prefix=b"\xff")] == [b"\xff"]
    assert list(conn.scan(prefix=b"\xff\xff")) == []
    assert list(conn.scan(b"\xff\xff", b"\xff\xff\xff\xff")) == []
    assert conn.cursor().scan(b"\xfe").fetchall() == [(b"\xfe", b"default"), (b"\xff", b"default")]


def test_the_default_namespace_cannot_write_the_reserved_region(conn):
    users = conn.namespace("users")
    users.put(b"k", b"v")
    target = users.key_prefix + b"k"
    attempts = [
        lambda: conn.put(target, b"x"),
        lambda: conn.put(b"\xff\xff", b"x"),
        lambda: conn.delete(target),
        lambda: conn.put_many([(b"ok", b"1"), (target, b"x")]),
        lambda: conn.delete_many([target]),
        lambda: conn.write(_batch_with(target)),
    ]
    for attempt in attempts:
        with pytest.raises(kvcy.ProgrammingError, match="reserves for namespaces"):
            attempt()
    with pytest.raises(kvcy.ProgrammingError, match="reserves for namespaces"):
        with conn.transaction() as txn:
            txn.put(b"ok", b"1")
            txn.put(target, b"x")
    with pytest.raises(kvcy.ProgrammingError, match="reserves for namespaces"):
        with conn.transaction() as txn:
            txn.write(_batch_with(target))
    assert users.get(b"k") == b"v" and conn.get(b"ok") is None
    conn.put(b"\xff\xfe", b"fine")                 # only b"\xff\xff..." is reserved
    conn.put(b"\xff", b"fine")


def test_the_default_namespace_reads_never_show_the_reserved_region(conn, db_path):
    users = conn.namespace("users")
    users.put(b"k", b"v")
    stored = users.key_prefix + b"k"
    registry = REGISTRY_PREFIX + b"users"
    conn.put(b"plain", b"1")
    for key in (stored, registry):
        assert conn.get(key) is None and key not in conn
        assert conn.get_many([key, b"plain"]) == [None, b"1"]
        with conn.snapshot() as snap:
            assert snap.get(key) is None and snap.get_many([key]) == [None]
        with conn.transaction() as txn:
            assert txn.get(key) is None and txn.get_many([key]) == [None]
            assert list(txn.scan()) == [(b"plain", b"1")]
    assert list(conn.scan()) == [(b"plain", b"1")]
    conn.close()
    with kvcy.dbm.open(db_path, "w") as db:
        assert len(db) == 1 and list(db.keys()) == [b"plain"]
        assert stored not in db
    with kvcy.connect(db_path) as again:
        assert again.namespace("users").get(b"k") == b"v"


def test_the_region_is_reserved_only_once_the_database_has_namespaces(db_path):
    # A database from before namespaces may hold b"\xff\xff..." keys: they stay
    # usable, and the first namespace is refused (naming one) until they are moved.
    with kvcy.connect(db_path) as conn:
        conn.put(b"\xff\xffold", b"1")
        conn.put_many([(b"\xff\xff\xff", b"2"), (b"\xff\xffnot a namespace", b"4")])
        assert conn.namespaces() == []              # no orphan sweep of the user's keys
        assert conn.get(b"\xff\xffnot a namespace") == b"4"
        assert conn.get(b"\xff\xffold") == b"1"
        assert [k for k, _ in conn.scan(prefix=b"\xff")] == [
            b"\xff\xffnot a namespace", b"\xff\xffold", b"\xff\xff\xff"]
        with pytest.raises(kvcy.ProgrammingError, match=r"cannot create namespace 'users'.*old"):
            conn.namespace("users")
        assert conn.namespaces() == [] and conn.get(b"\xff\xffold") == b"1"
        conn.put(b"\xff\xffnew", b"3")               # still the default namespace's
        conn.delete_many([b"\xff\xffold", b"\xff\xff\xff", b"\xff\xffnew",
                          b"\xff\xffnot a namespace"])
        conn.namespace("users").put(b"k", b"v")
        with pytest.raises(kvcy.ProgrammingError, match="reserves for namespaces"):
            conn.put(b"\xff\xffold", b"1")
    with kvcy.connect(db_path) as conn:              # reserved after a reopen too
        with pytest.raises(kvcy.ProgrammingError, match="reserves for namespaces"):
            conn.put(b"\xff\xffold", b"1")
        assert list(conn.scan()) == []


def test_a_reserved_key_checked_before_the_first_namespace_is_refused_at_commit(db_path):
    # The first namespace claims the region under the write lock; a default-
    # namespace write checked before that (while the region was free) but
    # committed after it must be refused by the commit itself, or it would
    # land inside the namespaces' region.
    import threading
    with kvcy.connect(db_path) as conn:
        engine = conn._engine
        batch = kvcy.WriteBatch()
        batch.put(b"\xff\xffn\x01sneaky", b"x")      # looks like namespace 1's key
        engine.writer.reserve_namespaces = True     # as claim_region does, after the check
        with pytest.raises(kvcy.ProgrammingError, match="reserves for namespaces"):
            engine.write_batch(batch, None)
        engine.writer.reserve_namespaces = False
        # A put queued behind the writer that claims the region.
        claimed, outcome = threading.Event(), []

        def claim():
            claimed.wait(10)
            engine.writer.reserve_namespaces = True

        def late_put():
            try:
                conn.put(b"\xff\xffn\x01late", b"y")
                outcome.append("written")
            except kvcy.ProgrammingError as exc:
                outcome.append(str(exc))
        holder = threading.Thread(
            target=engine.writer.write_batch_checked, args=(kvcy.WriteBatch(), claim))
        holder.start()
        time.sleep(0.1)                              # holder has the write lock
        putter = threading.Thread(target=late_put)
        putter.start()
        time.sleep(0.2)                              # the put is checked and queued
        claimed.set()
        holder.join(10)
        putter.join(10)
        assert len(outcome) == 1 and "reserves for namespaces" in outcome[0], outcome
        assert _stored_keys(conn) == []


# -- lifetime: reopen, drop, re-create, close ---------------------------------------------

def test_namespaces_survive_reopen_and_flush(db_path):
    with kvcy.connect(db_path) as conn:
        conn.namespace("users").put(b"a", b"1")
        conn.namespace("orders").put(b"a", b"2")
        conn.flush()
        conn.namespace("users").put(b"b", b"3")      # in the log only
        ids = (conn.namespace("users").id, conn.namespace("orders").id)
    with kvcy.connect(db_path) as conn:
        assert conn.namespaces() == ["orders", "users"]
        assert (conn.namespace("users").id, conn.namespace("orders").id) == ids
        assert list(conn.namespace("users").scan()) == [(b"a", b"1"), (b"b", b"3")]
        assert list(conn.namespace("orders").scan()) == [(b"a", b"2")]


def test_drop_is_immediate_and_the_name_can_be_recreated_empty(db_path):
    with kvcy.connect(db_path) as conn:
        users = conn.namespace("users")
        users.put_many([(b"%04d" % i, b"v") for i in range(2500)])   # more than one drop batch
        conn.flush()
        users.put(b"memtable", b"v")
        old_id = users.id
        it = users.scan()
        conn.drop_namespace("users")
        assert users.dropped and conn.namespaces() == []
        for call in (lambda: users.get(b"0001"), lambda: users.put(b"x", b"y"),
                     lambda: users.scan(), lambda: users.get_many([b"x"]),
                     lambda: kvcy.WriteBatch().put(b"x", b"y", namespace=users)):
            with pytest.raises(kvcy.ProgrammingError, match="'users' was dropped"):
                call()
        assert len(list(it)) == 2501              # an iterator opened before reads its moment
        assert _stored_keys(conn, data_range(old_id)[0]) == []   # the keys are deleted
        again = conn.namespace("users")
        assert again.id != old_id and list(again.scan()) == [] and again.get(b"0001") is None
        again.put(b"new", b"1")
    with kvcy.connect(db_path) as conn:
        assert conn.namespaces() == ["users"]
        assert list(conn.namespace("users").scan()) == [(b"new", b"1")]
        assert all(not key.startswith(data_range(old_id)[0]) for key in _stored_keys(conn))


def test_a_drop_cut_short_by_a_crash_is_swept_on_next_use(db_path):
    with kvcy.connect(db_path) as conn:
        users = conn.namespace("users")
        users.put_many([(b"a", b"1"), (b"b", b"2")])
        conn.namespace("orders").put(b"o", b"1")
        # What a crash between the drop's two steps leaves: the record gone, the keys not.
        batch = kvcy.WriteBatch()
        batch.delete(b"users", KeyRegion(REGISTRY_PREFIX))
        conn.write(batch)
        orphan = data_range(users.id)[0]
    with kvcy.connect(db_path) as conn:
        assert any(key.startswith(orphan) for key in _stored_keys(conn))
        assert conn.namespaces() == ["orders"]
        assert not any(key.startswith(orphan) for key in _stored_keys(conn))
        assert conn.namespace("orders").get(b"o") == b"1"


def test_handles_after_close_raise(db_path):
    conn = kvcy.connect(db_path)
    users = conn.namespace("users")
    users.put(b"a", b"1")
    cur = users.cursor().scan()
    conn.close()
    for call in (lambda: users.get(b"a"), lambda: users.put(b"a", b"2"),
                 lambda: users.delete(b"a"), lambda: users.scan(), lambda: cur.fetchone(),
                 lambda: conn.namespace("users"), lambda: conn.namespaces()):
        with pytest.raises(kvcy.ProgrammingError, match="closed"):
            call()


def test_read_only_connection_reads_namespaces_and_refuses_writes(db_path):
    with kvcy.connect(db_path) as conn:
        conn.namespace("users").put(b"a", b"1")
    with kvcy.connect(db_path, readonly=True) as ro:
        users = ro.namespace("users")
        assert users.get(b"a") == b"1" and list(users.scan()) == [(b"a", b"1")]
        with pytest.raises(kvcy.OperationalError, match="read-only"):
            users.put(b"b", b"2")
        with pytest.raises(kvcy.OperationalError, match="read-only"):
            ro.namespace("new")
        with pytest.raises(kvcy.OperationalError, match="read-only"):
            ro.drop_namespace("users")


def test_autocommit_off_routes_namespace_writes_to_the_implicit_transaction(db_path):
    with kvcy.connect(db_path, autocommit=False) as conn:
        users = conn.namespace("users")
        users.put(b"a", b"1")
        assert users.get(b"a") == b"1"               # read-your-writes
        conn.rollback()
        assert users.get(b"a") is None
        users.put(b"a", b"2")
        conn.commit()
        conn.autocommit = True
        assert users.get(b"a") == b"2"
        users.put(b"b", b"3")
        assert list(users.scan()) == [(b"a", b"2"), (b"b", b"3")]


# -- atomic writes across namespaces -------------------------------------------------------

def test_write_batch_across_namespaces_is_atomic(conn):
    users, orders = conn.namespace("users"), conn.namespace("orders")
    users.put(b"stale", b"x")
    batch = kvcy.WriteBatch()
    batch.put(b"alice", b"1", namespace=users)
    batch.put(b"o1", b"alice", namespace=orders)
    batch.delete(b"stale", namespace=users)
    batch.put_pairs([(b"o2", b"bob")], namespace=orders)
    batch.put(b"plain", b"1")
    conn.write(batch)
    assert list(users.scan()) == [(b"alice", b"1")]
    assert list(orders.scan()) == [(b"o1", b"alice"), (b"o2", b"bob")]
    assert list(conn.scan()) == [(b"plain", b"1")]
    with pytest.raises(TypeError, match="namespace must be a handle"):
        batch.put(b"k", b"v", namespace="users")


def test_transaction_across_namespaces_commits_and_rolls_back(conn):
    users, orders = conn.namespace("users"), conn.namespace("orders")
    users.put(b"alice", b"10")
    with conn.transaction() as txn:
        u, o = txn.namespace("users"), txn.namespace(orders)
        balance = int(u.get(b"alice"))
        u.put(b"alice", b"%d" % (balance - 3))
        o.put(b"o1", b"3")
        txn.put(b"log", b"o1")
        assert list(u.scan()) == [(b"alice", b"7")]          # its own writes, merged
        assert o.get(b"o1") == b"3" and users.get(b"alice") == b"10"
        assert u.cursor().scan().fetchall() == [(b"alice", b"7")]
    assert users.get(b"alice") == b"7" and orders.get(b"o1") == b"3" and conn.get(b"log") == b"o1"
    with pytest.raises(RuntimeError):
        with conn.transaction() as txn:
            txn.namespace("users").put(b"alice", b"0")
            txn.namespace("orders").delete_many([b"o1"])
            txn.put(b"log", b"lost")
            raise RuntimeError("roll back")
    assert users.get(b"alice") == b"7" and orders.get(b"o1") == b"3" and conn.get(b"log") == b"o1"


def test_transaction_conflicts_in_a_namespace(conn):
    users = conn.namespace("users")
    users.put(b"a", b"1")
    txn = conn.begin()
    view = txn.namespace("users")
    view.get(b"a")
    list(view.scan(b"m", b"n"))
    conn.namespace("other").put(b"a", b"x")          # another namespace: no conflict
    users.put(b"z", b"outside the scanned range")
    view.put(b"b", b"2")
    txn.commit()
    txn = conn.begin()
    view = txn.namespace("users")
    list(view.scan(b"m", b"n"))
    users.put(b"m5", b"phantom")
    view.put(b"c", b"3")
    with pytest.raises(kvcy.ConflictError):
        txn.commit()
    assert users.get(b"c") is None


def test_dropping_a_namespace_conflicts_with_a_transaction_writing_it(conn):
    conn.namespace("users").put(b"a", b"1")
    txn = conn.begin()
    txn.namespace("users").put(b"a", b"2")
    conn.drop_namespace("users")
    with pytest.raises(kvcy.ConflictError):
        txn.commit()
    assert _stored_keys(conn, DATA_REGION) == []


# -- kill -9 during cross-namespace batches ----------------------------------------------------

CHILD = r'''
import sys
import kvcy
conn = kvcy.connect(sys.argv[1])
spaces = [conn.namespace(name) for name in ("a", "b", "c")]
i = 0
while True:
    i += 1
    value = b"%d:" % i + b"v" * 3000
    batch = kvcy.WriteBatch()
    for n, space in enumerate(spaces):
        for k in range(4):
            batch.put(b"key%d" % k, value, namespace=space)
    batch.put(b"counter", b"%d" % i)
    conn.write(batch)
    sys.stdout.write("committed %d\n" % i)
    sys.stdout.flush()
'''


def test_kill_during_cross_namespace_batches_is_all_or_nothing(tmp_path):
    db = tmp_path / "db"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(kvcy.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    seed = int(os.environ.get("KVCY_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    for rnd in range(3):
        proc = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env)
        try:
            first = proc.stdout.readline()
            assert first.startswith(b"committed"), proc.stderr.read()
            time.sleep(rng.uniform(0.02, 0.2))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            acked = [int(line.split()[1]) for line in [first] + proc.stdout.readlines()
                     if line.endswith(b"\n")]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        with kvcy.connect(db) as conn:
            counter = int(conn.get(b"counter"))
            values = [conn.namespace(name).get(b"key%d" % k)
                      for name in ("a", "b", "c") for k in range(4)]
        ids = {int(v.split(b":")[0]) for v in values}
        assert ids == {counter}, ("seed %d round %d: a partial batch" % (seed, rnd), ids)
        assert counter in (acked[-1], acked[-1] + 1), (seed, rnd, counter, acked[-1])


def test_ingest_refuses_keys_in_the_reserved_region(db_path, tmp_path):
    path = str(tmp_path / "t.kvt")
    with kvcy.TableWriter(path) as writer:
        writer.add_many([(b"a", b"1"), (b"\xff\xffn\x01k", b"forged")])
    with kvcy.connect(db_path) as conn:
        users = conn.namespace("users")
        with pytest.raises(kvcy.ProgrammingError, match="reserves for namespaces"):
            conn.ingest(path)
        assert list(conn.scan()) == [] and list(users.scan()) == []


def test_a_read_only_connection_sees_new_namespace_data_after_refresh(db_path):
    with kvcy.connect(db_path) as writer:
        writer.namespace("users").put(b"a", b"1")
        with kvcy.connect(db_path, readonly=True) as ro:
            users = ro.namespace("users")
            writer.namespace("users").put(b"b", b"2")
            writer.flush()
            assert users.get(b"b") is None
            ro.refresh()
            assert users.get(b"b") == b"2" and [k for k, _ in users.scan()] == [b"a", b"b"]


def test_the_write_pool_refuses_the_reserved_region_too(db_path):
    with kvcy.connect(db_path, write_threads=1) as conn:
        conn.namespace("users").put(b"k", b"v")
        for method, args in ((conn.put, (b"\xff\xffx", b"1")), (conn.delete, (b"\xff\xffx",)),
                             (conn.put_many, ([(b"\xff\xffx", b"1")],)),
                             (conn.delete_many, ([b"\xff\xffx"],))):
            with pytest.raises(kvcy.ProgrammingError, match="reserves for namespaces"):
                conn.submit(method, *args)
        future = conn._write_pool.put_many([(b"a", b"1"), (b"\xff\xffx", b"1")], check_here=False)
        with pytest.raises(kvcy.ProgrammingError, match="reserves for namespaces"):
            future.result(timeout=10)
        assert conn.get(b"a") is None and _stored_keys(conn, b"\xff\xffx") == []


def test_a_namespace_default_ttl_applies_to_its_puts_and_survives_reopen(tmp_path):
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    from fake_clock import FakeClock
    clock = FakeClock()
    path = str(tmp_path / "db")
    conn = kvcy.connect(path, clock=clock)
    sessions = conn.namespace("sessions", ttl=60)
    assert sessions.options == {"ttl": 60}
    sessions.put(b"s1", b"alice")                       # the default: 60 s
    sessions.put(b"s2", b"bob", ttl=600)                # its own ttl wins
    sessions.put_many([(b"s3", b"carol")])
    with conn.transaction() as txn:
        txn.namespace("sessions").put(b"s4", b"dave")
    users = conn.namespace("users")                     # no default: never expires
    users.put(b"u1", b"1")
    clock.advance(61)
    assert [sessions.get(k) for k in (b"s1", b"s2", b"s3", b"s4")] == [None, b"bob", None, None]
    assert list(sessions.scan()) == [(b"s2", b"bob")]
    assert users.get(b"u1") == b"1"
    conn.close()
    conn = kvcy.connect(path, clock=clock)
    sessions = conn.namespace("sessions")
    assert sessions.options == {"ttl": 60}
    sessions.put(b"s5", b"eve")
    conn.namespace("sessions", ttl=3600)                # changed: the handle follows
    sessions.put(b"s6", b"frank")
    clock.advance(61)
    assert (sessions.get(b"s5"), sessions.get(b"s6")) == (None, b"frank")
    with pytest.raises(kvcy.ProgrammingError, match="ttl"):
        conn.namespace("other", ttl=-1)
    assert "other" not in conn.namespaces()
    sessions.put(b"kept", b"1", ttl=math.inf)           # never expires, despite the default
    conn.namespace("sessions", ttl=math.inf)            # the default removed
    assert sessions.options == {}
    sessions.put(b"s7", b"grace")
    clock.advance(10 ** 6)
    assert (sessions.get(b"s6"), sessions.get(b"s7"), sessions.get(b"kept")) == (
        None, b"grace", b"1")
    conn.close()
    with kvcy.connect(path, clock=clock) as conn:       # removed for good
        assert conn.namespace("sessions").options == {}
        assert conn.namespace("fresh", ttl=math.inf).options == {}


def test_namespace_delete_range_stays_inside_the_namespace(tmp_path):
    with kvcy.connect(str(tmp_path / "db")) as conn:
        a, b = conn.namespace("a"), conn.namespace("b")
        for ns in (a, b):
            ns.put_many([(b"k%d" % i, b"v") for i in range(10)])
        conn.put(b"plain", b"1")
        a.delete_range(b"k2", b"k5")
        assert [k for k, _ in a.scan()] == [b"k%d" % i for i in (0, 1, 5, 6, 7, 8, 9)]
        assert len(list(b.scan())) == 10 and conn.get(b"plain") == b"1"
        with pytest.raises(kvcy.ProgrammingError, match="reserves for namespaces"):
            conn.delete_range(b"a", b"\xff\xff\x01")    # would reach into the namespaces
        conn.delete_range(b"a", b"\xff\xff")             # up to the region: allowed
        assert conn.get(b"plain") is None and len(list(b.scan())) == 10
        conn.drop_namespace("b")
        assert conn.stats()["range_tombstones"] >= 2
        assert list(conn.namespace("b").scan()) == []
