"""Seeks on an iterator made while compaction still runs, and after it ends.

    python bench/seek_tree_shape.py [--num 1000000] [--seeks 10000] [--rounds 4]

An iterator keeps the Version it started with, so how fast its seeks run
depends on the shape of the tree when it was made.  This script fills
--num keys in random order and overwrites them all (16-byte keys, 100-byte
values, snappy, 10-bit bloom filters, 8 MiB block cache, as in
bench/peers.py), then, in a new database each time:

  now     reopens at once and makes the iterator while compactions of the
          overwrite are still running;
  settled waits until compaction has written nothing for 2 s, reopens and
          makes the iterator on the settled tree;

and runs --rounds rounds of --seeks seeks (each reading 10 entries) on that
one iterator, printing seeks/s, the compactions that ran during the round
and the level-0 files.  This explains the spread of bench/peers.py's
seekrandom, whose iterator is made whenever the workloads before it end.
"""
import argparse
import random
import shutil
import sys
import tempfile
import time

import kvcy

OPTIONS = dict(compression="snappy", bloom_bits_per_key=10, block_cache_bytes=8 << 20)


def settle(conn, quiet=2.0, limit=300.0):
    """Wait until compaction has written nothing for `quiet` seconds."""
    deadline = time.monotonic() + limit
    last = conn.stats()["compaction_bytes_written"]
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = conn.stats()["compaction_bytes_written"]
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def run(mode, num, seeks, rounds, seed):
    rng = random.Random(seed)
    values = [bytes(rng.getrandbits(8) for _ in range(50)) * 2 for _ in range(1000)]
    tmp = tempfile.mkdtemp(prefix="kvcy-seek-shape-")
    path = tmp + "/db"
    out = []
    try:
        conn = kvcy.connect(path, **OPTIONS)
        order = list(range(num))
        for shift in (0, 1):
            rng.shuffle(order)
            for i in order:
                conn.put(b"%016d" % i, values[(i + shift) % 1000])
        if mode == "settled":
            settle(conn)
        conn.close()
        conn = kvcy.connect(path, **OPTIONS)
        it = conn.scan()
        for r in range(rounds):
            before = conn.stats()["compactions"]
            probes = [b"%016d" % rng.randrange(num) for _ in range(seeks)]
            started = time.perf_counter()
            for k in probes:
                it.seek(k)
                for _ in range(10):
                    if next(it, None) is None:
                        break
            rate = seeks / (time.perf_counter() - started)
            stats = conn.stats()
            out.append(rate)
            print("%-8s round %d: %8.0f seeks/s, %d compactions during it, %d level-0 files"
                  % (mode, r, rate, stats["compactions"] - before, stats["level0_files"]))
        del it
        conn.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num", type=int, default=1_000_000)
    ap.add_argument("--seeks", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args(argv)
    return {mode: run(mode, args.num, args.seeks, args.rounds, args.seed)
            for mode in ("now", "settled")}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
