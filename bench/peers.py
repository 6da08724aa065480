"""Side-by-side benchmark: kvcy against its peers, db_bench style.

    python bench/peers.py [--num 200000] [--repeat 3] [--peers plyvel]
        [--workloads fillseq,fillrandom,fillbatch,readrandom,wamp,readreopen,readseq,seekrandom]

wamp: table bytes written (flushes + compactions) per byte of user data after
the fills; samp: on-disk bytes per byte of live data at the end; readseq: a
full scan after reopen; seekrandom: seek + 10 nexts on one iterator, for a
tenth of the keys.

--peers takes any of plyvel,rocksdict,lmdb,sqlite3,dbm (comma-separated).

Every engine runs the same workloads in the same process and run (16-byte
keys, 100-byte values that compress about 2:1), each in a fresh temporary
directory; the table shows the median ops/s of --repeat runs and the ratio
kvcy / peer.  Peers that are not installed are skipped with a note.
This is a measurement script, not a test: it asserts nothing about speed.
"""
import argparse
import dbm
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time

import kvcy

VALUE_BYTES = 100


class KvcyAdapter:
    name = "kvcy"

    def open(self, path):
        self.db = kvcy.connect(path)
        return self.db.put, self.db.get

    def batch(self, pairs):
        self.db.put_many(pairs)

    def scan_all(self):
        n = 0
        for _ in self.db.scan():
            n += 1
        return n

    def seeker(self):
        it = self.db.scan()

        def seek(key, count):
            it.seek(key)
            for _ in range(count):
                if next(it, None) is None:
                    break
        return seek

    def table_bytes_written(self):
        s = self.db.stats()
        return s["flush_bytes"] + s["compaction_bytes_written"]

    def close(self):
        self.db.close()


class PlyvelAdapter:
    name = "plyvel"

    def open(self, path):
        import plyvel
        self.db = plyvel.DB(path, create_if_missing=True)
        return self.db.put, self.db.get

    def batch(self, pairs):
        with self.db.write_batch() as wb:
            for k, v in pairs:
                wb.put(k, v)

    def scan_all(self):
        n = 0
        for _ in self.db:
            n += 1
        return n

    def seeker(self):
        it = self.db.iterator()

        def seek(key, count):
            it.seek(key)
            for _ in range(count):
                if next(it, None) is None:
                    break
        return seek

    def table_bytes_written(self):
        # leveldb.stats: one row per level; column 6 is Write(MB) (flush + compaction).
        text = self.db.get_property(b"leveldb.stats").decode()
        total = 0.0
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 6 and parts[0].isdigit():
                total += float(parts[5])
        return int(total * 1048576)

    def close(self):
        self.db.close()


class RocksdictAdapter:
    name = "rocksdict"

    def open(self, path):
        import rocksdict
        self.db = rocksdict.Rdict(path, options=rocksdict.Options(raw_mode=True))
        self._wb = rocksdict.WriteBatch
        return self.db.put, self.db.get

    def batch(self, pairs):
        wb = self._wb(raw_mode=True)
        for k, v in pairs:
            wb.put(k, v)
        self.db.write(wb)

    def close(self):
        self.db.close()


class LmdbAdapter:
    name = "lmdb"

    def open(self, path):
        import lmdb
        self.env = lmdb.open(path, map_size=1 << 34, sync=False, metasync=False)
        env = self.env

        def put(k, v):
            with env.begin(write=True) as txn:
                txn.put(k, v)

        def get(k):
            with env.begin() as txn:
                return txn.get(k)
        return put, get

    def batch(self, pairs):
        with self.env.begin(write=True) as txn:
            for k, v in pairs:
                txn.put(k, v)

    def close(self):
        self.env.close()


class SqliteAdapter:
    name = "sqlite3"

    def open(self, path):
        os.makedirs(path, exist_ok=True)
        self.db = sqlite3.connect(os.path.join(path, "db.sqlite"), isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
        db = self.db

        def put(k, v):
            db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (k, v))

        def get(k):
            row = db.execute("SELECT v FROM kv WHERE k = ?", (k,)).fetchone()
            return row[0] if row else None
        return put, get

    def batch(self, pairs):
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", pairs)
        self.db.execute("COMMIT")

    def close(self):
        self.db.close()


class DbmAdapter:
    name = "dbm"

    def open(self, path):
        os.makedirs(path, exist_ok=True)
        self.db = dbm.open(os.path.join(path, "db"), "n")
        db = self.db

        def put(k, v):
            db[k] = v
        return put, db.get

    def batch(self, pairs):
        for k, v in pairs:
            self.db[k] = v

    def close(self):
        self.db.close()


ADAPTERS = {a.name: a for a in (KvcyAdapter, PlyvelAdapter, RocksdictAdapter, LmdbAdapter,
                                SqliteAdapter, DbmAdapter)}


def make_values(rng, num):
    """num distinct values that each compress about 2:1 (half random, repeated)."""
    half = VALUE_BYTES // 2
    pool = rng.randbytes(half * (num + 1))
    return [pool[i * half:(i + 1) * half] * 2 for i in range(num)]


def run_once(adapter, num, workloads, rng_seed):
    rng = random.Random(rng_seed)
    values = make_values(rng, num)
    keys = [b"%016d" % i for i in range(num)]
    shuffled = keys[:]
    rng.shuffle(shuffled)
    tmp = tempfile.mkdtemp(prefix="kvcy-peers-")
    out = {}
    try:
        path = os.path.join(tmp, "db")
        put, get = adapter.open(path)
        if "fillseq" in workloads:
            t = time.perf_counter()
            for k, value in zip(keys, values):
                put(k, value)
            out["fillseq"] = num / (time.perf_counter() - t)
        adapter.close()
        shutil.rmtree(path, ignore_errors=True)
        put, get = adapter.open(path)
        if "fillrandom" in workloads:
            t = time.perf_counter()
            for k, value in zip(shuffled, values):
                put(k, value)
            out["fillrandom"] = num / (time.perf_counter() - t)
        if "fillbatch" in workloads:
            t = time.perf_counter()
            for i in range(0, num, 1000):
                adapter.batch(list(zip(shuffled[i:i + 1000], values[i:i + 1000])))
            out["fillbatch"] = num / (time.perf_counter() - t)
        if "readrandom" in workloads:
            t = time.perf_counter()
            for k in shuffled:
                get(k)
            out["readrandom"] = num / (time.perf_counter() - t)
        if "wamp" in workloads and hasattr(adapter, "table_bytes_written"):
            # Table bytes written by flushes and compactions per byte of user data.
            out["wamp"] = adapter.table_bytes_written() / (num * (16 + VALUE_BYTES))
        adapter.close()
        if "readreopen" in workloads:
            put, get = adapter.open_existing(path) if hasattr(adapter, "open_existing") \
                else adapter.open(path) if adapter.name in ("kvcy", "plyvel", "rocksdict") \
                else (None, None)
            if get is not None:
                t = time.perf_counter()
                for k in shuffled:
                    get(k)
                out["readreopen"] = num / (time.perf_counter() - t)
                if "readseq" in workloads and hasattr(adapter, "scan_all"):
                    t = time.perf_counter()
                    n = adapter.scan_all()
                    out["readseq"] = n / (time.perf_counter() - t)
                if "seekrandom" in workloads and hasattr(adapter, "seeker"):
                    seek = adapter.seeker()
                    probes = shuffled[:max(num // 10, 1)]
                    t = time.perf_counter()
                    for k in probes:
                        seek(k, 10)
                    out["seekrandom"] = len(probes) / (time.perf_counter() - t)
                adapter.close()
        out["disk_bytes"] = sum(os.path.getsize(os.path.join(d, f))
                                for d, _, fs in os.walk(path) for f in fs)
        # On-disk bytes per byte of live user data (every key written once).
        out["samp"] = out["disk_bytes"] / (num * (16 + VALUE_BYTES))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=200000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peers", default="plyvel")
    parser.add_argument("--workloads", default="fillseq,fillrandom,fillbatch,readrandom,readreopen")
    parser.add_argument("--seed", type=int, default=301)
    args = parser.parse_args(argv)
    workloads = args.workloads.split(",")
    names = ["kvcy"] + [p for p in args.peers.split(",") if p and p != "kvcy"]
    results = {}
    for round_ in range(args.repeat):
        # Interleave engines within each round so machine noise hits all alike.
        for name in names:
            try:
                r = run_once(ADAPTERS[name](), args.num, workloads, args.seed + round_)
            except ImportError as exc:
                print("skipping %s: %s" % (name, exc), file=sys.stderr)
                names.remove(name)
                continue
            for k, v in r.items():
                results.setdefault(name, {}).setdefault(k, []).append(v)
    cols = list(workloads) + ["disk_bytes", "samp"]
    print("%d keys, 16-byte keys, %d-byte values, median of %d runs (ops/s; ratio = kvcy/peer)"
          % (args.num, VALUE_BYTES, args.repeat))
    print("%-10s" % "engine" + "".join("%16s" % c for c in cols))
    for name in names:
        row = "%-10s" % name
        for c in cols:
            vals = results.get(name, {}).get(c)
            if vals and c in ("wamp", "samp"):
                row += "%16s" % ("%.2f" % statistics.median(vals))
            else:
                row += "%16s" % (format(int(statistics.median(vals)), ",") if vals else "-")
        print(row)
    for name in names[1:]:
        row = "%-10s" % ("kvcy/" + name)[:10]
        for c in cols:
            a = results["kvcy"].get(c)
            b = results.get(name, {}).get(c)
            row += "%16s" % ("%.2fx" % (statistics.median(a) / statistics.median(b))
                             if a and b and statistics.median(b) else "-")
        print(row)


if __name__ == "__main__":
    main()
