"""I/O-error and ENOSPC loops (SQLite's ioerr tests): fail the N-th file
operation of a workload, for N = 1, 2, 3, ... until the workload runs
through untouched.

The workload (WORKLOAD) opens a database through a tests/fault_env.FaultEnv,
writes puts, batches, deletes and large values, flushes three times (the
third flush lets a background compaction start), compacts by hand, reads
everything back, closes, and reopens twice (once through the flush-the-log
path, once through the reuse-the-log path) with more writes and reads.
Every faultable operation counts: create, open, append, sync, rename,
remove, read and directory sync of every database file (the advisory LOG
file is left out; test_log_file_failures_never_fail_an_operation covers it).

Two ways of failing, each with EIO and with ENOSPC (an ENOSPC append writes
half of its bytes first):
  * once: only the N-th operation fails; the workload goes on, so later
    steps meet the sticky error state, a reopen and a working database;
  * persist: the N-th and every later operation fail (a disk that stays
    full or dead); the workload stops at the first error and closes.
After each run, with the faults cleared:
  * every call that failed raised OperationalError whose text names the
    error (EIO / ENOSPC), also when it reports an earlier latched failure;
  * every read that returned agreed with the model;
  * a plain open succeeds with paranoid checks (no repair), drops nothing
    but a torn tail, and its full read (get_many and scans both ways) is the
    model: every acknowledged write, and each write whose call failed
    either wholly present or wholly absent;
  * no orphan remains: the tables on disk are exactly the live ones, one
    log, one MANIFEST, no temporary file; the database takes a write.

The default suite runs, for each kind of operation on each kind of file, one
of its N (a different one in each mode; about 30 runs per mode);
KVCY_SLOW=1 runs every N.
"""
import contextlib
import errno
import itertools
import os
import shutil

import pytest

import kvcy
from kvcy import OperationalError
from kvcy import filename
from kvcy.version_edit import VersionEdit

from background_helpers import close_and_find_orphans, wait_until_idle
from fault_env import FAULT_OPS, FaultEnv, UnsyncedPosixEnv

KIB = 1024

# Memtables switch only when the workload flushes; three level-0 tables
# start a background compaction; small blocks make tables of many blocks.
OPTIONS = {"memtable_max_bytes": 192 * KIB, "level0_compaction_trigger": 3,
           "block_size": 1024, "sync": False}

# How a write refused by the sticky error state begins (kvcy/engine.py).
LATCHED = "cannot write: an earlier"

# The checks need no fsync either (no power loss is simulated here).
UNSYNCED = UnsyncedPosixEnv()

ERRNO_NAMES = {errno.EIO: "EIO", errno.ENOSPC: "ENOSPC"}

N_KEYS = 60


def _key(i):
    return b"k%03d" % (i % N_KEYS)


def _value(step, size=20):
    return b"v%d:" % step + bytes([97 + step % 26]) * size


def _writes(first, count, big_every=0):
    """count write ops numbered from first: puts, batches, deletes."""
    ops = []
    for i in range(first, first + count):
        r = i % 10
        if big_every and i % big_every == 0:
            ops.append(("put", (_key(i * 7), _value(i, 40 * KIB))))    # spans log blocks
        elif r < 5:
            ops.append(("put", (_key(i * 7), _value(i, i % 90))))
        elif r < 7:
            ops.append(("put_many", [(_key(i * 3 + j), _value(i, j)) for j in range(5)]))
        elif r < 9:
            ops.append(("delete", _key(i * 11)))
        else:
            ops.append(("delete_many", [_key(i * 5 + j) for j in range(3)]))
    return ops


WORKLOAD = (
    [("open",)] + _writes(0, 40, big_every=17) + [("flush",)]
    + _writes(40, 30) + [("flush",), ("read",)]
    + _writes(70, 30, big_every=13) + [("flush",), ("settle",), ("read",)]
    # A compaction, then large values that make the log too big to reuse.
    + [("compact",)] + _writes(100, 20, big_every=6) + [("read",), ("close",)]
    # Reopen: the log is flushed to a table by the open; writes, a flush.
    + [("open",), ("read",)] + _writes(120, 25, big_every=11) + [("flush",), ("read",),
                                                                 ("close",)]
    # Reopen of a small clean log: reused and appended to.
    + [("open",)] + _writes(145, 10) + [("read",), ("close",)]
)


def _apply(model, op):
    kind, arg = op
    if kind == "put":
        model[arg[0]] = arg[1]
    elif kind == "delete":
        model.pop(arg, None)
    elif kind == "put_many":
        model.update(arg)
    else:
        for k in arg:
            model.pop(k, None)


def _write(conn, op):
    kind, arg = op
    if kind == "put":
        conn.put(arg[0], arg[1])
    elif kind == "delete":
        conn.delete(arg)
    elif kind == "put_many":
        conn.put_many(arg)
    else:
        conn.delete_many(arg)


ALL_KEYS = [_key(i) for i in range(N_KEYS)]


def _not_info_log(path):
    return os.path.basename(path) not in (filename.INFO_LOG, filename.INFO_LOG_OLD)


class IoErrRun:
    """One run of WORKLOAD with the N-th operation failing."""

    def __init__(self, path, env, code, persist):
        self.path = path
        self.env = env
        self.code = code
        self.persist = persist
        self.conn = None
        self.history = []        # (op, uncertain): writes in order
        self.errors = []         # (step, exception)
        self.open_flushes = []   # tables each successful open wrote from its log

    # -- the model: acknowledged writes, plus any subset of the failed ones --

    def states(self):
        uncertain = [i for i, (_, maybe) in enumerate(self.history) if maybe]
        assert len(uncertain) <= 4, "too many failed writes to enumerate: %d" % len(uncertain)
        out = []
        for chosen in itertools.product((False, True), repeat=len(uncertain)):
            skip = {i for i, keep in zip(uncertain, chosen) if not keep}
            model = {}
            for i, (op, _) in enumerate(self.history):
                if i not in skip:
                    _apply(model, op)
            if model not in out:
                out.append(model)
        return out

    def check_reads(self, conn, where):
        """Point reads and scans both ways agree with one state of the model."""
        got = {k: v for k, v in zip(ALL_KEYS, conn.get_many(ALL_KEYS)) if v is not None}
        forward = list(conn.scan())
        backward = list(conn.scan(reverse=True))
        for state in self.states():
            if got == state:
                break
        else:
            pytest.fail("%s: reads do not match the model; keys wrong: %s" % (
                where, sorted(k for k in set(got) | set(self.states()[0])
                              if got.get(k) != self.states()[0].get(k))[:10]))
        assert forward == sorted(got.items()), "%s: forward scan disagrees" % where
        assert backward == sorted(got.items(), reverse=True), \
            "%s: reverse scan disagrees" % where

    # -- running the workload -------------------------------------------------

    def _failed(self, step, exc):
        where = "step %d %s" % (step, WORKLOAD[step][0])
        assert isinstance(exc, OperationalError), "%s raised %r, not OperationalError" % (
            where, exc)
        text = str(exc)
        assert ERRNO_NAMES[self.code] in text, "%s: the error does not say why: %s" % (
            where, text)
        self.errors.append((step, exc))

    def run(self):
        for step, op in enumerate(WORKLOAD):
            if self.persist and self.errors:
                break
            kind = op[0]
            try:
                self._step(step, op)
            except kvcy.Error as exc:
                if kind in ("put", "delete", "put_many", "delete_many"):
                    if str(exc).startswith(LATCHED):
                        self.history.pop()             # refused before the WAL saw it
                    else:
                        self.history[-1] = (op, True)  # failed: maybe applied, maybe not
                elif kind == "open":
                    self.conn = None
                elif kind == "close":
                    self.conn = None
                self._failed(step, exc)
        if self.conn is not None:
            with contextlib.suppress(OperationalError):
                self.conn.close()
            self.conn = None

    def _step(self, step, op):
        kind = op[0]
        if kind == "open":
            self.conn = None
            self.conn = kvcy.connect(self.path, env=self.env, **OPTIONS)
            self.open_flushes.append(self.conn.stats()["flushes"])
            wait_until_idle(self.conn)
            return
        conn = self.conn
        if conn is None:
            return                       # the open failed: the session's steps are skipped
        if kind == "close":
            self.conn = None
            conn.close()
        elif kind == "flush":
            conn.flush()
            wait_until_idle(conn)
        elif kind == "settle":
            wait_until_idle(conn)
        elif kind == "compact":
            conn.compact_range()
            wait_until_idle(conn)
        elif kind == "read":
            self.check_reads(conn, "step %d" % step)
        else:
            self.history.append((op, False))
            _write(conn, op)


def check_reopened(run, where):
    """A plain open: no repair, the model, no orphan, and it takes writes."""
    with kvcy.connect(run.path, env=UNSYNCED) as conn:
        stats = conn.stats()
        assert stats["dropped_bytes"] == 0, where
        run.check_reads(conn, where + ", reopened")
        on_disk = {}
        for name in os.listdir(run.path):
            assert not name.endswith(".tmp"), "%s: temporary file %s left" % (where, name)
            parsed = filename.parse_file_name(name)
            assert parsed is None or parsed[0] != "dbtmp", "%s: %s left" % (where, name)
            if parsed and parsed[1] is not None:
                on_disk.setdefault(parsed[0], set()).add(parsed[1])
        assert len(on_disk.get("log", ())) == 1, "%s: logs %s" % (where, on_disk.get("log"))
        assert len(on_disk.get("manifest", ())) == 1, "%s: manifests %s" % (
            where, on_disk.get("manifest"))
        conn.put(b"after", b"reopen")
        orphans, missing = close_and_find_orphans(conn, run.path)
    assert not orphans and not missing, "%s: orphan tables %s, missing %s" % (
        where, orphans, missing)
    with kvcy.connect(run.path, env=UNSYNCED) as conn:
        assert conn.get(b"after") == b"reopen", where


def run_case(tmp_path, n, code, persist):
    """Run the workload failing operation n; check; return the run's env."""
    mode = "%s-%s" % (ERRNO_NAMES[code], "persist" if persist else "once")
    path = tmp_path / ("%s-n%d" % (mode, n))
    env = FaultEnv(UnsyncedPosixEnv())
    env.fail_nth(n, code, ops=FAULT_OPS, persist=persist, only=_not_info_log)
    run = IoErrRun(path, env, code, persist)
    where = "%s at op %d" % (mode, n)
    try:
        run.run()
        counted, injected, injected_ops = env.counted, env.injected, env.injected_ops
        env.clear_faults()
        if injected:
            # Only deleting an obsolete file may fail unseen (the LOG says
            # so; the next open deletes it).
            assert run.errors or all(op == "remove" for op, _ in injected_ops), (
                "%s: %s failed and no call did" % (where, injected_ops))
        else:
            assert not run.errors, "%s: errors without a fault: %r" % (where, run.errors)
        check_reopened(run, where)
    finally:
        env.clear_faults()
        if run.conn is not None:         # an assertion stopped the run: free the lock
            with contextlib.suppress(kvcy.Error):
                run.conn.close()
    shutil.rmtree(path, ignore_errors=True)
    return counted, injected


def untouched_ops(tmp_path):
    """The (op, path) of every operation the workload performs when nothing fails."""
    path = tmp_path / "untouched"
    env = FaultEnv(UnsyncedPosixEnv())
    env.fail_nth(10 ** 9, only=_not_info_log)
    run = IoErrRun(path, env, errno.EIO, persist=False)
    run.run()
    assert not run.errors and env.injected == 0
    # The second open flushes the log to a table; the third reuses the log.
    assert run.open_flushes == [0, 1, 0]
    ops = list(env.counted_ops)
    env.clear_faults()
    check_reopened(run, "untouched")
    shutil.rmtree(path)
    return ops


def _file_kind(path):
    parsed = filename.parse_file_name(os.path.basename(path))
    return parsed[0] if parsed else "directory"


def sample(ops, turn, turns):
    """The N of the default suite: for every kind of operation on every kind
    of file (append to a log, sync of a MANIFEST, rename of CURRENT, ...),
    one of its occurrences, a different one for each of the turns; the first
    and the last operation always."""
    by_class = {}
    for n, (op, path) in enumerate(ops, 1):
        by_class.setdefault((op, _file_kind(path)), []).append(n)
    picks = {1, len(ops)}
    for numbers in by_class.values():
        picks.add(numbers[(turn * len(numbers)) // turns])
    return sorted(picks)


def ioerr_loop(tmp_path, code, persist, every_n, turn=0, turns=1):
    ops = untouched_ops(tmp_path)
    total = len(ops)
    assert total > 150, "the workload counts only %d operations" % total
    ns = range(1, total + 1) if every_n else sample(ops, turn, turns)
    failed_runs = 0
    for n in ns:
        _, injected = run_case(tmp_path, n, code, persist)
        failed_runs += bool(injected)
    # Once past the last operation the workload runs untouched.
    _, injected = run_case(tmp_path, total + 1, code, persist)
    assert injected == 0
    assert failed_runs == len(ns)
    return total, len(ns)


MODES = [(errno.EIO, False), (errno.ENOSPC, False), (errno.EIO, True), (errno.ENOSPC, True)]
MODE_IDS = ["EIO-once", "ENOSPC-once", "EIO-persist", "ENOSPC-persist"]


@pytest.mark.parametrize("code, persist", MODES, ids=MODE_IDS)
def test_ioerr_loop_short(tmp_path, code, persist):
    ioerr_loop(tmp_path, code, persist, every_n=False, turn=MODES.index((code, persist)),
               turns=len(MODES))


@pytest.mark.slow
@pytest.mark.parametrize("code, persist", MODES, ids=MODE_IDS)
def test_ioerr_loop_every_n(tmp_path, code, persist):
    total, runs = ioerr_loop(tmp_path, code, persist, every_n=True)
    print("ioerr %s %s: N = 1..%d, %d runs" % (ERRNO_NAMES[code], persist, total, runs))


def test_log_file_failures_never_fail_an_operation(db_path):
    env = FaultEnv()
    env.fail_nth(1, errno.EIO, persist=True,
                 only=lambda p: not _not_info_log(p))
    run = IoErrRun(db_path, env, errno.EIO, persist=False)
    run.run()
    assert env.injected > 0          # the LOG's own writes failed...
    assert run.errors == []          # ...and nothing else did
    env.clear_faults()
    check_reopened(run, "LOG failing")


def test_fail_nth_fails_only_the_nth_operation(tmp_path):
    env = FaultEnv()
    f = env.new_writable_file(str(tmp_path / "f"))
    env.fail_nth(2, errno.ENOSPC, ops=("append",))
    f.append(b"one")
    with pytest.raises(OperationalError, match="no space left") as info:
        f.append(b"twotwo")
    assert info.value.errno == errno.ENOSPC
    f.append(b"three")                    # once: the next one succeeds
    assert (env.counted, env.injected) == (2, 1)
    f.close()
    # An ENOSPC append keeps the half that fitted, as a full disk does.
    assert (tmp_path / "f").read_bytes() == b"one" + b"two" + b"three"


def test_fail_nth_persist_and_path_filter(tmp_path):
    env = FaultEnv()
    a = env.new_writable_file(str(tmp_path / "a"))
    b = env.new_writable_file(str(tmp_path / "b"))
    env.fail_nth(1, errno.EIO, ops=("append", "sync"), persist=True,
                 only=lambda p: p.endswith("a"))
    b.append(b"fine")
    for call in (lambda: a.append(b"x"), a.sync, lambda: a.append(b"y")):
        with pytest.raises(OperationalError, match="input/output error"):
            call()
    b.sync()
    assert env.injected == 3
    with pytest.raises(ValueError):
        env.fail_nth(0)
    with pytest.raises(OperationalError, match="input/output error"):
        env.fail_nth(1, ops=("open",)) or env.new_random_access_file(str(tmp_path / "b"))
    a.close()
    b.close()


# --- a creating open that fails ------------------------------------------------------

@pytest.mark.parametrize("crash", [False, True], ids=["fails", "fails-then-power-loss"])
def test_a_failed_creation_leaves_a_directory_the_next_open_creates(tmp_path, crash):
    # Found by the loop: a creating open that failed after making its log
    # (or its MANIFEST) but before CURRENT left a directory that every later
    # open refused as corrupt ("holds database files but no CURRENT file").
    n = 0
    while True:
        n += 1
        path = tmp_path / ("n%d" % n)
        env = FaultEnv()
        env.fail_nth(n, errno.ENOSPC, persist=True, only=_not_info_log)
        with contextlib.suppress(OperationalError):
            kvcy.connect(path, env=env).close()
        injected = env.injected
        env.clear_faults()
        if crash:
            env.simulate_crash()
        with kvcy.connect(path) as conn:
            assert list(conn.scan()) == [], n
            conn.put(b"k", b"v")
        with kvcy.connect(path) as conn:
            assert conn.get(b"k") == b"v", n
            assert len([f for f in os.listdir(path) if f.startswith("MANIFEST-")]) == 1
        if not injected:
            break
    assert n > 8, "the creating open made only %d file operations" % n


@pytest.mark.parametrize("where", ["log", "table"])
def test_a_directory_without_current_that_holds_data_is_still_refused(db_path, where):
    with kvcy.connect(db_path) as conn:
        conn.put(b"k", b"v")
        if where == "table":
            conn.flush()
    os.remove(db_path / "CURRENT")
    for readonly in (False, True):
        with pytest.raises(kvcy.CorruptionError, match="no CURRENT"):
            kvcy.connect(db_path, readonly=readonly)


# --- a MANIFEST write that fails ----------------------------------------------------

@pytest.mark.parametrize("op, code", [("sync", errno.EIO), ("append", errno.ENOSPC)])
def test_a_failed_manifest_write_deletes_no_file_the_manifest_may_name(db_path, op, code):
    # Found by the loop: a flush whose MANIFEST sync failed left its edit in
    # the file (the bytes had reached the OS), yet close() deleted the table
    # as unreferenced and the old log as obsolete-to-be; the next open found
    # "table 000006.sst listed in the MANIFEST ... is missing".
    env = FaultEnv(UnsyncedPosixEnv())
    model = {}
    conn = kvcy.connect(db_path, env=env)
    try:
        for i in range(200):
            conn.put(b"k%03d" % i, b"v%d" % i)
            model[b"k%03d" % i] = b"v%d" % i
        conn.flush()                                # the session's MANIFEST exists now
        for i in range(100, 300):
            conn.put(b"k%03d" % i, b"w%d" % i)
            model[b"k%03d" % i] = b"w%d" % i
        env.fail_nth(1, code, ops=(op,), only=lambda p: "MANIFEST" in p)
        with pytest.raises(OperationalError, match=ERRNO_NAMES[code]):
            conn.flush()
        assert env.injected == 1
        env.clear_faults()
        with pytest.raises(OperationalError, match=ERRNO_NAMES[code]):
            conn.put(b"later", b"x")                 # writes are latched off
        versions = conn._engine.versions             # and so is the MANIFEST
        with pytest.raises(OperationalError, match="an earlier MANIFEST write failed"):
            with versions.lock:
                versions.log_and_apply(VersionEdit())
        assert dict(zip(model, conn.get_many(list(model)))) == model
    finally:
        conn.close()
    with kvcy.connect(db_path) as conn:
        assert dict(zip(model, conn.get_many(list(model)))) == model
        assert close_and_find_orphans(conn, db_path) == ([], [])
