"""Crash safety around flushes (docs/DESIGN.md "Durability contract").

(a) kill -9: a child process writes with a small memtable_max_bytes, so
memtable switches and background flushes run all the time, and acknowledges
each write on stdout; the parent kills it at a random moment, reopens
(alternately read-only and writable) and checks that the state is exactly
the model after every acknowledged op, possibly plus the one in flight, with
no partial batch.  Rounds continue on the same directory.  The op sequence
and the checks are tests/test_crash.py's; the seed is random unless
KVCY_CRASH_SEED is set, and failures print it.

(b) power loss at each point of a flush: a FaultEnv subclass turns the
first file operation that matches a trigger into a simulated power loss
(unsynced bytes and files whose directory entry was never synced vanish;
every later operation of the "dead" process fails), so the crash lands
before the table is complete, after the table but before the MANIFEST edit,
after the edit but before the old log is deleted, or after the flush.  Every
write was made with sync=True, so reopening with the plain env must find
every one of them exactly once (the last sequence says nothing was applied
twice or dropped) and nothing else.
"""
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

import kvcy
import kvcy.background
from kvcy import OperationalError
from kvcy import filename

from background_helpers import close_and_find_orphans
from fault_env import FaultEnv
from test_crash import (N_KEYS, apply_op, child_env, make_op, partial_batches, read_state,
                        wait_for_ready, write_child_script)

KIB = 1024

# Just above the arena's first 64 KiB block (test_flush.py explains why not
# smaller): memtables of two blocks, so a flush every few hundred writes.
SMALL_MEMTABLE = 80 * KIB

# Flush crash safety is tested on its own; compaction is held off (its crash
# safety is tested in test_compaction.py).
NO_COMPACTION = {"level0_compaction_trigger": 1000, "level0_slowdown_trigger": 1000,
                 "level0_stop_trigger": 1000}


# --- (a) kill -9 while flushes run --------------------------------------------------------------


ROUND_OPTIONS = [
    {"memtable_max_bytes": SMALL_MEMTABLE, **NO_COMPACTION},
    {"memtable_max_bytes": SMALL_MEMTABLE, "max_immutable_memtables": 1, **NO_COMPACTION},
    {"memtable_max_bytes": 2 * SMALL_MEMTABLE, **NO_COMPACTION, "flush_interval": 0.02,
     "memtable_min_bytes": 0},
]


def _ssts(path):
    if not path.exists():
        return set()
    return {p.name for p in path.iterdir() if p.name.endswith(".sst")}


def run_flush_crash_rounds(tmp_path, rounds, seed):
    script = tmp_path / "child.py"
    write_child_script(script)
    db = tmp_path / "db"
    rng = random.Random(seed)
    model = {}
    start = 0
    total_acked = 0
    run_flushes = 0
    for rnd in range(rounds):
        options = rng.choice(ROUND_OPTIONS)
        where = "seed=%d round=%d start=%d options=%s" % (seed, rnd, start, options)
        ack_path = tmp_path / ("acks%d.txt" % rnd)
        err_path = tmp_path / ("stderr%d.txt" % rnd)
        anytime = rng.random() < 0.2          # may kill the child during its own open
        before = _ssts(db)
        with open(ack_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, str(script), str(db), str(seed), str(start),
                 json.dumps(options)],
                stdout=out, stderr=err, env=child_env())
            try:
                if anytime:
                    time.sleep(rng.uniform(0.02, 0.6))
                else:
                    ready = wait_for_ready(proc, ack_path, time.monotonic() + 60)
                    assert ready, "%s: child did not start: %s" % (where, err_path.read_text())
                    time.sleep(rng.uniform(0.15, 0.5))
                assert proc.poll() is None, "%s: child exited early (%s): %s" % (
                    where, proc.returncode, err_path.read_text())
                proc.send_signal(signal.SIGKILL)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL, "%s: %s" % (where, err_path.read_text())
        # Tables the child made, less the one its open may have made from the logs.
        run_flushes += max(0, len(_ssts(db) - before) - 1)

        lines = ack_path.read_bytes().split(b"\n")[:-1]
        if lines and lines[0] == b"ready":
            lines = lines[1:]
        acked = [int(x) for x in lines]
        assert acked == list(range(start, start + len(acked))), where
        total_acked += len(acked)

        expected = dict(model)
        for i in acked:
            apply_op(expected, make_op(seed, i))
        in_flight = start + len(acked)
        expected_plus = dict(expected)
        apply_op(expected_plus, make_op(seed, in_flight))

        readonly = rnd % 2 == 1
        with kvcy.connect(db, readonly=readonly, **NO_COMPACTION) as conn:
            state = read_state(conn)
            stats = conn.stats()
            if not readonly:
                # Compare the directory with the tables of every level (once
                # level 0 holds level0_compaction_trigger files a compaction
                # moves them to level 1) after the background work the open
                # started is done, so a table it is still writing is no orphan.
                conn.flush()
                stats = conn.stats()
                orphans, missing = close_and_find_orphans(conn, db)
                assert not orphans and not missing, "%s: orphan tables %s, missing %s" % (
                    where, orphans, missing)
        assert stats["dropped_bytes"] == 0, where
        if state != expected and state != expected_plus:
            partial = partial_batches(state, seed, 0, in_flight)
            lost = sorted(k for k in expected if state.get(k) != expected[k]
                          and state.get(k) != expected_plus.get(k))
            extra = sorted(k for k in state if k not in expected and k not in expected_plus)
            pytest.fail("%s: recovered state is not the model after %d acked ops (+%d in "
                        "flight); keys wrong: %r; unexpected keys: %r; partial batches: %r"
                        % (where, len(acked), in_flight, lost[:10], extra[:10], partial[:10]))
        model = state
        start = in_flight + 1
    with kvcy.connect(db) as conn:
        assert read_state(conn) == model
        assert close_and_find_orphans(conn, db) == ([], [])
    return total_acked, run_flushes


def _seed():
    env = os.environ.get("KVCY_CRASH_SEED")
    return int(env) if env else random.randrange(1 << 30)


def test_kill_9_while_flushing(tmp_path):
    seed = _seed()
    acked, flushes = run_flush_crash_rounds(tmp_path, rounds=10, seed=seed)
    assert acked > 0, "seed=%d: the child acknowledged no write in any round" % seed
    assert flushes >= 3, "seed=%d: the children flushed only %d memtables" % (seed, flushes)


@pytest.mark.slow
def test_kill_9_while_flushing_many_rounds(tmp_path):
    seed = _seed()
    acked, flushes = run_flush_crash_rounds(tmp_path, rounds=40, seed=seed)
    assert acked > 1000, "seed=%d" % seed
    assert flushes >= 40, "seed=%d" % seed


# --- (b) power loss at each point of a flush --------------------------------------------------

class PowerLossEnv(FaultEnv):
    """A FaultEnv where the first operation matching a trigger is a power loss.

    crash_when(trigger): trigger(op, base_name) -> bool is asked before every
    faultable operation ("append", "sync", "sync_dir", "new_file", "rename",
    "remove", "read"); when it says yes, simulate_crash() runs and the
    operation raises.  From then on the machine is off: every faultable
    operation raises, so the dead process cannot change the files any more.
    """

    def __init__(self):
        super().__init__()
        self.trigger = None
        self.crashed = threading.Event()
        self.crash_point = None

    def crash_when(self, trigger):
        self.trigger = trigger

    def crash_now(self, what="explicit crash"):
        self.trigger = None
        self.crash_point = what
        self.simulate_crash()
        self.crashed.set()

    def _maybe_fail(self, op, path):
        if self.crashed.is_set():
            raise OperationalError("cannot %s %s: the power is off (simulated)" % (op, path))
        name = os.path.basename(path)
        if self.trigger is not None and self.trigger(op, name):
            self.crash_now("%s %s" % (op, name))
            raise OperationalError("power lost before %s %s (simulated)" % (op, path))
        super()._maybe_fail(op, path)


def _nth(n, op, predicate):
    """A trigger that fires at the n-th (from 1) op on files matching predicate."""
    seen = [0]

    def trigger(o, name):
        if o == op and predicate(name):
            seen[0] += 1
            return seen[0] >= n
        return False
    return trigger


def _sst(name):
    return name.endswith(".sst")


def _log(name):
    return name.endswith(".log")


def _manifest(name):
    return name.startswith("MANIFEST-")


# name -> trigger factory (None: crash after the flush completed)
CRASH_POINTS = {
    "new-log-created": lambda: _nth(1, "new_file", _log),
    "table-created": lambda: _nth(1, "new_file", _sst),
    "table-first-block": lambda: _nth(1, "append", _sst),
    "table-half-written": lambda: _nth(6, "append", _sst),
    "table-before-sync": lambda: _nth(1, "sync", _sst),
    "table-done-edit-not-written": lambda: _nth(1, "append", _manifest),
    "edit-written-not-synced": lambda: _nth(1, "sync", _manifest),
    "edit-synced-old-log-not-deleted": lambda: _nth(1, "remove", _log),
    "after-the-flush": None,
}

def _synced_ops(rng, n, first):
    ops = []
    for i in range(first, first + n):
        r = rng.random()
        key = b"k%03d" % rng.randrange(120)
        if r < 0.6:
            ops.append(("put", (key, b"v%d:" % i + bytes([65 + i % 26]) * rng.randrange(60, 140))))
        elif r < 0.75:
            ops.append(("delete", key))
        elif r < 0.92:
            sample = rng.sample(range(120), rng.randrange(2, 8))
            pairs = [(b"k%03d" % k, b"b%d" % i) for k in sample]
            ops.append(("put_many", pairs))
        else:
            ops.append(("delete_many", [b"k%03d" % k for k in rng.sample(range(120), 3)]))
    return ops


def _do(conn, op, model):
    kind, arg = op
    if kind == "put":
        conn.put(arg[0], arg[1], sync=True)
        model[arg[0]] = arg[1]
        return 1
    if kind == "delete":
        conn.delete(arg, sync=True)
        model.pop(arg, None)
        return 1
    if kind == "put_many":
        conn.put_many(arg, sync=True)
        model.update(arg)
        return len(arg)
    conn.delete_many(arg, sync=True)
    for k in arg:
        model.pop(k, None)
    return len(arg)


ALL_KEYS = [b"k%03d" % i for i in range(120)] + [b"never-written"]


def _state(conn):
    return {k: v for k, v in zip(ALL_KEYS, conn.get_many(ALL_KEYS)) if v is not None}


def _files(path):
    out = {}
    for name in os.listdir(path):
        parsed = filename.parse_file_name(name)
        if parsed and parsed[1] is not None:
            out.setdefault(parsed[0], []).append(parsed[1])
    return out


def _check_reopened(path, model, last_sequence, where):
    """Open with the plain env: exactly the synced writes, every one once."""
    with kvcy.connect(path) as conn:
        assert _state(conn) == model, where
        stats = conn.stats()
        assert stats["last_sequence"] == last_sequence, where
        assert stats["dropped_bytes"] == 0, where
        files = _files(path)
        assert stats["level0_files"] == len(files.get("sst", [])), (where, files)
        assert len(files.get("manifest", [])) == 1, (where, files)
        conn.put(b"k000", b"after", sync=True)
    with kvcy.connect(path) as conn:                  # and it keeps working
        assert _state(conn) == {**model, b"k000": b"after"}, where
        assert conn.stats()["last_sequence"] == last_sequence + 1, where


def _open_with_synced_history(path, env, seed):
    """A database with a table from an earlier session and, opened with env,
    a memtable of sync=True writes; returns (conn, model, number of entries)."""
    rng = random.Random(seed)
    model = {}
    with kvcy.connect(path) as conn:   # an earlier session leaves a table behind
        entries = sum(_do(conn, op, model) for op in _synced_ops(rng, 60, 0))
        conn.flush()
    conn = kvcy.connect(path, env=env)
    try:
        assert conn.stats()["level0_files"] == 1
        entries += sum(_do(conn, op, model) for op in _synced_ops(rng, 150, 1000))
    except BaseException:
        conn.close()
        raise
    return conn, model, entries


def _power_loss_during_flush(tmp_path, point):
    path = tmp_path / "db"
    env = PowerLossEnv()
    conn, model, entries = _open_with_synced_history(path, env, seed=len(point))
    try:
        make_trigger = CRASH_POINTS[point]
        if make_trigger is None:
            conn.flush()
            assert conn.stats()["level0_files"] == 2
            deadline = time.monotonic() + 10
            while len(_files(path).get("log", [])) > 1 and time.monotonic() < deadline:
                time.sleep(0.005)
            env.crash_now()
        else:
            env.crash_when(make_trigger())
            with contextlib.suppress(OperationalError):
                conn.flush()
            assert env.crashed.wait(10), "the crash point %r was never reached" % point
    finally:
        with contextlib.suppress(OperationalError):
            conn.close()
    _check_reopened(path, model, entries, "crash at %s (%s)" % (point, env.crash_point))


SAFE_POINTS = [p for p in CRASH_POINTS
               if p not in ("edit-synced-old-log-not-deleted", "after-the-flush")]


@pytest.mark.parametrize("point", SAFE_POINTS)
def test_power_loss_before_the_flush_is_recorded(tmp_path, point):
    _power_loss_during_flush(tmp_path, point)


@pytest.mark.parametrize("point", ["edit-synced-old-log-not-deleted", "after-the-flush"])
def test_power_loss_after_the_flush_is_recorded(tmp_path, point):
    _power_loss_during_flush(tmp_path, point)


@pytest.mark.parametrize("point", ["edit-synced-old-log-not-deleted"])
def test_the_crash_point_is_reached_in_a_flush(tmp_path, point):
    # The control for the xfail test above: with the same workload the trigger
    # really fires during the flush, so that test fails because of the crash
    # where it says and not because the crash never came.  (The passing
    # tests check env.crashed themselves.)
    env = PowerLossEnv()
    conn, model, entries = _open_with_synced_history(tmp_path / "db", env, seed=len(point))
    try:
        hits = []
        trigger = CRASH_POINTS[point]()
        env.crash_when(lambda op, name: bool(trigger(op, name) and hits.append((op, name))))
        conn.flush()
        deadline = time.monotonic() + 10          # the old log goes just after the flush
        while not hits and time.monotonic() < deadline:
            time.sleep(0.005)
        assert hits, "trigger %r did not fire during a flush" % point
        assert not env.crashed.is_set()
        assert _state(conn) == model
    finally:
        conn.close()


def test_synced_writes_made_while_a_flush_runs_survive_power_loss(tmp_path, monkeypatch):
    path = tmp_path / "db"
    gate = threading.Event()
    real = kvcy.background.write_level0_table

    def gated(*args, **kwargs):
        gate.wait(timeout=30)
        return real(*args, **kwargs)

    monkeypatch.setattr(kvcy.background, "write_level0_table", gated)
    env = PowerLossEnv()
    model = {}
    conn = kvcy.connect(path, env=env)
    try:
        for i in range(50):
            conn.put(b"before%02d" % i, b"1", sync=True)
            model[b"before%02d" % i] = b"1"
        conn.flush(wait=False)                # switch: a new WAL; the flush waits at the gate
        for i in range(50):
            conn.put(b"during%02d" % i, b"2", sync=True)   # fsynced into the new WAL
            model[b"during%02d" % i] = b"2"
        env.crash_now()
    finally:
        gate.set()
        with contextlib.suppress(OperationalError):
            conn.close()
    keys = sorted(model)
    with kvcy.connect(path) as conn:
        got = dict(zip(keys, conn.get_many(keys)))
    lost = [k for k in keys if got[k] != model[k]]
    assert not lost, "synced writes lost at power loss: %r..." % lost[:5]


def test_a_recorded_flush_leaves_only_durable_files(tmp_path):
    path = tmp_path / "db"
    env = PowerLossEnv()
    with kvcy.connect(path, env=env) as conn:
        for i in range(100):
            conn.put(b"k%03d" % i, b"v", sync=True)
        conn.flush()
        names = sorted(n for n in os.listdir(path) if n.endswith((".sst", ".log")))
        not_durable = [n for n in names if env.is_new(os.path.join(path, n))]
        assert not not_durable, "files the MANIFEST relies on are not durable: %s" % not_durable
