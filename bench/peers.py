"""Side-by-side benchmark: kvcy against its peers, db_bench style.

    python bench/peers.py [--num 200000] [--ops 100000] [--repeat 3]
        [--peers plyvel,rocksdict,lmdb,lsm,dict] [--workloads all]
        [--threads 1,2,4] [--seed 301] [--json results.json]

Workloads (N = --num keys, R = --ops operations, default min(N, 100000)):

    fillseq        N puts in key order, into a new database
    fillbatch      N puts in random order, in batches of 1,000, into a new database
    fillrandom     N puts in random order, into a new database; the rest below
                   run on this database
    wamp           table bytes written (flushes + compactions) per byte of user
                   data, right after fillrandom (lower is better)
    wamp_settled   the same after the reads that follow, per byte of fillrandom
                   and overwrite: by then an engine that fell behind during the
                   fill has caught up on its compactions
    overwrite      R puts of random existing keys, new values
    readrandom     R gets of random existing keys, same open handle
    readmissing    R gets of random absent keys (17 bytes: an existing key + b".",
                   as db_bench does), which sort between the existing keys
    readrandom_threadsT   R gets of random existing keys from T threads sharing
                   the open database, R/T each; total ops/s.  `readrandom_threads`
                   in --workloads stands for one workload per --threads count.
    readreopen     close, open again, then R gets of random existing keys
    readseq        a full scan in key order after the reopen; entries/s
    seekrandom     R/10 seeks to random existing keys, each reading 10 entries
                   from there, on one iterator; seeks/s
    stall_fillrandom, stall_overwrite   (kvcy) seconds its writes waited for
                   flushes and compactions during fillrandom and overwrite
    samp           bytes on disk per byte of live user data, after a close
                   (lower is better); disk_bytes is the size itself
    deleterandom   reopen, then R deletes of random existing keys
    fillsync_threadsT   SYNC_PUTS (2,000) puts with sync=True (each fsynced
                   before it returns) from T threads sharing one new database,
                   SYNC_PUTS/T each; total ops/s.  Engines without a synced
                   put are skipped.  `fillsync_threads` in --workloads stands
                   for one workload per --threads count.

Every workload except the three fills uses R operations, a subset of N, so
that N = 1,000,000 stays at a few seconds per workload and engine; each
workload draws its own random sample of keys.  fillbatch writes in random
order (db_bench's writes in key order), as earlier runs of this script did.

Every engine runs in this one process on the same keys (16 bytes,
b"%016d") and values (100 bytes, each 50 random bytes twice, so they
compress about 2:1), each in a fresh temporary directory.  Repeat r runs
every engine once, starting at engine r mod n, so no engine always goes
first.  Engines are configured alike where they can be (snappy, 10-bit
bloom filters, an 8 MiB block cache, writes that reach the OS without an
fsync); what an engine cannot set is printed and kept in the JSON.

--peers takes any of plyvel, rocksdict, lmdb, lsm (lsm-db, SQLite4's LSM),
sqlite3, dbm and dict (a plain Python dict, the in-process limit).  Peers
that are not installed are skipped with a note.  The tables show the median
of --repeat runs, kvcy/peer ratios, and every engine relative to lmdb and to
dict; for ops/s a ratio above 1 means faster, for wamp, samp and disk_bytes
below 1 means less.  --json PATH writes every sample, the medians, ratios,
configuration, machine and package versions and the command line;
bench/chart.py draws it.  This is a measurement script, not a test: it
asserts nothing about speed.
"""
import argparse
import datetime
import gc
import importlib
import importlib.metadata
import json
import os
import platform
import random
import shlex
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_engines import ADAPTERS, REQUIRES  # noqa: E402

VALUE_BYTES = 100
KEY_BYTES = 16
BATCH_PAIRS = 1000
DEFAULT_PEERS = "plyvel,rocksdict,lmdb,lsm,dict"
ALL_WORKLOADS = ("fillseq,fillbatch,fillrandom,wamp,overwrite,readrandom,readmissing,"
                 "readrandom_threads,readreopen,readseq,seekrandom,samp,deleterandom,"
                 "fillsync_threads")
SYNC_PUTS = 2000                 # fsynced puts per fillsync_threads workload
# Figures where less is better; everything else is ops/s.
LOWER_IS_BETTER = ("wamp", "wamp_settled", "samp", "disk_bytes", "stall_fillrandom",
                   "stall_overwrite")
CHECK_PROBES = 1000              # keys read back, untimed, to check each workload's data


def make_values(rng, num):
    """num distinct values that each compress about 2:1 (half random, repeated)."""
    half = VALUE_BYTES // 2
    values = []
    chunk = 1 << 20                  # randbytes takes at most 2**31 bits at a time
    for first in range(0, num, chunk):
        n = min(chunk, num - first)
        pool = rng.randbytes(half * n)
        values += [pool[i * half:(i + 1) * half] * 2 for i in range(n)]
    return values


class RoundData:
    """Keys, values and probe samples of one repeat, shared by every engine."""

    def __init__(self, num, ops, seed):
        rng = random.Random(seed)
        self.num = num
        self.keys = [b"%016d" % i for i in range(num)]
        self.values = make_values(rng, num)
        self.order = list(range(num))
        rng.shuffle(self.order)
        self.shuffled = [self.keys[i] for i in self.order]
        self.shuffled_values = [self.values[i] for i in self.order]
        self.batches = [list(zip(self.shuffled[i:i + BATCH_PAIRS],
                                 self.shuffled_values[i:i + BATCH_PAIRS]))
                        for i in range(0, num, BATCH_PAIRS)]
        # Each workload reads its own sample of the keys.
        self.sample = {w: rng.sample(range(num), ops)
                       for w in ("overwrite", "readrandom", "readmissing", "readthreads",
                                 "readreopen", "seekrandom", "deleterandom")}
        # overwrite: new values, still distinct, still about 2:1.
        self.new_values = {i: self.values[(i + 1) % num] for i in self.sample["overwrite"]}
        self.missing = [self.keys[i] + b"." for i in self.sample["readmissing"]]

    def expected(self, i, overwritten):
        """The value key i holds after fillrandom (and overwrite, if it ran)."""
        return self.new_values.get(i, self.values[i]) if overwritten else self.values[i]


def timed(fn, count):
    """Run fn() once; return count / seconds."""
    gc.collect()
    t = time.perf_counter()
    fn()
    return count / (time.perf_counter() - t)


def read_threads(adapter, keys, threads):
    """Random gets from threads sharing adapter's open database: total ops/s."""
    slices = [keys[i::threads] for i in range(threads)]
    getters = [adapter.thread_getter() for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)
    errors = []

    def work(get, part):
        barrier.wait()
        try:
            for k in part:
                get(k)
        except Exception as exc:          # reported, not swallowed
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(g, s))
               for (g, _), s in zip(getters, slices)]
    for w in workers:
        w.start()
    gc.collect()
    barrier.wait()
    t = time.perf_counter()
    for w in workers:
        w.join()
    rate = len(keys) / (time.perf_counter() - t)
    for _, done in getters:
        if done is not None:
            done()
    if errors:
        raise errors[0]
    return rate


def seek_random(adapter, probes):
    """Seek to each probe and read 10 entries from there: seeks/s.

    The iterator dies with this frame, before the adapter is closed (an
    Rdict keeps its lock while an iterator of it lives)."""
    seek = adapter.seeker()

    def run():
        for k in probes:
            seek(k, 10)
    return timed(run, len(probes))


def disk_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def check_reads(adapter, data, sample, overwritten, notes, workload):
    """Untimed: a few of the keys just read hold the expected values."""
    get = adapter.get
    bad = sum(get(data.keys[i]) != data.expected(i, overwritten)
              for i in sample[:CHECK_PROBES])
    if bad:
        notes.append("%s: %d of %d checked keys had a wrong value"
                     % (workload, bad, min(CHECK_PROBES, len(sample))))


def run_once(adapter, data, workloads, threads, notes):
    """Run the selected workloads on one engine; return {figure: value}."""
    num = data.num
    ops = len(data.sample["readrandom"])
    tmp = tempfile.mkdtemp(prefix="kvcy-peers-")
    out = {}
    in_memory = getattr(adapter, "IN_MEMORY", False)
    try:
        for fill in ("fillseq", "fillbatch"):
            if fill not in workloads:
                continue
            path = os.path.join(tmp, fill)
            adapter.open(path)
            if fill == "fillseq":
                put = adapter.put

                def fill_seq():
                    for k, v in zip(data.keys, data.values):
                        put(k, v)
                out["fillseq"] = timed(fill_seq, num)
            else:
                batch = adapter.batch

                def fill_batch():
                    for pairs in data.batches:
                        batch(pairs)
                out["fillbatch"] = timed(fill_batch, num)
            adapter.close()
            shutil.rmtree(path, ignore_errors=True)

        # The database every other workload runs on, filled in random order.
        path = os.path.join(tmp, "db")
        adapter.open(path)
        put = adapter.put

        def fill_random():
            for k, v in zip(data.shuffled, data.shuffled_values):
                put(k, v)
        rate = timed(fill_random, num)
        if "fillrandom" in workloads:
            out["fillrandom"] = rate
        if "wamp" in workloads and hasattr(adapter, "table_bytes_written"):
            out["wamp"] = adapter.table_bytes_written() / (num * (KEY_BYTES + VALUE_BYTES))
        stalled = getattr(adapter, "stall_seconds", None)
        if stalled is not None and "fillrandom" in workloads:
            out["stall_fillrandom"] = stalled()

        if "overwrite" in workloads:
            pairs = [(data.keys[i], data.new_values[i]) for i in data.sample["overwrite"]]

            def overwrite():
                for k, v in pairs:
                    put(k, v)
            out["overwrite"] = timed(overwrite, ops)
            if stalled is not None:
                out["stall_overwrite"] = stalled() - out.get("stall_fillrandom", 0.0)
        overwritten = "overwrite" in workloads

        get = adapter.get
        for name, key in (("readrandom", "readrandom"), ("readmissing", None)):
            if name not in workloads:
                continue
            probes = ([data.keys[i] for i in data.sample[key]] if key
                      else data.missing)

            def read():
                for k in probes:
                    get(k)
            out[name] = timed(read, ops)
            if key:
                check_reads(adapter, data, data.sample[key], overwritten, notes, name)
            elif any(get(k) is not None for k in probes[:CHECK_PROBES]):
                notes.append("readmissing: an absent key was found")

        probes = [data.keys[i] for i in data.sample["readthreads"]]
        for t in threads:
            name = "readrandom_threads%d" % t
            if name in workloads:
                out[name] = read_threads(adapter, probes, t)
        if "wamp" in workloads and hasattr(adapter, "table_bytes_written"):
            # After the reads: an engine that left compaction work undone at
            # the end of the fill has had time to do it by now.
            puts = num + (ops if overwritten else 0)
            out["wamp_settled"] = adapter.table_bytes_written() / (
                puts * (KEY_BYTES + VALUE_BYTES))
        adapter.close()

        adapter.reopen(path)
        get = adapter.get
        if "readreopen" in workloads:
            probes = [data.keys[i] for i in data.sample["readreopen"]]

            def read_reopen():
                for k in probes:
                    get(k)
            out["readreopen"] = timed(read_reopen, ops)
            check_reads(adapter, data, data.sample["readreopen"], overwritten, notes,
                        "readreopen")
        if "readseq" in workloads and hasattr(adapter, "scan_all"):
            count = []
            out["readseq"] = timed(lambda: count.append(adapter.scan_all()), 1) * count[0]
            if count[0] != num:
                notes.append("readseq: scanned %d entries, expected %d" % (count[0], num))
        if "seekrandom" in workloads and hasattr(adapter, "seeker"):
            probes = [data.keys[i] for i in data.sample["seekrandom"][:max(ops // 10, 1)]]
            out["seekrandom"] = seek_random(adapter, probes)
        adapter.close()
        if not in_memory:
            out["disk_bytes"] = disk_bytes(path)
            if "samp" in workloads:
                # On-disk bytes per byte of live user data (every key once).
                out["samp"] = out["disk_bytes"] / (num * (KEY_BYTES + VALUE_BYTES))

        if "deleterandom" in workloads:
            adapter.reopen(path)
            delete = adapter.delete
            probes = [data.keys[i] for i in data.sample["deleterandom"]]

            def delete_random():
                for k in probes:
                    delete(k)
            out["deleterandom"] = timed(delete_random, ops)
            if any(adapter.get(k) is not None for k in probes[:CHECK_PROBES]):
                notes.append("deleterandom: a deleted key was still found")
            adapter.close()

        syncs = [t for t in threads if "fillsync_threads%d" % t in workloads]
        if syncs and hasattr(adapter, "sync_putter"):
            path = os.path.join(tmp, "sync")
            adapter.open(path)
            for t in syncs:
                out["fillsync_threads%d" % t] = sync_put_threads(adapter, data, t)
            adapter.close()
        elif syncs:
            notes.append("fillsync_threads: no synced put through this binding; skipped")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def sync_put_threads(adapter, data, threads):
    """SYNC_PUTS fsynced puts of new keys from threads sharing the database: ops/s."""
    put = adapter.sync_putter()
    value = data.values[0]
    slices = [[b"sync-%02d-%02d-%06d" % (threads, w, i) for i in range(SYNC_PUTS // threads)]
              for w in range(threads)]
    barrier = threading.Barrier(threads + 1)
    errors = []

    def work(keys):
        barrier.wait()
        try:
            for k in keys:
                put(k, value)
        except BaseException as exc:     # reported after the join
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(keys,)) for keys in slices]
    for w in workers:
        w.start()
    barrier.wait()
    t = time.perf_counter()
    for w in workers:
        w.join()
    rate = sum(len(k) for k in slices) / (time.perf_counter() - t)
    if errors:
        raise errors[0]
    return rate


def expand_workloads(spec, threads):
    names = []
    for w in spec.split(","):
        if w == "all":
            names.extend(expand_workloads(ALL_WORKLOADS, threads))
        elif w in ("readrandom_threads", "fillsync_threads"):
            names.extend("%s%d" % (w, t) for t in threads)
        elif w:
            names.append(w)
    return names


def machine_info():
    info = {"platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "python": sys.version, "python_implementation": platform.python_implementation(),
            "executable": sys.executable}
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["loadavg_at_start"] = os.getloadavg()
    try:
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if models:
            info["cpu_model"] = models[0]
        with open("/proc/meminfo") as f:
            info["mem_total"] = f.readline().split(":", 1)[1].strip()
    except OSError:
        pass
    return info


def package_versions():
    versions = {"sqlite3 (library)": sqlite3.sqlite_version}
    for dist in ("kvcy", "plyvel", "rocksdict", "lmdb", "lsm-db", "python-snappy",
                 "cachetools", "Cython"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        import plyvel
        versions["leveldb (library)"] = plyvel.__leveldb_version__
    except (ImportError, AttributeError):
        pass
    try:
        import lmdb
        versions["lmdb (library)"] = ".".join(map(str, lmdb.version()))
    except ImportError:
        pass
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        versions["kvcy (git)"] = subprocess.run(
            ["git", "-C", here, "describe", "--always", "--dirty"], capture_output=True,
            text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return versions


def fmt(figure, value):
    if value is None:
        return "-"
    if figure in ("wamp", "wamp_settled", "samp") or figure.startswith("stall_"):
        return "%.2f" % value
    return format(int(round(value)), ",")


def print_table(title, rows, cols, cell):
    width = max([13] + [len(c) + 2 for c in cols])
    print()
    print(title)
    print("%-22s" % "workload" + "".join(("%" + str(width) + "s") % c for c in cols))
    for r in rows:
        print("%-22s" % r + "".join(("%" + str(width) + "s") % cell(r, c) for c in cols))


def ratio(a, b):
    return a / b if a is not None and b else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=200000, help="keys (default 200000)")
    parser.add_argument("--ops", type=int, default=None,
                        help="operations of the non-fill workloads (default min(num, 100000))")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peers", default=DEFAULT_PEERS,
                        help="comma-separated, of %s (default %s)"
                        % (",".join(n for n in ADAPTERS if n != "kvcy"), DEFAULT_PEERS))
    parser.add_argument("--workloads", default="all",
                        help="comma-separated, or all (default): " + ALL_WORKLOADS)
    parser.add_argument("--threads", default="1,2,4",
                        help="thread counts of readrandom_threads and fillsync_threads "
                        "(default 1,2,4)")
    parser.add_argument("--seed", type=int, default=301)
    parser.add_argument("--json", metavar="PATH", help="write samples, medians, ratios, "
                        "configuration and machine info to PATH")
    args = parser.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",") if t]
    workloads = expand_workloads(args.workloads, threads)
    threads = sorted({int(w[len(prefix):]) for w in workloads
                      for prefix in ("readrandom_threads", "fillsync_threads")
                      if w.startswith(prefix)})
    unknown = [w for w in workloads if w not in expand_workloads(ALL_WORKLOADS, threads)]
    if unknown:
        parser.error("unknown workload(s): %s" % ", ".join(unknown))
    ops = min(args.num, args.ops if args.ops is not None else 100000)
    names = ["kvcy"] + [p for p in args.peers.split(",") if p and p != "kvcy"]
    for name in names:
        if name not in ADAPTERS:
            parser.error("unknown peer %r; choose from %s" % (name, ", ".join(ADAPTERS)))
    skipped = {}
    for name in names[1:]:
        module = REQUIRES.get(name, (None,))[0]
        if module:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                skipped[name] = str(exc)
                print("skipping %s: %s" % (name, exc), file=sys.stderr)
    names = [n for n in names if n not in skipped]
    started = datetime.datetime.now(datetime.timezone.utc)
    machine = machine_info()

    print("%d keys (%d-byte keys, %d-byte values about 2:1), %d ops per non-fill "
          "workload, %d repeat(s); median ops/s" % (args.num, KEY_BYTES, VALUE_BYTES, ops,
                                                  args.repeat))
    print("configuration (what an engine cannot set alike is marked !):")
    for name in names:
        a = ADAPTERS[name]
        print("  %-10s %s" % (name, ", ".join("%s=%s" % kv for kv in a.CONFIG.items())))
        for c in a.CANNOT:
            print("  %-10s ! %s" % ("", c))
    sys.stdout.flush()

    samples = {n: {} for n in names}
    notes = {n: [] for n in names}
    orders = []
    for round_ in range(args.repeat):
        data = RoundData(args.num, ops, args.seed + round_)
        gc.freeze()                     # the data is long-lived: keep it out of gc passes
        # Repeat r starts at engine r mod n, so no engine always runs first.
        start = round_ % len(names)
        order = names[start:] + names[:start]
        orders.append(order)
        for name in order:
            t = time.perf_counter()
            r = run_once(ADAPTERS[name](), data, workloads, threads, notes[name])
            print("  repeat %d: %-10s %.1f s" % (round_ + 1, name, time.perf_counter() - t),
                  file=sys.stderr)
            for k, v in r.items():
                samples[name].setdefault(k, []).append(v)
        gc.unfreeze()
        del data

    figures = list(workloads) + ["wamp_settled", "disk_bytes", "stall_fillrandom",
                                 "stall_overwrite"]
    figures = [f for f in figures if any(f in samples[n] for n in names)]
    medians = {n: {f: statistics.median(samples[n][f]) for f in figures if f in samples[n]}
               for n in names}

    def med(n, f):
        return medians[n].get(f)

    ratios = {"kvcy/%s" % p: {f: ratio(med("kvcy", f), med(p, f)) for f in figures}
              for p in names[1:]}
    baselines = {b: {"%s/%s" % (n, b): {f: ratio(med(n, f), med(b, f)) for f in figures}
                     for n in names if n != b}
                 for b in ("lmdb", "dict") if b in names}

    print_table("medians (ops/s; wamp, samp: ratios; disk_bytes: bytes)", figures, names,
                lambda f, n: fmt(f, med(n, f)))
    print_table("kvcy/peer (ops/s: above 1 = kvcy faster; wamp, samp, disk_bytes: "
                "below 1 = kvcy less)", figures, list(ratios),
                lambda f, c: "%.2fx" % ratios[c][f] if ratios[c][f] is not None else "-")
    for b, table in baselines.items():
        print_table("every engine relative to %s" % b, figures, list(table),
                    lambda f, c, t=table: "%.2fx" % t[c][f] if t[c][f] is not None else "-")
    for n in names:
        for note in notes[n]:
            print("warning: %s: %s" % (n, note))

    if args.json:
        if hasattr(os, "getloadavg"):
            machine["loadavg_at_end"] = os.getloadavg()
        doc = {
            "command": shlex.join([sys.executable] + sys.argv),
            "argv": sys.argv,
            "started": started.isoformat(),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "machine": machine,
            "packages": package_versions(),
            "params": {"num": args.num, "ops": ops, "seekrandom_seeks": max(ops // 10, 1),
                       "repeat": args.repeat, "seed": args.seed, "threads": threads,
                       "key_bytes": KEY_BYTES, "value_bytes": VALUE_BYTES,
                       "batch_pairs": BATCH_PAIRS, "workloads": workloads,
                       "lower_is_better": list(LOWER_IS_BETTER)},
            "engines": {n: {"config": ADAPTERS[n].CONFIG, "cannot_configure": ADAPTERS[n].CANNOT,
                            "warnings": notes[n]} for n in names},
            "skipped": skipped,
            "order": orders,
            "samples": samples,
            "medians": medians,
            "ratios": ratios,
            "baselines": baselines,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=False)
            f.write("\n")
        print("\nwrote %s" % args.json)


if __name__ == "__main__":
    main()
