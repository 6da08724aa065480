"""What partitioned index and filters cost in reads (partitioned_index=True).

    python bench/partitioned_index.py [--num 1000000] [--gets 200000] [--repeat 3]
                                      [--block-cache 8MiB]

Loads --num pairs (16-byte keys, 100-byte values that compress about 2:1,
in random order, compacted) into two databases that differ only in
partitioned_index, then reopens each in turn, alternating which goes first,
and measures on each:

  readrandom    gets/s of random present keys
  readmissing   gets/s of absent keys (a present key + b"."), which the
                bloom filter (or filter partition) answers
  seekrandom    seeks/s, each followed by 10 entries

and the table metadata the open tables keep in memory (table_meta_bytes).
Prints the medians of --repeat rounds and partitioned / unpartitioned.  At
100M keys and beyond, bench/scale.py --partitioned measures the memory it
saves.  A measurement, not a test.
"""
import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kvcy  # noqa: E402
from kvcy.config import parse_size  # noqa: E402

SEEK_NEXTS = 10


def load(path, num, partitioned, options, seed):
    rnd = random.Random(seed)
    keys = [b"%016d" % i for i in range(num)]
    order = list(range(num))
    rnd.shuffle(order)
    halves = [rnd.randbytes(50) for _ in range(1000)]
    with kvcy.connect(path, partitioned_index=partitioned, **options) as conn:
        for j in range(0, num, 1000):
            conn.put_many([(keys[i], halves[i % 1000] * 2) for i in order[j:j + 1000]])
        conn.compact_range()


def measure(path, options, probes, missing, seeks):
    with kvcy.connect(path, **options) as conn:
        get = conn.get
        out = {}
        started = time.perf_counter()
        for k in probes:
            get(k)
        out["readrandom"] = len(probes) / (time.perf_counter() - started)
        started = time.perf_counter()
        for k in missing:
            get(k)
        out["readmissing"] = len(missing) / (time.perf_counter() - started)
        it = conn.scan()
        started = time.perf_counter()
        for k in seeks:
            it.seek(k)
            for _ in range(SEEK_NEXTS):
                if next(it, None) is None:
                    break
        out["seekrandom"] = len(seeks) / (time.perf_counter() - started)
        it.close()
        out["table_meta_bytes"] = conn.stats()["table_meta_bytes"]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1_000_000)
    parser.add_argument("--gets", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--block-cache", type=parse_size, default=8 << 20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    options = dict(compression="snappy", bloom_bits_per_key=10, row_cache_bytes=0,
                   block_cache_bytes=args.block_cache, sync=False)
    base = tempfile.mkdtemp(prefix="kvcy-partitioned-")
    try:
        paths = {}
        for partitioned in (False, True):
            paths[partitioned] = os.path.join(base, "p" if partitioned else "u")
            load(paths[partitioned], args.num, partitioned, options, args.seed)
        rnd = random.Random(args.seed + 1)
        probes = [b"%016d" % rnd.randrange(args.num) for _ in range(args.gets)]
        missing = [k + b"." for k in probes]
        seeks = probes[:max(args.gets // SEEK_NEXTS, 1)]
        runs = {False: [], True: []}
        for r in range(args.repeat):
            for partitioned in ((False, True) if r % 2 == 0 else (True, False)):
                runs[partitioned].append(measure(paths[partitioned], options, probes,
                                                 missing, seeks))
        print("%d keys, block cache %d bytes, medians of %d rounds"
              % (args.num, args.block_cache, args.repeat))
        print("%-18s %14s %14s %10s" % ("", "unpartitioned", "partitioned", "ratio"))
        for what in ("readrandom", "readmissing", "seekrandom", "table_meta_bytes"):
            u = statistics.median(run[what] for run in runs[False])
            p = statistics.median(run[what] for run in runs[True])
            print("%-18s %14.0f %14.0f %9.2fx" % (what, u, p, p / u if u else 0))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
