"""What a transaction's commit costs on top of put_many of the same pairs.

    python bench/txn_overhead.py [--txns 1000] [--puts 10] [--repeat 7] [--sync]

Each round writes --txns groups of --puts pairs (16-byte keys, 100-byte
values, random keys out of a 100k key space) to a fresh database, once per
way of writing them:

  put_many         conn.put_many(pairs)                       (the baseline)
  txn blind        with conn.transaction() as t: t.put(k, v)... (validates the written keys)
  txn rmw          the same, each key read with t.get first   (validates reads and writes)
  txn, 1 contended the blind transaction while a second thread puts random
                   keys in between (the conflict check's slow path: entries
                   after the snapshot exist, so each key is looked up)
  autocommit=False conn.put(k, v) ... conn.commit()

It prints microseconds per group (median of --repeat rounds) and the ratio
to put_many.  A measurement, not a test.
"""
import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kvcy  # noqa: E402


def groups(seed, count, size):
    rng = random.Random(seed)
    value = bytes(rng.randrange(256) for _ in range(100))
    return [[(b"key%013d" % rng.randrange(100_000), value) for _ in range(size)]
            for _ in range(count)]


def put_many(conn, work, sync):
    for pairs in work:
        conn.put_many(pairs, sync=sync)


def txn_blind(conn, work, sync):
    for pairs in work:
        with conn.transaction(sync=sync) as txn:
            for key, value in pairs:
                txn.put(key, value)


def txn_rmw(conn, work, sync):
    for pairs in work:
        with conn.transaction(sync=sync) as txn:
            for key, value in pairs:
                txn.get(key)
                txn.put(key, value)


def txn_contended(conn, work, sync):
    stop = threading.Event()

    def noise():
        rng = random.Random(1)
        while not stop.is_set():
            conn.put(b"noise%011d" % rng.randrange(100_000), b"x")
            time.sleep(0)

    thread = threading.Thread(target=noise)
    thread.start()
    try:
        txn_blind(conn, work, sync)
    finally:
        stop.set()
        thread.join()


def implicit(conn, work, sync):
    conn.autocommit = False
    for pairs in work:
        for key, value in pairs:
            conn.put(key, value, sync=sync)
        conn.commit()
    conn.autocommit = True


WAYS = [("put_many", put_many), ("txn blind", txn_blind), ("txn rmw", txn_rmw),
        ("txn, 1 contended", txn_contended), ("autocommit=False", implicit)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txns", type=int, default=1000)
    parser.add_argument("--puts", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--sync", action="store_true")
    args = parser.parse_args()
    times = {name: [] for name, _ in WAYS}
    for r in range(args.repeat):
        work = groups(r, args.txns, args.puts)
        for name, way in WAYS:
            with tempfile.TemporaryDirectory() as path:
                with kvcy.connect(path) as conn:
                    conn.put_many(pair for pairs in work for pair in pairs)   # keys exist
                    started = time.perf_counter()
                    way(conn, work, args.sync)
                    times[name].append(time.perf_counter() - started)
    base = statistics.median(times["put_many"])
    print("%d groups of %d puts%s, median of %d rounds"
          % (args.txns, args.puts, " (sync=True)" if args.sync else "", args.repeat))
    print("%-18s %12s %8s" % ("way", "us/group", "ratio"))
    for name, _ in WAYS:
        t = statistics.median(times[name])
        print("%-18s %12.1f %8.2f" % (name, t / args.txns * 1e6, t / base))


if __name__ == "__main__":
    main()
