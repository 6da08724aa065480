"""Where the time of a random fill goes: the writer thread against the rest.

    python bench/fill_profile.py [--num 1000000] [--seed 301]

Puts --num keys in random order (bench/peers.py's keys and values) into a
new database and prints: puts/s, the wall time, the CPU time of the writer
thread (and its share of the wall time; the rest it spent waiting for the
GIL or in write stalls), the CPU time of every other thread (the background
flushes and compactions), the cores used (process CPU / wall), kvcy's
stall_seconds, the write amplification and the compaction counters.  A
compaction that holds the GIL shows as cores used near 1 and a writer that
waits; one that runs beside the writer, as cores used above 1.
"""
import argparse
import os
import random
import shutil
import sys
import tempfile
import time

import kvcy

KEY_BYTES, VALUE_BYTES = 16, 100


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=301)
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error("--num must be at least 1")
    rng = random.Random(args.seed)
    keys = [b"%016d" % i for i in range(args.num)]
    rng.shuffle(keys)
    values = [rng.randbytes(VALUE_BYTES // 2) * 2 for _ in range(1000)]
    tmp = tempfile.mkdtemp(prefix="kvcy-fill-")
    try:
        conn = kvcy.connect(os.path.join(tmp, "db"), block_cache_bytes=8 << 20)
        put = conn.put
        cpu0, wall0, mine0 = time.process_time(), time.perf_counter(), time.thread_time()
        for i, k in enumerate(keys):
            put(k, values[i % 1000])
        wall = time.perf_counter() - wall0
        mine = time.thread_time() - mine0
        cpu = time.process_time() - cpu0
        s = conn.stats()
        conn.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wamp = (s["flush_bytes"] + s["compaction_bytes_written"]) / (args.num * (KEY_BYTES + VALUE_BYTES))
    print("kvcy %s, %d random puts" % (os.path.dirname(kvcy.__file__), args.num))
    print("  %.0f puts/s, wall %.2f s" % (args.num / wall, wall))
    print("  writer thread CPU %.2f s (%.0f%% of the wall time)" % (mine, 100 * mine / wall))
    print("  other threads CPU %.2f s (flushes, compactions)" % (cpu - mine))
    print("  cores used %.2f" % (cpu / wall))
    print("  stall_seconds %.2f (%d stalls, %d slowdowns)" % (
        s["stall_seconds"], s["stalls"], s["slowdowns"]))
    print("  write amplification %.2f; %d flushes, %d compactions, %d trivial moves" % (
        wamp, s["flushes"], s["compactions"], s["trivial_moves"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
