"""What range tombstones cost and save (conn.delete_range).

    python bench/range_del.py [--keys 200000] [--gets 200000] [--repeat 5]

Loads --keys pairs (16-byte keys, 100-byte values), compacted, into
databases that differ only in their live range tombstones (none, 10,
1,000 in the memtable, 1,000 flushed into the Version; each covers a
gap between keys, so every get still finds its key), and measures:

  readrandom   gets/s of random present keys, the databases measured in
               turn, best of --repeat rounds (the machine may be shared)
  delete_range ops/s of 2,000 calls, and the WAL bytes of one call over
               10 keys and over all keys (a constant-size write)
  scan         entries/s of a full scan with 90% of the keys deleted by one
               tombstone, before and after compact_range, which drops them
  compaction   disk bytes and entries dropped by that compact_range

A measurement, not a test.
"""
import argparse
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kvcy  # noqa: E402


def key(i):
    return b"%016d" % i


def load(path, n):
    conn = kvcy.connect(path)
    value = bytes(100)
    for i in range(0, n, 1000):
        conn.put_many([(key(j), value) for j in range(i, min(i + 1000, n))])
    conn.compact_range()
    return conn


def gap_tombstones(conn, count, n):
    step = max(n // max(count, 1), 1)
    for i in range(count):
        conn.delete_range(key(i * step) + b"!", key(i * step) + b"!~")


def disk_bytes(conn):
    return sum(level["bytes"] for level in conn.stats()["levels"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=200_000)
    ap.add_argument("--gets", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n = args.keys
    root = tempfile.mkdtemp(prefix="kvcy-rangedel-bench-")
    try:
        dbs = {}
        for name, count, flush in (("none", 0, False), ("10", 10, False),
                                   ("1000 in memtable", 1000, False),
                                   ("1000 flushed", 1000, True)):
            conn = load(os.path.join(root, "db%d" % len(dbs)), n)
            gap_tombstones(conn, count, n)
            if flush:
                conn.flush()
            dbs[name] = conn
        rng = random.Random(1)
        probe = [key(rng.randrange(n)) for _ in range(args.gets)]
        best = dict.fromkeys(dbs, 0.0)
        for _ in range(args.repeat):
            for name, conn in dbs.items():
                get = conn.get
                started = time.perf_counter()
                for k in probe:
                    get(k)
                best[name] = max(best[name], len(probe) / (time.perf_counter() - started))
        for name, rate in best.items():
            print("readrandom, range tombstones %-17s %9.0f gets/s  %.2f us/get"
                  % (name + ":", rate, 1e6 / rate))

        conn = dbs["none"]
        before = conn.stats()["wal_bytes"]
        conn.delete_range(key(10), key(20))
        small = conn.stats()["wal_bytes"] - before
        conn.delete_range(key(0), key(n))
        large = conn.stats()["wal_bytes"] - before - small
        print("delete_range WAL bytes: %d (10 keys), %d (%d keys)" % (small, large, n))
        started = time.perf_counter()
        for i in range(2000):
            conn.delete_range(b"x%06d" % i, b"x%06d~" % i)
        print("delete_range: %.0f ops/s (2,000 calls, up to 2,002 live tombstones)"
              % (2000 / (time.perf_counter() - started)))

        conn = dbs["10"]
        conn.delete_range(key(n // 10), key(n))
        for label in ("before compact_range", "after compact_range"):
            if label.startswith("after"):
                disk, dropped = disk_bytes(conn), conn.stats()["compaction_entries_dropped"]
                started = time.perf_counter()
                conn.compact_range()
                took = time.perf_counter() - started
                print("compact_range: %.2f s, %d entries dropped, disk %d -> %d bytes, "
                      "%d live tombstones left" % (
                          took, conn.stats()["compaction_entries_dropped"] - dropped, disk,
                          disk_bytes(conn), conn.stats()["range_tombstones"]))
            started = time.perf_counter()
            count = sum(1 for _ in conn.scan())
            print("scan %-21s %9.0f visible entries/s (%d entries)"
                  % (label + ":", count / (time.perf_counter() - started), count))
        for conn in dbs.values():
            conn.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
