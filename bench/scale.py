"""Scale: bulk load and random reads at 1M, 10M and 100M keys.

    python bench/scale.py [--num 100000000] [--sizes 1000000,10000000]
                          [--put-many 10000000] [--reads 200000] [--repeat 3]
                          [--processes 2] [--table-pairs 1000000] [--dir DIR]
                          [--json PATH] [--skip-ingest] [--skip-put-many]
                          [--skip-reads] [--keep] [--reuse] [--in-process] [--quiet]
                          [--partitioned] [--block-cache SIZE] [--interleave ROUNDS]

For each size of --sizes and --num (smallest first), a fresh database is
loaded with that many pairs through kvcy.TableWriter + conn.ingest: the key
range is cut into tables of --table-pairs pairs, built by --processes
worker processes (concurrent.futures), and ingested in one call
(move=True).  Then, in a new process, readrandom (--reads gets of random
existing keys) and seekrandom (--reads/10 seeks, each reading 10 pairs)
run on it (--repeat times each, a new sample of keys each time: the
median counts), and the database is deleted (unless --keep; --reuse
reads kept databases again without loading them).  Separately,
--put-many pairs are loaded with conn.put_many() in batches of 1,000 in a
scattered key order (a fixed stride through the key space), and read the
same way.

Keys are b"%016d" % i; values are 100 bytes, 50 seeded random bytes
repeated twice (they compress about 2:1, as bench/peers.py's), one of
65,536 such values picked by i (the same for key i in every run; no two
neighbouring keys share one).  Pairs are made by map/zip in C, so the
load's time is the engine's more than the generator's.

--interleave ROUNDS reads the ingested databases once more, all open in
one process, the sizes taking turns for ROUNDS rounds of --reads gets
after a warm-up round: on a machine whose speed drifts, the ratio of two
sizes measured that way is steadier than that of two separate processes.

Each phase runs in a process of its own, so its peak resident set
(getrusage ru_maxrss) is its own; the load's workers are reported apart
(RUSAGE_CHILDREN: the largest of them).  Reported per phase:
seconds, pairs/s, bytes on disk, write amplification (table and log bytes
written per byte of user data), peak RSS (which counts the pages of table files
mapped for reading: page cache, not heap) and, after the reads, the anonymous
resident memory (RssAnon, the heap); for reads also the bytes of the
index blocks and bloom filters held by the open tables, against the
configured memory budget (memtables + block cache + row cache).  Results
print as a table and go to --json (default docs/results/scale-<num>.json).

The page cache is warm when reads start (the data was just written).
Numbers are noisy when other work shares the machine.  A measurement, not
a test (tests/test_bench_scale.py runs a tiny --num).
"""
import argparse
import functools
import json
import math
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import kvcy  # noqa: E402
from kvcy.config import parse_size  # noqa: E402

KEY_BYTES = 16
VALUE_BYTES = 100
HALF = VALUE_BYTES // 2
VALUE_KINDS = 1 << 16            # distinct values (a power of two)
STRIDE = 7919                    # odd: key i gets value (i * STRIDE) mod VALUE_KINDS
PUT_MANY_BATCH = 1000
SEEK_READS = 10                  # pairs read after each seek
CHECKED_READS = 1000             # values compared, untimed, after the reads

try:
    from tqdm import tqdm
except ImportError:              # progress is optional
    tqdm = None


# -- data -------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def value_table(seed):
    """VALUE_KINDS distinct values, each 50 seeded random bytes twice."""
    pool = random.Random(seed).randbytes(HALF * VALUE_KINDS)
    return [pool[n * HALF:(n + 1) * HALF] * 2 for n in range(VALUE_KINDS)]


def key_of(i):
    return b"%016d" % i


def value_of(values, i):
    """Key i's value: neighbouring keys get different ones (STRIDE is odd),
    so a block holds no repeated value and compresses about 2:1."""
    return values[(i * STRIDE) & (VALUE_KINDS - 1)]


def sorted_pairs(values, start, stop):
    """(key_of(i), value_of(values, i)) for i in [start, stop), made by
    map and zip in C: the loop a benchmark times is the engine's, not a
    Python generator's."""
    keys = map(b"%016d".__mod__, range(start, stop))
    slots = map((VALUE_KINDS - 1).__and__, range(start * STRIDE, stop * STRIDE, STRIDE))
    return zip(keys, map(values.__getitem__, slots))


def scatter_stride(num):
    """A step coprime with num: i -> (i * step) % num visits every key once,
    in an order spread over the whole key space."""
    step = int(num * 0.6180339887) | 1
    while math.gcd(step, num) != 1:
        step += 2
    return step


def progress(total, desc, quiet):
    if tqdm is None or quiet:
        return None
    return tqdm(total=total, desc=desc, unit="pairs", unit_scale=True, file=sys.stderr,
                mininterval=2)


def disk_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def peak_rss(who=resource.RUSAGE_SELF):
    return resource.getrusage(who).ru_maxrss * 1024          # KiB on Linux


# -- phases (each in a process of its own) -----------------------------------

def write_table(args):
    """Worker: one table of keys [start, stop); returns (path, file size)."""
    path, start, stop, seed, partitioned = args
    values = value_table(seed)
    with kvcy.TableWriter(path, partitioned_index=partitioned) as writer:
        writer.add_many(sorted_pairs(values, start, stop))
    return path, writer.info.file_size, stop - start


def load_ingest(dbpath, tmp, num, processes, table_pairs, seed, quiet, partitioned=False):
    """Build the tables of [0, num) in parallel and ingest them in one call."""
    parts = [(os.path.join(tmp, "part-%06d.kvt" % n), start, min(start + table_pairs, num), seed,
              partitioned)
             for n, start in enumerate(range(0, num, table_pairs))]
    bar = progress(num, "TableWriter %d" % num, quiet)
    started = time.perf_counter()
    written = 0
    if processes == 1:
        results = map(write_table, parts)
    else:
        pool = ProcessPoolExecutor(processes, mp_context=get_context("spawn"))
        results = (f.result() for f in as_completed([pool.submit(write_table, part)
                                                     for part in parts]))
    try:
        for _, size, count in results:
            written += size
            if bar is not None:
                bar.update(count)
    finally:
        if processes > 1:
            pool.shutdown()
    if bar is not None:
        bar.close()
    built = time.perf_counter()
    with kvcy.connect(dbpath) as conn:
        conn.ingest([p[0] for p in parts], move=True)
        stats = conn.stats()
    done = time.perf_counter()
    user_bytes = num * (KEY_BYTES + VALUE_BYTES)
    return {
        "how": "TableWriter+ingest", "num": num, "processes": processes,
        "tables": len(parts), "load_seconds": done - started, "write_seconds": built - started,
        "ingest_seconds": done - built, "pairs_per_second": num / (done - started),
        "disk_bytes": disk_bytes(dbpath), "table_bytes_written": written,
        "write_amplification": round((written + stats["compaction_bytes_written"])
                                     / user_bytes, 3),
        "peak_rss_bytes": peak_rss(), "peak_rss_workers_bytes": peak_rss(resource.RUSAGE_CHILDREN),
    }


def load_put_many(dbpath, num, seed, quiet):
    """put_many of num pairs, PUT_MANY_BATCH at a time, in a scattered order."""
    values = value_table(seed)
    step = scatter_stride(num)
    bar = progress(num, "put_many %d" % num, quiet)
    started = time.perf_counter()
    with kvcy.connect(dbpath) as conn:
        put_many = conn.put_many
        for first in range(0, num, PUT_MANY_BATCH):
            batch = []
            for j in range(first, min(first + PUT_MANY_BATCH, num)):
                i = (j * step) % num
                batch.append((key_of(i), value_of(values, i)))
            put_many(batch)
            if bar is not None:
                bar.update(len(batch))
        conn.flush()
        loaded = time.perf_counter()
        stats = conn.stats()
    done = time.perf_counter()
    if bar is not None:
        bar.close()
    user_bytes = num * (KEY_BYTES + VALUE_BYTES)
    written = stats["wal_bytes"] + stats["flush_bytes"] + stats["compaction_bytes_written"]
    return {
        "how": "put_many", "num": num, "load_seconds": loaded - started,
        "close_seconds": done - loaded, "pairs_per_second": num / (loaded - started),
        "disk_bytes": disk_bytes(dbpath), "table_bytes_written":
            stats["flush_bytes"] + stats["compaction_bytes_written"],
        "wal_bytes": stats["wal_bytes"], "write_amplification": round(written / user_bytes, 3),
        "stall_seconds": stats["stall_seconds"], "peak_rss_bytes": peak_rss(),
    }


def anonymous_rss():
    """Resident anonymous memory now (RssAnon): the heap, not the pages of
    table files mapped for reading, which RSS also counts but which are the
    kernel's page cache, shared and reclaimable.  0 where /proc lacks it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def pinned_table_bytes(conn):
    """(open tables, index block bytes, bloom filter bytes) the table cache
    holds; the index bytes count a partitioned table's top-level index and
    its flags of partitions checked in place."""
    tables = list(conn._engine.table_cache._tables.values())
    index = sum(t.index.size + t.part_state_bytes for t in tables)
    bloom = sum(t.bloom.size for t in tables if t.bloom is not None)
    return len(tables), index, bloom


def read_phase(dbpath, num, reads, seed, repeat=1, block_cache_bytes=None):
    """readrandom and seekrandom on a loaded database, opened afresh; each
    repeated with a new sample of keys, the median reported."""
    rng = random.Random(seed + num)
    samples = [[key_of(rng.randrange(num)) for _ in range(reads)] for _ in range(repeat)]
    before = peak_rss()
    opened = time.perf_counter()
    options = {} if block_cache_bytes is None else {"block_cache_bytes": block_cache_bytes}
    with kvcy.connect(dbpath, **options) as conn:
        open_seconds = time.perf_counter() - opened
        get = conn.get
        readrandom, seekrandom = [], []
        for keys in samples:
            started = time.perf_counter()
            for k in keys:
                get(k)
            readrandom.append(reads / (time.perf_counter() - started))
        for keys in samples:
            seeks = keys[:max(reads // SEEK_READS, 1)]
            cur = conn.cursor().scan()
            started = time.perf_counter()
            for k in seeks:
                cur.seek(k)
                cur.fetchmany(SEEK_READS)
            seekrandom.append(len(seeks) / (time.perf_counter() - started))
            cur.close()
        values = value_table(seed)
        wrong = sum(get(k) != value_of(values, int(k)) for k in samples[0][:CHECKED_READS])
        if wrong:
            raise AssertionError("%d of %d values read back wrong" % (wrong, CHECKED_READS))
        tables, index_bytes, bloom_bytes = pinned_table_bytes(conn)
        options = conn._engine.options
        budget = (options.memtable_max_bytes * (1 + options.max_immutable_memtables)
                  + options.block_cache_bytes + options.row_cache_bytes)
        levels = [level["files"] for level in conn.stats()["levels"]]
        anon = anonymous_rss()
    peak = peak_rss()
    return {
        "num": num, "reads": reads, "repeat": repeat,
        "readrandom": statistics.median(readrandom), "seekrandom": statistics.median(seekrandom),
        "readrandom_runs": readrandom, "seekrandom_runs": seekrandom,
        "open_seconds": open_seconds, "open_tables": tables, "level_files": levels,
        "index_bytes": index_bytes, "bloom_bytes": bloom_bytes, "memory_budget_bytes": budget,
        "rss_before_open_bytes": before, "peak_rss_bytes": peak,
        "rss_growth_bytes": peak - before, "rss_anon_bytes": anon,
    }


def interleaved_phase(dbpaths, reads, seed, rounds, block_cache_bytes=None):
    """readrandom on every database of dbpaths ({num: path}) open at once in
    one process: one warm-up round of `reads` gets each, then `rounds`
    rounds in which the sizes take turns, so that a change in the machine's
    speed moves every size alike.  {num: [gets/s of each round]}."""
    rng = random.Random(seed)
    options = {} if block_cache_bytes is None else {"block_cache_bytes": block_cache_bytes}
    conns = {num: kvcy.connect(path, **options) for num, path in sorted(dbpaths.items())}
    rates = {num: [] for num in conns}
    try:
        for round_ in range(rounds + 1):
            for num, conn in conns.items():
                keys = [key_of(rng.randrange(num)) for _ in range(reads)]
                get = conn.get
                started = time.perf_counter()
                for k in keys:
                    get(k)
                if round_:                               # round 0 warms up
                    rates[num].append(reads / (time.perf_counter() - started))
    finally:
        for conn in conns.values():
            conn.close()
    return rates


def run_phase(in_process, fn, *args):
    """fn(*args) in a fresh process (its own peak RSS), or here."""
    if in_process:
        return fn(*args)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


# -- driver -----------------------------------------------------------------

def mib(n):
    return n / 2**20


def report(rows):
    print("%-20s %12s %9s %10s %8s %9s %11s %11s %9s %9s %9s" % (
        "load", "keys", "load s", "pairs/s", "wamp", "disk GiB", "readrandom", "seekrandom",
        "idx+blm MiB", "peak MiB", "anon MiB"))
    for row in rows:
        load, reads = row.get("load", {}), row.get("reads", {})
        print("%-20s %12d %9.1f %10.0f %8.3f %9.2f %11.0f %11.0f %9.1f %9.0f %9.0f" % (
            load.get("how", "-"), row["num"], load.get("load_seconds", 0),
            load.get("pairs_per_second", 0), load.get("write_amplification", 0),
            load.get("disk_bytes", 0) / 2**30, reads.get("readrandom", 0),
            reads.get("seekrandom", 0),
            mib(reads.get("index_bytes", 0) + reads.get("bloom_bytes", 0)),
            mib(max(load.get("peak_rss_bytes", 0), reads.get("peak_rss_bytes", 0))),
            mib(reads.get("rss_anon_bytes", 0))))


def machine():
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "kvcy": kvcy.__version__,
            "load_average": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def positive(text):
    value = int(text.replace("_", ""))
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1, got %d" % value)
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=positive, default=100_000_000,
                        help="keys of the largest ingest load (default 100,000,000)")
    parser.add_argument("--sizes", default="1000000,10000000",
                        help="smaller ingest loads, comma-separated ('' for none)")
    parser.add_argument("--put-many", type=positive, default=10_000_000,
                        help="keys loaded through put_many (default 10,000,000)")
    parser.add_argument("--reads", type=positive, default=200_000,
                        help="gets per readrandom run (seekrandom: a tenth as many seeks)")
    parser.add_argument("--repeat", type=positive, default=3,
                        help="readrandom and seekrandom runs, each a new sample; median")
    parser.add_argument("--processes", type=positive, default=2)
    parser.add_argument("--table-pairs", type=positive, default=1_000_000,
                        help="pairs per ingested table")
    parser.add_argument("--seed", type=int, default=301)
    parser.add_argument("--dir", help="where the databases go (default: a temporary directory)")
    parser.add_argument("--json", help="result file (default docs/results/scale-<num>.json)")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-put-many", action="store_true")
    parser.add_argument("--skip-reads", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--reuse", action="store_true",
                        help="read the databases an earlier --keep run left in --dir "
                             "instead of loading them again")
    parser.add_argument("--in-process", action="store_true",
                        help="run every phase in this process (peak RSS is then cumulative)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--block-cache", type=parse_size, default=None,
                        help="block_cache_bytes of the reading connection (default: kvcy's, "
                             "32MiB); for example 256MiB")
    parser.add_argument("--partitioned", action="store_true",
                        help="write the ingested tables with partitioned_index=True (index "
                             "and filters in partitions, read in place from the mapping)")
    parser.add_argument("--interleave", type=positive, default=None, metavar="ROUNDS",
                        help="then read every ingested database in one process, the sizes "
                             "taking turns for ROUNDS rounds after a warm-up (needs --keep "
                             "or --reuse); reports the medians and their ratio to the smallest")
    args = parser.parse_args(argv)
    try:
        sizes = sorted({positive(s) for s in args.sizes.split(",") if s.strip()} | {args.num})
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error("--sizes: %s" % exc)
    if args.reuse and not args.dir:
        parser.error("--reuse reads the databases of an earlier --keep run: give its --dir")
    if args.interleave and not (args.keep or args.reuse):
        parser.error("--interleave reads the loaded databases again: give --keep or --reuse")
    base = args.dir or tempfile.mkdtemp(prefix="kvcy-scale-")
    os.makedirs(base, exist_ok=True)
    out = {"machine": machine(), "args": vars(args), "ingest": [], "put_many": None}
    rows = []
    try:
        runs = [] if args.skip_ingest else [("ingest", n) for n in sizes]
        if not args.skip_put_many:
            runs.append(("put_many", args.put_many))
        for how, num in runs:
            dbpath = os.path.join(base, "%s-%d" % (how, num))
            if args.reuse and os.path.exists(os.path.join(dbpath, "CURRENT")):
                load = {"how": "reused", "num": num}     # kept by an earlier --keep run
            elif how == "ingest":
                shutil.rmtree(dbpath, ignore_errors=True)
                tmp = os.path.join(base, "parts-%d" % num)
                os.makedirs(tmp, exist_ok=True)
                load = run_phase(args.in_process, load_ingest, dbpath, tmp, num,
                                 args.processes, args.table_pairs, args.seed, args.quiet,
                                 args.partitioned)
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                shutil.rmtree(dbpath, ignore_errors=True)
                load = run_phase(args.in_process, load_put_many, dbpath, num, args.seed,
                                 args.quiet)
            row = {"num": num, "load": load}
            if not args.skip_reads:
                row["reads"] = run_phase(args.in_process, read_phase, dbpath, num,
                                         min(args.reads, max(num, 1)), args.seed,
                                         args.repeat, args.block_cache)
            if not (args.keep or args.reuse):
                shutil.rmtree(dbpath, ignore_errors=True)
            rows.append(row)
            if how == "ingest":
                out["ingest"].append(row)
            else:
                out["put_many"] = row
            report([row])
        if args.interleave and not args.skip_ingest:
            rates = run_phase(args.in_process, interleaved_phase,
                              {n: os.path.join(base, "ingest-%d" % n) for n in sizes},
                              args.reads, args.seed, args.interleave, args.block_cache)
            medians = {n: statistics.median(r) for n, r in rates.items()}
            smallest = medians[min(medians)]
            out["interleaved"] = {str(n): {"readrandom": medians[n], "runs": rates[n],
                                           "vs_smallest": round(medians[n] / smallest, 3)}
                                  for n in medians}
            print("interleaved readrandom (%d rounds, one process): %s" % (
                args.interleave, ", ".join("%d: %.0f (%.2fx)" % (n, medians[n],
                                                                  medians[n] / smallest)
                                           for n in sorted(medians))))
    finally:
        if not (args.dir or args.keep):
            shutil.rmtree(base, ignore_errors=True)
    out["machine"]["load_average_end"] = os.getloadavg()
    reads = {row["num"]: row["reads"]["readrandom"] for row in out["ingest"] if "reads" in row}
    if len(reads) > 1:
        smallest = reads[min(reads)]
        out["readrandom_vs_smallest"] = {str(n): round(r / smallest, 3) for n, r in reads.items()}
    print()
    report(rows)
    if "readrandom_vs_smallest" in out:
        print("readrandom relative to %d keys: %s" % (min(reads), ", ".join(
            "%d: %.2fx" % (int(n), r) for n, r in out["readrandom_vs_smallest"].items())))
    path = args.json or os.path.join(REPO, "docs", "results", "scale-%d.json" % args.num)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("results in", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
