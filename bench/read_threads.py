"""Random gets from 1, 2 and 4 threads on a quiescent database, kvcy and peers.

    python bench/read_threads.py [--num 1000000] [--gets 200000] [--repeat 5]
                                 [--threads 1,2,4] [--peers plyvel,rocksdict]

bench/peers.py measures `readrandom_threadsT` on the database its fills
left, while each engine may still be compacting what the fill left behind
(a fast fill leaves more): on two cores that work takes a core from the
readers.  Here each engine gets the same keys loaded in 1,000-pair
batches, a full compaction, a close and a reopen, so every engine's
readers run alone on a database that no background work touches; one
warm-up pass of --gets gets, then --repeat rounds of the thread counts in
turn.  Prints the median gets/s of each count and its ratio to one
thread.  Configuration as in bench/peers.py (snappy, 10-bit bloom filters,
8 MiB block cache).
"""
import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peer_engines import ADAPTERS  # noqa: E402
from peers import make_values, read_threads  # noqa: E402


def compact_all(adapter):
    """A full compaction, through each engine's own call."""
    db = adapter.db
    if adapter.name in ("kvcy", "plyvel"):
        db.compact_range()
    elif adapter.name == "rocksdict":
        db.compact_range(None, None)
    else:
        raise SystemExit("read_threads.py: no full compaction for %s" % adapter.name)


def measure(name, keys, values, gets, threads, repeat, seed):
    adapter = ADAPTERS[name]()
    tmp = tempfile.mkdtemp(prefix="kvcy-read-threads-")
    path = os.path.join(tmp, "db")
    try:
        adapter.open(path)
        order = list(range(len(keys)))
        random.Random(seed).shuffle(order)
        for i in range(0, len(order), 1000):
            adapter.batch([(keys[j], values[j]) for j in order[i:i + 1000]])
        compact_all(adapter)
        adapter.close()
        adapter.reopen(path)
        rng = random.Random(seed + 1)
        probes = [keys[rng.randrange(len(keys))] for _ in range(gets)]
        if adapter.get(probes[0]) is None:
            raise SystemExit("read_threads.py: %s lost a key" % name)
        read_threads(adapter, probes, 1)                       # warm-up
        rates = {t: [] for t in threads}
        for _ in range(repeat):
            for t in threads:
                rates[t].append(read_threads(adapter, probes, t))
        adapter.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {t: statistics.median(r) for t, r in rates.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num", type=int, default=1_000_000)
    ap.add_argument("--gets", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", default="1,2,4")
    ap.add_argument("--peers", default="plyvel,rocksdict")
    ap.add_argument("--seed", type=int, default=301)
    args = ap.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    engines = ["kvcy"] + [p for p in args.peers.split(",") if p]
    keys = [b"%016d" % i for i in range(args.num)]
    values = make_values(random.Random(args.seed), args.num)
    results = {}
    for name in engines:
        try:
            results[name] = measure(name, keys, values, args.gets, threads, args.repeat,
                                    args.seed)
        except ImportError as exc:
            print("%s skipped: %s" % (name, exc))
    print("%d keys, %d gets per round, medians of %d rounds (gets/s; x: over one thread)"
          % (args.num, args.gets, args.repeat))
    print("%-10s" % "engine" + "".join("%22s" % ("%d thread%s" % (t, "s" if t > 1 else ""))
                                       for t in threads))
    for name, medians in results.items():
        base = medians[threads[0]]
        print("%-10s" % name + "".join("%14.0f %6.2fx" % (medians[t], medians[t] / base)
                                       for t in threads))
    return results


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
