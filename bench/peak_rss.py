"""Peak memory of a random fill and random reads, kvcy against its peers.

    python bench/peak_rss.py [--num 1000000] [--peers plyvel,rocksdict] [--seed 301]

Each engine runs in a child process of its own: the child makes the keys
and values (as bench/peers.py does), notes its resident set, then puts the
--num keys in random order, reads 100,000 random keys and closes, and
reports its peak resident set (getrusage's ru_maxrss).  Every child holds
the same data, so the peaks compare the engines: the issue's target is
kvcy's peak <= LevelDB's + kvcy's configured memtable budget
(memtable_max_bytes x (1 + max_immutable_memtables)) + the block cache,
which is the same 8 MiB for every engine.  Prints one row per engine: the
resident set before opening, the peak, and the growth between them.
"""
import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peer_engines import ADAPTERS  # noqa: E402
from peers import make_values  # noqa: E402

READS = 100_000


def current_rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(name, num, seed):
    rng = random.Random(seed)
    keys = [b"%016d" % i for i in range(num)]
    values = make_values(rng, num)
    order = list(range(num))
    rng.shuffle(order)
    probes = [keys[i] for i in rng.sample(range(num), min(READS, num))]
    before = current_rss()
    tmp = tempfile.mkdtemp(prefix="kvcy-rss-")
    try:
        adapter = ADAPTERS[name]()
        adapter.open(os.path.join(tmp, "db"))
        put, get = adapter.put, adapter.get
        for i in order:
            put(keys[i], values[i])
        for k in probes:
            get(k)
        adapter.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # KiB on Linux
    print(json.dumps({"engine": name, "before": before, "peak": peak}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1_000_000)
    parser.add_argument("--peers", default="plyvel,rocksdict")
    parser.add_argument("--seed", type=int, default=301)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error("--num must be at least 1")
    if args.child:
        child(args.child, args.num, args.seed)
        return 0
    names = ["kvcy"] + [p for p in args.peers.split(",") if p]
    for name in names:
        if name not in ADAPTERS:
            parser.error("unknown engine %r; choose from %s" % (name, ", ".join(ADAPTERS)))
    import kvcy
    opts = kvcy.Options()
    budget = (opts.memtable_max_bytes * (1 + opts.max_immutable_memtables))
    print("%-10s %12s %12s %12s" % ("engine", "before MiB", "peak MiB", "growth MiB"))
    rows = {}
    for name in names:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name,
                              "--num", str(args.num), "--seed", str(args.seed)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print("%-10s failed: %s" % (name, out.stderr.strip().splitlines()[-1:]))
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows[name] = row
        print("%-10s %12.1f %12.1f %12.1f" % (name, row["before"] / 2**20, row["peak"] / 2**20,
                                               (row["peak"] - row["before"]) / 2**20))
    if "kvcy" in rows and "plyvel" in rows:
        limit = rows["plyvel"]["peak"] + budget
        print("kvcy peak %.1f MiB; LevelDB's peak + kvcy's memtable budget (%.0f MiB) = %.1f MiB: %s"
              % (rows["kvcy"]["peak"] / 2**20, budget / 2**20, limit / 2**20,
                 "within" if rows["kvcy"]["peak"] <= limit else "OVER"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
