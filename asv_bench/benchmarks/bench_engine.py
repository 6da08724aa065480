"""asv benchmarks of kvcy's core operations (tracked over commits).

Run from asv_bench/ (see asv_bench/README.md):
`asv machine --yes && asv run --python=same --quick` for a smoke test.

16-byte keys (b"%016d"), 100-byte values that compress about 2:1 (50
random bytes twice), as bench/peers.py.  Setup is never timed.

- Reads: get, get of missing keys, get_many, scan and seek on a database
  of `size` keys, built once per run (setup_cache), compacted into one
  settled shape with compact_range() so that its layout does not depend on
  background timing, and opened read-only so no benchmark changes it.
  Every timed call does the same amount of work whatever the size:
  GETS gets, SCAN_PAIRS pairs scanned, SEEKS seeks of SEEK_NEXTS pairs.
- Writes: put and put_many (1,000-pair batches) of `size` keys in random
  order into a new, empty database, and put in key order (fillseq).
  Rewrites: on a database filled with those keys in setup, overwrite (new
  values) and delete of every key in random order.  Each sample gets its
  own database.
- SyncWrites: SYNC_PUTS puts with sync=True from 1, 2, 4 and 8 threads
  sharing one new database (group commit), and track_wal_syncs: the fsyncs
  those puts made (fewer than the puts once groups form).
"""
import itertools
import os
import random
import shutil
import tempfile
import threading

import kvcy

SIZES = [20_000, 200_000]     # keys; a full `asv run` of this file takes a few minutes
GETS = 10_000
GET_MANY_CHUNK = 100
SCAN_PAIRS = 10_000
SEEKS = 1_000
SEEK_NEXTS = 10
BATCH_PAIRS = 1_000
SYNC_PUTS = 2_000
SEED = 301


def _keys(num):
    return [b"%016d" % i for i in range(num)]


def _new_db():
    """(temporary directory, a connection to a new database in it)."""
    tmp = tempfile.mkdtemp(prefix="kvcy-asv-")
    return tmp, kvcy.connect(os.path.join(tmp, "db"))


def _values(rng, num):
    half = rng.randbytes(50 * num)
    return [half[i * 50:(i + 1) * 50] * 2 for i in range(num)]


class Reads:
    params = SIZES
    param_names = ["size"]
    timeout = 300

    def setup_cache(self):
        # Runs once, in a directory asv keeps for the whole run.
        paths = {}
        rng = random.Random(SEED)
        for size in SIZES:
            path = os.path.abspath("db-%d" % size)
            keys, values = _keys(size), _values(rng, size)
            order = list(range(size))
            rng.shuffle(order)
            with kvcy.connect(path) as conn:
                for i in range(0, size, BATCH_PAIRS):
                    conn.put_many([(keys[j], values[j]) for j in order[i:i + BATCH_PAIRS]])
                conn.compact_range()
            paths[size] = path
        return paths

    def setup(self, paths, size):
        rng = random.Random(SEED + size)
        keys = _keys(size)
        self.probes = [keys[i] for i in rng.choices(range(size), k=GETS)]
        self.missing = [k + b"." for k in self.probes]
        self.chunks = [self.probes[i:i + GET_MANY_CHUNK]
                       for i in range(0, GETS, GET_MANY_CHUNK)]
        self.seeks = self.probes[:SEEKS]
        start = rng.randrange(max(size - SCAN_PAIRS, 1))
        self.scan_start = keys[start]
        self.conn = kvcy.connect(paths[size], readonly=True)

    def teardown(self, paths, size):
        self.conn.close()

    def time_get(self, paths, size):
        get = self.conn.get
        for k in self.probes:
            get(k)

    def time_get_missing(self, paths, size):
        get = self.conn.get
        for k in self.missing:
            get(k)

    def time_get_many(self, paths, size):
        get_many = self.conn.get_many
        for chunk in self.chunks:
            get_many(chunk)

    def time_scan(self, paths, size):
        for _ in itertools.islice(self.conn.scan(start=self.scan_start), SCAN_PAIRS):
            pass

    def time_seek(self, paths, size):
        it = self.conn.scan()
        for k in self.seeks:
            it.seek(k)
            for _ in range(SEEK_NEXTS):
                if next(it, None) is None:
                    break
        it.close()


class PartitionedReads:
    """get and seek on tables written with partitioned_index (format
    version 2): their index and filter partitions come from the block cache."""
    timeout = 300

    def setup_cache(self):
        size = SIZES[-1]
        path = os.path.abspath("db-partitioned-%d" % size)
        rng = random.Random(SEED)
        keys, values = _keys(size), _values(rng, size)
        with kvcy.connect(path, partitioned_index=True) as conn:
            for i in range(0, size, BATCH_PAIRS):
                conn.put_many(list(zip(keys[i:i + BATCH_PAIRS], values[i:i + BATCH_PAIRS])))
            conn.compact_range()
        return path

    def setup(self, path):
        rng = random.Random(SEED)
        keys = _keys(SIZES[-1])
        self.probes = [keys[i] for i in rng.choices(range(len(keys)), k=GETS)]
        self.conn = kvcy.connect(path, readonly=True)

    def teardown(self, path):
        self.conn.close()

    def time_get(self, path):
        get = self.conn.get
        for k in self.probes:
            get(k)

    def time_seek(self, path):
        it = self.conn.scan()
        for k in self.probes[:SEEKS]:
            it.seek(k)
            for _ in range(SEEK_NEXTS):
                if next(it, None) is None:
                    break
        it.close()


class _OneCallPerSample:
    # One timed call per sample, each on the new database setup() made.
    number = 1
    repeat = (1, 5, 30.0)
    warmup_time = 0


class _WriteData(_OneCallPerSample):
    # `size` keys and values, in random and in key order, and a new database.
    params = SIZES
    param_names = ["size"]
    timeout = 300

    def setup(self, size):
        rng = random.Random(SEED)
        keys, values = _keys(size), _values(rng, size)
        order = list(range(size))
        rng.shuffle(order)
        self.sorted_pairs = list(zip(keys, values))
        self.pairs = [(keys[i], values[i]) for i in order]
        self.batches = [self.pairs[i:i + BATCH_PAIRS] for i in range(0, size, BATCH_PAIRS)]
        self.tmp, self.conn = _new_db()

    def teardown(self, size):
        self.conn.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


class Writes(_WriteData):
    """Writes into a new, empty database."""

    def time_put(self, size):
        put = self.conn.put
        for k, v in self.pairs:
            put(k, v)

    def time_put_many(self, size):
        put_many = self.conn.put_many
        for batch in self.batches:
            put_many(batch)

    def time_put_sequential(self, size):
        put = self.conn.put
        for k, v in self.sorted_pairs:
            put(k, v)


class Rewrites(_WriteData):
    """Writes over every key of a database filled in setup (not timed)."""

    def setup(self, size):
        super().setup(size)
        for batch in self.batches:
            self.conn.put_many(batch)
        self.new_values = [v[::-1] for _, v in self.pairs]

    def time_overwrite(self, size):
        put = self.conn.put
        for (k, _), v in zip(self.pairs, self.new_values):
            put(k, v)

    def time_delete(self, size):
        delete = self.conn.delete
        for k, _ in self.pairs:
            delete(k)


class SyncWrites(_OneCallPerSample):
    """sync=True puts from several threads: what group commit is for."""
    params = [1, 2, 4, 8]
    param_names = ["threads"]
    timeout = 120

    def setup(self, threads):
        self.tmp, self.conn = _new_db()
        value = b"v" * 100
        per = SYNC_PUTS // threads
        self.work = [[(b"t%02d-%08d" % (t, i), value) for i in range(per)]
                     for t in range(threads)]

    def teardown(self, threads):
        self.conn.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _run(self):
        put = self.conn.put

        def writer(pairs):
            for k, v in pairs:
                put(k, v, sync=True)
        workers = [threading.Thread(target=writer, args=(w,)) for w in self.work]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    def time_sync_puts(self, threads):
        self._run()

    def track_wal_syncs(self, threads):
        before = self.conn.stats()["wal_syncs"]
        self._run()
        return self.conn.stats()["wal_syncs"] - before
    track_wal_syncs.unit = "fsyncs"
