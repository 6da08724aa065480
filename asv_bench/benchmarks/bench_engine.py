"""asv benchmarks of kvcy's core operations (tracked over commits).

Run from asv_bench/: `asv run` (or `asv run --quick` for a smoke test).
Each benchmark works on a fresh temporary database; setup is not timed.
16-byte keys, 100-byte values that compress about 2:1, as bench/peers.py.
"""
import os
import random
import shutil
import tempfile

import kvcy

NUM = 20000


def _value(rng):
    half = bytes(rng.getrandbits(8) for _ in range(50))
    return half * 2


class Writes:
    timeout = 120

    def setup(self):
        rng = random.Random(301)
        self.keys = [b"%016d" % i for i in range(NUM)]
        self.shuffled = self.keys[:]
        rng.shuffle(self.shuffled)
        self.value = _value(rng)
        self.tmp = tempfile.mkdtemp(prefix="kvcy-asv-")
        self.conn = kvcy.connect(os.path.join(self.tmp, "db"))

    def teardown(self):
        self.conn.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def time_fillseq(self):
        put, value = self.conn.put, self.value
        for k in self.keys:
            put(k, value)

    def time_fillrandom(self):
        put, value = self.conn.put, self.value
        for k in self.shuffled:
            put(k, value)

    def time_fillbatch_1000(self):
        value = self.value
        keys = self.shuffled
        for i in range(0, NUM, 1000):
            self.conn.put_many([(k, value) for k in keys[i:i + 1000]])


class Reads:
    timeout = 120

    def setup(self):
        rng = random.Random(302)
        self.keys = [b"%016d" % i for i in range(NUM)]
        self.shuffled = self.keys[:]
        rng.shuffle(self.shuffled)
        value = _value(rng)
        self.tmp = tempfile.mkdtemp(prefix="kvcy-asv-")
        path = os.path.join(self.tmp, "db")
        with kvcy.connect(path) as conn:
            conn.put_many([(k, value) for k in self.keys])
        self.conn = kvcy.connect(path)

    def teardown(self):
        self.conn.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def time_readrandom(self):
        get = self.conn.get
        for k in self.shuffled:
            get(k)

    def time_readmissing(self):
        get = self.conn.get
        for k in self.shuffled:
            get(k + b"!")
