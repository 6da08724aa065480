"""Randomized multi-threaded stress against a model (RocksDB's db_stress).

In-process run (run_stress): writer threads each own a key partition
(b"t<id>/NNNN") and keep its exact model; they put, delete, write batches
and delete_many, and check every kind of read of their own partition
against the model: get, get_many, scans forward, reverse, bounded and by
prefix, snapshots held across later writes (checked against a copy of the
model taken with the snapshot, which is the model at the snapshot's
sequence) and cursors fetched a few rows at a time across later writes.
Reader threads read every partition while the writers run and check what
needs no model: a snapshot's forward scan, reverse scan and get_many agree;
keys are in order and inside the asked range and prefix; every value
names its own key.  Memtables are tiny and level 0 compacts at two files,
so flushes and compactions run the whole time.  At the end the database is
reopened and every partition must equal its model, with no orphan table.

kill -9 run (test_kill_9_with_writer_threads): a child runs several writer
threads, each acknowledging its ops on stdout; the parent kills it at a
random moment, reopens and checks each partition: exactly the model after
that thread's acknowledged ops, possibly plus its one op in flight.

Short runs are in the default suite; KVCY_SLOW=1 runs long ones
(KVCY_STRESS_SECONDS, default 180; KVCY_STRESS_KILLS, default 60).  The seed
is random unless KVCY_STRESS_SEED is set; every failure prints it.
"""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback

import pytest

import kvcy

from background_helpers import close_and_find_orphans
from test_crash import child_env, wait_for_ready

KIB = 1024
KEYS_PER_PARTITION = 400

OPTIONS = {"memtable_max_bytes": 80 * KIB, "level0_compaction_trigger": 2,
           "level0_slowdown_trigger": 6, "level0_stop_trigger": 12, "block_size": 512,
           "target_file_bytes": 64 * KIB, "level1_max_bytes": 256 * KIB}


def _seed():
    env = os.environ.get("KVCY_STRESS_SEED")
    return int(env) if env else random.randrange(1 << 30)


def key_of(tid, i):
    return b"t%d/%04d" % (tid, i)


def value_of(key, n, rng):
    """A value that names its key and its op number: key=n:filler."""
    return key + b"=%d:" % n + b"v" * rng.choice((0, 5, 40, 300, 3000))


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.writes = 0
        self.checked = 0      # individual values or rows compared

    def add(self, writes=0, checked=0):
        with self.lock:
            self.writes += writes
            self.checked += checked


class StressFailure(AssertionError):
    pass


def _expect(cond, what):
    if not cond:
        raise StressFailure(what)


def _model_range(model, start, stop, prefix=None):
    return sorted((k, v) for k, v in model.items()
                  if (start is None or k >= start) and (stop is None or k < stop)
                  and (prefix is None or k.startswith(prefix)))


class Writer:
    """One writer thread: its partition, its model, its held snapshots and cursors."""

    def __init__(self, conn, tid, seed, counters):
        self.conn = conn
        self.tid = tid
        self.rng = random.Random(seed * 7919 + tid)
        self.counters = counters
        self.model = {}
        self.held = []     # (snapshot, model copy)
        self.cursors = []  # (cursor, expected rows, rows fetched so far)
        self.n = 0

    def key(self):
        return key_of(self.tid, self.rng.randrange(KEYS_PER_PARTITION))

    def step(self):
        rng, conn, model = self.rng, self.conn, self.model
        self.n += 1
        r = rng.random()
        if r < 0.30:
            k = self.key()
            v = value_of(k, self.n, rng)
            conn.put(k, v)
            model[k] = v
            self.counters.add(writes=1)
        elif r < 0.40:
            k = self.key()
            conn.delete(k)
            model.pop(k, None)
            self.counters.add(writes=1)
        elif r < 0.52:
            keys = {self.key() for _ in range(rng.randrange(1, 12))}
            pairs = [(k, value_of(k, self.n, rng)) for k in keys]
            conn.put_many(pairs)
            model.update(pairs)
            self.counters.add(writes=len(pairs))
        elif r < 0.56:
            keys = [self.key() for _ in range(rng.randrange(1, 6))]
            conn.delete_many(keys)
            for k in keys:
                model.pop(k, None)
            self.counters.add(writes=len(keys))
        elif r < 0.62:
            self.take_snapshot()
        elif r < 0.70:
            self.check_snapshot()
        elif r < 0.76:
            self.step_cursor()
        else:
            self.check_reads(conn, model, "current")

    def _range(self):
        a, b = sorted(self.rng.randrange(KEYS_PER_PARTITION + 1) for _ in range(2))
        return key_of(self.tid, a), key_of(self.tid, b)

    def check_reads(self, reader, model, what):
        """One kind of read of the partition through reader (the connection
        or a snapshot), compared with model."""
        rng, tid = self.rng, self.tid
        r = rng.random()
        where = "thread %d op %d %s" % (tid, self.n, what)
        if r < 0.3:
            k = self.key()
            got = reader.get(k)
            _expect(got == model.get(k), "%s: get(%r) = %r, model %r" % (
                where, k, (got or b"")[:30], (model.get(k) or b"")[:30]))
            self.counters.add(checked=1)
        elif r < 0.5:
            keys = [self.key() for _ in range(rng.randrange(1, 40))]
            got = reader.get_many(keys)
            _expect(got == [model.get(k) for k in keys], "%s: get_many differs" % where)
            self.counters.add(checked=len(keys))
        else:
            prefix = b"t%d/" % tid
            start, stop = self._range()
            kind = rng.choice(("bounded", "prefix", "prefix-sub", "reverse", "reverse-prefix"))
            if kind == "bounded":
                got = list(reader.scan(start, stop))
                want = _model_range(model, start, stop)
            elif kind == "prefix":
                got = list(reader.scan(prefix=prefix))
                want = _model_range(model, None, None, prefix)
            elif kind == "prefix-sub":
                sub = key_of(tid, rng.randrange(KEYS_PER_PARTITION))[:-2]
                got = list(reader.scan(prefix=sub))
                want = _model_range(model, None, None, sub)
            elif kind == "reverse":
                got = list(reader.scan(start, stop, reverse=True))
                want = _model_range(model, start, stop)[::-1]
            else:
                got = list(reader.scan(prefix=prefix, reverse=True))
                want = _model_range(model, None, None, prefix)[::-1]
            _expect(got == want, "%s: %s scan [%r, %r) gave %d rows, model %d; first "
                    "difference %r" % (where, kind, start, stop, len(got), len(want),
                                        next(((a[0], b[0]) for a, b in zip(got, want)
                                              if a != b), None)))
            self.counters.add(checked=max(len(got), 1))

    def take_snapshot(self):
        if len(self.held) >= 3:
            snap, _ = self.held.pop(0)
            snap.close()
        self.held.append((self.conn.snapshot(), dict(self.model)))

    def check_snapshot(self):
        if not self.held:
            return
        snap, model = self.rng.choice(self.held)
        self.check_reads(snap, model, "snapshot at %d" % snap.sequence)

    def step_cursor(self):
        if not self.cursors or (len(self.cursors) < 2 and self.rng.random() < 0.3):
            start, stop = self._range()
            reverse = self.rng.random() < 0.5
            cur = self.conn.cursor().scan(start, stop, reverse=reverse)
            want = _model_range(self.model, start, stop)
            self.cursors.append((cur, want[::-1] if reverse else want, []))
            return
        index = self.rng.randrange(len(self.cursors))
        cur, want, got = self.cursors[index]
        rows = cur.fetchmany(self.rng.randrange(1, 20))
        got.extend(rows)
        if not rows:
            _expect(got == want, "thread %d op %d: cursor read %d rows, model %d" % (
                self.tid, self.n, len(got), len(want)))
            self.counters.add(checked=max(len(got), 1))
            cur.close()
            del self.cursors[index]
        else:
            _expect(got == want[:len(got)], "thread %d op %d: cursor rows differ" % (
                self.tid, self.n))

    def close(self):
        for snap, _ in self.held:
            snap.close()
        for cur, _, _ in self.cursors:
            cur.close()


def reader_step(conn, rng, tids, counters):
    """Checks that need no model, on a snapshot of a random partition."""
    prefix = b"t%d/" % rng.choice(tids)
    with conn.snapshot() as snap:
        forward = list(snap.scan(prefix=prefix))
        backward = list(snap.scan(prefix=prefix, reverse=True))
        keys = [k for k, _ in forward]
        values = snap.get_many(keys)
    _expect(backward == forward[::-1], "reverse scan of a snapshot is not the forward one")
    _expect(keys == sorted(set(keys)), "scan keys out of order or repeated")
    _expect(all(k.startswith(prefix) for k in keys), "scan left its prefix")
    _expect(values == [v for _, v in forward], "get_many disagrees with the scan")
    _expect(all(v.startswith(k + b"=") for k, v in forward), "a value under the wrong key")
    lo = prefix + b"%04d" % rng.randrange(KEYS_PER_PARTITION)
    rows = list(conn.scan(lo, prefix + b"9"))
    _expect(all(lo <= k < prefix + b"9" for k, _ in rows), "a bounded scan left its bounds")
    counters.add(checked=len(forward) * 3 + len(rows) + 1)


def run_stress(path, seed, seconds, writers=3, readers=2):
    """Run the stress for `seconds`; return (writes, values checked)."""
    counters = Counters()
    errors = []
    deadline = time.monotonic() + seconds
    conn = kvcy.connect(path, **OPTIONS)
    workers = [Writer(conn, tid, seed, counters) for tid in range(writers)]

    def guard(body):
        try:
            body()
        except BaseException:
            errors.append(traceback.format_exc())

    def write_loop(w):
        while time.monotonic() < deadline and not errors:
            w.step()
        w.close()

    def read_loop(n):
        rng = random.Random(seed * 31 + n)
        while time.monotonic() < deadline and not errors:
            reader_step(conn, rng, list(range(writers)), counters)

    threads = [threading.Thread(target=guard, args=(lambda w=w: write_loop(w),))
               for w in workers]
    threads += [threading.Thread(target=guard, args=(lambda n=n: read_loop(n),))
                for n in range(readers)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 120)
        hung = [t for t in threads if t.is_alive()]
        assert not hung, "seed=%d: %d threads did not finish" % (seed, len(hung))
        assert not errors, "seed=%d: %s" % (seed, errors[0])
        stats = conn.stats()
    finally:
        conn.close()
    assert stats["flushes"] > 0 and stats["compactions"] > 0, (seed, stats["flushes"])
    with kvcy.connect(path, **OPTIONS) as conn:
        for w in workers:
            prefix = b"t%d/" % w.tid
            assert list(conn.scan(prefix=prefix)) == sorted(w.model.items()), (
                "seed=%d: partition %d differs after reopen" % (seed, w.tid))
        orphans, missing = close_and_find_orphans(conn, path)
    assert not orphans and not missing, "seed=%d: orphan tables %s, missing %s" % (
        seed, orphans, missing)
    return counters.writes, counters.checked


def test_stress_short(db_path):
    seed = _seed()
    writes, checked = run_stress(db_path, seed, seconds=3.0)
    assert writes > 500 and checked > 1000, (seed, writes, checked)


@pytest.mark.slow
def test_stress_long(db_path):
    seed = _seed()
    seconds = float(os.environ.get("KVCY_STRESS_SECONDS", "180"))
    writes, checked = run_stress(db_path, seed, seconds, writers=4, readers=2)
    print("stress seed=%d: %.0f s, %d writes, %d values checked" % (
        seed, seconds, writes, checked))


# --- kill -9 while several threads write ----------------------------------------------

CHILD = '''
import json, random, sys, threading
import kvcy

def op(seed, tid, i):
    rng = random.Random((seed * 1000003 + tid) * 1000003 + i)
    r = rng.random()
    k = lambda: b"t%d/%04d" % (tid, rng.randrange(KEYS))
    if r < 0.55:
        key = k()
        return ("put", key, key + b"=%d:" % i + b"x" * rng.choice((0, 30, 400, 5000)))
    if r < 0.7:
        return ("delete", k())
    if r < 0.9:
        keys = sorted({k() for _ in range(rng.randrange(2, 10))})
        return ("batch", [(key, key + b"=%d:b" % i) for key in keys])
    return ("delete_many", sorted({k() for _ in range(rng.randrange(2, 5))}))

def main():
    path, seed, threads, starts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
    conn = kvcy.connect(path, **json.loads(sys.argv[5]))
    out = sys.stdout
    lock = threading.Lock()
    out.write("ready\\n"); out.flush()
    def run(tid):
        i = starts[tid]
        while True:
            o = op(seed, tid, i)
            if o[0] == "put": conn.put(o[1], o[2])
            elif o[0] == "delete": conn.delete(o[1])
            elif o[0] == "batch": conn.put_many(o[1])
            else: conn.delete_many(o[1])
            with lock:
                out.write("%d %d\\n" % (tid, i)); out.flush()
            i += 1
    for tid in range(threads):
        threading.Thread(target=run, args=(tid,), daemon=True).start()
    threading.Event().wait()

main()
'''


def _child_op():
    ns = {}
    exec(compile("import random\nKEYS = %d\n" % KEYS_PER_PARTITION
                 + CHILD[:CHILD.index("def main")], "<child>", "exec"), ns)
    return ns["op"]


def _apply(model, o):
    if o[0] == "put":
        model[o[1]] = o[2]
    elif o[0] == "delete":
        model.pop(o[1], None)
    elif o[0] == "batch":
        model.update(o[1])
    else:
        for k in o[1]:
            model.pop(k, None)


def run_kill_rounds(tmp_path, rounds, seed, threads=3):
    script = tmp_path / "child.py"
    script.write_text("KEYS = %d\n%s" % (KEYS_PER_PARTITION, textwrap.dedent(CHILD)))
    op = _child_op()
    db = tmp_path / "db"
    rng = random.Random(seed)
    models = [{} for _ in range(threads)]
    starts = [0] * threads
    acked_total = 0
    for rnd in range(rounds):
        where = "seed=%d round=%d" % (seed, rnd)
        ack_path = tmp_path / ("acks%d.txt" % rnd)
        err_path = tmp_path / ("stderr%d.txt" % rnd)
        with open(ack_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, str(script), str(db), str(seed), str(threads),
                 json.dumps(starts), json.dumps(OPTIONS)],
                stdout=out, stderr=err, env=child_env())
            try:
                assert wait_for_ready(proc, ack_path, time.monotonic() + 60), (
                    "%s: child did not start: %s" % (where, err_path.read_text()))
                time.sleep(rng.uniform(0.05, 0.5))
                assert proc.poll() is None, "%s: child exited: %s" % (where, err_path.read_text())
                proc.send_signal(signal.SIGKILL)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=60)
        acked = [[] for _ in range(threads)]
        for line in ack_path.read_bytes().split(b"\n")[1:-1]:
            tid, i = map(int, line.split())
            acked[tid].append(i)
        with kvcy.connect(db, **OPTIONS) as conn:
            for tid in range(threads):
                assert acked[tid] == list(range(starts[tid], starts[tid] + len(acked[tid]))), where
                acked_total += len(acked[tid])
                expected = dict(models[tid])
                for i in acked[tid]:
                    _apply(expected, op(seed, tid, i))
                in_flight = starts[tid] + len(acked[tid])
                plus = dict(expected)
                _apply(plus, op(seed, tid, in_flight))
                got = dict(conn.scan(prefix=b"t%d/" % tid))
                assert got in (expected, plus), (
                    "%s thread %d: recovered partition is not the model after %d acked ops; "
                    "keys wrong: %r" % (where, tid, len(acked[tid]), sorted(
                        k for k in set(got) | set(expected) if got.get(k) != expected.get(k)
                        and got.get(k) != plus.get(k))[:8]))
                models[tid] = got
                starts[tid] = in_flight + 1
            orphans, missing = close_and_find_orphans(conn, db)
        assert not orphans and not missing, "%s: orphan tables %s, missing %s" % (
            where, orphans, missing)
    return acked_total


def test_kill_9_with_writer_threads(tmp_path):
    seed = _seed()
    acked = run_kill_rounds(tmp_path, rounds=3, seed=seed)
    assert acked > 100, "seed=%d: only %d writes acknowledged" % (seed, acked)


@pytest.mark.slow
def test_kill_9_with_writer_threads_many_rounds(tmp_path):
    seed = _seed()
    kills = int(os.environ.get("KVCY_STRESS_KILLS", "60"))
    acked = run_kill_rounds(tmp_path, rounds=kills, seed=seed)
    print("kill -9 with writer threads seed=%d: %d kills survived, %d writes acknowledged"
          % (seed, kills, acked))
