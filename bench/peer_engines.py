"""Engine adapters for bench/peers.py: one small class per key-value store.

Every adapter gives the harness the same handful of operations, so that a
workload is one loop written once:

    open(path)        create a new, empty database at path (a directory)
    reopen(path)      open the existing database at path again (cold caches)
    put, get, delete  fast bound callables set by open/reopen; get returns None
                      for a missing key
    batch(pairs)      write 1,000 (key, value) pairs as one atomic batch
    scan_all()        read every (key, value) pair in key order; returns the count
    seeker()          returns seek(key, count): position at the first key >= key
                      and read count pairs from there
    thread_getter()   returns (get, done) for one reader thread of the shared
                      database; done() releases what get needed
    close()

Optional: table_bytes_written() (flush + compaction bytes, for wamp),
stall_seconds() (time writes spent waiting for flushes and compactions so
far) and IN_MEMORY (no files; disk figures do not apply).

CONFIG says how each engine is configured, and CANNOT says what of the common
setting (snappy compression, 10-bit bloom filters, an 8 MiB block cache,
writes that reach the OS but are not fsynced) an engine has no way to set;
bench/peers.py prints both and writes them to its JSON.  The adapters are
used by one thread at a time except for thread_getter()'s getters.
"""
import dbm
import os
import sqlite3

import kvcy

CACHE_BYTES = 8 << 20          # block cache given to every engine that has one
BLOOM_BITS = 10                # bloom filter bits per key, where there are filters


class PlyvelStyleAdapter:
    """What kvcy and plyvel share: a handle (self.db) with get and
    put(key, value, sync=) that threads may share, and Python iterators of
    (key, value) with a seek(key) method, made by new_iterator()."""

    def sync_putter(self):
        db = self.db
        return lambda k, v: db.put(k, v, sync=True)

    def thread_getter(self):
        return self.db.get, None

    def scan_all(self):
        n = 0
        for _ in self.new_iterator():
            n += 1
        return n

    def seeker(self):
        it = self.new_iterator()

        def seek(key, count):
            it.seek(key)
            for _ in range(count):
                if next(it, None) is None:
                    break
        return seek


class KvcyAdapter(PlyvelStyleAdapter):
    name = "kvcy"
    CONFIG = {"compression": "snappy", "bloom_bits_per_key": BLOOM_BITS,
              "block_cache_bytes": CACHE_BYTES, "row_cache_bytes": 0,
              "block_size": "default (4 KiB)", "sync": False}
    CANNOT = []

    def open(self, path):
        self.db = kvcy.connect(path, compression="snappy", bloom_bits_per_key=BLOOM_BITS,
                               block_cache_bytes=CACHE_BYTES, row_cache_bytes=0, sync=False)
        self.put, self.get, self.delete = self.db.put, self.db.get, self.db.delete

    reopen = open

    def batch(self, pairs):
        self.db.put_many(pairs)

    def new_iterator(self):
        return self.db.scan()

    def table_bytes_written(self):
        s = self.db.stats()
        return s["flush_bytes"] + s["compaction_bytes_written"]

    def stall_seconds(self):
        return self.db.stats()["stall_seconds"]

    def close(self):
        self.db.close()


class PlyvelAdapter(PlyvelStyleAdapter):
    name = "plyvel"
    CONFIG = {"compression": "snappy", "bloom_filter_bits": BLOOM_BITS,
              "lru_cache_size": CACHE_BYTES, "block_size": "default (4 KiB)", "sync": False}
    CANNOT = []

    def open(self, path):
        import plyvel
        self.db = plyvel.DB(path, create_if_missing=True, compression="snappy",
                            bloom_filter_bits=BLOOM_BITS, lru_cache_size=CACHE_BYTES)
        self.put, self.get, self.delete = self.db.put, self.db.get, self.db.delete

    reopen = open

    def batch(self, pairs):
        with self.db.write_batch() as wb:
            for k, v in pairs:
                wb.put(k, v)

    def new_iterator(self):
        return self.db.iterator()

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
    CONFIG = {"compression": "snappy", "bloom_filter": "10 bits, full filters",
              "block_cache": CACHE_BYTES, "block_size": "default (4 KiB)",
              "raw_mode": True, "sync": False}
    CANNOT = ["wamp: no per-level write bytes at byte precision through rocksdict"]

    def open(self, path):
        import rocksdict
        opts = rocksdict.Options(raw_mode=True)
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(rocksdict.Cache(CACHE_BYTES))
        table.set_bloom_filter(BLOOM_BITS, False)
        opts.set_block_based_table_factory(table)
        opts.set_compression_type(rocksdict.DBCompressionType.snappy())
        self.db = rocksdict.Rdict(path, options=opts)
        self._wb = rocksdict.WriteBatch
        self.put, self.get, self.delete = self.db.put, self.db.get, self.db.delete

    reopen = open

    def sync_putter(self):
        import rocksdict
        options = rocksdict.WriteOptions()
        options.sync = True
        db = self.db
        return lambda k, v: db.put(k, v, options)

    def batch(self, pairs):
        wb = self._wb(raw_mode=True)
        for k, v in pairs:
            wb.put(k, v)
        self.db.write(wb)

    def scan_all(self):
        n = 0
        for _ in self.db.items():
            n += 1
        return n

    def seeker(self):
        it = self.db.iter()

        def seek(key, count):
            it.seek(key)
            for _ in range(count):
                if not it.valid():
                    break
                it.key(), it.value()
                it.next()
        return seek

    def thread_getter(self):
        return self.db.get, None

    def close(self):
        self.db.close()


class LmdbAdapter:
    name = "lmdb"
    CONFIG = {"sync": False, "metasync": False, "map_size": 1 << 34,
              "transactions": "one per put/get/delete, one per 1,000-pair batch"}
    CANNOT = ["compression: none (B+tree pages are stored as written)",
              "bloom filter: none (a B+tree lookup needs none)",
              "block cache: none of its own (memory-mapped; the OS page cache serves reads)"]

    def open(self, path):
        import lmdb
        self.env = lmdb.open(path, map_size=1 << 34, sync=False, metasync=False)
        env = self.env
        self._reader = None

        def put(k, v):
            with env.begin(write=True) as txn:
                txn.put(k, v)

        def get(k):
            with env.begin() as txn:
                return txn.get(k)

        def delete(k):
            with env.begin(write=True) as txn:
                txn.delete(k)
        self.put, self.get, self.delete = put, get, delete

    reopen = open

    def batch(self, pairs):
        with self.env.begin(write=True) as txn:
            for k, v in pairs:
                txn.put(k, v)

    def scan_all(self):
        n = 0
        with self.env.begin() as txn:
            for _ in txn.cursor():
                n += 1
        return n

    def seeker(self):
        self._reader = self.env.begin()
        cur = self._reader.cursor()

        def seek(key, count):
            if not cur.set_range(key):
                return
            for _ in range(count):
                cur.item()
                if not cur.next():
                    break
        return seek

    def thread_getter(self):
        return self.get, None

    def close(self):
        if self._reader is not None:
            self._reader.abort()
            self._reader = None
        self.env.close()


class LsmAdapter:
    name = "lsm"
    CONFIG = {"write_safety": "1 (NORMAL: syncs at checkpoints, not per commit; the default)",
              "page_size": "default", "block_size": "default", "autoflush": "default (1 MiB)",
              "mmap": "default (on)"}
    CANNOT = ["compression: the lsm-db binding exposes none",
              "bloom filter: SQLite4 LSM has none",
              "block cache: none of its own (memory-mapped; the OS page cache serves reads)",
              "get of a missing key raises KeyError; the adapter turns it into None",
              "threads: an lsm-db handle is not safe to share, so each reader thread "
              "opens its own handle on the same file (outside the timed region)"]

    def open(self, path):
        import lsm
        self._lsm = lsm
        os.makedirs(path, exist_ok=True)
        self.file = os.path.join(path, "db.ldb")
        self.db = lsm.LSM(self.file)
        fetch = self.db.fetch

        def get(k):
            try:
                return fetch(k)
            except KeyError:
                return None
        self.put, self.get, self.delete = self.db.insert, get, self.db.delete
        self._extra = []

    reopen = open

    def batch(self, pairs):
        db = self.db
        with db.transaction():
            for k, v in pairs:
                db.insert(k, v)

    def scan_all(self):
        n = 0
        for _ in self.db:
            n += 1
        return n

    def seeker(self):
        cur = self.db.cursor()
        self._extra.append(cur)
        seek_ge = self._lsm.SEEK_GE

        def seek(key, count):
            try:
                cur.seek(key, seek_ge)
            except KeyError:
                return
            for _ in range(count):
                cur.key(), cur.value()
                try:
                    cur.next()
                except StopIteration:
                    break
        return seek

    def thread_getter(self):
        handle = self._lsm.LSM(self.file)
        fetch = handle.fetch

        def get(k):
            try:
                return fetch(k)
            except KeyError:
                return None
        return get, handle.close

    def close(self):
        for cur in self._extra:
            cur.close()
        self.db.close()


class SqliteAdapter:
    name = "sqlite3"
    CONFIG = {"journal_mode": "WAL", "synchronous": "NORMAL", "table": "WITHOUT ROWID",
              "cache_size": "-8192 (8 MiB)", "check_same_thread": False}
    CANNOT = ["compression: none", "bloom filter: none"]

    def open(self, path):
        os.makedirs(path, exist_ok=True)
        self.db = sqlite3.connect(os.path.join(path, "db.sqlite"), isolation_level=None,
                                  check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA cache_size=-%d" % (CACHE_BYTES // 1024))
        self.db.execute("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
        db = self.db

        def put(k, v):
            db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (k, v))

        def get(k):
            row = db.execute("SELECT v FROM kv WHERE k = ?", (k,)).fetchone()
            return row[0] if row else None

        def delete(k):
            db.execute("DELETE FROM kv WHERE k = ?", (k,))
        self.put, self.get, self.delete = put, get, delete

    reopen = open

    def batch(self, pairs):
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", pairs)
        self.db.execute("COMMIT")

    def scan_all(self):
        n = 0
        for _ in self.db.execute("SELECT k, v FROM kv ORDER BY k"):
            n += 1
        return n

    def seeker(self):
        db = self.db

        def seek(key, count):
            for _ in db.execute("SELECT k, v FROM kv WHERE k >= ? ORDER BY k LIMIT ?",
                                (key, count)):
                pass
        return seek

    def thread_getter(self):
        return self.get, None

    def close(self):
        self.db.close()


def _dbm_backend():
    """The module dbm.open() creates new databases with (dbm.gnu, dbm.ndbm, dbm.dumb)."""
    for name in dbm._names:
        try:
            __import__(name)
            return name
        except ImportError:
            pass
    return None


class DbmAdapter:
    name = "dbm"
    CONFIG = {"module": "dbm.open(..., 'n') -> %s" % _dbm_backend()}
    CANNOT = ["compression, bloom filter, cache: none", "readseq, seekrandom: no key order",
              "dbm.dumb, if that is the backend, rewrites its index on every delete"]

    def open(self, path, flag="n"):
        os.makedirs(path, exist_ok=True)
        self.db = dbm.open(os.path.join(path, "db"), flag)
        db = self.db

        def put(k, v):
            db[k] = v

        def delete(k):
            try:
                del db[k]
            except KeyError:
                pass
        self.put, self.get, self.delete = put, db.get, delete

    def reopen(self, path):
        self.open(path, "w")

    def batch(self, pairs):
        for k, v in pairs:
            self.db[k] = v

    def thread_getter(self):
        return self.get, None

    def close(self):
        self.db.close()


class DictAdapter:
    """A plain dict: the in-process limit of a Python loop over gets and puts.

    It has no files: reopen keeps the same dict, so readreopen equals
    readrandom, and the disk figures do not apply.  A dict has no key order:
    reopen (untimed) builds a sorted list of its keys, readseq walks it with
    a get per key, and seekrandom bisects it and reads the next keys' values.
    """
    name = "dict"
    IN_MEMORY = True
    CONFIG = {"storage": "in-process dict, no files"}
    CANNOT = ["compression, bloom filter, cache, durability: not applicable (in memory)",
              "readreopen: reopen keeps the same dict (nothing to reopen)",
              "readseq, seekrandom: over sorted(keys) built untimed at reopen",
              "disk_bytes, samp, wamp: not applicable"]

    def open(self, path):
        self.db = {}
        self.sorted_keys = []
        self._bind()

    def _bind(self):
        db = self.db

        def delete(k):
            db.pop(k, None)
        self.put, self.get, self.delete = db.__setitem__, db.get, delete

    def reopen(self, path):
        self.sorted_keys = sorted(self.db)
        self._bind()

    def batch(self, pairs):
        self.db.update(pairs)

    def scan_all(self):
        n = 0
        db = self.db
        for k in self.sorted_keys:
            (k, db[k])
            n += 1
        return n

    def seeker(self):
        import bisect
        keys, db = self.sorted_keys, self.db

        def seek(key, count):
            i = bisect.bisect_left(keys, key)
            for k in keys[i:i + count]:
                (k, db[k])
        return seek

    def thread_getter(self):
        return self.db.get, None

    def close(self):
        pass


ADAPTERS = {a.name: a for a in (KvcyAdapter, PlyvelAdapter, RocksdictAdapter, LmdbAdapter,
                                LsmAdapter, SqliteAdapter, DbmAdapter, DictAdapter)}

# Module each peer needs, and the distribution that provides it (for versions).
REQUIRES = {"plyvel": ("plyvel", "plyvel"), "rocksdict": ("rocksdict", "rocksdict"),
            "lmdb": ("lmdb", "lmdb"), "lsm": ("lsm", "lsm-db")}
