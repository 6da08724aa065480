"""Lifecycle safety: close() while threads are inside calls, use after close,
use after os.fork(), interpreter exit while background work runs.

Each must end in a Python exception or a clean exit: never a crash, a hang
or a lost write.  Scenarios that could crash the interpreter run in a child
process (a segfault is then a failing exit status, not a dead test run),
with a timeout (a hang fails instead of blocking the suite):

  * close_while_busy: threads loop in get, get_many, a scan, cursor
    fetches, snapshot reads and puts while the main thread closes the
    connection; every thread must stop with ProgrammingError saying the
    database or its child is closed, and every put that returned must be
    there after reopening.  Rounds vary the moment of the close.
  * exit_during_background_work: writes with a tiny memtable, a flush and a
    compaction started without waiting, daemon threads still writing, then
    the interpreter exits without close(); it must exit promptly and with
    status 0, and every acknowledged write must be there after reopening.
The fork and use-after-close checks run in the test process (fork's child
reports through its exit status and a pipe).

KVCY_SLOW=1 runs many more rounds of close_while_busy and of the exit.
"""
import json
import os
import select
import subprocess
import sys
import textwrap
import time

import pytest

import kvcy
from kvcy import OperationalError, ProgrammingError

from test_crash import child_env

KIB = 1024
SMALL = {"memtable_max_bytes": 80 * KIB, "level0_compaction_trigger": 2, "block_size": 512}


def run_child(tmp_path, source, *args, timeout=120):
    """Run source as a script in a child; return its stdout (JSON lines).
    Fails on a timeout (a hang), a signal (a crash) or a non-zero status."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(source))
    proc = subprocess.run([sys.executable, str(script), *map(str, args)],
                          capture_output=True, timeout=timeout, env=child_env())
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, "child exit status %d:\n%s" % (proc.returncode, err[-3000:])
    assert "Fatal Python error" not in err and "Traceback" not in err, err[-3000:]
    return proc.stdout.decode()


# --- close() while other threads are inside calls ----------------------------------------

CLOSE_WHILE_BUSY = '''
import json, random, sys, threading, time
import kvcy
from kvcy import ProgrammingError

path, rounds, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
options = json.loads(sys.argv[4])
rng = random.Random(seed)
keys = [b"k%05d" % i for i in range(3000)]
for rnd in range(rounds):
    conn = kvcy.connect(path, **options)
    if rnd == 0:
        conn.put_many([(k, k + b"=0" + b"x" * 50) for k in keys])
        conn.flush()
    outcomes = {}
    acked = []
    started = threading.Barrier(8)

    def loop(name, body):
        started.wait()
        try:
            while True:
                body()
        except ProgrammingError as exc:
            outcomes[name] = "ProgrammingError: %s" % exc
        except BaseException as exc:
            outcomes[name] = "UNEXPECTED %s: %s" % (type(exc).__name__, exc)

    def get():
        conn.get(rng.choice(keys))

    def get_many():
        conn.get_many(rng.sample(keys, 50))

    def scan():
        for k, v in conn.scan(prefix=b"k0"):
            pass

    cur = conn.cursor().scan()
    def fetch():
        if not cur.fetchmany(7):
            cur.scan(rng.choice(keys))

    snap = conn.snapshot()
    def snapshot():
        snap.get(rng.choice(keys))
        for _ in snap.scan(rng.choice(keys), reverse=True):
            break

    counter = [0]
    def put():
        i = counter[0] = counter[0] + 1
        key = b"w%06d" % (rnd * 1000000 + i)
        conn.put(key, b"v" * 300)
        acked.append(key.decode())

    def compact():
        conn.compact_range()

    bodies = dict(get=get, get_many=get_many, scan=scan, fetch=fetch, snapshot=snapshot,
                  put=put, compact=compact)
    threads = [threading.Thread(target=loop, args=(n, b)) for n, b in bodies.items()]
    for t in threads:
        t.start()
    started.wait()
    time.sleep(rng.uniform(0.0, 0.3))
    conn.close()
    for t in threads:
        t.join(30)
    hung = [t.name for t in threads if t.is_alive()]
    print(json.dumps({"round": rnd, "outcomes": outcomes, "acked": acked, "hung": hung}),
          flush=True)
'''


def _close_while_busy(tmp_path, rounds, seed):
    db = tmp_path / "db"
    out = run_child(tmp_path, CLOSE_WHILE_BUSY, db, rounds, seed, json.dumps(SMALL),
                    timeout=60 + 10 * rounds)
    acked = []
    results = [json.loads(line) for line in out.splitlines()]
    assert len(results) == rounds
    for res in results:
        where = "seed=%d round %d" % (seed, res["round"])
        assert not res["hung"], "%s: threads hung after close: %s" % (where, res["hung"])
        assert len(res["outcomes"]) == 7, (where, res["outcomes"])
        for name, outcome in res["outcomes"].items():
            assert outcome.startswith("ProgrammingError") and "closed" in outcome, (
                "%s: %s ended with %s" % (where, name, outcome))
        acked += res["acked"]
    with kvcy.connect(db) as conn:
        keys = [k.encode() for k in acked]
        missing = [k for k, v in zip(keys, conn.get_many(keys)) if v is None]
        assert not missing, "seed=%d: acknowledged puts lost: %s" % (seed, missing[:5])
    return len(acked)


def test_close_while_threads_are_inside_calls(tmp_path):
    _close_while_busy(tmp_path, rounds=4, seed=int.from_bytes(os.urandom(3), "little"))


@pytest.mark.slow
def test_close_while_threads_are_inside_calls_many_rounds(tmp_path):
    seed = int.from_bytes(os.urandom(3), "little")
    acked = _close_while_busy(tmp_path, rounds=150, seed=seed)
    print("close while busy seed=%d: 150 rounds, %d acknowledged puts kept" % (seed, acked))


# --- use after close ---------------------------------------------------------------------

def test_every_child_object_raises_after_close(db_path):
    conn = kvcy.connect(db_path)
    conn.put_many([(b"k%d" % i, b"v") for i in range(100)])
    it = conn.scan()
    next(it)
    rev = conn.scan(reverse=True)
    cur = conn.cursor().scan()
    cur.fetchone()
    idle_cur = conn.cursor()
    snap = conn.snapshot()
    snap_it = snap.scan()
    txn = conn.begin()
    txn.put(b"t", b"1")
    conn.close()
    calls = {
        "iterator next": lambda: next(it), "reverse iterator next": lambda: next(rev),
        "cursor fetchone": cur.fetchone, "cursor fetchmany": lambda: cur.fetchmany(5),
        "cursor fetchall": cur.fetchall, "cursor seek": lambda: cur.seek(b"k5"),
        "new cursor scan": lambda: idle_cur.scan(), "snapshot get": lambda: snap.get(b"k1"),
        "snapshot get_many": lambda: snap.get_many([b"k1"]), "snapshot scan": snap.scan,
        "snapshot iterator next": lambda: next(snap_it), "transaction get": lambda: txn.get(b"t"),
        "transaction put": lambda: txn.put(b"u", b"2"), "transaction commit": txn.commit,
        "get": lambda: conn.get(b"k1"), "get_many": lambda: conn.get_many([b"k1"]),
        "put": lambda: conn.put(b"k", b"v"), "delete": lambda: conn.delete(b"k"),
        "put_many": lambda: conn.put_many([(b"k", b"v")]), "scan": conn.scan,
        "snapshot": conn.snapshot, "cursor": conn.cursor, "flush": conn.flush,
        "compact_range": conn.compact_range, "stats": conn.stats,
    }
    for name, call in calls.items():
        with pytest.raises(ProgrammingError, match="closed"):
            call()
            pytest.fail("%s worked after close" % name)
    conn.close()                                   # idempotent
    with kvcy.connect(db_path) as conn:
        assert conn.get(b"t") is None              # the open transaction was not committed
        assert len(list(conn.scan())) == 100


# --- use after fork ------------------------------------------------------------------------

FORK_CALLS = ("get", "get_many", "put", "delete", "put_many", "scan", "snapshot", "cursor",
              "begin", "flush", "compact_range", "stats", "old iterator", "old cursor",
              "old snapshot get", "old snapshot scan", "old transaction iterator",
              "old transaction cursor", "old transaction commit")


def _in_child(conn, it, cur, snap, txn, txn_it, txn_cur):
    calls = {
        "get": lambda: conn.get(b"k1"), "get_many": lambda: conn.get_many([b"k1"]),
        "put": lambda: conn.put(b"c", b"child"), "delete": lambda: conn.delete(b"k1"),
        "put_many": lambda: conn.put_many([(b"c", b"child")]), "scan": conn.scan,
        "snapshot": conn.snapshot, "cursor": conn.cursor, "begin": conn.begin,
        "flush": conn.flush, "compact_range": conn.compact_range, "stats": conn.stats,
        "old iterator": lambda: next(it), "old cursor": cur.fetchone,
        "old snapshot get": lambda: snap.get(b"k1"), "old snapshot scan": snap.scan,
        "old transaction iterator": lambda: next(txn_it), "old transaction cursor":
        txn_cur.fetchone, "old transaction commit": txn.commit,
    }
    out = {}
    for name in FORK_CALLS:
        try:
            result = calls[name]()
            out[name] = "returned %r" % (result,)[:60]
        except ProgrammingError as exc:
            out[name] = "ProgrammingError fork" if "fork" in str(exc) else (
                "ProgrammingError: %s" % exc)
        except BaseException as exc:
            out[name] = "UNEXPECTED %s: %s" % (type(exc).__name__, exc)
    conn.close()                      # must leave the parent's lock and files alone
    return out


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_connection_and_its_children_refuse_work_after_fork(db_path):
    conn = kvcy.connect(db_path, **SMALL)
    try:
        conn.put_many([(b"k%d" % i, b"v%d" % i) for i in range(2000)])
        conn.flush(wait=False)                        # background work running at the fork
        it = conn.scan()
        next(it)
        cur = conn.cursor().scan()
        snap = conn.snapshot()
        txn = conn.begin()
        txn.put(b"txn", b"child")
        txn_it = txn.scan()
        next(txn_it)
        txn_cur = txn.cursor().scan()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:                                  # the child: report, then _exit
            status = 1
            try:
                os.close(read_fd)
                os.write(write_fd, json.dumps(_in_child(conn, it, cur, snap, txn, txn_it, txn_cur)).encode())
                status = 0
            finally:
                os._exit(status)
        os.close(write_fd)
        deadline = time.monotonic() + 60
        data = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_fd], [], [], 1)
            if ready:
                chunk = os.read(read_fd, 65536)
                if not chunk:
                    break
                data += chunk
        os.close(read_fd)
        for _ in range(600):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, 9)
            pytest.fail("the forked child hung")
        assert os.waitstatus_to_exitcode(status) == 0
        outcomes = json.loads(data)
        wrong = {name: outcome for name, outcome in outcomes.items()
                 if outcome != "ProgrammingError fork"}
        assert not wrong, wrong
        # The parent is untouched: it reads, writes and still holds the lock.
        assert next(it)[0].startswith(b"k") and next(txn_it)[0].startswith(b"k")
        assert conn.get(b"k1") == b"v1" and conn.get(b"c") is None
        txn.commit()
        conn.put(b"after", b"fork")
        with pytest.raises(OperationalError, match="locked"):
            kvcy.connect(db_path)
    finally:
        conn.close()
    with kvcy.connect(db_path) as conn:
        assert conn.get_many([b"txn", b"after", b"c"]) == [b"child", b"fork", None]


# --- interpreter exit while background work runs -------------------------------------------

EXIT_DURING_WORK = '''
import json, sys, threading
import kvcy

path, first, options = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
conn = kvcy.connect(path, **options)
out = sys.stdout
lock = threading.Lock()

def ack(key):
    with lock:
        out.write(key.decode() + "\\n")
        out.flush()

for i in range(first, first + 3000):
    key = b"m%07d" % i
    conn.put(key, b"v" * 200)
    ack(key)
conn.flush(wait=False)                 # a flush running at exit
threading.Thread(target=conn.compact_range, daemon=True).start()   # and a compaction

def writer(t):
    i = 0
    while True:
        key = b"d%d-%07d" % (t, first + i)
        conn.put(key, b"w" * 200)
        ack(key)
        i += 1

for t in range(2):
    threading.Thread(target=writer, args=(t,), daemon=True).start()
threading.Event().wait(0.05)
# No close(): the interpreter exits with the background thread at work.
'''


def _exit_during_work(tmp_path, rounds):
    db = tmp_path / "db"
    acked = []
    for rnd in range(rounds):
        started = time.monotonic()
        out = run_child(tmp_path, EXIT_DURING_WORK, db, rnd * 100000, json.dumps(SMALL),
                        timeout=120)
        assert time.monotonic() - started < 60, "round %d: exit took too long" % rnd
        acked += [line.encode() for line in out.split("\n")[:-1]]
        with kvcy.connect(db) as conn:
            missing = [k for k, v in zip(acked, conn.get_many(acked)) if v is None]
        assert not missing, "round %d: acknowledged writes lost at exit: %s" % (rnd, missing[:5])
    return len(acked)


def test_interpreter_exit_during_background_work(tmp_path):
    _exit_during_work(tmp_path, rounds=2)


@pytest.mark.slow
def test_interpreter_exit_during_background_work_many_rounds(tmp_path):
    acked = _exit_during_work(tmp_path, rounds=30)
    print("exit during background work: 30 exits, %d acknowledged writes kept" % acked)
