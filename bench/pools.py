"""What the worker pools buy: write grouping and parallel get_many.

    python bench/pools.py [--part writes|reads|scan|all] [--num 1000000]
                          [--writes 2000] [--seconds 5] [--rounds 10]
                          [--db PATH] [--seed 11]

Writes (each line: ops/s, fsyncs and writes per fsync):
  - direct: N threads (1, 2, 4, 8) calling conn.put(sync=True), then
    sync=False; the C write path's group commit is all the help they get;
  - submit: N threads each calling conn.submit(conn.put, ..., sync=True)
    and waiting for the Future, for write_threads 1, 2 and 4;
  - queued: one thread submitting --writes sync=True puts without waiting
    (a producer that must not block on an fsync), then waiting for all;
  - aio: 1, 8, 64 asyncio tasks each awaiting db.put(sync=True) in turn.
Reads: a --num key database (16-byte keys, 100-byte values, bench/peers.py's
shape) built once under --db; random keys read in get_many calls of 100,
1,000 and 10,000 keys with read_threads 0, 1, 2 and 4, against a loop of
get over the same keys, with an 8 MiB block cache (most blocks are not in
it, though the OS page cache holds the files) and then a 1 GiB one (every
block cached after the first pass), with a control: two threads looping
get against one.  Scan: a full scan of that database, iterating
conn.scan() against `async for` over kvcy.aio's scan.
"""
import argparse
import asyncio
import os
import random
import shutil
import statistics
import tempfile
import threading
import time

import kvcy
import kvcy.aio

KEY_BYTES, VALUE_BYTES = 16, 100


def rate_line(label, n, wall, syncs):
    per = n / syncs if syncs else float("inf")
    print("  %-44s %9.0f ops/s  %6d fsyncs  %6.1f writes/fsync" % (label, n / wall, syncs, per))


def threads_run(n_threads, per_thread, work):
    start = threading.Barrier(n_threads + 1)

    def body(t):
        start.wait()
        work(t, per_thread)

    threads = [threading.Thread(target=body, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    start.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    return time.perf_counter() - t0


def bench_writes(args, tmp):
    value = b"v" * VALUE_BYTES
    print("sync=True/False puts, %d per run, database in %s" % (args.writes, tmp))

    def fresh(name, **options):
        path = os.path.join(tmp, name)
        shutil.rmtree(path, ignore_errors=True)
        return kvcy.connect(path, **options)

    for sync in (True, False):
        n = args.writes if sync else args.writes * 50
        for n_threads in (1, 2, 4, 8):
            conn = fresh("direct")
            put = conn.put

            def work(t, count):
                for i in range(count):
                    put(b"%02d%014d" % (t, i), value, sync=sync)

            s0 = conn.stats()["wal_syncs"]
            wall = threads_run(n_threads, n // n_threads, work)
            rate_line("direct, %d thread%s, sync=%s" % (n_threads, "s" * (n_threads > 1), sync),
                      n // n_threads * n_threads, wall, conn.stats()["wal_syncs"] - s0)
            conn.close()

    for write_threads in (1, 2, 4):
        for n_threads in (1, 4, 8):
            conn = fresh("submit", write_threads=write_threads)

            def work(t, count):
                for i in range(count):
                    conn.submit(conn.put, b"%02d%014d" % (t, i), value, sync=True).result()

            wall = threads_run(n_threads, args.writes // n_threads, work)
            rate_line("submit+wait, %d threads, write_threads=%d" % (n_threads, write_threads),
                      args.writes // n_threads * n_threads, wall, conn.stats()["wal_syncs"])
            conn.close()

    for write_threads in (1, 4):
        conn = fresh("queued", write_threads=write_threads)
        t0 = time.perf_counter()
        futures = [conn.submit(conn.put, b"%016d" % i, value, sync=True)
                   for i in range(args.writes * 10)]
        submitted = time.perf_counter() - t0
        for future in futures:
            future.result()
        wall = time.perf_counter() - t0
        rate_line("queued, write_threads=%d (submitting: %.0f/s)" % (
            write_threads, len(futures) / submitted), len(futures), wall,
            conn.stats()["wal_syncs"])
        conn.close()

    for tasks in (1, 8, 64):
        path = os.path.join(tmp, "aio")
        shutil.rmtree(path, ignore_errors=True)

        async def main():
            async with kvcy.aio.connect(path) as db:
                async def task(t, count):
                    for i in range(count):
                        await db.put(b"%02d%014d" % (t, i), value, sync=True)
                per = args.writes // tasks
                t0 = time.perf_counter()
                await asyncio.gather(*[task(t, per) for t in range(tasks)])
                return per * tasks, time.perf_counter() - t0, db.connection.stats()["wal_syncs"]

        n, wall, syncs = asyncio.run(main())
        rate_line("aio, %d tasks awaiting put(sync=True)" % tasks, n, wall, syncs)


def build_db(path, num, seed):
    if os.path.exists(os.path.join(path, "CURRENT")):
        with kvcy.connect(path) as conn:
            if conn.get(b"%016d" % (num - 1)) is not None and conn.get(b"%016d" % num) is None:
                return
        shutil.rmtree(path)
    rng = random.Random(seed)
    print("building a %d-key database in %s" % (num, path))
    with kvcy.connect(path) as conn:
        for start in range(0, num, 10_000):
            conn.put_many((b"%016d" % i, rng.randbytes(VALUE_BYTES // 2) * 2)
                          for i in range(start, min(num, start + 10_000)))
        conn.compact_range()


def bench_reads(args, path):
    """Each variant gets its own connection; the variants take turns in
    short runs (--rounds of them), so that load from elsewhere on the
    machine spreads over all of them, and the median run counts."""
    build_db(path, args.num, args.seed)
    rng = random.Random(args.seed)
    variants = [None, 0, 1, 2, 4]            # None: a loop of get
    for cache in (8 << 20, 1 << 30):
        print("random keys, %d-key database, block cache %d MiB, %d rounds of %.2f s"
              % (args.num, cache >> 20, args.rounds, args.seconds / args.rounds))
        # The loop of get gets the writable connection, whose get is the C
        # read path itself (a read-only one's get is a Python method).
        conns = {t: kvcy.connect(path, readonly=t is not None, block_cache_bytes=cache,
                                 read_threads=t or 0)
                 for t in variants}
        if cache > 8 << 20:                      # warm every cache
            everything = [b"%016d" % i for i in range(args.num)]
            for conn in conns.values():
                conn.get_many(everything)
        for batch in (100, 1000, 10_000):
            keys = [b"%016d" % rng.randrange(args.num) for _ in range(200_000)]
            rates = {t: [] for t in variants}
            for _ in range(args.rounds):
                for t in variants:
                    get, get_many = conns[t].get, conns[t].get_many
                    t0 = time.perf_counter()
                    done = 0
                    while time.perf_counter() - t0 < args.seconds / args.rounds:
                        at = rng.randrange(len(keys) - batch)
                        chunk = keys[at:at + batch]
                        if t is None:
                            for k in chunk:
                                get(k)
                        else:
                            get_many(chunk)
                        done += batch
                    rates[t].append(done / (time.perf_counter() - t0))
            med = {t: statistics.median(r) for t, r in rates.items()}
            base = med[None]
            print("  %6d keys/call: loop of get %7.0f keys/s; get_many %s" % (
                batch, base, ", ".join("read_threads=%d %7.0f (%.2fx)" % (t, med[t], med[t] / base)
                                       for t in variants[1:])))
        # The control: what two threads calling get gain over one, right
        # now (a second core busy elsewhere shows here first).
        get = conns[None].get
        keys = [b"%016d" % rng.randrange(args.num) for _ in range(100_000)]

        def loop(part):
            for k in part:
                get(k)

        ratios = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            loop(keys[:50_000])
            one = time.perf_counter() - t0
            threads = [threading.Thread(target=loop, args=(keys[i::2],)) for i in range(2)]
            t0 = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            ratios.append(one * 2 / (time.perf_counter() - t0))
        print("  control: 2 threads looping get, %.2fx one thread (median of %d)"
              % (statistics.median(ratios), args.rounds))
        hits = sum(c.stats()["block_cache_hits"] for c in conns.values())
        misses = sum(c.stats()["block_cache_misses"] for c in conns.values())
        print("  block cache hit ratio %.2f" % (hits / max(1, hits + misses)))
        for conn in conns.values():
            conn.close()


def bench_scan(args, path):
    """A full scan of the --num key database: iterating the connection's
    scan against `async for` over kvcy.aio's (chunks on the read pool)."""
    build_db(path, args.num, args.seed)
    with kvcy.connect(path, readonly=True) as conn:
        t0 = time.perf_counter()
        n = sum(1 for _ in conn.scan())
        sync_rate = n / (time.perf_counter() - t0)

    async def main():
        async with kvcy.aio.connect(path, readonly=True) as db:
            t0 = time.perf_counter()
            count = 0
            async for _ in db.scan():
                count += 1
            return count / (time.perf_counter() - t0)

    aio_rate = asyncio.run(main())
    print("full scan of %d pairs: for over conn.scan() %.0f pairs/s; async for over "
          "kvcy.aio scan() %.0f pairs/s (%.2fx)" % (n, sync_rate, aio_rate, aio_rate / sync_rate))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("writes", "reads", "scan", "all"), default="all")
    parser.add_argument("--num", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="time per read variant and batch size")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--db", default=os.path.join(tempfile.gettempdir(), "kvcy-bench-pools"))
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    print("kvcy %s, %d cores" % (os.path.dirname(kvcy.__file__), os.cpu_count()))
    if args.part in ("writes", "all"):
        tmp = tempfile.mkdtemp(prefix="kvcy-pools-", dir=os.path.dirname(args.db))
        try:
            bench_writes(args, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.part in ("reads", "all"):
        bench_reads(args, args.db)
    if args.part in ("scan", "all"):
        bench_scan(args, args.db)


if __name__ == "__main__":
    main()
