"""Compaction through the engine (kvcy/compaction.py, kvcy/engine.py).

With small memtables, tables and level targets, a few MiB of writes build
several levels, so the tests here see what compaction leaves behind: levels
>= 1 of disjoint sorted files, every write readable before and after a
reopen, deletions and overwrites reclaimed by compact_range, old versions
kept exactly as long as a snapshot needs them, write stalls while level 0
is deep, a failed compaction latched as a background error, obsolete tables
kept while an iterator pins them and deleted afterwards, and kill -9 at any
moment of constant compactions losing nothing acknowledged.

The kill -9 test reuses tests/test_crash.py's op sequence and checks; the
seed is random unless KVCY_CRASH_SEED is set, and failures print it.
"""
import contextlib
import errno
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
import kvcy.engine
from kvcy import OperationalError
from kvcy.compaction_picker import pick_compaction
from kvcy.env import PosixEnv
from kvcy.version_set import internal_sort_key

from fault_env import FaultEnv
from test_flush_crash import PowerLossEnv, _nth, _sst
from test_crash import (N_KEYS, apply_op, child_env, make_op, partial_batches, read_state,
                        wait_for_ready, write_child_script)

KIB = 1024
MIB = 1024 * KIB

# The memtable arena counts whole 64 KiB blocks (tests/test_flush.py): 96 KiB
# gives memtables of two blocks, about 64 KiB of data each.
MEMTABLE = 96 * KIB

# Several levels from a few MiB: L1 holds 256 KiB, L2 2.5 MiB, L3 25 MiB.
SMALL = dict(memtable_max_bytes=MEMTABLE, target_file_bytes=64 * KIB,
             level1_max_bytes=256 * KIB)

# Only manual compactions (compact_range) run.
NO_AUTO_COMPACTION = dict(level0_compaction_trigger=1000, level0_slowdown_trigger=1000,
                          level0_stop_trigger=1000, level1_max_bytes=1 << 40)


# --- helpers ----------------------------------------------------------------------------------

def ssts(path):
    """{number: size} of the .sst files in the directory."""
    out = {}
    for name in os.listdir(path):
        if name.endswith(".sst"):
            with contextlib.suppress(FileNotFoundError):
                out[int(name[:-4])] = os.path.getsize(os.path.join(path, name))
    return out


def current_files(conn):
    return conn._engine.versions.current.files


def live_numbers(conn):
    return {f.number for level in current_files(conn) for f in level}


def version_bytes(conn):
    return sum(f.file_size for level in current_files(conn) for f in level)


def check_levels(conn):
    """Every level >= 1: files sorted by smallest key, each file's user-key
    range non-empty and strictly before the next file's."""
    for level, files in enumerate(current_files(conn)):
        for f in files:
            assert f.smallest_user <= f.largest_user, (level, f)
        if level == 0:
            continue
        keys = [internal_sort_key(f.smallest) for f in files]
        assert keys == sorted(keys), "level %d is not sorted: %r" % (level, files)
        for a, b in zip(files, files[1:]):
            assert a.largest_user < b.smallest_user, (
                "level %d: files %d %r..%r and %d %r..%r overlap"
                % (level, a.number, a.smallest_user, a.largest_user,
                   b.number, b.smallest_user, b.largest_user))


def wait_idle(conn, timeout=30.0):
    """Until no flush is waiting, the background thread is idle and the
    picker finds nothing to compact."""
    engine = conn._engine
    deadline = time.monotonic() + timeout
    while True:
        assert engine.background_error is None, engine.background_error
        with engine.background.cv:
            busy = engine.background.busy or engine.background.pending
        if (not busy and not engine.imm
                and pick_compaction(engine.versions.current, engine.options) is None):
            return
        assert time.monotonic() < deadline, "compaction did not settle in %.0fs" % timeout
        time.sleep(0.005)


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def quiet_compact_range(conn, start=None, stop=None):
    """compact_range with no flush or compaction running beside it, for tests
    that count exactly what it keeps and drops.  The connection must be open
    with NO_AUTO_COMPACTION.  (Flushing and settling first also keeps clear
    of test_writes_made_while_flushes_were_queued_are_flushed_too.)"""
    assert conn._engine.options.level0_compaction_trigger >= 1000
    conn.flush()
    wait_idle(conn)
    conn.compact_range(start, stop)


def settled_compact_range(conn, start=None, stop=None):
    """compact_range once queued flushes are done (see the test
    test_writes_made_while_flushes_were_queued_are_flushed_too);
    background compactions may run beside it.  Returns once all settled."""
    wait_idle(conn)
    conn.compact_range(start, stop)
    wait_idle(conn)


def check_contents(conn, model, absent=()):
    keys = sorted(model)
    assert conn.get_many(keys) == [model[k] for k in keys]
    assert list(conn.scan()) == [(k, model[k]) for k in keys]
    for key in absent:
        assert conn.get(key) is None


def level_stats(conn):
    stats = conn.stats()
    return [stats["level%d_files" % n] for n in range(len(current_files(conn)))]


def random_writes(conn, rng, n_keys, n_writes, batch=250, value_bytes=100, model=None):
    """n_writes puts of random keys (of n_keys) with incompressible values,
    in put_many batches; returns the model."""
    model = {} if model is None else model
    for start in range(0, n_writes, batch):
        pairs = [(b"key%08d" % rng.randrange(n_keys), rng.randbytes(value_bytes))
                 for _ in range(min(batch, n_writes - start))]
        conn.put_many(pairs)
        model.update(pairs)
    return model


# --- (1) levels form, stay disjoint and hold every write --------------------------------------

def test_writes_form_several_disjoint_levels_that_read_back(db_path):
    rng = random.Random(1)
    with kvcy.connect(db_path, **SMALL) as conn:
        model = random_writes(conn, rng, n_keys=24_000, n_writes=32_000)   # ~3.7 MiB
        conn.flush()
        wait_idle(conn)
        files = level_stats(conn)
        stats = conn.stats()
        deep = [n for n in range(1, len(files)) if files[n]]
        assert len(deep) >= 2, "levels: %r" % files
        assert files[0] < SMALL.get("level0_compaction_trigger", 4), files
        assert stats["compactions"] >= 5, stats
        assert stats["compaction_bytes_written"] > 0
        check_levels(conn)
        # Outputs are cut near target_file_bytes (only between user keys).
        sizes = [f.file_size for level in current_files(conn)[1:] for f in level]
        assert max(sizes) < 2 * SMALL["target_file_bytes"], sorted(sizes)[-5:]
        # Each deeper level respects its target after settling.
        for level in range(1, len(files) - 1):
            assert stats["level%d_bytes" % level] <= SMALL["level1_max_bytes"] * 10 ** (level - 1)
        check_contents(conn, model, absent=[b"key", b"key%08d" % 24_000, b"zzz"])
        assert live_numbers(conn) <= set(ssts(db_path))
    with kvcy.connect(db_path, **SMALL) as conn:
        check_levels(conn)
        assert level_stats(conn)[1:] == files[1:]
        check_contents(conn, model)
        # Ranges and reverse scans cross file and level boundaries correctly.
        keys = sorted(model)
        lo, hi = keys[len(keys) // 3], keys[2 * len(keys) // 3]
        assert [k for k, _ in conn.scan(lo, hi)] == [k for k in keys if lo <= k < hi]
        assert [k for k, _ in conn.scan(reverse=True)] == keys[::-1]


def test_overwrites_are_merged_to_the_newest_value(db_path):
    rng = random.Random(2)
    with kvcy.connect(db_path, **SMALL) as conn:
        model = {}
        for _ in range(6):           # every key rewritten, ~6 versions each on disk at first
            random_writes(conn, rng, n_keys=4000, n_writes=4000, model=model)
        conn.flush()
        wait_idle(conn)
        check_levels(conn)
        check_contents(conn, model)
        assert conn.stats()["compaction_entries_dropped"] > 0
    with kvcy.connect(db_path, **SMALL) as conn:
        check_contents(conn, model)


# --- (2) deleting everything leaves nothing after compact_range -------------------------------

def _several_levels(path, seed, n_keys, n_writes):
    """A database whose data spans several levels; returns the model."""
    with kvcy.connect(path, **SMALL) as conn:
        model = random_writes(conn, random.Random(seed), n_keys=n_keys, n_writes=n_writes)
        conn.flush()
        wait_idle(conn)
        assert sum(1 for n in level_stats(conn)[1:] if n) >= 2, level_stats(conn)
    return model


def test_deleting_every_key_then_compact_range_leaves_nothing(db_path):
    model = _several_levels(db_path, 3, n_keys=16_000, n_writes=20_000)
    with kvcy.connect(db_path, **SMALL) as conn:
        before = version_bytes(conn)
        assert before > 1 * MIB
        keys = sorted(model)
        for i in range(0, len(keys), 500):
            conn.delete_many(keys[i:i + 500])
        settled_compact_range(conn)
        stats = conn.stats()
        assert version_bytes(conn) < 4 * KIB, level_stats(conn)
        assert set(ssts(db_path)) == live_numbers(conn)
        assert sum(ssts(db_path).values()) < 4 * KIB
        # Every value and every tombstone.
        assert stats["compaction_entries_dropped"] >= 2 * len(keys)
        assert list(conn.scan()) == []
        assert list(conn.scan(reverse=True)) == []
        assert conn.get_many(keys[:100]) == [None] * 100
    with kvcy.connect(db_path, **SMALL) as conn:
        assert list(conn.scan()) == []
        assert version_bytes(conn) < 4 * KIB
        assert sum(ssts(db_path).values()) < 4 * KIB, ssts(db_path)
        conn.put(b"again", b"1")
        assert list(conn.scan()) == [(b"again", b"1")]


def test_deleting_a_range_then_compact_range_keeps_the_rest(db_path):
    model = _several_levels(db_path, 4, n_keys=12_000, n_writes=15_000)
    with kvcy.connect(db_path, **SMALL) as conn:
        keys = sorted(model)
        doomed = keys[len(keys) // 4: 3 * len(keys) // 4]
        conn.delete_many(doomed)
        for k in doomed:
            del model[k]
        settled_compact_range(conn, doomed[0], doomed[-1])
        check_levels(conn)
        check_contents(conn, model, absent=doomed[:50])
        assert conn.stats()["compaction_entries_dropped"] >= len(doomed)
    with kvcy.connect(db_path, **SMALL) as conn:
        check_contents(conn, model, absent=doomed[-50:])


@pytest.mark.parametrize("call", ["flush", "compact_range"])
def test_writes_made_while_flushes_were_queued_are_flushed_too(db_path, monkeypatch, call):
    gate = threading.Event()
    real_write = kvcy.background.write_level0_table

    def gated_write(*args, **kwargs):
        gate.wait(10)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(kvcy.background, "write_level0_table", gated_write)
    options = dict(NO_AUTO_COMPACTION, memtable_max_bytes=MEMTABLE, max_immutable_memtables=1)
    with kvcy.connect(db_path, **options) as conn:
        keys = [b"k%04d" % i for i in range(1000)]
        conn.put_many([(k, b"v" * 50) for k in keys])
        conn.flush(wait=False)            # one memtable queued; its flush waits at the gate
        conn.delete_many(keys)            # the newest writes, in the memtable
        threading.Timer(0.2, gate.set).start()
        try:
            getattr(conn, call)()
        finally:
            gate.set()
        assert conn.stats()["memtable_entries"] == 0, "%s left writes unflushed" % call
        assert list(conn.scan()) == []
        if call == "flush":
            assert level_stats(conn)[0] == 2
        else:
            assert version_bytes(conn) == 0, level_stats(conn)


def test_compact_range_drops_deletions_held_in_one_table(db_path):
    # A lone level-0 table with nothing below could be moved down as is;
    # compact_range must rewrite it, or its tombstones and the values they
    # shadow would stay (regression: it used to move it).
    with kvcy.connect(db_path, **NO_AUTO_COMPACTION) as conn:
        keys = [b"k%05d" % i for i in range(2000)]
        conn.put_many([(k, b"v" * 100) for k in keys])
        conn.delete_many(keys)
        conn.compact_range()             # flushes one table holding puts and tombstones
        assert list(conn.scan()) == []
        assert version_bytes(conn) == 0, (conn.stats()["trivial_moves"], level_stats(conn))


# --- (3) space amplification after many overwrites --------------------------------------------

def test_overwrites_keep_space_amplification_low(db_path):
    n, key_bytes, value_bytes = 100_000, 16, 100
    live = n * (key_bytes + value_bytes)           # random values: snappy cannot shrink them
    keys = [b"%016d" % i for i in range(n)]
    rng = random.Random(5)
    with kvcy.connect(db_path, level1_max_bytes=4 * MIB) as conn:
        for _ in range(10):
            blob = rng.randbytes(n * value_bytes)
            for i in range(0, n, 1000):
                conn.put_many([(keys[j], blob[j * value_bytes:(j + 1) * value_bytes])
                               for j in range(i, i + 1000)])
        last = {keys[j]: blob[j * value_bytes:(j + 1) * value_bytes] for j in range(n)}
        conn.flush()
        wait_idle(conn)
        settled = version_bytes(conn)
        assert settled < 3 * live, "after settling: %.2fx" % (settled / live)
        assert conn.stats()["compaction_entries_dropped"] > 5 * n
        check_levels(conn)
        # compact_range leaves level 1 over its target: background compactions
        # run beside and after it.
        settled_compact_range(conn)
        compacted = version_bytes(conn)
        assert 0.9 * live < compacted < 2 * live, "after compact_range: %.2fx" % (
            compacted / live)
        assert set(ssts(db_path)) == live_numbers(conn)
        on_disk = sum(ssts(db_path).values())
        assert on_disk < 2 * live, "on disk: %.2fx" % (on_disk / live)
        # Every older version went, each exactly once.
        assert conn.stats()["compaction_entries_dropped"] == 9 * n
        check_levels(conn)
        sample = rng.sample(keys, 2000)
        assert conn.get_many(sample) == [last[k] for k in sample]
    with kvcy.connect(db_path, level1_max_bytes=4 * MIB) as conn:
        assert sum(ssts(db_path).values()) == on_disk
        assert sum(1 for _ in conn.scan()) == n
        assert conn.get(keys[-1]) == last[keys[-1]]


@pytest.mark.parametrize("how", ["compact_range", "background"])
def test_compaction_inputs_are_deleted_once_nothing_uses_them(db_path, how):
    # Regression: the frame running a compaction held the input Version while
    # it cleaned up, so the inputs of the last compaction stayed on disk until
    # some later version change.
    rng = random.Random(6)
    options = dict(NO_AUTO_COMPACTION) if how == "compact_range" else dict(
        SMALL, level1_max_bytes=64 * MIB)
    with kvcy.connect(db_path, **options) as conn:
        for _ in range(4):
            random_writes(conn, rng, n_keys=2000, n_writes=2000)
            conn.flush()
        if how == "compact_range":
            assert level_stats(conn)[0] == 4
            quiet_compact_range(conn)
        else:
            wait_idle(conn)
        # Give any deletion in flight time to finish before looking.
        wait_until(lambda: set(ssts(db_path)) == live_numbers(conn), timeout=1.0)
        assert conn.stats()["compactions"] >= 1
        assert set(ssts(db_path)) == live_numbers(conn), (sorted(ssts(db_path)),
                                                         sorted(live_numbers(conn)))


# --- (4) snapshots keep old versions through compaction ---------------------------------------

def test_snapshot_keeps_old_versions_through_compaction(db_path):
    keys = [b"k%05d" % i for i in range(3000)]
    old = {k: b"old-%s-" % k + b"o" * 60 for k in keys}
    with kvcy.connect(db_path, **dict(NO_AUTO_COMPACTION, memtable_max_bytes=MEMTABLE)) as conn:
        conn.put_many(sorted(old.items()))
        quiet_compact_range(conn)
        snap = conn.snapshot()
        new = dict(old)
        for k in keys[::3]:
            new[k] = b"new-%s" % k
        conn.put_many([(k, new[k]) for k in keys[::3]])
        deleted = keys[1::3]
        conn.delete_many(deleted)
        for k in deleted:
            del new[k]
        dropped_before = conn.stats()["compaction_entries_dropped"]
        quiet_compact_range(conn)
        stats = conn.stats()
        assert stats["level0_files"] == 0
        # Nothing the snapshot sees was dropped.
        assert stats["compaction_entries_dropped"] == dropped_before
        assert snap.get_many(keys) == [old[k] for k in keys]
        assert list(snap.scan()) == sorted(old.items())
        assert list(snap.scan(keys[10], keys[20], reverse=True)) == \
            sorted(((k, old[k]) for k in keys[10:20]), reverse=True)
        check_contents(conn, new, absent=deleted[:20])
        held_bytes = version_bytes(conn)

        snap.close()
        # Anything new in L0 over the whole range makes compact_range rewrite
        # level 1 (it never rewrites the last level on its own, as LevelDB).
        conn.put_many([(keys[0], new[keys[0]]), (keys[-1], new[keys[-1]])])
        quiet_compact_range(conn)
        stats = conn.stats()
        dropped = stats["compaction_entries_dropped"] - dropped_before
        # The old values of overwritten and deleted keys, and the tombstones.
        assert dropped >= 2 * len(keys[::3]) + len(deleted), dropped
        assert version_bytes(conn) < held_bytes * 0.8, (version_bytes(conn), held_bytes)
        check_contents(conn, new, absent=deleted[:20])
    with kvcy.connect(db_path) as conn:
        check_contents(conn, new, absent=deleted[-20:])


def test_background_compaction_respects_a_snapshot(db_path):
    rng = random.Random(7)
    with kvcy.connect(db_path, **SMALL) as conn:
        model = random_writes(conn, rng, n_keys=5000, n_writes=8000)
        conn.flush()
        wait_idle(conn)
        with conn.snapshot() as snap:
            seen = dict(model)
            for _ in range(3):
                random_writes(conn, rng, n_keys=5000, n_writes=5000, model=model)
                conn.delete_many([b"key%08d" % rng.randrange(5000) for _ in range(300)])
            conn.flush()
            wait_idle(conn)
            assert conn.stats()["compactions"] > 3
            keys = sorted(seen)
            assert snap.get_many(keys) == [seen[k] for k in keys]
            assert list(snap.scan()) == [(k, seen[k]) for k in keys]


# --- (5) write stalls -------------------------------------------------------------------------

def test_deep_level0_slows_and_stops_writes_until_compaction_catches_up(db_path, monkeypatch):
    real = kvcy.engine.run_compaction
    level0_seen = []

    def slow_compaction(engine, c, version):
        level0_seen.append(len(version.files[0]))
        time.sleep(0.05)
        return real(engine, c, version)

    monkeypatch.setattr(kvcy.engine, "run_compaction", slow_compaction)
    options = dict(SMALL, level0_compaction_trigger=2, level0_slowdown_trigger=3,
                   level0_stop_trigger=5)
    rng = random.Random(8)
    model = {}
    level0_max = 0
    with kvcy.connect(db_path, **options) as conn:
        for _ in range(200):
            random_writes(conn, rng, n_keys=20_000, n_writes=100, batch=100, model=model)
            level0_max = max(level0_max, level_stats(conn)[0])
        stats = conn.stats()
        assert stats["slowdowns"] > 0, stats
        assert stats["stalls"] > 0, stats
        assert stats["stall_seconds"] > 0
        # Level 0 never grows past the stop trigger by more than the memtables
        # that were already waiting for their flush.
        bound = options["level0_stop_trigger"] + conn._engine.options.max_immutable_memtables
        assert max(level0_seen + [level0_max]) <= bound, (level0_seen, level0_max)
        check_contents(conn, model)
        wait_idle(conn)
        check_levels(conn)
    log = (db_path / "LOG").read_text()
    assert "level-0 files, writes wait for compaction" in log
    with kvcy.connect(db_path) as conn:
        check_contents(conn, model)


def test_writes_from_threads_all_complete_through_stalls(db_path, monkeypatch):
    real = kvcy.engine.run_compaction

    def slow_compaction(engine, c, version):
        time.sleep(0.03)
        return real(engine, c, version)

    monkeypatch.setattr(kvcy.engine, "run_compaction", slow_compaction)
    options = dict(SMALL, level0_compaction_trigger=2, level0_slowdown_trigger=2,
                   level0_stop_trigger=3)
    errors = []
    with kvcy.connect(db_path, **options) as conn:
        def writer(t):
            try:
                for i in range(0, 3000, 50):
                    conn.put_many([(b"t%d-%05d" % (t, j), b"%d" % j * 20)
                                   for j in range(i, i + 50)])
            except BaseException as exc:       # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "writers hung in a stall"
        assert not errors, errors
        stats = conn.stats()
        assert stats["slowdowns"] + stats["stalls"] > 0
        model = {b"t%d-%05d" % (t, j): b"%d" % j * 20 for t in range(4) for j in range(3000)}
        check_contents(conn, model)


# --- (6) a failing compaction is latched ------------------------------------------------------

class FailingTablesEnv(FaultEnv):
    """Appends to tables numbered above fail_above fail with ENOSPC."""

    def __init__(self, fail_above):
        super().__init__()
        self.fail_above = fail_above
        self.failed = 0

    def _maybe_fail(self, op, path):
        name = os.path.basename(path)
        if op == "append" and name.endswith(".sst") and int(name[:-4]) > self.fail_above:
            self.failed += 1
            self._raise(errno.ENOSPC, "append to", path)
        super()._maybe_fail(op, path)


def _level0_tables(path, count):
    """A database with `count` overlapping level-0 tables and an empty log;
    returns the model."""
    rng = random.Random(9)
    model = {}
    with kvcy.connect(path, **NO_AUTO_COMPACTION) as conn:
        for _ in range(count):
            random_writes(conn, rng, n_keys=3000, n_writes=1500, model=model)
            conn.flush()
        assert level_stats(conn)[0] == count
    return model


@pytest.mark.parametrize("fault", ["enospc", "oserror"])
def test_failed_compaction_is_latched_and_loses_nothing(db_path, monkeypatch, fault):
    model = _level0_tables(db_path, 4)
    env = None
    cause = "No space left on device" if fault == "enospc" else "injected compaction failure"
    if fault == "enospc":
        env = FailingTablesEnv(fail_above=max(ssts(db_path)))
    else:
        def failing(engine, c, version):
            raise OSError(errno.EIO, "injected compaction failure")
        monkeypatch.setattr(kvcy.engine, "run_compaction", failing)
    # Opening schedules the compaction the four level-0 tables need.
    conn = kvcy.connect(db_path, env=env, level0_compaction_trigger=2)
    try:
        assert wait_until(lambda: conn.stats()["background_error"] is not None), \
            "the compaction did not fail"
        assert cause.lower() in conn.stats()["background_error"].lower()
        if env is not None:
            assert env.failed >= 1
        with pytest.raises(OperationalError) as info:
            conn.put(b"after", b"x")
        assert cause.lower() in str(info.value).lower()
        with pytest.raises(OperationalError):
            conn.put_many([(b"after2", b"y")])
        with pytest.raises(OperationalError):
            conn.compact_range()
        # Reads keep working and the failed compaction changed nothing.
        assert level_stats(conn)[0] == 4
        check_contents(conn, model, absent=[b"after", b"after2"])
    finally:
        conn.close()
    monkeypatch.undo()
    with kvcy.connect(db_path, **NO_AUTO_COMPACTION) as conn:
        # The open removed whatever the abandoned compaction had written.
        assert set(ssts(db_path)) == live_numbers(conn)
        assert level_stats(conn)[0] == 4
        check_contents(conn, model, absent=[b"after"])
    with kvcy.connect(db_path, level0_compaction_trigger=2) as conn:
        wait_idle(conn)
        assert level_stats(conn)[0] < 2
        assert conn.stats()["compactions"] >= 1
        check_levels(conn)
        conn.put(b"after", b"x")
        model[b"after"] = b"x"
        check_contents(conn, model)


def test_failed_compact_range_raises_and_loses_nothing(db_path):
    model = _level0_tables(db_path, 3)
    env = FailingTablesEnv(fail_above=max(ssts(db_path)))
    conn = kvcy.connect(db_path, env=env, **NO_AUTO_COMPACTION)
    try:
        with pytest.raises(OperationalError, match="(?i)no space left"):
            quiet_compact_range(conn)
        assert env.failed >= 1
        check_contents(conn, model)
        assert level_stats(conn)[0] == 3
    finally:
        conn.close()
    with kvcy.connect(db_path, **NO_AUTO_COMPACTION) as conn:
        check_contents(conn, model)
        assert set(ssts(db_path)) == live_numbers(conn)
        quiet_compact_range(conn)
        assert level_stats(conn)[0] == 0
        check_contents(conn, model)


def test_compaction_over_a_damaged_table_raises_and_keeps_the_inputs(db_path):
    # The C compaction reads its inputs through their descriptors: a damaged
    # block must stop it with a CorruptionError naming the table, record
    # nothing, leave every input as it was and no output behind.
    _level0_tables(db_path, 3)
    before = ssts(db_path)
    victim = min(before)
    path = os.path.join(db_path, "%06d.sst" % victim)
    with open(path, "r+b") as f:                 # a byte in the first data block
        f.seek(200)
        byte = f.read(1)
        f.seek(200)
        f.write(bytes([byte[0] ^ 0x55]))
    images = {n: open(os.path.join(db_path, "%06d.sst" % n), "rb").read() for n in before}
    with kvcy.connect(db_path, **NO_AUTO_COMPACTION) as conn:
        with pytest.raises(kvcy.CorruptionError) as info:
            quiet_compact_range(conn)
        assert "%06d.sst" % victim in str(info.value)
        assert level_stats(conn)[0] == 3
        assert live_numbers(conn) == set(before)
    with kvcy.connect(db_path, **NO_AUTO_COMPACTION) as conn:
        assert set(ssts(db_path)) == set(before) == live_numbers(conn)    # no orphan left
    for n, image in images.items():
        assert open(os.path.join(db_path, "%06d.sst" % n), "rb").read() == image


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_disk_in_a_compaction_output_written_through_its_descriptor(db_path, monkeypatch):
    # Outputs are written with write(2) from C: a full disk there must raise
    # OperationalError naming ENOSPC, record nothing and lose nothing.
    model = _level0_tables(db_path, 3)
    before = set(ssts(db_path))
    real_open = PosixEnv.new_writable_file

    def full_tables(self, path):
        file = real_open(self, path)
        if path.endswith(".sst"):
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, file.fileno())
            os.close(full)
        return file
    monkeypatch.setattr(PosixEnv, "new_writable_file", full_tables)
    with kvcy.connect(db_path, **NO_AUTO_COMPACTION) as conn:
        with pytest.raises(OperationalError, match="ENOSPC"):
            quiet_compact_range(conn)
        check_contents(conn, model)
        assert live_numbers(conn) == before
    monkeypatch.undo()
    with kvcy.connect(db_path, **NO_AUTO_COMPACTION) as conn:
        check_contents(conn, model)
        assert set(ssts(db_path)) == before == live_numbers(conn)


# --- power loss at each point of a compaction -------------------------------------------------

def _manifest(name):
    return name.startswith("MANIFEST-")


# name -> (trigger factory or None for "after the compaction", recorded?)
COMPACTION_CRASH_POINTS = {
    "output-created": (lambda: _nth(1, "new_file", _sst), False),
    "output-half-written": (lambda: _nth(4, "append", _sst), False),
    "output-before-sync": (lambda: _nth(1, "sync", _sst), False),
    "outputs-name-not-synced": (lambda: _nth(1, "sync_dir", lambda name: True), False),
    "edit-not-written": (lambda: _nth(1, "append", _manifest), False),
    "edit-written-not-synced": (lambda: _nth(1, "sync", _manifest), False),
    "inputs-not-deleted": (lambda: _nth(1, "remove", _sst), True),
    "after-the-compaction": (None, True),
}


@pytest.mark.parametrize("point", list(COMPACTION_CRASH_POINTS))
def test_power_loss_during_compaction_loses_nothing(db_path, point):
    model = _level0_tables(db_path, 4)
    make_trigger, recorded = COMPACTION_CRASH_POINTS[point]
    env = PowerLossEnv()
    conn = kvcy.connect(db_path, env=env, **NO_AUTO_COMPACTION)
    try:
        wait_idle(conn)
        if make_trigger is None:
            quiet_compact_range(conn)
            env.crash_now()
        else:
            env.crash_when(make_trigger())
            with contextlib.suppress(OperationalError):
                quiet_compact_range(conn)
        assert env.crashed.is_set(), "the crash point %r was never reached" % point
    finally:
        with contextlib.suppress(OperationalError):
            conn.close()
    where = "crash at %s (%s)" % (point, env.crash_point)
    with kvcy.connect(db_path, **NO_AUTO_COMPACTION) as conn:
        check_contents(conn, model)
        check_levels(conn)
        assert set(ssts(db_path)) == live_numbers(conn), where
        files = level_stats(conn)
        if recorded:
            assert files[0] == 0 and files[1] > 0, (where, files)
        elif point != "edit-written-not-synced":
            assert files[0] == 4 and sum(files[1:]) == 0, (where, files)
        quiet_compact_range(conn)            # and it compacts fine now
        assert level_stats(conn)[0] == 0
        check_contents(conn, model)


# --- (7) obsolete tables and iterators --------------------------------------------------------

def test_obsolete_tables_stay_while_an_iterator_pins_them(db_path):
    options = dict(NO_AUTO_COMPACTION, memtable_max_bytes=MEMTABLE, target_file_bytes=16 * KIB)
    keys = [b"k%05d" % i for i in range(3000)]
    rng = random.Random(11)
    model = {k: rng.randbytes(100) for k in keys}
    with kvcy.connect(db_path, **options) as conn:
        items = sorted(model.items())
        for i in range(0, len(items), 300):        # several level-0 tables, merged below
            conn.put_many(items[i:i + 300])
        quiet_compact_range(conn)
        assert level_stats(conn)[0] == 0 and level_stats(conn)[1] >= 10
        pinned = live_numbers(conn)
        assert pinned <= set(ssts(db_path))
        it = conn.scan()
        first = [next(it) for _ in range(10)]          # level-1 tables open lazily
        conn.delete_many(keys)
        quiet_compact_range(conn)
        assert version_bytes(conn) == 0
        assert list(conn.scan()) == []
        # Later version changes run the obsolete-file cleanup again.
        for key in (b"a", b"b"):
            conn.put(key, b"1")
            conn.flush()
            wait_idle(conn)
        assert pinned <= set(ssts(db_path)), "pinned tables were deleted: %r" % sorted(
            pinned - set(ssts(db_path)))
        # The iterator still reads its point in time, from tables it had not opened yet.
        assert first + list(it) == sorted(model.items())
        it.close()
        conn.put(b"x", b"y")
        conn.flush()                                   # a version change deletes obsolete files
        assert wait_until(lambda: not (pinned & set(ssts(db_path))))
        assert set(ssts(db_path)) == live_numbers(conn)
    with kvcy.connect(db_path, **options) as conn:
        assert list(conn.scan()) == [(b"a", b"1"), (b"b", b"1"), (b"x", b"y")]


def test_iterator_over_background_compactions_reads_its_point_in_time(db_path):
    rng = random.Random(10)
    with kvcy.connect(db_path, **SMALL) as conn:
        model = random_writes(conn, rng, n_keys=8000, n_writes=8000)
        conn.flush()
        wait_idle(conn)
        it = conn.scan()
        got = [next(it) for _ in range(5)]
        before = dict(model)
        for _ in range(4):            # rewrite everything while the iterator is open
            random_writes(conn, rng, n_keys=8000, n_writes=8000, model=model)
        conn.flush()
        wait_idle(conn)
        assert conn.stats()["compactions"] > 5
        got += list(it)
        assert got == sorted(before.items())
        it.close()
        check_contents(conn, model)
    with kvcy.connect(db_path, **SMALL) as conn:
        check_contents(conn, model)


class ListingHookEnv(PosixEnv):
    """Runs a one-shot hook inside get_children when the main thread lists."""

    def __init__(self):
        super().__init__()
        self.hook = None
        self.main = threading.current_thread()

    def get_children(self, dirpath):
        hook = self.hook
        if hook is not None and threading.current_thread() is self.main:
            self.hook = None
            hook()
        return super().get_children(dirpath)


def test_cleanup_after_compact_range_spares_a_table_written_meanwhile(db_path, monkeypatch):
    # Regression: delete_obsolete_files took the live set and then listed the
    # directory, so a table another thread created in between was listed, not
    # live, and deleted although the new Version needed it.  The hook forces
    # that interleaving: the listing waits until a flush has written its table.
    env = ListingHookEnv()
    written = threading.Event()
    release = threading.Event()
    gated = []
    real_write = kvcy.background.write_level0_table

    def gated_write(*args, **kwargs):
        meta = real_write(*args, **kwargs)
        if gated:
            gated.clear()
            written.set()
            release.wait(10)
        return meta

    monkeypatch.setattr(kvcy.background, "write_level0_table", gated_write)
    conn = kvcy.connect(db_path, env=env, **dict(NO_AUTO_COMPACTION, memtable_max_bytes=MEMTABLE))
    try:
        for batch in range(2):
            conn.put_many([(b"k%04d" % i, b"%d" % batch * 50) for i in range(1000)])
            conn.flush()

        def another_thread_flushes():
            # Runs while compact_range's cleanup has taken the live set but not
            # yet listed the directory: another thread writes and flushes.
            def flush():
                conn.put(b"late", b"write")
                gated.append(1)
                conn.flush(wait=False)
            t = threading.Thread(target=flush)
            t.start()
            t.join(10)
            assert written.wait(10), "the flush did not write its table"

        env.hook = another_thread_flushes
        conn.compact_range()
        assert env.hook is None, "compact_range did not clean up after itself"
        release.set()
        assert wait_until(lambda: not conn._engine.imm)
        assert set(ssts(db_path)) >= live_numbers(conn), "live tables deleted: %r" % sorted(
            live_numbers(conn) - set(ssts(db_path)))
        assert conn.get(b"late") == b"write"
    finally:
        release.set()
        with contextlib.suppress(kvcy.Error):
            conn.close()
    with kvcy.connect(db_path) as conn:
        assert conn.get(b"late") == b"write"


# --- (8) kill -9 while compactions run --------------------------------------------------------


# Tiny tables and levels, uncompressed: with N_KEYS keys of ~100 bytes (a few
# tens of KiB live), every few flushes start a compaction and data reaches
# level 2 and below.
CRASH_BASE = dict(memtable_max_bytes=80 * KIB, target_file_bytes=4 * KIB,
                  level1_max_bytes=8 * KIB, level_size_multiplier=2,
                  level0_compaction_trigger=2, level0_slowdown_trigger=3,
                  level0_stop_trigger=6, block_size=1024, compression="none")
CRASH_OPTIONS = [
    CRASH_BASE,
    dict(CRASH_BASE, target_file_bytes=2 * KIB, level_size_multiplier=3),
    dict(CRASH_BASE, max_immutable_memtables=1, level0_compaction_trigger=1,
         level0_slowdown_trigger=2, level0_stop_trigger=3),
]


def _compaction_events(db):
    try:
        text = (db / "LOG").read_text(errors="replace")
    except FileNotFoundError:
        return 0
    return text.count("compacted ") + text.count("moved table ")


def run_compaction_crash_rounds(tmp_path, rounds, seed):
    script = tmp_path / "child.py"
    write_child_script(script)
    db = tmp_path / "db"
    rng = random.Random(seed)
    model = {}
    start = 0
    total_acked = 0
    compactions = 0
    for rnd in range(rounds):
        options = CRASH_OPTIONS[rnd % len(CRASH_OPTIONS)]
        compact_every = rng.choice([0, 0, 300])
        where = "seed=%d round=%d start=%d options=%s compact_every=%d" % (
            seed, rnd, start, options, compact_every)
        ack_path = tmp_path / ("acks%d.txt" % rnd)
        err_path = tmp_path / ("stderr%d.txt" % rnd)
        with open(ack_path, "wb") as out, open(err_path, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, str(script), str(db), str(seed), str(start),
                 json.dumps(options), str(compact_every)],
                stdout=out, stderr=err, env=child_env())
            try:
                ready = wait_for_ready(proc, ack_path, time.monotonic() + 60)
                assert ready, "%s: child did not start: %s" % (where, err_path.read_text())
                time.sleep(rng.uniform(0.2, 0.7))
                assert proc.poll() is None, "%s: child exited early (%s): %s" % (
                    where, proc.returncode, err_path.read_text())
                proc.send_signal(signal.SIGKILL)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL, "%s: %s" % (where, err_path.read_text())
        compactions += _compaction_events(db)

        lines = ack_path.read_bytes().split(b"\n")[:-1]     # a cut-off last line is no ack
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
        with kvcy.connect(db, readonly=readonly, **NO_AUTO_COMPACTION) as conn:
            state = read_state(conn)
            stats = conn.stats()
            check_levels(conn)
            assert sorted(k for k, _ in conn.scan()) == sorted(state), where
            if not readonly:
                # The open removed tables the crash left outside the MANIFEST.
                assert set(ssts(db)) == live_numbers(conn), where
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
    with kvcy.connect(db, **CRASH_BASE) as conn:
        assert read_state(conn) == model
        wait_idle(conn)
        check_levels(conn)
        assert read_state(conn) == model
        deep = sum(level_stats(conn)[2:])
    return total_acked, compactions, deep


def _seed():
    env = os.environ.get("KVCY_CRASH_SEED")
    return int(env) if env else random.randrange(1 << 30)


def test_kill_9_while_compacting(tmp_path):
    seed = _seed()
    acked, compactions, deep = run_compaction_crash_rounds(tmp_path, rounds=8, seed=seed)
    assert acked > 1000, "seed=%d: only %d writes acknowledged" % (seed, acked)
    assert compactions >= 16, "seed=%d: only %d compactions ran" % (seed, compactions)
    assert deep > 0, "seed=%d: nothing reached level 2" % seed


@pytest.mark.slow
def test_kill_9_while_compacting_many_rounds(tmp_path):
    seed = _seed()
    acked, compactions, _ = run_compaction_crash_rounds(tmp_path, rounds=40, seed=seed)
    assert acked > 5000, "seed=%d" % seed
    assert compactions >= 100, "seed=%d" % seed
