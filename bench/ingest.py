"""Bulk load: TableWriter + conn.ingest against put_many, for the same pairs.

    python bench/ingest.py [--pairs 1000000] [--batch 1000] [--value-bytes 100]
                           [--processes 1]

Loads --pairs sorted pairs (16-byte keys, --value-bytes values) into a fresh
database each way and prints seconds and pairs per second:

  put_many      conn.put_many() of --batch pairs at a time, then flush()
                (the data is in tables, as after ingest)
  TableWriter   one table written by kvcy.TableWriter, then conn.ingest()
                (with the split: writing the table, ingesting it)
  N processes   with --processes N > 1: N processes each write the table
                of one key range (concurrent.futures), then one ingest

Keys are generated in the timed loop for every way alike (by map and
zip, in C).  A measurement, not a test.
"""
import argparse
from itertools import repeat
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import kvcy  # noqa: E402


def pairs(start, stop, value):
    # map and zip run in C: what the timing shows is the engine's loop
    # more than a Python generator's.
    return zip(map(b"key%013d".__mod__, range(start, stop)), repeat(value, stop - start))


def load_put_many(dbpath, n, batch, value):
    started = time.perf_counter()
    with kvcy.connect(dbpath) as conn:
        for start in range(0, n, batch):
            conn.put_many(list(pairs(start, min(start + batch, n), value)))
        conn.flush()
    return time.perf_counter() - started, None


def write_part(args):
    path, start, stop, value = args
    with kvcy.TableWriter(path) as writer:
        writer.add_many(pairs(start, stop, value))
    return path


def load_ingest(dbpath, tmp, n, value, processes):
    started = time.perf_counter()
    if processes > 1:
        step = -(-n // processes)
        parts = [(os.path.join(tmp, "part%d" % p), p * step, min((p + 1) * step, n), value)
                 for p in range(processes)]
        with ProcessPoolExecutor(processes) as pool:
            paths = list(pool.map(write_part, parts))
    else:
        paths = [write_part((os.path.join(tmp, "part0"), 0, n, value))]
    written = time.perf_counter()
    with kvcy.connect(dbpath) as conn:
        conn.ingest(paths, move=True)
    return time.perf_counter() - started, written - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--value-bytes", type=int, default=100)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    value = b"v" * args.value_bytes
    rows = []
    tmp = tempfile.mkdtemp(prefix="kvcy-bench-ingest-")
    try:
        rows.append(("put_many",) + load_put_many(os.path.join(tmp, "a"), args.pairs,
                                                  args.batch, value))
        rows.append(("TableWriter",) + load_ingest(os.path.join(tmp, "b"), tmp, args.pairs,
                                                   value, 1))
        if args.processes > 1:
            rows.append(("%d processes" % args.processes,) + load_ingest(
                os.path.join(tmp, "c"), tmp, args.pairs, value, args.processes))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base = rows[0][1]
    print("%d pairs, %d-byte values" % (args.pairs, args.value_bytes))
    for name, seconds, writing in rows:
        split = "" if writing is None else "  (table written %.2f s, ingest %.2f s)" % (
            writing, seconds - writing)
        print("%-12s %7.2f s  %10.0f pairs/s  x%.2f%s" % (
            name, seconds, args.pairs / seconds, base / seconds, split))


if __name__ == "__main__":
    main()
