"""Tests of kvcy/pools.py: the read pool (parallel get_many at one
sequence), the write pool (Connection.submit, grouping, order, cancellation,
close), fork safety, and a multi-threaded stress test against a model."""
import contextlib
import errno
import os
import random
import threading
import time

import pytest

import kvcy
from kvcy.errors import DataError, OperationalError, ProgrammingError
from kvcy.pools import MIN_CHUNK_KEYS, ReadPool

# A worker thread that dies must fail the test, not just warn.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

N_KEYS = MIN_CHUNK_KEYS * 8          # enough for every thread to get a chunk


def keys_values(n=N_KEYS):
    return [b"key%06d" % i for i in range(n)], [b"value%06d" % i for i in range(n)]


@pytest.fixture
def pooled(db_path):
    conn = kvcy.connect(db_path, read_threads=2, write_threads=1)
    yield conn
    conn.close()


@contextlib.contextmanager
def write_lock_held(conn):
    """Hold conn's write lock: the write pool's worker blocks in its commit
    and later submissions stay queued until the block ends."""
    conn._engine.writer.acquire()
    try:
        yield
    finally:
        conn._engine.writer.release()


def wait_until(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


# -- options ----------------------------------------------------------------------

def test_pools_start_only_when_asked(db_path):
    with kvcy.connect(db_path) as conn:
        assert conn._read_pool is None and conn._write_pool is None
    with kvcy.connect(db_path, read_threads=3, write_threads=2) as conn:
        assert conn._read_pool.threads == 3
        names = sorted(t.name for t in threading.enumerate() if t.name.startswith("kvcy-write"))
        assert names == ["kvcy-write-0", "kvcy-write-1"]
    assert not [t for t in threading.enumerate() if t.name.startswith("kvcy-")
                and t.name != "kvcy-background"]


def test_readonly_refuses_write_threads(db_path):
    kvcy.connect(db_path).close()
    with pytest.raises(ProgrammingError, match="write_threads"):
        kvcy.connect(db_path, readonly=True, write_threads=1)
    with kvcy.connect(db_path, readonly=True, read_threads=2) as ro:
        assert ro._read_pool is not None and ro._write_pool is None
        with pytest.raises(OperationalError, match="read-only"):
            ro.submit(ro.put, b"k", b"v")


# -- the read pool ----------------------------------------------------------------

@pytest.mark.parametrize("flush", [False, True])
def test_get_many_matches_serial_reads(db_path, flush):
    keys, values = keys_values()
    with kvcy.connect(db_path, read_threads=2, block_cache_bytes=0) as conn:
        conn.put_many(list(zip(keys[::2], values[::2])))
        if flush:
            conn.flush()
        wanted = [v if i % 2 == 0 else None for i, v in enumerate(values)]
        probe = keys + [b"missing"]
        assert conn.get_many(probe) == wanted + [None]
        assert conn.get_many(probe, b"-") == [v or b"-" for v in wanted] + [b"-"]
        assert conn.get_many(reversed(probe)) == list(reversed(wanted + [None]))
        assert conn.get_many(bytearray(k) for k in keys[:3]) == wanted[:3]
        assert len(conn._engine.snapshots) == 0
        with pytest.raises(TypeError, match="key must be bytes-like"):
            conn.get_many(keys[:200] + ["str"])


def test_get_many_reads_one_sequence_while_batches_land(db_path):
    # Every batch sets every key to one value, so a read at one sequence sees
    # a single value; chunks read at different moments would see several.
    keys = [b"k%05d" % i for i in range(N_KEYS)]
    with kvcy.connect(db_path, read_threads=3, memtable_max_bytes=64 * 1024) as conn:
        conn.put_many([(k, b"0") for k in keys])
        stop = threading.Event()
        batches = [0]

        def write():
            while not stop.is_set():
                conn.put_many([(k, b"%d" % (batches[0] + 1)) for k in keys])
                batches[0] += 1

        writer = threading.Thread(target=write)
        writer.start()
        try:
            seen = set()
            reads = 0
            deadline = time.monotonic() + 60
            # Until the writer has switched memtables a few times meanwhile.
            while reads < 60 or batches[0] < 20 or len(seen) < 5:
                assert time.monotonic() < deadline
                values = conn.get_many(keys)
                assert len(set(values)) == 1, sorted(set(values))[:5]
                seen.add(values[0])
                reads += 1
        finally:
            stop.set()
            writer.join()
        assert conn.stats()["memtable_switches"] > 0


def test_read_pool_error_releases_snapshot(pooled):
    keys, values = keys_values()
    pooled.put_many(zip(keys, values))
    engine, pool = pooled._engine, pooled._read_pool
    bad = keys[:-1] + ["not bytes"]             # fails in the last chunk's thread
    with pytest.raises(TypeError, match="key must be bytes-like"):
        pool.get_many(engine, bad)
    with pytest.raises(TypeError, match="key must be bytes-like"):
        pool.submit_get_many(engine, bad).result(timeout=10)
    assert len(engine.snapshots) == 0
    assert pool.submit_get_many(engine, keys).result(timeout=10) == values
    assert pool.submit_get_many(engine, keys[:3]).result(timeout=10) == values[:3]


def test_read_pool_close_refuses_work():
    pool = ReadPool(2)
    assert pool.submit(sum, [1, 2]).result(timeout=10) == 3
    pool.close()
    with pytest.raises(ProgrammingError, match="closed"):
        pool.submit(sum, [1, 2])


def test_close_from_a_pool_thread(db_path):
    # A callback that closes the connection runs on a pool thread: close()
    # must not wait for that thread to end.
    conn = kvcy.connect(db_path, read_threads=1, write_threads=1)
    conn.put(b"k", b"v")
    read = conn._read_pool.submit(conn.close)
    read.result(timeout=10)
    assert conn.closed
    conn = kvcy.connect(db_path, write_threads=1)
    write = conn.submit(conn.put, b"k2", b"v")
    closed = threading.Event()
    write.add_done_callback(lambda _: (conn.close(), closed.set()))
    assert closed.wait(timeout=10)
    with kvcy.connect(db_path) as again:
        assert again.get_many([b"k", b"k2"]) == [b"v", b"v"]


# -- the write pool ---------------------------------------------------------------

def test_submit_each_write_method(pooled):
    futures = [pooled.submit(pooled.put, b"a", b"1"),
               pooled.submit(pooled.put, bytearray(b"b"), memoryview(b"2"), sync=True),
               pooled.submit(pooled.put_many, {b"c": b"3", b"d": b"4"}),
               pooled.submit(pooled.put_many, ((b"e", b"5"),)),
               pooled.submit(pooled.delete, b"a"),
               pooled.submit(pooled.delete_many, iter([b"c"]), sync=False),
               pooled.submit(pooled.flush)]
    assert [f.result(timeout=10) for f in futures] == [None] * len(futures)
    assert pooled.get_many([b"a", b"b", b"c", b"d", b"e"]) == [None, b"2", None, b"4", b"5"]
    s = pooled.stats()
    assert s["level0_files"] == 1 and s["memtable_entries"] == 0


def test_submit_checks_arguments_in_the_caller(pooled):
    value = bytearray(b"before")
    future = pooled.submit(pooled.put, b"k", value)
    value[:] = b"after!"                      # copied when submitted
    future.result(timeout=10)
    assert pooled.get(b"k") == b"before"
    with pytest.raises(TypeError, match="key must be bytes-like, not str"):
        pooled.submit(pooled.put, "k", b"v")
    with pytest.raises(TypeError, match="expected .key, value. pairs"):
        pooled.submit(pooled.put_many, [(b"x", b"1"), b"oops"])
    with pytest.raises(DataError, match="MAX_KEY_BYTES"):
        pooled.submit(pooled.put, b"k" * (kvcy.MAX_KEY_BYTES + 1), b"v")
    with pytest.raises(TypeError, match="sync must be True, False or None"):
        pooled.submit(pooled.put, b"k", b"v", sync=1)
    with pytest.raises(ProgrammingError, match="submit.. takes this connection's put"):
        pooled.submit(pooled.get, b"k")
    with kvcy.connect(pooled.path + "-other", write_threads=1) as other:
        with pytest.raises(ProgrammingError, match="submit.. takes"):
            pooled.submit(other.put, b"k", b"v")
    assert pooled.get(b"x") is None


def test_submit_needs_write_pool(db_path):
    with kvcy.connect(db_path) as conn:
        with pytest.raises(ProgrammingError, match="write_threads >= 1"):
            conn.submit(conn.put, b"k", b"v")


def test_queued_sync_writes_share_fsyncs(pooled):
    before = pooled.stats()
    futures = [pooled.submit(pooled.put, b"k%04d" % i, b"v", sync=True) for i in range(400)]
    for future in futures:
        future.result(timeout=30)
    after = pooled.stats()
    syncs = after["wal_syncs"] - before["wal_syncs"]
    assert 1 <= syncs <= 40, syncs             # 400 alone would make 400
    # A group is one batch (stats count it so); one alone is a put.
    assert (after["puts"] + after["batch_entries"]) - (before["puts"] + before["batch_entries"]) \
        == 400
    assert pooled.get_many([b"k%04d" % i for i in range(400)]) == [b"v"] * 400


def test_threads_submitting_sync_puts_group(db_path):
    # Four threads, each submitting and waiting for one sync put at a time:
    # the queue groups their writes.
    with kvcy.connect(db_path, write_threads=2) as conn:
        before = conn.stats()["wal_syncs"]

        def work(t):
            for i in range(100):
                conn.submit(conn.put, b"t%d-%03d" % (t, i), b"v", sync=True).result(timeout=30)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        syncs = conn.stats()["wal_syncs"] - before
        assert syncs < 400 * 0.8, syncs
        assert conn.get_many([b"t%d-%03d" % (t, i) for t in range(4) for i in range(100)]) \
            == [b"v"] * 400


def test_one_writer_thread_keeps_submission_order(pooled):
    futures = []
    for i in range(500):
        futures.append(pooled.submit(pooled.put, b"k", b"%d" % i))
        if i % 7 == 0:
            futures.append(pooled.submit(pooled.delete, b"k"))
    futures.append(pooled.submit(pooled.put_many, [(b"k", b"last")]))
    for future in futures:
        future.result(timeout=10)
    assert pooled.get(b"k") == b"last"
    # The group commits write one WAL record each.
    assert pooled.stats()["wal_records"] < len(futures)


def test_cancel_before_taken_drops_write_after_taken_applies_it(pooled):
    with write_lock_held(pooled):
        taken = pooled.submit(pooled.put, b"taken", b"1")
        wait_until(taken.running)
        queued = pooled.submit(pooled.put_many, [(b"queued", b"1"), (b"queued2", b"1")])
        assert not queued.running()
        assert queued.cancel() and not taken.cancel()
    assert taken.result(timeout=10) is None
    pooled.submit(pooled.put, b"later", b"1").result(timeout=10)
    assert pooled.get_many([b"taken", b"queued", b"queued2", b"later"]) == \
        [b"1", None, None, b"1"]


def test_close_commits_queued_writes(db_path):
    conn = kvcy.connect(db_path, write_threads=1)
    closer = threading.Thread(target=conn.close)
    with write_lock_held(conn):
        futures = [conn.submit(conn.put, b"k%03d" % i, b"v") for i in range(200)]
        closer.start()
        time.sleep(0.05)
        assert closer.is_alive()              # waits for the queued writes
        with pytest.raises(ProgrammingError, match="closed"):
            conn.submit(conn.put, b"after", b"v")
    closer.join(timeout=30)
    assert not closer.is_alive()
    assert all(f.result(timeout=0) is None for f in futures)
    with kvcy.connect(db_path) as again:
        assert again.get_many([b"k%03d" % i for i in range(200)]) == [b"v"] * 200
        assert again.get(b"after") is None


def test_write_error_fails_the_whole_group(db_path, fault_env):
    with kvcy.connect(db_path, env=fault_env, write_threads=1) as conn:
        conn.put(b"before", b"1")
        with write_lock_held(conn):
            first = conn.submit(conn.put, b"a", b"1")
            wait_until(first.running)
            rest = [conn.submit(conn.put, b"b%d" % i, b"1") for i in range(5)]
            fault_env.fail_after(0, errno.ENOSPC, ops=("append",))
        for future in [first] + rest:
            with pytest.raises(OperationalError, match="(?i)no space"):
                future.result(timeout=10)
        fault_env.clear_faults()
        with pytest.raises(OperationalError, match="(?i)no space"):    # latched
            conn.submit(conn.put, b"c", b"1").result(timeout=10)
    with kvcy.connect(db_path) as again:
        assert again.get(b"before") == b"1"
        assert again.get_many([b"a", b"b0", b"b4", b"c"]) == [None] * 4


# -- fork -------------------------------------------------------------------------

def wait_for_child(pid, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        time.sleep(0.01)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_pools_refuse_work_in_forked_child(db_path):
    conn = kvcy.connect(db_path, read_threads=2, write_threads=1)
    keys, values = keys_values()
    conn.put_many(zip(keys, values))
    try:
        with write_lock_held(conn):
            running = conn.submit(conn.put, b"running", b"1")
            wait_until(running.running)
            queued = conn.submit(conn.put, b"queued", b"1")
            pid = os.fork()
            if pid == 0:   # child: report through the exit status only
                status = 0
                try:
                    checks = [lambda: conn.get_many(keys),
                              lambda: conn.submit(conn.put, b"c", b"1"),
                              lambda: conn._read_pool.submit(len, b""),
                              lambda: conn._read_pool.get_many(conn._engine, keys),
                              lambda: conn._write_pool.put(b"c", b"1"),
                              lambda: running.result(timeout=5),    # failed, not hanging
                              lambda: queued.result(timeout=5)]
                    for i, check in enumerate(checks):
                        try:
                            check()
                            status = 20 + i
                        except ProgrammingError as exc:
                            if "fork" not in str(exc):
                                status = 40 + i
                        except BaseException:
                            status = 60 + i
                        if status:
                            break
                    if status == 0:
                        conn.close()     # must neither join threads nor touch the parent's files
                except BaseException:
                    status = 5
                os._exit(status)
        assert wait_for_child(pid) == 0
        # The parent's pools are unaffected.
        assert running.result(timeout=10) is None and queued.result(timeout=10) is None
        assert conn.get_many(keys) == values
        conn.submit(conn.put, b"after", b"1").result(timeout=10)
    finally:
        conn.close()
    with kvcy.connect(db_path) as again:
        assert again.get_many([b"running", b"queued", b"after"]) == [b"1"] * 3


# -- stress -----------------------------------------------------------------------

def run_stress(db_path, seconds, seed, write_threads=2):
    """Writer threads own disjoint keys and check them against their own
    model dict, writing directly and through the write pool; a reader
    checks that the pairs each put_many writes read alike through get_many
    (one sequence) while memtables switch and flush.  Then reopen and check."""
    rng_seed = random.Random(seed)
    n_writers, n_keys = 3, 60
    models = [dict() for _ in range(n_writers)]
    errors = []
    stop = threading.Event()
    conn = kvcy.connect(db_path, read_threads=2, write_threads=write_threads,
                        memtable_max_bytes=32 * 1024, memtable_min_bytes=4096,
                        block_cache_bytes=64 * 1024)

    def own(t, i):
        return b"t%d:%03d" % (t, i)

    def pair(t, j):
        return b"t%d:p%02d:a" % (t, j), b"t%d:p%02d:b" % (t, j)

    def writer(t, rng):
        model, pending = models[t], []
        n = 0
        try:
            while not stop.is_set():
                n += 1
                op = rng.random()
                value = b"%d-%d-%s" % (t, n, b"x" * rng.randrange(200))
                key = own(t, rng.randrange(n_keys))
                if op < 0.3:
                    pending.append(conn.submit(conn.put, key, value, sync=rng.random() < 0.2))
                    model[key] = value
                elif op < 0.4:
                    pending.append(conn.submit(conn.delete, key))
                    model.pop(key, None)
                elif op < 0.5:
                    a, b = pair(t, rng.randrange(10))
                    pending.append(conn.submit(conn.put_many, [(a, value), (b, value)]))
                    model[a] = model[b] = value
                else:
                    # Direct calls wait for the pool first: their order against
                    # writes still queued is not defined.
                    for future in pending:
                        future.result(timeout=30)
                    pending.clear()
                    if op < 0.7:
                        conn.put(key, value)
                        model[key] = value
                    elif op < 0.75:
                        conn.delete_many([key])
                        model.pop(key, None)
                    elif op < 0.77:
                        conn.submit(conn.flush, wait=False).result(timeout=30)
                    else:
                        probe = [own(t, i) for i in range(n_keys)] + \
                            [k for j in range(10) for k in pair(t, j)]
                        assert conn.get_many(probe) == [model.get(k) for k in probe]
            for future in pending:
                future.result(timeout=30)
        except BaseException as exc:     # reported below
            errors.append(exc)

    def reader():
        try:
            keys = [k for t in range(n_writers) for j in range(10) for k in pair(t, j)]
            keys = keys * (MIN_CHUNK_KEYS * 4 // len(keys) + 1)       # large enough to chunk
            while not stop.is_set():
                values = conn.get_many(keys)
                for i in range(0, len(values), 2):
                    assert values[i] == values[i + 1], (keys[i], values[i], values[i + 1])
        except BaseException as exc:     # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t, random.Random(rng_seed.random())))
               for t in range(n_writers)] + [threading.Thread(target=reader)]
    try:
        for th in threads:
            th.start()
        time.sleep(seconds)
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=60)
        flushes = conn.stats()["flushes"]
        workers_alive = all(w.is_alive() for w in conn._write_pool._workers)
        conn.close()
    assert workers_alive
    assert not errors, errors
    expected = {k: v for model in models for k, v in model.items()}
    with kvcy.connect(db_path) as again:
        assert dict(again.scan()) == expected
    return flushes


def test_stress_mixed_operations_against_model(db_path):
    assert run_stress(db_path, seconds=2.0, seed=11) > 0


@pytest.mark.slow
@pytest.mark.parametrize("write_threads", [1, 4])
def test_stress_mixed_operations_long(db_path, write_threads):
    run_stress(db_path, seconds=30.0, seed=write_threads, write_threads=write_threads)


def test_submit_refuses_a_connection_in_autocommit_off_mode(db_path):
    # Its writes would land outside the implicit transaction and not be
    # rolled back with it.
    with kvcy.connect(db_path, write_threads=1, autocommit=False) as conn:
        conn.put(b"a", b"1")
        with pytest.raises(kvcy.ProgrammingError, match="autocommit=False"):
            conn.submit(conn.put, b"b", b"2")
        conn.rollback()
        assert conn.get(b"a") is None and conn.get(b"b") is None
