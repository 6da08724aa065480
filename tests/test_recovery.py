"""Opening a database again: WAL replay, torn tails, damage and sequence gaps.

Corruption cases work on a copy of a closed database's files, edited in
place before the next open (an open rewrites the logs, so the edit must
come first).  The durability contract under test (docs/DESIGN "Durability
contract"): a torn WAL tail recovers silently to a prefix; damage followed
by intact data, a sequence gap between logs, a missing CURRENT or a bad
MANIFEST is CorruptionError unless paranoid_checks=False, which recovers
the prefix before the damage and says what it dropped.
"""
import contextlib
import errno
import os
import random
import shutil

import pytest

import kvcy
from kvcy import CorruptionError, OperationalError
from kvcy._log_record import LogFramer
from kvcy._write_batch import WriteBatch
from kvcy.env import PosixEnv
from kvcy.log_format import LOG_BLOCK_BYTES, LOG_HEADER_BYTES
from kvcy.log_reader import LogReader
from kvcy.log_writer import LogWriter

from fault_env import FAULT_OPS, FaultEnv

# Files an open may legitimately rewrite even when it then fails.
HOUSEKEEPING = {"LOCK", "LOG", "LOG.old"}


# --- helpers -------------------------------------------------------------------

def read_state(conn, keys):
    """{key: value} of the keys present in conn."""
    keys = sorted(set(keys))
    return {k: v for k, v in zip(keys, conn.get_many(keys)) if v is not None}


def apply_op(model, op):
    """Apply one op (as made by random_ops) to a dict model."""
    kind, arg = op
    if kind == "put":
        model[arg[0]] = arg[1]
    elif kind == "delete":
        model.pop(arg, None)
    elif kind == "put_many":
        for k, v in arg:
            model[k] = v
    elif kind == "delete_many":
        for k in arg:
            model.pop(k, None)
    else:
        raise AssertionError(kind)


def do_op(conn, op, sync=None):
    kind, arg = op
    if kind == "put":
        conn.put(arg[0], arg[1], sync=sync)
    elif kind == "delete":
        conn.delete(arg, sync=sync)
    elif kind == "put_many":
        conn.put_many(arg, sync=sync)
    else:
        conn.delete_many(arg, sync=sync)


def random_ops(rng, n, n_keys=40, first=0, big_every=0):
    """n ops over keys k000..; every value names its op index, so each put
    is distinguishable.  big_every > 0 makes every big_every-th op a put of a
    value larger than a log block."""
    ops = []
    for i in range(first, first + n):
        r = rng.random()
        key = b"k%03d" % rng.randrange(n_keys)
        if big_every and i % big_every == 0:
            ops.append(("put", (key, b"v%d:" % i + bytes([65 + i % 26]) * 40000)))
        elif r < 0.55:
            size = rng.randrange(0, 60)
            ops.append(("put", (key, b"v%d:" % i + bytes([65 + i % 26]) * size)))
        elif r < 0.7:
            ops.append(("delete", key))
        elif r < 0.9:
            keys = rng.sample(range(n_keys), rng.randrange(1, 6))
            ops.append(("put_many", [(b"k%03d" % k, b"b%d" % i) for k in keys]))
        else:
            keys = rng.sample(range(n_keys), rng.randrange(1, 4))
            ops.append(("delete_many", [b"k%03d" % k for k in keys]))
    return ops


def all_keys(n_keys=40):
    return [b"k%03d" % i for i in range(n_keys)]


def prefix_states(start, ops):
    """[state after 0 ops, after 1 op, ...] starting from dict start."""
    model = dict(start)
    states = [dict(model)]
    for op in ops:
        apply_op(model, op)
        states.append(dict(model))
    return states


def dir_files(path, skip=HOUSEKEEPING):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())
            if p.is_file() and p.name not in skip}


def log_paths(path):
    return sorted(p for p in path.iterdir() if p.name.endswith(".log"))


def record_offsets(data):
    """Start offsets of the logical records of an intact log."""
    return [offset for offset, _ in LogReader(data)]


def flip_bit(path, offset, bit=0):
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def build_db(path, ops, **options):
    """A fresh database holding ops, one WAL record per op; closed."""
    with kvcy.connect(path, **options) as conn:
        for op in ops:
            do_op(conn, op)
    logs = log_paths(path)
    assert len(logs) == 1
    return logs[0]


def copy_db(src, dst):
    shutil.copytree(src, dst)
    return dst


# --- reopening ---------------------------------------------------------------------

def test_reopen_keeps_data(db_path):
    rng = random.Random(1)
    model = {}
    keys = [b"key-%05d" % i for i in range(1500)]
    for session in range(4):
        with kvcy.connect(db_path) as conn:
            assert read_state(conn, keys + [b"key-big"]) == model
            for i in range(1200):
                k = rng.choice(keys)
                if rng.random() < 0.2:
                    conn.delete(k)
                    model.pop(k, None)
                else:
                    v = b"s%d-%d-" % (session, i) + bytes(rng.randrange(0, 100))
                    conn.put(k, v)
                    model[k] = v
            big = bytes(range(256)) * 400      # spans several 32 KiB log blocks
            conn.put(b"key-big", big + b"%d" % session)
            model[b"key-big"] = big + b"%d" % session
            conn.put_many([(k, b"batch%d" % session) for k in keys[:50]])
            model.update((k, b"batch%d" % session) for k in keys[:50])
            assert read_state(conn, keys + [b"key-big"]) == model
    with kvcy.connect(db_path) as conn:
        assert read_state(conn, keys + [b"key-big"]) == model
        assert conn.stats()["last_sequence"] == 4 * (1200 + 1 + 50)


def _files_of(db_path, suffix):
    return sorted(name for name in os.listdir(db_path) if name.endswith(suffix))


def test_short_sessions_reuse_the_log_and_leave_no_tables(db_path):
    # Scripts and dbm users open, write a little and close: each open keeps
    # appending to the one log instead of flushing it to a tiny table.
    model = {}
    for session in range(13):
        with kvcy.connect(db_path) as conn:
            assert read_state(conn, list(model) + [b"none"]) == model
            conn.put(b"k%02d" % session, b"v%d" % session)
            conn.delete(b"k%02d" % (session - 3))
            model[b"k%02d" % session] = b"v%d" % session
            model.pop(b"k%02d" % (session - 3), None)
            stats = conn.stats()
            assert stats["flushes"] == 0 and stats["level0_files"] == 0
        assert _files_of(db_path, ".sst") == []
        assert len(_files_of(db_path, ".log")) == 1
    with kvcy.connect(db_path) as conn:
        assert read_state(conn, list(model) + [b"k%02d" % i for i in range(13)]) == model
        assert conn.stats()["last_sequence"] == 26
        conn.flush()                                  # the memtable still goes to a table
        assert conn.stats()["level0_files"] == 1
    with kvcy.connect(db_path) as conn:
        assert read_state(conn, list(model)) == model


def test_a_log_of_half_a_memtable_or_more_is_flushed_at_open(db_path):
    limit = 64 * 1024
    with kvcy.connect(db_path, memtable_max_bytes=limit) as conn:
        conn.put_many([(b"k%05d" % i, b"v" * 100) for i in range(400)])    # ~60 KiB
    with kvcy.connect(db_path, memtable_max_bytes=limit) as conn:
        stats = conn.stats()
        assert (stats["flushes"], stats["level0_files"], stats["memtable_entries"]) == (1, 1, 0)
        assert conn.get(b"k00399") == b"v" * 100
    assert len(_files_of(db_path, ".log")) == 1


def test_a_log_with_a_torn_tail_is_not_reused(db_path):
    with kvcy.connect(db_path) as conn:
        conn.put(b"a", b"1")
        conn.put(b"b", b"2")
        log_name = _files_of(db_path, ".log")[0]
    with open(os.path.join(db_path, log_name), "ab") as f:
        f.write(b"\x01\x02\x03")                    # a torn tail: never appended to
    with kvcy.connect(db_path) as conn:
        stats = conn.stats()
        assert stats["torn_tail_bytes"] == 3 and stats["flushes"] == 1
        assert _files_of(db_path, ".log") != [log_name]
        conn.put(b"c", b"3")
    with kvcy.connect(db_path) as conn:
        assert read_state(conn, [b"a", b"b", b"c"]) == {b"a": b"1", b"b": b"2", b"c": b"3"}
        assert conn.stats()["torn_tail_bytes"] == 0


def test_a_reused_log_keeps_its_block_framing(db_path):
    # Sessions append at odd offsets, across 32 KiB block boundaries; every
    # record must be found again, and a later torn tail costs only itself.
    rng = random.Random(7)
    model = {}
    for session in range(6):
        with kvcy.connect(db_path) as conn:
            for i in range(rng.randrange(1, 40)):
                k = b"s%d-%d" % (session, i)
                v = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 3000)))
                conn.put(k, v)
                model[k] = v
    log = os.path.join(db_path, _files_of(db_path, ".log")[0])
    assert os.path.getsize(log) > 2 * LOG_BLOCK_BYTES
    with kvcy.connect(db_path) as conn:
        assert read_state(conn, list(model)) == model
        assert conn.stats()["recovered_records"] == len(model)


def test_recovery_is_idempotent(db_path):
    rng = random.Random(2)
    ops = random_ops(rng, 300, big_every=50)
    build_db(db_path, ops)
    expected = prefix_states({}, ops)[-1]
    sizes, seqs = [], []
    for _ in range(6):
        with kvcy.connect(db_path) as conn:
            assert read_state(conn, all_keys()) == expected
            seqs.append(conn.stats()["last_sequence"])
        names = os.listdir(db_path)
        assert sum(n.endswith(".log") for n in names) == 1, names
        assert sum(n.startswith("MANIFEST-") for n in names) == 1, names
        assert not [n for n in names if n.endswith(".dbtmp")], names
        sizes.append(sum(os.path.getsize(db_path / n) for n in names
                         if n.endswith((".log", ".sst")) or n.startswith("MANIFEST-")))
    assert seqs == [seqs[0]] * len(seqs)
    assert max(sizes[1:]) <= sizes[1], sizes      # repeated opens do not grow the files


# --- sync=True survives power loss --------------------------------------------------

def _crash_round(db_path, fault_env, start, ops, sync_every):
    """Run ops with every sync_every-th op synced, crash, reopen; return the
    recovered state after checking it is the state after a prefix of ops that
    includes every synced op."""
    conn = kvcy.connect(db_path, env=fault_env)
    last_synced = 0
    try:
        assert read_state(conn, all_keys()) == start
        for i, op in enumerate(ops, 1):
            sync = sync_every and i % sync_every == 0
            do_op(conn, op, sync=True if sync else None)
            if sync:
                last_synced = i
        fault_env.simulate_crash()
    finally:
        with contextlib.suppress(OperationalError):
            conn.close()
    with kvcy.connect(db_path, env=fault_env) as conn:
        recovered = read_state(conn, all_keys())
    states = prefix_states(start, ops)
    matches = [j for j, state in enumerate(states) if state == recovered]
    assert matches, "recovered state is not the state after any prefix of the writes"
    assert max(matches) >= last_synced, (
        "a synced write was lost: recovered a prefix of %d ops, op %d was synced"
        % (max(matches), last_synced))
    return recovered, max(matches)


def test_synced_writes_survive_a_crash_unsynced_lose_only_a_suffix(db_path, fault_env):
    rng = random.Random(3)
    state = {}
    lost = 0
    for rnd in range(5):
        ops = random_ops(rng, 120, first=rnd * 1000)
        state, kept = _crash_round(db_path, fault_env, state, ops, sync_every=rng.choice([7, 13, 40]))
        lost += len(ops) - kept
    assert lost > 0     # the unsynced suffixes really were dropped: the env works


def test_sync_option_on_the_connection_makes_every_write_durable(db_path, fault_env):
    rng = random.Random(4)
    ops = random_ops(rng, 80)
    conn = kvcy.connect(db_path, env=fault_env, sync=True)
    try:
        for op in ops:
            do_op(conn, op)
        fault_env.simulate_crash()
    finally:
        with contextlib.suppress(OperationalError):
            conn.close()
    with kvcy.connect(db_path, env=fault_env) as conn:
        assert read_state(conn, all_keys()) == prefix_states({}, ops)[-1]


def test_unsynced_writes_of_a_crashed_session_are_not_resurrected(db_path, fault_env):
    # After a crash drops some writes, new writes reuse their sequence numbers;
    # nothing of the lost history may come back at a later open.
    conn = kvcy.connect(db_path, env=fault_env)
    try:
        conn.put(b"a", b"synced", sync=True)
        conn.put(b"a", b"lost")
        conn.put(b"b", b"lost")
        fault_env.simulate_crash()
    finally:
        with contextlib.suppress(OperationalError):
            conn.close()
    with kvcy.connect(db_path, env=fault_env) as conn:
        assert conn.get_many([b"a", b"b"]) == [b"synced", None]
        conn.put(b"c", b"new", sync=True)
    with kvcy.connect(db_path) as conn:
        assert conn.get_many([b"a", b"b", b"c"]) == [b"synced", None, b"new"]


@pytest.mark.parametrize("crash", [False, True], ids=["reopen", "crash-then-reopen"])
def test_failures_during_open_never_lose_data(tmp_path, crash):
    """Fail the n-th file operation of an open, for every n until the open
    succeeds; then (optionally after a simulated power loss) open normally.

    The crash variant does not fail sync_dir: FaultEnv is harsher than a
    real file system there (a file renamed over an existing one since the
    last directory sync vanishes entirely, so an unsynced rename of CURRENT
    would leave no CURRENT at all, which no real crash can do)."""
    rng = random.Random(5)
    ops = random_ops(rng, 60, big_every=20)
    pristine = tmp_path / "pristine"
    build_db(pristine, ops)
    expected = prefix_states({}, ops)[-1]
    fault_ops = tuple(FAULT_OPS - {"sync_dir"}) if crash else tuple(FAULT_OPS)
    opened = False
    n = 0
    while not opened:
        path = copy_db(pristine, tmp_path / ("case%d" % n))
        env = FaultEnv()
        env.fail_after(n, errno.EIO, ops=fault_ops)
        try:
            kvcy.connect(path, env=env).close()
            opened = True
        except OperationalError:
            pass
        env.clear_faults()
        if crash:
            env.simulate_crash()
        with kvcy.connect(path) as conn:
            assert read_state(conn, all_keys()) == expected, "fault after %d ops" % n
        n += 1
        assert n < 200
    assert n > 10   # the loop did inject faults at many steps of the open


# --- torn tail ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torn_source(tmp_path_factory):
    """A closed database whose single log holds one record per op, among
    them large values that are fragmented over several blocks."""
    path = tmp_path_factory.mktemp("torn") / "db"
    ops = random_ops(random.Random(6), 40, big_every=9)
    log = build_db(path, ops)
    data = log.read_bytes()
    offsets = record_offsets(data)
    assert len(offsets) == len(ops)
    assert len(data) > 3 * LOG_BLOCK_BYTES
    return path, log.name, ops, offsets, len(data)


def _torn_cuts(offsets, size):
    """(cut position, number of records left intact) pairs."""
    ends = offsets[1:] + [size]
    cuts = []
    for k in (0, 1, 9, 18, 20, len(offsets) - 1):
        start, end = offsets[k], ends[k]
        for pos in (start + 1, start + LOG_HEADER_BYTES - 1, start + LOG_HEADER_BYTES,
                    start + LOG_HEADER_BYTES + 3, (start + end) // 2, end - 1):
            if start < pos < end:
                cuts.append((pos, k))
    # Inside the later fragments of a large record.
    big = max(range(len(offsets)), key=lambda k: ends[k] - offsets[k])
    assert ends[big] - offsets[big] > LOG_BLOCK_BYTES
    block_end = (offsets[big] // LOG_BLOCK_BYTES + 1) * LOG_BLOCK_BYTES
    for pos in (block_end, block_end + 3, block_end + LOG_HEADER_BYTES + 100, ends[big] - 2):
        cuts.append((pos, big))
    return sorted(set(cuts))


def test_torn_tail_recovers_silently_to_a_prefix(torn_source, tmp_path):
    src, log_name, ops, offsets, size = torn_source
    states = prefix_states({}, ops)
    cuts = _torn_cuts(offsets, size)
    assert len(cuts) > 25
    for n, (pos, intact) in enumerate(cuts):
        path = copy_db(src, tmp_path / ("cut%d" % n))
        os.truncate(path / log_name, pos)
        with kvcy.connect(path) as conn:     # paranoid_checks=True: still silent
            assert read_state(conn, all_keys()) == states[intact], "cut at %d" % pos
            stats = conn.stats()
            assert stats["torn_tail_bytes"] > 0, "cut at %d" % pos
            assert stats["dropped_bytes"] == 0
            assert stats["last_sequence"] == sum(
                len(op[1]) if op[0] in ("put_many", "delete_many") else 1
                for op in ops[:intact])
            conn.put(b"after", b"%d" % pos)
        with kvcy.connect(path) as conn:     # the torn bytes are gone for good
            expected = {**states[intact], b"after": b"%d" % pos}
            assert read_state(conn, all_keys() + [b"after"]) == expected
            assert conn.stats()["torn_tail_bytes"] == 0


def test_cut_at_a_record_boundary_loses_nothing_else(torn_source, tmp_path):
    src, log_name, ops, offsets, size = torn_source
    states = prefix_states({}, ops)
    for k in (1, 5, len(ops) - 1):
        path = copy_db(src, tmp_path / ("b%d" % k))
        os.truncate(path / log_name, offsets[k])
        with kvcy.connect(path) as conn:
            assert read_state(conn, all_keys()) == states[k]


@pytest.mark.parametrize("tail", [bytes(100), bytes(LOG_BLOCK_BYTES + 50), b"\xff" * 50,
                                  b"\x00\x00\x00\x00\x05\x00\x01abc"],
                         ids=["zeros", "zero-block", "ff", "short-record"])
def test_garbage_after_the_last_record_is_a_torn_tail(torn_source, tmp_path, tail):
    src, log_name, ops, _, _ = torn_source
    path = copy_db(src, tmp_path / "db")
    with open(path / log_name, "ab") as f:
        f.write(tail)
    with kvcy.connect(path) as conn:
        assert read_state(conn, all_keys()) == prefix_states({}, ops)[-1]
        if any(tail):
            assert conn.stats()["torn_tail_bytes"] > 0
        else:
            # Zeros alone: the space a mapped WAL reserves (kvcy/_wal_writer.pyx).
            assert conn.stats()["torn_tail_bytes"] == 0
            assert "bytes of reserved space" in (path / "LOG").read_text()


@pytest.mark.parametrize("inner_records", [6, 51, 151])
def test_torn_tail_inside_a_value_that_holds_log_records(db_path, tmp_path, inner_records):
    framer = LogFramer(0)
    inner = b"".join(framer.frame(b"r%03d" % i) for i in range(200))
    with kvcy.connect(db_path) as conn:
        conn.put(b"a", b"1")
        conn.put(b"backup", inner)
    (log,) = log_paths(db_path)
    data = log.read_bytes()
    assert data.count(inner) == 1
    # The crash cut the last append right after one of the embedded records.
    framer = LogFramer(0)
    cut = data.index(inner) + sum(len(framer.frame(b"r%03d" % i))
                                  for i in range(inner_records))
    path = copy_db(db_path, tmp_path / "cut")
    os.truncate(path / log.name, cut)
    with kvcy.connect(path) as conn:
        assert conn.get_many([b"a", b"backup"]) == [b"1", None]
        assert conn.stats()["torn_tail_bytes"] > 0


# --- damage with intact records after it -----------------------------------------------

@pytest.fixture(scope="module")
def damage_source(tmp_path_factory):
    path = tmp_path_factory.mktemp("damage") / "db"
    ops = random_ops(random.Random(7), 30)
    log = build_db(path, ops)
    offsets = record_offsets(log.read_bytes())
    return path, log.name, ops, offsets


def _check_damage(src, log_name, ops, pos, bit, damaged_record, tmp_path):
    path = copy_db(src, tmp_path / "db")
    flip_bit(path / log_name, pos, bit)
    before = dir_files(path)
    with pytest.raises(CorruptionError) as info:
        kvcy.connect(path)
    message = str(info.value)
    assert log_name in message
    assert "offset %d" % damaged_record[1] in message
    assert dir_files(path) == before          # a failed open changes no data file
    states = prefix_states({}, ops)
    with kvcy.connect(path, paranoid_checks=False) as conn:
        assert read_state(conn, all_keys()) == states[damaged_record[0]]
        stats = conn.stats()
        assert stats["dropped_bytes"] > 0
    with kvcy.connect(path) as conn:          # paranoid again: the prefix is now the history
        assert read_state(conn, all_keys()) == states[damaged_record[0]]
        conn.put(b"new", b"1")
    with kvcy.connect(path) as conn:
        assert read_state(conn, all_keys() + [b"new"]) == {**states[damaged_record[0]],
                                                           b"new": b"1"}


@pytest.mark.parametrize("field,delta", [("crc", 1), ("type", 6), ("payload", 7),
                                         ("payload-last-byte", None)])
def test_bit_flip_in_an_early_record(damage_source, tmp_path, field, delta):
    src, log_name, ops, offsets = damage_source
    k = 3
    pos = offsets[k] + delta if delta is not None else offsets[k + 1] - 1
    _check_damage(src, log_name, ops, pos, 2, (k, offsets[k]), tmp_path)


@pytest.mark.parametrize("byte,bit", [(4, 0), (4, 3), (5, 7)])
def test_bit_flip_in_the_length_of_an_early_record(damage_source, tmp_path, byte, bit):
    # The damaged length points the reader into the middle of later records,
    # all in the last block: only a byte-wise resync finds the intact ones.
    src, log_name, ops, offsets = damage_source
    k = 3
    _check_damage(src, log_name, ops, offsets[k] + byte, bit, (k, offsets[k]), tmp_path)


# --- sequence gaps ------------------------------------------------------------------------

def _write_log(path, number, batches, append=False):
    """Write (sequence, [(key, value)]) batches as records of log `number`."""
    env = PosixEnv()
    name = os.path.join(path, "%06d.log" % number)
    f = env.new_appendable_file(name) if append else env.new_writable_file(name)
    writer = LogWriter(f, number)
    try:
        for seq, pairs in batches:
            batch = WriteBatch()
            batch.set_sequence(seq)
            for k, v in pairs:
                batch.put(k, v)
            writer.add_record(batch.data())
        writer.sync()
    finally:
        writer.close()


def _numbers(path):
    out = []
    for name in os.listdir(path):
        digits = name.split(".")[0].replace("MANIFEST-", "")
        if digits.isdigit():
            out.append(int(digits))
    return out


@pytest.fixture
def three_puts(db_path):
    """A closed database with k1..k3 at sequences 1..3 in one log."""
    with kvcy.connect(db_path) as conn:
        for i in (1, 2, 3):
            conn.put(b"k%d" % i, b"v%d" % i)
        log_number = conn.stats()["log_number"]
    return db_path, log_number


def _check_gap(path, expected_prefix, keys):
    before = dir_files(path)
    with pytest.raises(CorruptionError, match="(?i)gap|lost"):
        kvcy.connect(path)
    assert dir_files(path) == before
    with kvcy.connect(path, paranoid_checks=False) as conn:
        assert read_state(conn, keys) == expected_prefix
    with kvcy.connect(path) as conn:
        assert read_state(conn, keys) == expected_prefix


def test_sequence_gap_between_logs(three_puts):
    path, log_number = three_puts
    _write_log(path, max(_numbers(path)) + 1, [(6, [(b"k6", b"v6")]), (7, [(b"k7", b"v7")])])
    keys = [b"k%d" % i for i in range(1, 8)]
    _check_gap(path, {b"k1": b"v1", b"k2": b"v2", b"k3": b"v3"}, keys)


def test_sequence_gap_inside_a_log(three_puts):
    path, log_number = three_puts
    _write_log(path, log_number, [(5, [(b"k5", b"v5"), (b"k6", b"v6")])], append=True)
    keys = [b"k%d" % i for i in range(1, 7)]
    _check_gap(path, {b"k1": b"v1", b"k2": b"v2", b"k3": b"v3"}, keys)


def test_contiguous_hand_written_log_is_accepted(three_puts):
    # The control for the two tests above: without a gap the same files open.
    path, log_number = three_puts
    _write_log(path, max(_numbers(path)) + 1, [(4, [(b"k4", b"v4"), (b"k5", b"v5")])])
    with kvcy.connect(path) as conn:
        assert conn.get_many([b"k3", b"k4", b"k5"]) == [b"v3", b"v4", b"v5"]
        assert conn.stats()["last_sequence"] == 5


def test_older_log_cut_short_while_a_newer_one_survives(db_path):
    with kvcy.connect(db_path) as conn:
        for i in range(1, 6):
            conn.put(b"k%d" % i, b"v%d" % i)
        log_number = conn.stats()["log_number"]
    log = db_path / ("%06d.log" % log_number)
    offsets = record_offsets(log.read_bytes())
    os.truncate(log, offsets[3] + 5)          # seq 4 torn, seq 5 gone
    _write_log(db_path, max(_numbers(db_path)) + 1, [(6, [(b"k6", b"v6")])])
    keys = [b"k%d" % i for i in range(1, 7)]
    _check_gap(db_path, {b"k1": b"v1", b"k2": b"v2", b"k3": b"v3"}, keys)


def test_record_removed_from_the_middle_of_a_log(db_path):
    with kvcy.connect(db_path) as conn:
        for i in range(1, 6):
            conn.put(b"k%d" % i, b"v%d" % i)
        log_number = conn.stats()["log_number"]
    log = db_path / ("%06d.log" % log_number)
    data = log.read_bytes()
    offsets = record_offsets(data)
    assert offsets[-1] < LOG_BLOCK_BYTES      # all in block 0: splicing keeps them valid
    log.write_bytes(data[:offsets[2]] + data[offsets[3]:])
    keys = [b"k%d" % i for i in range(1, 6)]
    _check_gap(db_path, {b"k1": b"v1", b"k2": b"v2"}, keys)


# --- CURRENT and MANIFEST -----------------------------------------------------------------

@pytest.fixture
def closed_db(db_path):
    with kvcy.connect(db_path) as conn:
        conn.put(b"a", b"1")
        conn.put(b"b", b"2")
    with kvcy.connect(db_path) as conn:     # a second open: a rewritten log, a new MANIFEST
        conn.put(b"c", b"3")
    return db_path


def _manifest(path):
    (name,) = [n for n in os.listdir(path) if n.startswith("MANIFEST-")]
    return path / name


def _assert_corrupt_and_untouched(path, match=None):
    before = dir_files(path)
    with pytest.raises(CorruptionError, match=match):
        kvcy.connect(path)
    assert dir_files(path) == before
    with pytest.raises(CorruptionError, match=match):   # and again: nothing was "repaired"
        kvcy.connect(path)
    assert dir_files(path) == before


def test_missing_current_with_logs_present(closed_db):
    os.remove(closed_db / "CURRENT")
    _assert_corrupt_and_untouched(closed_db, "CURRENT")


def test_missing_current_and_manifest_with_logs_present(closed_db):
    os.remove(closed_db / "CURRENT")
    os.remove(_manifest(closed_db))
    _assert_corrupt_and_untouched(closed_db, "CURRENT")


def test_corrupted_manifest_record(closed_db):
    manifest = _manifest(closed_db)
    data = manifest.read_bytes()
    offsets = record_offsets(data)
    assert len(offsets) >= 2
    flip_bit(manifest, offsets[0] + LOG_HEADER_BYTES + 1)
    _assert_corrupt_and_untouched(closed_db, manifest.name)


def test_manifest_with_a_corrupt_edit(closed_db):
    # Intact framing and CRC around a payload that is not a version edit.
    manifest = _manifest(closed_db)
    env = PosixEnv()
    writer = LogWriter(env.new_appendable_file(str(manifest)))
    writer.add_record(b"\xff\xff\xff\xff not an edit")
    writer.close()
    _assert_corrupt_and_untouched(closed_db)


def test_empty_manifest(closed_db):
    os.truncate(_manifest(closed_db), 0)
    _assert_corrupt_and_untouched(closed_db)


@pytest.mark.parametrize("content", [b"MANIFEST-999999\n", b"", b"garbage\n",
                                     b"../MANIFEST-000001\n"],
                         ids=["missing-manifest", "empty", "garbage", "path"])
def test_bad_current(closed_db, content):
    (closed_db / "CURRENT").write_bytes(content)
    _assert_corrupt_and_untouched(closed_db)


def test_missing_log_named_by_the_manifest(closed_db):
    for log in log_paths(closed_db):
        os.remove(log)
    _assert_corrupt_and_untouched(closed_db, "missing")
