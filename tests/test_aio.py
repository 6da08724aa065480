"""Tests of kvcy.aio: the asyncio facade mirrors the Connection methods,
never blocks the event loop, survives cancellation, and its close waits for
queued writes."""
import asyncio
import os
import threading
import time

import pytest

import kvcy
import kvcy.aio
from fault_env import FaultEnv
from kvcy.errors import OperationalError, ProgrammingError

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def until(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.001)


def fill(path, n, value=b"v" * 100, **options):
    with kvcy.connect(path, **options) as conn:
        for start in range(0, n, 10000):
            conn.put_many((b"key%07d" % i, value) for i in range(start, min(n, start + 10000)))
        conn.flush()


# -- the methods ------------------------------------------------------------------

def test_methods_mirror_the_connection(db_path):
    async def main():
        async with kvcy.aio.connect(db_path, sync=False) as db:
            assert repr(db).startswith("<kvcy.aio.AsyncConnection ")
            assert await db.put(b"a", b"1") is None
            await db.put(bytearray(b"b"), memoryview(b"2"), sync=True)
            assert await db.get(b"a") == b"1"
            assert await db.get(b"zz") is None and await db.get(b"zz", b"-") == b"-"
            await db.put_many({b"c": b"3", b"d": b"4"})
            await db.put_many([(b"e", b"5")], sync=True)
            await db.delete(b"a")
            await db.delete_many([b"c"], sync=True)
            keys = [b"a", b"b", b"c", b"d", b"e", b"f"]
            assert await db.get_many(keys) == [None, b"2", None, b"4", b"5", None]
            assert await db.get_many(keys, b"-") == [b"-", b"2", b"-", b"4", b"5", b"-"]
            await db.flush()
            s = db.connection.stats()
            assert s["level0_files"] == 1 and s["memtable_entries"] == 0
            assert s["wal_syncs"] >= 1
            assert [kv async for kv in db.scan()] == list(db.connection.scan())
            for args, kwargs in [((b"c",), {}), ((None, b"e"), {}), ((), {"reverse": True}),
                                 ((), {"prefix": b"d"}), ((b"b", b"e"), {"reverse": True})]:
                assert [kv async for kv in db.scan(*args, **kwargs)] == \
                    list(db.connection.scan(*args, **kwargs))
            assert await db.flush(wait=False) is None
    run(main())


def test_large_batches_are_checked_off_the_loop(db_path):
    n = kvcy.aio.CHECK_IN_LOOP_ENTRIES * 3

    async def main():
        async with kvcy.aio.connect(db_path) as db:
            pairs = [(b"k%06d" % i, b"v%d" % i) for i in range(n)]
            await db.put_many(pairs)
            await db.put_many(iter([(b"gen", b"1")]))       # an iterator: checked in the worker
            keys = [k for k, _ in pairs]
            assert await db.get_many(keys) == [v for _, v in pairs]
            with pytest.raises(TypeError, match="expected .key, value. pairs"):
                await db.put_many(pairs[:-1] + [b"oops"])
            with pytest.raises(TypeError, match="key must be bytes-like, not str"):
                await db.delete_many(keys[:-1] + ["str"])
            with pytest.raises(TypeError, match="key must be bytes-like, not str"):
                await db.put("k", b"v")
            with pytest.raises(TypeError, match="key must be bytes-like, not str"):
                await db.get_many(keys + ["str"])
            with pytest.raises(TypeError, match="sync must be True, False or None"):
                await db.put(b"k", b"v", sync="yes")
            # The failed batches wrote nothing.
            assert await db.get(keys[0]) == b"v0" and await db.get(b"gen") == b"1"
            await db.delete_many(keys)
            assert await db.get_many(keys[:3]) == [None] * 3
    run(main())


def test_connect_forms_and_pool_sizes(db_path):
    async def main():
        db = await kvcy.aio.connect(db_path)
        try:
            conn = db.connection
            assert (conn.options.read_threads, conn.options.write_threads) == \
                (kvcy.aio.AIO_READ_THREADS, kvcy.aio.AIO_WRITE_THREADS)
            await db.put(b"k", b"v")
        finally:
            await db.close()
            await db.close()                # idempotent
        assert db.closed
        async with kvcy.aio.connect(db_path, config={"read_threads": 3},
                                    write_threads=2) as db:
            assert (db.connection.options.read_threads,
                    db.connection.options.write_threads) == (3, 2)
        async with kvcy.aio.connect(db_path, readonly=True) as ro:
            assert ro.connection._write_pool is None
            assert await ro.get(b"k") == b"v"
            assert [kv async for kv in ro.scan()] == [(b"k", b"v")]
            with pytest.raises(OperationalError, match="read-only"):
                await ro.put(b"k", b"2")
        with pytest.raises(kvcy.ProgrammingError, match="unknown option"):
            await kvcy.aio.connect(db_path, read_thread=1)
    run(main())


def test_use_after_close_raises(db_path):
    async def main():
        async with kvcy.aio.connect(db_path) as db:
            await db.put_many([(b"k%03d" % i, b"v") for i in range(300)])
            scan = db.scan()
            assert (await scan.__anext__()) == (b"k000", b"v")
        calls = [db.get(b"k"), db.get_many([b"k"]), db.put(b"k", b"v"), db.delete(b"k"),
                 db.put_many([]), db.delete_many([]), db.flush()]
        for call in calls:
            with pytest.raises(ProgrammingError, match="closed"):
                await call
        with pytest.raises(ProgrammingError, match="closed"):
            db.scan()
        with pytest.raises(ProgrammingError, match="closed"):
            async for _ in scan:          # the rest of a scan begun before the close
                pass
        await scan.aclose()
    run(main())


# -- the event loop stays free ----------------------------------------------------

class SlowSyncEnv(FaultEnv):
    """Every WAL fsync takes SYNC_SECONDS (a slow disk), sleeping without the GIL."""
    SYNC_SECONDS = 0.02

    def _slowed(self, file):
        sync = file.sync

        def slow_sync():
            time.sleep(self.SYNC_SECONDS)
            sync()

        file.sync = slow_sync
        return file

    def new_writable_file(self, path):
        return self._slowed(super().new_writable_file(path))

    def new_appendable_file(self, path):      # an open that reuses its log appends to it
        return self._slowed(super().new_appendable_file(path))


def test_event_loop_stays_responsive(db_path):
    # A timer ticks every 10 ms while a 200k-pair scan and 40 sync=True
    # writes of 20 ms each run.  Run in the loop's thread, the writes alone
    # would stop the loop for 0.8 s and the scan for about 0.2 s.
    n, writes_n = 200_000, 40
    fill(db_path, n)

    async def main():
        loop = asyncio.get_running_loop()
        gaps = []
        done = asyncio.Event()

        async def ticker():
            last = loop.time()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = loop.time()
                gaps.append(now - last)
                last = now

        async def scan(db):
            count = 0
            async for _ in db.scan():
                count += 1
            return count

        async def writes(db):
            for i in range(writes_n):
                await db.put(b"w%04d" % i, b"v", sync=True)

        async with kvcy.aio.connect(db_path, env=SlowSyncEnv(),
                                    block_cache_bytes=1 << 20) as db:
            tick = asyncio.create_task(ticker())
            await asyncio.sleep(0.05)
            started = loop.time()
            count, _ = await asyncio.gather(scan(db), writes(db))
            took = loop.time() - started
            done.set()
            await tick
            syncs = db.connection.stats()["wal_syncs"]
        return count, took, max(gaps), syncs

    count, took, max_gap, syncs = run(main())
    assert count == n
    assert syncs >= writes_n              # one at a time: each waited for its fsync
    assert took >= writes_n * SlowSyncEnv.SYNC_SECONDS
    # A loaded 2-core CI machine delays a 10 ms timer by tens of ms at times;
    # work run on the loop's thread instead would stop it for 0.8 s.
    assert max_gap < 0.2, (max_gap, took)


# -- cancellation -----------------------------------------------------------------

def test_cancelled_write_happens_whole_or_not_at_all(db_path):
    async def main():
        async with kvcy.aio.connect(db_path) as db:
            pool = db.connection._write_pool
            writer = db.connection._engine.writer
            writer.acquire()               # the worker will block in its commit
            try:
                taken = asyncio.create_task(db.put_many([(b"t1", b"1"), (b"t2", b"1")]))
                await until(lambda: pool._running)
                queued = asyncio.create_task(db.put_many([(b"q1", b"1"), (b"q2", b"1")]))
                await asyncio.sleep(0.01)
                assert len(pool._queue) == 1
                queued.cancel()
                taken.cancel()
                for task in (queued, taken):
                    with pytest.raises(asyncio.CancelledError):
                        await task
                # Withdrawn: a worker drops it when it comes to it.
                assert pool._queue[0].future.cancelled()
            finally:
                writer.release()
            await db.flush()                  # after every write taken before it
            assert await db.get_many([b"t1", b"t2", b"q1", b"q2"]) == [b"1", b"1", None, None]
    run(main())


def test_cancelled_reads_and_scan_steps(db_path):
    fill(db_path, 5000)

    async def main():
        async with kvcy.aio.connect(db_path) as db:
            keys = [b"key%07d" % i for i in range(5000)]
            task = asyncio.create_task(db.get_many(keys))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Occupy both reader threads so the scan's fetch waits in the queue.
            gate = threading.Event()
            pool = db.connection._read_pool
            blockers = [pool.submit(gate.wait) for _ in range(pool.threads)]
            scan = db.scan()
            step = asyncio.create_task(scan.__anext__())
            await asyncio.sleep(0.01)
            step.cancel()
            with pytest.raises(asyncio.CancelledError):
                await step
            assert scan._fetch[0].cancelled()
            gate.set()
            for blocker in blockers:
                blocker.result(timeout=10)
            # Make the second fetch (the read-ahead) wait on a reader thread.
            fetching, release = threading.Event(), threading.Event()
            read_chunk, calls = scan._read_chunk, []

            def slow_read_chunk(size):
                calls.append(size)
                if len(calls) == 2:
                    fetching.set()
                    release.wait(10)
                return read_chunk(size)

            scan._read_chunk = slow_read_chunk
            # The step whose fetch was withdrawn fetches again.
            got = [await scan.__anext__()]
            while len(got) < 64:              # the rest of the first chunk
                got.append(await scan.__anext__())
            # Cancel a step while its fetch runs: the fetch completes, and
            # the next step takes its chunk.
            step = asyncio.create_task(scan.__anext__())
            await until(fetching.is_set)
            await asyncio.sleep(0.01)
            step.cancel()
            with pytest.raises(asyncio.CancelledError):
                await step
            assert scan._fetch[0].running()
            release.set()
            got += [kv async for kv in scan]
            assert [k for k, _ in got] == keys
            assert await db.get_many(keys[:2]) == [b"v" * 100] * 2
            # aclose mid-way releases the iterator and stops.
            async with db.scan(reverse=True) as scan2:
                assert (await scan2.__anext__())[0] == keys[-1]
            assert scan2._iterator.closed
            with pytest.raises(StopAsyncIteration):
                await scan2.__anext__()
    run(main())


def test_cancelled_connect_closes_what_it_opened(db_path):
    async def main():
        task = asyncio.create_task(kvcy.aio.connect(db_path).__aenter__())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        deadline = time.monotonic() + 10
        while True:                       # the open finishes in its thread, then closes
            try:
                return kvcy.connect(db_path)
            except OperationalError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
    run(main()).close()


# -- close ------------------------------------------------------------------------

def test_close_waits_for_queued_writes(db_path):
    async def main():
        db = await kvcy.aio.connect(db_path)
        writer = db.connection._engine.writer
        writer.acquire()
        try:
            tasks = [asyncio.create_task(db.put(b"k%04d" % i, b"v", sync=i % 2 == 0))
                     for i in range(500)]
            await asyncio.sleep(0.01)       # every task has submitted its write
            closing = asyncio.create_task(db.close())
            await asyncio.sleep(0.05)
            assert not closing.done()
        finally:
            writer.release()
        await closing
        assert all(task.done() and task.exception() is None for task in tasks)
    run(main())
    with kvcy.connect(db_path) as conn:
        assert conn.get_many([b"k%04d" % i for i in range(500)]) == [b"v"] * 500


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_unusable_after_fork(db_path):
    async def parent():
        db = await kvcy.aio.connect(db_path)
        await db.put(b"k", b"v")
        return db

    db = run(parent())
    try:
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                async def child():
                    for call in (lambda: db.get(b"k"), lambda: db.put(b"k", b"child"),
                                 lambda: db.get_many([b"k"] * 1000)):
                        try:
                            await call()
                            return 2
                        except ProgrammingError as exc:
                            if "fork" not in str(exc):
                                return 3
                    return 0
                status = asyncio.run(asyncio.wait_for(child(), 10))
            except BaseException:
                status = 4
            os._exit(status)
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung")
            time.sleep(0.01)
        assert os.waitstatus_to_exitcode(status) == 0
        assert run(db.get(b"k")) == b"v"
    finally:
        run(db.close())


# -- transactions -----------------------------------------------------------------

def test_transaction_commits_at_the_end_of_the_block_and_reads_its_own_writes(db_path):
    async def main():
        async with kvcy.aio.connect(db_path) as db:
            await db.put_many([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])
            async with db.transaction() as txn:
                await txn.put(b"a", b"10")
                await txn.delete(b"b")
                await txn.put_many([(b"d", b"4")])
                assert await txn.get(b"a") == b"10" and await txn.get(b"b") is None
                assert await txn.get_many([b"b", b"c", b"d"], b"-") == [b"-", b"3", b"4"]
                assert [kv async for kv in txn.scan()] == [
                    (b"a", b"10"), (b"c", b"3"), (b"d", b"4")]
                assert await db.get(b"a") == b"1"          # not committed yet
            assert txn.closed
            assert [kv async for kv in db.scan()] == [(b"a", b"10"), (b"c", b"3"), (b"d", b"4")]
            with pytest.raises(ProgrammingError, match="committed"):
                await txn.get(b"a")
    run(main())


def test_transaction_rolls_back_on_an_exception(db_path):
    async def main():
        async with kvcy.aio.connect(db_path) as db:
            with pytest.raises(KeyError):
                async with db.transaction() as txn:
                    await txn.put(b"a", b"1")
                    raise KeyError("boom")
            assert txn.closed and await db.get(b"a") is None
    run(main())


def test_transaction_conflict_raises_and_writes_nothing(db_path):
    async def main():
        async with kvcy.aio.connect(db_path) as db:
            await db.put(b"n", b"0")
            first, second = db.transaction(), db.transaction()
            for txn in (first, second):
                value = await txn.get(b"n")
                await txn.put(b"n", b"%d" % (int(value) + 1))
                await txn.put(b"by-%d" % id(txn), b"x")
            await first.commit()
            with pytest.raises(kvcy.ConflictError):
                await second.commit()
            assert await db.get(b"n") == b"1"
            assert await db.get(b"by-%d" % id(second)) is None
    run(main())
