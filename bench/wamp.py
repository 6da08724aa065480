"""Write amplification of a random fill: at the end of the fill, and once
compaction has settled.

    python bench/wamp.py [--num 1000000] [--quiet 5] [--seed 301] [--json out.json]

Puts --num keys in random order (16-byte keys, 100-byte values compressing
about 2:1, as bench/peers.py makes them; snappy, 10-bit bloom filters, 8 MiB
block cache), then waits until flushes and compactions have written nothing
for --quiet seconds.  Write amplification is table bytes written (flushes +
compactions) per byte of user data (key + value), at the end of the fill and
once settled, with the per-level figures of stats()["levels"].

bench/peers.py's `wamp` is taken at the end of the fill, when an engine
that fills faster has more compaction left to do, so it favours slow
fills; the settled figure compares the same work.  To compare two builds,
run this script under each (PYTHONPATH pointing at the build).
"""
import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

import kvcy

KEY_BYTES, VALUE_BYTES = 16, 100


def table_bytes(conn):
    s = conn.stats()
    return s["flush_bytes"] + s["compaction_bytes_written"]


def run(num, quiet, seed):
    rng = random.Random(seed)
    half = VALUE_BYTES // 2
    pool = rng.randbytes(half * (num + 1))
    keys = [b"%016d" % i for i in range(num)]
    order = list(range(num))
    rng.shuffle(order)
    tmp = tempfile.mkdtemp(prefix="kvcy-wamp-")
    try:
        conn = kvcy.connect(os.path.join(tmp, "db"), compression="snappy",
                            bloom_bits_per_key=10, block_cache_bytes=8 << 20,
                            row_cache_bytes=0, sync=False)
        put = conn.put
        started = time.perf_counter()
        for i in order:
            v = pool[i * half:(i + 1) * half]
            put(keys[i], v + v)
        elapsed = time.perf_counter() - started
        user = num * (KEY_BYTES + VALUE_BYTES)
        at_end = table_bytes(conn)
        last, since = at_end, time.monotonic()
        while time.monotonic() - since < quiet:
            time.sleep(min(0.5, quiet))
            now = table_bytes(conn)
            if now != last:
                last, since = now, time.monotonic()
        # (Builds before stats()["levels"] report the totals only.)
        levels = [dict(level) for level in conn.stats().get("levels", ())
                  if level["files"] or level["write_amplification"]]
        conn.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"num": num, "fill_ops_per_s": num / elapsed, "wamp_end": at_end / user,
            "wamp_settled": last / user, "levels": levels}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num", type=int, default=1_000_000)
    ap.add_argument("--quiet", type=float, default=5.0,
                    help="seconds without table writes that count as settled")
    ap.add_argument("--seed", type=int, default=301)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    out = run(args.num, args.quiet, args.seed)
    print("%d keys: fill %.0f puts/s, wamp at the end of the fill %.2f, settled %.2f"
          % (out["num"], out["fill_ops_per_s"], out["wamp_end"], out["wamp_settled"]))
    for level in out["levels"]:
        print("  level %d: %d files, %d bytes, write amplification %.3f"
              % (level["level"], level["files"], level["bytes"], level["write_amplification"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
