"""How long kvcy.check takes on a big database, and what kvcy.repair recovers.

    python bench/check_time.py [--keys 1000000] [--repeat 3] [--no-repair] [--dir DIR]

Builds a database of --keys keys (16-byte keys in random order, 100-byte
values half random and half a repeat of it, as db_bench's compressible
values; put_many batches of 1,000), closes it, and times kvcy.check on it
(median of --repeat runs, page cache warm).

Then, unless --no-repair, it damages a copy for each file kind in turn
(tests/db_damage.py: a data block, an index block, a filter block, a footer,
a log record in the middle, the MANIFEST, CURRENT removed), repairs it, and
prints the keys repair recovered against the keys the undamaged blocks and
records hold (read from the files directly) and whether the repaired
contents equal that expectation exactly.  A measurement, not a test.
"""
import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
import kvcy  # noqa: E402
import db_damage  # noqa: E402   the damages and the expectation the tests use


def build(path, keys, seed=1):
    rng = random.Random(seed)
    order = list(range(keys))
    rng.shuffle(order)
    with kvcy.connect(path) as conn:
        for start in range(0, keys, 1000):
            batch = []
            for i in order[start:start + 1000]:
                half = rng.randbytes(50)
                batch.append((b"%016d" % i, half + half))
            conn.put_many(batch)
        # No flush: the last memtable's batches stay in the log, for the log damage.


def _levels(path):
    return {level: names for level, names in db_damage.level_tables(path).items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-repair", action="store_true")
    parser.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    args = parser.parse_args()
    work = args.dir or tempfile.mkdtemp(prefix="kvcy-check-")
    base = os.path.join(work, "base")
    t = time.perf_counter()
    build(base, args.keys)
    size = sum(os.path.getsize(os.path.join(base, n)) for n in os.listdir(base))
    print("built %d keys in %.1f s: %.1f MB, %d tables"
          % (args.keys, time.perf_counter() - t, size / 1e6, len(db_damage.files(base, "sst"))))
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        report = kvcy.check(base)
        times.append(time.perf_counter() - t)
    assert report.ok, report
    print("kvcy.check: median %.2f s of %s (%d tables, %d blocks, %d keys checked; %.0f MB/s)"
          % (statistics.median(times), ["%.2f" % x for x in times], report.tables_checked,
             report.blocks_checked, report.keys_checked,
             report.bytes_checked / 1e6 / statistics.median(times)))
    if args.no_repair:
        return
    # The damages pick the first level-1 table; a big database may have none
    # there, so name the deepest level's first table level 1 for them.
    levels = _levels(base)
    deepest = max(levels)
    db_damage.level_tables = lambda path: {0: levels.get(0, []), 1: levels[deepest]}
    print("%-18s %10s %10s %6s %8s  %s" % ("damage", "recovered", "expected", "equal",
                                         "repair s", "dropped"))
    for damage in db_damage.DAMAGES:
        path = os.path.join(work, damage.__name__)
        shutil.copytree(base, path)
        name, offset, skips = damage(path)
        expected = db_damage.expected_contents(base, *skips)
        t = time.perf_counter()
        report = kvcy.repair(path)
        seconds = time.perf_counter() - t
        equal = db_damage.contents(path) == expected
        print("%-18s %10d %10d %6s %8.2f  %s"
              % (damage.__name__, report.keys_recovered, len(expected), equal, seconds,
                 "; ".join(str(p) for p in report.dropped) or "-"))
        shutil.rmtree(path)
    if not args.dir:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
