"""Tests for the engine's point reads: kvcy._read_path (ReadState, ReadPath)
over kvcy._table's C lookups and the C block cache, through the public API.

  * a hypothesis rule-based machine against a dict model (puts, deletes,
    batches, flushes, compactions, reopen, gets, get_many, snapshots) under
    small options so tables live at several levels, with the block cache
    off, tiny and large, the row cache off (C path without the GIL) and on
    (Table.get with the GIL), snappy and raw blocks;
  * reads through tests/fault_env.FaultEnv, whose files are Python objects,
    so every table goes through the with-GIL path; injected read errors
    must give OperationalError naming the file, never a wrong value, and
    reads recover once the faults stop;
  * damaged tables read through conn.get on the C path without the GIL:
    flipped bytes in data blocks, compression bytes rewritten behind a fixed
    CRC, truncated files (closed, and shrunk under an open table).  Each get
    returns the right value or raises CorruptionError naming the table
    file.  The random-damage loop runs in a child process so a segfault
    fails the test instead of killing pytest;
  * 4 reader threads against a writer that puts, flushes and compacts:
    every value read is one written for that key, no older than the
    version acknowledged before the read began, and get_many and snapshots
    see whole batches;
  * get_many agrees with get at one sequence; use after close raises
    ProgrammingError.

Longer variants run with -m slow.
"""
import os
import random
import shutil
import sys
import tempfile
import threading
import time

import pytest

from child_batch import run_in_child, run_script_ok
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import kvcy
from kvcy._read_path import GIL_SPIN_COMPILED
from kvcy.env import PosixEnv
from kvcy.errors import CorruptionError, OperationalError, ProgrammingError
from kvcy.table import Table
from kvcy.table_format import NO_COMPRESSION, SNAPPY_COMPRESSION

from test_corruption import fix_crc, Region
from test_table import index_entries

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
KIB = 1024

# Small everything: memtables switch every 4 KiB, tables are cut at 1 KiB
# and level 1 is full at 2 KiB, so a few hundred writes reach levels 0-3.
SMALL = dict(memtable_max_bytes=4096, memtable_min_bytes=0, block_size=256,
             target_file_bytes=1024, level1_max_bytes=2 * KIB, level_size_multiplier=2,
             level0_compaction_trigger=2)


def sst_files(path):
    return sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".sst"))


def level_files(conn):
    stats = conn.stats()
    return [stats["level%d_files" % level] for level in range(7)]


# -- (a) the model-based machine ------------------------------------------------------------

KEYS = ([b"", b"\x00", b"\x00\x00", b"a", b"a\x00", b"ab", b"\x7f", b"\x80", b"\xff",
         b"\xff\xff"] + [b"key%03d" % i for i in range(0, 120, 3)])
KEY = st.sampled_from(KEYS)
VALUE = st.one_of(
    st.binary(max_size=24),
    st.builds(lambda chunk, n: chunk * n, st.binary(min_size=1, max_size=3),
              st.integers(40, 400)))
OPTION_SETS = st.fixed_dictionaries({
    "block_cache_bytes": st.sampled_from([0, 700, 64 * KIB]),
    "row_cache_bytes": st.sampled_from([0, 0, 16 * KIB]),
    "compression": st.sampled_from(["snappy", "none"]),
    "bloom_bits_per_key": st.sampled_from([0, 10]),
    "restart_interval": st.sampled_from([1, 4, 16]),
})


class ReadPathMachine(RuleBasedStateMachine):
    """conn against a dict; snapshots against frozen copies of it."""

    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="kvcy-read-path-")
        self.path = os.path.join(self.dir, "db")
        self.conn = None
        self.options = None
        self.model = {}
        self.snapshots = []               # (Snapshot, dict as of it)

    @initialize(options=OPTION_SETS)
    def open(self, options):
        self.options = dict(SMALL, **options)
        self.conn = kvcy.connect(self.path, **self.options)

    def teardown(self):
        if self.conn is not None:
            if not self.conn.closed:
                event("levels holding files: %d" % sum(1 for n in level_files(self.conn) if n))
            self.conn.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # writes

    @rule(key=KEY, value=VALUE)
    def put(self, key, value):
        self.conn.put(key, value)
        self.model[key] = value

    @rule(key=KEY)
    def delete(self, key):
        self.conn.delete(key)
        self.model.pop(key, None)

    @rule(items=st.dictionaries(KEY, VALUE, max_size=12))
    def put_many(self, items):
        self.conn.put_many(items)
        self.model.update(items)

    @rule(seed=st.integers(0, 2 ** 32), n=st.integers(20, 120))
    def burst(self, seed, n):
        # Enough bytes to switch memtables and start background compactions.
        rng = random.Random(seed)
        for _ in range(n):
            key = rng.choice(KEYS)
            if rng.random() < 0.15:
                self.conn.delete(key)
                self.model.pop(key, None)
            else:
                value = rng.randbytes(rng.randrange(0, 300))
                self.conn.put(key, value)
                self.model[key] = value

    @rule()
    def flush(self):
        self.conn.flush()

    @rule(a=st.none() | KEY, b=st.none() | KEY)
    def compact_range(self, a, b):
        if a is not None and b is not None and a > b:
            a, b = b, a
        self.conn.compact_range(a, b)

    @rule()
    def reopen(self):
        self.conn.close()              # closes the snapshots too
        self.snapshots = []
        self.conn = kvcy.connect(self.path, **self.options)

    # reads

    @rule(key=KEY)
    def get(self, key):
        assert self.conn.get(key) == self.model.get(key)

    @rule(keys=st.lists(KEY, max_size=12))
    def get_many(self, keys):
        want = [self.model.get(k) for k in keys]
        assert self.conn.get_many(keys) == want
        assert self.conn.get_many(keys, default=b"?") == [b"?" if w is None else w
                                                           for w in want]

    @precondition(lambda self: len(self.snapshots) < 3)
    @rule()
    def take_snapshot(self):
        self.snapshots.append((self.conn.snapshot(), dict(self.model)))

    @precondition(lambda self: self.snapshots)
    @rule(data=st.data())
    def read_snapshot(self, data):
        snap, model = data.draw(st.sampled_from(self.snapshots))
        keys = data.draw(st.lists(KEY, max_size=12))
        want = [model.get(k) for k in keys]
        # (e) one sequence: get_many and the single gets agree, and match the model.
        assert snap.get_many(keys) == want
        assert [snap.get(k) for k in keys] == want

    @precondition(lambda self: self.snapshots)
    @rule(data=st.data())
    def release_snapshot(self, data):
        i = data.draw(st.integers(0, len(self.snapshots) - 1))
        snap, _ = self.snapshots.pop(i)
        snap.close()
        with pytest.raises(ProgrammingError):
            snap.get(KEYS[0])

    @invariant()
    def every_key(self):
        if self.conn is None:
            return
        assert self.conn.get_many(KEYS) == [self.model.get(k) for k in KEYS]


# Reads race the background compaction here, which can hang a debug build.
TestReadPathModel = ReadPathMachine.TestCase
TestReadPathModel.settings = settings(
    max_examples=12, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.mark.slow
class TestReadPathModelLong(ReadPathMachine.TestCase):
    settings = settings(max_examples=300, stateful_step_count=100, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow])


def test_model_reaches_several_levels(tmp_path):
    # The machine's options really spread data over several levels: the
    # same writes as a long burst leave files at two or more levels.
    rng = random.Random(1)
    with kvcy.connect(tmp_path / "db", **SMALL) as conn:
        model = {}
        for _ in range(1500):
            key = rng.choice(KEYS)
            model[key] = rng.randbytes(rng.randrange(0, 200))
            conn.put(key, model[key])
        conn.flush()
        assert sum(1 for n in level_files(conn) if n) >= 2, level_files(conn)
        assert conn.get_many(KEYS) == [model.get(k) for k in KEYS]


# -- shared database builder ---------------------------------------------------------------

def build_db(path, n=400, seed=0, **options):
    """A database with tables at level 0 and below and one memtable-free
    state; returns the model dict.  Values name their key and version."""
    rng = random.Random(seed)
    model = {}
    options = dict(dict(block_size=256, target_file_bytes=4 * KIB), **options)
    with kvcy.connect(path, **options) as conn:
        for version in range(3):
            batch = {b"key%05d" % i: b"key%05d:v%d:" % (i, version) + rng.randbytes(
                rng.randrange(0, 40)) for i in range(n) if rng.random() < 0.7}
            conn.put_many(batch)
            model.update(batch)
            conn.flush()
            if version == 1:
                conn.compact_range()
        for i in range(0, n, 11):                         # tombstones in level 0
            conn.delete(b"key%05d" % i)
            model.pop(b"key%05d" % i, None)
        conn.flush()
        assert conn.get_many(sorted(model)) == [model[k] for k in sorted(model)]
    return model


ALL_KEYS = [b"key%05d" % i for i in range(400)] + [b"", b"key", b"key00010\x00", b"zzz"]


# -- (b) the with-GIL path through FaultEnv -------------------------------------------------

@pytest.mark.parametrize("block_cache_bytes", [0, 4 * KIB, 1 << 20])
@pytest.mark.parametrize("row_cache_bytes", [0, 64 * KIB])
def test_fault_env_reads_are_correct(tmp_path, fault_env, block_cache_bytes, row_cache_bytes):
    path = tmp_path / "db"
    model = build_db(path, seed=1)
    with kvcy.connect(path, env=fault_env, block_cache_bytes=block_cache_bytes,
                      row_cache_bytes=row_cache_bytes) as conn:
        for _ in range(2):                               # the second round hits the caches
            assert conn.get_many(ALL_KEYS) == [model.get(k) for k in ALL_KEYS]
            for k in ALL_KEYS[::3]:
                assert conn.get(k) == model.get(k)
        with conn.snapshot() as snap:
            conn.put(b"key00001", b"new")
            conn.delete(b"key00002")
            assert snap.get(b"key00001") == model.get(b"key00001")
            assert snap.get(b"key00002") == model.get(b"key00002")
            assert snap.get_many(ALL_KEYS) == [model.get(k) for k in ALL_KEYS]
        assert conn.get(b"key00001") == b"new" and conn.get(b"key00002") is None


@pytest.mark.parametrize("block_cache_bytes", [0, 1 << 20])
def test_injected_read_errors_raise_operational_error(tmp_path, fault_env, block_cache_bytes):
    path = tmp_path / "db"
    model = build_db(path, seed=2)
    with kvcy.connect(path, env=fault_env, block_cache_bytes=block_cache_bytes) as conn:
        conn.put(b"key00003", b"in the memtable")
        model[b"key00003"] = b"in the memtable"
        # Every table read fails, the first table opens included.
        fault_env.fail_after(0, ops=("read",))
        failed = 0
        for k in ALL_KEYS:
            try:
                got = conn.get(k)
            except OperationalError as exc:
                assert ".sst" in str(exc), exc
                failed += 1
                continue
            assert got == model.get(k), k
        assert failed > len(ALL_KEYS) // 2
        assert conn.get(b"key00003") == b"in the memtable"      # memtables need no read
        with pytest.raises(OperationalError):
            conn.get_many(ALL_KEYS)
        # Reads recover as soon as the file system does (nothing is sticky).
        fault_env.clear_faults()
        assert conn.get_many(ALL_KEYS) == [model.get(k) for k in ALL_KEYS]
        # Now with the tables open (and, with a cache, some blocks cached):
        # after n good reads, each get answers right or raises.
        for n in (0, 1, 3, 10, 40):
            fault_env.fail_after(n, ops=("read",))
            outcomes = set()
            for k in ALL_KEYS:
                try:
                    got = conn.get(k)
                except OperationalError:
                    outcomes.add("error")
                    continue
                assert got == model.get(k), (n, k)
                outcomes.add("ok")
            assert "ok" in outcomes
            if not block_cache_bytes:
                assert "error" in outcomes       # nothing cached: the fault is reached
            fault_env.clear_faults()
        assert conn.get_many(ALL_KEYS) == [model.get(k) for k in ALL_KEYS]


def test_injected_read_errors_with_row_cache(tmp_path, fault_env):
    path = tmp_path / "db"
    model = build_db(path, seed=3)
    with kvcy.connect(path, env=fault_env, block_cache_bytes=0,
                      row_cache_bytes=1 << 20) as conn:
        warm = ALL_KEYS[:200]
        assert conn.get_many(warm) == [model.get(k) for k in warm]
        fault_env.fail_after(0, ops=("read",))
        # Rows cached by the row cache need no read; the others fail.
        errors = 0
        for k in ALL_KEYS:
            try:
                got = conn.get(k)
            except OperationalError:
                errors += 1
                assert k not in warm, k
                continue
            assert got == model.get(k)
        assert errors > 0
        fault_env.clear_faults()
        assert conn.get_many(ALL_KEYS) == [model.get(k) for k in ALL_KEYS]


# -- (c) damaged tables on the C path ----------------------------------------------------------

def block_layout(sst):
    """[(offset, size)] of the data blocks of a table file."""
    table = Table.open(PosixEnv().new_random_access_file(sst), os.path.getsize(sst))
    return [(h.offset, h.size) for _, h in index_entries(table)]


def xor_at(path, pos, bits):
    with open(path, "r+b") as f:
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ bits]))


def set_compression(path, offset, size, kind):
    """Rewrite a block's compression byte and fix its CRC (damage a CRC cannot see)."""
    with open(path, "rb") as f:
        data = f.read()
    data = data[:offset + size] + bytes([kind]) + data[offset + size + 1:]
    data = fix_crc(data, Region("data", 0, offset, size))
    with open(path, "wb") as f:
        f.write(data)


def check_reads(conn, model, keys, damaged):
    """Every get answers right or raises CorruptionError naming a damaged file;
    returns the number of errors."""
    names = [os.path.basename(p) for p in damaged]
    errors = 0
    for k in keys:
        try:
            got = conn.get(k)
        except CorruptionError as exc:
            assert any(n in str(exc) for n in names), (str(exc), names)
            errors += 1
            continue
        assert got == model.get(k), (k, got, model.get(k))
    return errors


@pytest.fixture(scope="module", params=["snappy", "none"])
def pristine(request, tmp_path_factory):
    """(path, model) of a closed database; copy it before damaging it."""
    path = tmp_path_factory.mktemp("pristine") / "db"
    model = build_db(path, seed=4, compression=request.param, bloom_bits_per_key=0)
    return str(path), model, request.param


def damaged_copy(pristine, tmp_path):
    src, model, _ = pristine
    dst = str(tmp_path / "db")
    shutil.copytree(src, dst)
    return dst, model


def test_flipped_byte_in_each_data_block(pristine, tmp_path):
    path, model = damaged_copy(pristine, tmp_path)
    sst = sst_files(path)[-1]
    blocks = block_layout(sst)
    rng = random.Random(9)
    for offset, size in blocks[::max(1, len(blocks) // 6)]:
        xor_at(sst, offset + rng.randrange(size + 5), 1 << rng.randrange(8))
    with kvcy.connect(path, block_cache_bytes=4 * KIB) as conn:
        errors = check_reads(conn, model, ALL_KEYS, [sst])
        assert errors > 0
        with pytest.raises(CorruptionError, match="checksum"):
            for k in ALL_KEYS:
                conn.get_many([k])
        assert check_reads(conn, model, ALL_KEYS, [sst]) == errors     # stays an error


@pytest.mark.parametrize("kind", [2, 5, 0x80, 0xFF, "swap"])
def test_compression_byte_behind_a_fixed_crc(pristine, tmp_path, kind):
    path, model = damaged_copy(pristine, tmp_path)
    compression = pristine[2]
    sst = sst_files(path)[0]
    blocks = block_layout(sst)
    if kind == "swap":
        # snappy bytes read as a raw block, or raw bytes fed to snappy.
        kind = NO_COMPRESSION if compression == "snappy" else SNAPPY_COMPRESSION
    for offset, size in blocks:
        set_compression(sst, offset, size, kind)
    with kvcy.connect(path, block_cache_bytes=1 << 20) as conn:
        errors = check_reads(conn, model, ALL_KEYS, [sst])
        assert errors > 0
        try:
            conn.get_many(ALL_KEYS)
        except CorruptionError as exc:
            msg = str(exc)
            assert os.path.basename(sst) in msg and "data block at offset" in msg, msg
            if kind not in (NO_COMPRESSION, SNAPPY_COMPRESSION):
                assert "unknown compression type %d" % kind in msg, msg
        else:
            pytest.fail("get_many read a damaged table without an error")


def test_truncated_table_file(pristine, tmp_path):
    path, model = damaged_copy(pristine, tmp_path)
    ssts = sst_files(path)
    for i, sst in enumerate(ssts):
        size = os.path.getsize(sst)
        os.truncate(sst, [size - 1, size // 2, 0][i % 3])
    with kvcy.connect(path) as conn:
        errors = check_reads(conn, model, ALL_KEYS, ssts)
        assert errors > 0
        with pytest.raises(CorruptionError):
            conn.get_many(ALL_KEYS)


def test_table_shrunk_while_open(pristine, tmp_path):
    # The table is open (footer and index in memory), so the shortened file
    # is met by a mapped read or pread without the GIL: "truncated", never
    # stale bytes.
    path, model = damaged_copy(pristine, tmp_path)
    with kvcy.connect(path, block_cache_bytes=4 * KIB) as conn:
        assert conn.get_many(ALL_KEYS) == [model.get(k) for k in ALL_KEYS]   # opens all
        ssts = sst_files(path)
        for sst in ssts:
            os.truncate(sst, os.path.getsize(sst) // 3)
        conn._engine.block_cache.clear()
        messages = []
        for k in ALL_KEYS:
            try:
                got = conn.get(k)
            except CorruptionError as exc:
                messages.append(str(exc))
                continue
            assert got == model.get(k), k
        assert messages and all("truncated" in m and ".sst" in m for m in messages), messages[:3]


def test_damaged_level0_table_does_not_hide_deeper_answers(tmp_path):
    # Keys only in deeper tables read fine when a level-0 table is damaged.
    path = str(tmp_path / "db")
    with kvcy.connect(path, block_size=256) as conn:
        conn.put_many({b"deep%03d" % i: b"d%d" % i for i in range(200)})
        conn.compact_range()
        conn.put_many({b"top%03d" % i: b"t%d" % i for i in range(200)})
        conn.flush()
        levels = level_files(conn)
        assert levels[0] == 1 and sum(levels[1:]) >= 1
    top = sst_files(path)[-1]
    with open(top, "r+b") as f:                       # every data block of the top table
        for offset, size in block_layout(top):
            f.seek(offset)
            f.write(b"\xee")
    with kvcy.connect(path) as conn:
        for i in range(200):
            assert conn.get(b"deep%03d" % i) == b"d%d" % i
            with pytest.raises(CorruptionError, match=os.path.basename(top)):
                conn.get(b"top%03d" % i)


# The random-damage loop, run in a child process.

FLIP_CONFIGS = [
    dict(compression="snappy", bloom_bits_per_key=10, restart_interval=16),
    dict(compression="none", bloom_bits_per_key=0, restart_interval=1),
    dict(compression="snappy", bloom_bits_per_key=0, restart_interval=4),
]


def damage(rng, sst):
    """One random damage that a checksum, the footer magic or a length check
    can see; returns its description."""
    with open(sst, "rb") as f:
        data = f.read()
    r = rng.random()
    blocks = block_layout(sst) if r < 0.85 else None
    if r < 0.5:                                      # one byte of a data block or its trailer
        offset, size = rng.choice(blocks)
        pos = rng.randrange(offset, offset + size + 5)
        edit = ("xor", pos, rng.randrange(1, 256))
    elif r < 0.65:                                   # up to 4 bytes anywhere (a burst)
        pos = rng.randrange(len(data))
        n = rng.randint(1, 4)
        edit = ("set", pos, bytes(rng.randrange(256) for _ in range(n)))
    elif r < 0.85:                                   # compression byte behind a fixed CRC
        offset, size = rng.choice(blocks)
        edit = ("compression", offset, size, rng.choice([0, 1, 2, 7, 0x80, 0xFF]))
    else:
        edit = ("truncate", rng.randrange(len(data)))
    if edit[0] == "xor":
        data = data[:edit[1]] + bytes([data[edit[1]] ^ edit[2]]) + data[edit[1] + 1:]
    elif edit[0] == "set":
        data = data[:edit[1]] + edit[2] + data[edit[1] + len(edit[2]):]
    elif edit[0] == "compression":
        _, offset, size, kind = edit
        data = fix_crc(data[:offset + size] + bytes([kind]) + data[offset + size + 1:],
                       Region("data", 0, offset, size))
    else:
        data = data[:edit[1]]
    with open(sst, "wb") as f:
        f.write(data)
    return edit


def run_flip_batch(cases, seed):
    """The child's loop: damage a copy of a database, read every key through
    conn.get / get_many (the C path), check the rule; returns counters."""
    rng = random.Random(seed)
    work = tempfile.mkdtemp(prefix="kvcy-read-flips-")
    counts = {"cases": 0, "errors": 0, "clean": 0, "gets": 0}
    try:
        bases = []
        for i, config in enumerate(FLIP_CONFIGS):
            src = os.path.join(work, "base%d" % i)
            bases.append((src, build_db(src, seed=i, **config), config))
        for case in range(cases):
            src, model, config = rng.choice(bases)
            dst = os.path.join(work, "case")
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst)
            ssts = sst_files(dst)
            sst = rng.choice(ssts)
            cache = rng.choice([0, 1 * KIB, 1 << 20])
            open_first = rng.random() < 0.3
            conn = kvcy.connect(dst, block_cache_bytes=cache, **config)
            try:
                if open_first:
                    # Tables already open: the damage is met by pread alone.
                    conn.get_many(ALL_KEYS)
                    conn._engine.block_cache.clear()
                edit = damage(rng, sst)
                keys = rng.sample(ALL_KEYS, 150)
                try:
                    errors = check_reads(conn, model, keys, [sst])
                    try:
                        got = conn.get_many(keys)
                    except CorruptionError as exc:
                        assert os.path.basename(sst) in str(exc), str(exc)
                    else:
                        assert got == [model.get(k) for k in keys]
                except AssertionError as exc:
                    raise AssertionError("seed %d case %d: %r in %s: %s"
                                         % (seed, case, edit, os.path.basename(sst), exc))
            finally:
                conn.close()
            counts["cases"] += 1
            counts["gets"] += len(keys)
            counts["errors" if errors else "clean"] += 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return counts


def run_flip_child(cases, timeout):
    return run_in_child("test_read_path", "run_flip_batch", cases, "KVCY_READ_FLIP_SEED",
                        timeout, "read-path damage batch")


def test_random_damage_in_child_process():
    seed, counts = run_flip_child(cases=60, timeout=300)
    assert counts["cases"] == 60, counts
    assert counts["errors"] > 0 and counts["clean"] > 0, (seed, counts)


@pytest.mark.slow
def test_random_damage_in_child_process_large():
    seed, counts = run_flip_child(cases=3000, timeout=3600)
    assert counts["cases"] == 3000, counts


# -- (d) readers against a writer that flushes and compacts ------------------------------------

N_KEYS = 64


def encode(key_index, version):
    return b"k%03d:%08d:" % (key_index, version) + b"x" * (key_index % 5 * 30)


def decode(key_index, value):
    head, version, _ = value.split(b":", 2)
    assert head == b"k%03d" % key_index, (key_index, value)
    return int(version)


def run_threads(readers, writer, errors, timeout):
    """Start readers and the writer with a short switch interval (more
    interleavings), join them all, and raise the first error any met."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        threads = [threading.Thread(target=reader, args=(n,)) for n, reader in enumerate(readers)]
        threads.append(threading.Thread(target=writer))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in threads), "a thread hung"
    finally:
        sys.setswitchinterval(old)
    if errors:
        raise errors[0]


def run_readers_against_writer(path, rounds, options, readers=4):
    keys = [b"key%03d" % i for i in range(N_KEYS)]
    acked = [0] * N_KEYS             # version acknowledged (put returned) per key
    started = [0] * N_KEYS           # highest version a put has started with
    batches = {}                     # version -> key indexes written together
    done = threading.Event()
    errors = []
    checks = [0] * readers

    def check(i, value, known):
        assert value is not None or known == 0, (i, known)
        if value is None:
            return 0
        v = decode(i, value)
        assert known <= v <= started[i], (i, known, v, started[i])
        return v

    def check_batches(versions):
        # A batch is atomic and later batches only raise versions: seeing
        # version v of one key means every key of batch v shows >= v.
        for i, v in enumerate(versions):
            for j in batches.get(v, ()):
                assert versions[j] >= v, (i, j, v, versions[j])

    def writer():
        rng = random.Random(1)
        early = conn.snapshot()
        try:
            for version in range(1, rounds + 1):
                members = rng.sample(range(N_KEYS), rng.randint(1, 12))
                batches[version] = members
                for i in members:
                    started[i] = version
                if len(members) == 1:
                    conn.put(keys[members[0]], encode(members[0], version))
                else:
                    conn.put_many({keys[i]: encode(i, version) for i in members})
                for i in members:
                    acked[i] = version
                r = rng.random()
                if r < 0.05:
                    conn.flush()
                elif r < 0.07:
                    a, b = sorted(rng.sample(keys, 2))
                    conn.compact_range(a, b)
                elif r < 0.08:
                    conn.compact_range()
                if version == rounds // 3:
                    # The snapshot taken before any write still sees nothing;
                    # once released, compactions may drop old versions.
                    assert early.get_many(keys) == [None] * N_KEYS
                    early.close()
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def reader(n):
        rng = random.Random(100 + n)
        try:
            while not done.is_set():
                r = rng.random()
                if r < 0.6:
                    i = rng.randrange(N_KEYS)
                    known = acked[i]
                    check(i, conn.get(keys[i]), known)
                elif r < 0.9:
                    known = list(acked)
                    values = conn.get_many(keys)
                    check_batches([check(i, v, known[i]) for i, v in enumerate(values)])
                else:
                    known = list(acked)
                    with conn.snapshot() as snap:
                        first = snap.get_many(keys)
                        versions = [check(i, v, known[i]) for i, v in enumerate(first)]
                        check_batches(versions)
                        time.sleep(0.001)      # let the writer move on
                        # (e) the same sequence later: same answers, one by one too.
                        assert snap.get_many(keys) == first
                        picks = rng.sample(range(N_KEYS), 8)
                        assert [snap.get(keys[i]) for i in picks] == [first[i] for i in picks]
                checks[n] += 1
        except BaseException as exc:
            errors.append(exc)
            done.set()

    conn = kvcy.connect(path, **options)
    try:
        run_threads([reader] * readers, writer, errors, 300)
        assert min(checks) > 0, checks
        final = conn.get_many(keys)
        assert [decode(i, v) if v is not None else 0 for i, v in enumerate(final)] == acked
        return level_files(conn)
    finally:
        conn.close()


@pytest.mark.parametrize("options", [
    dict(SMALL, block_cache_bytes=2 * KIB),
    dict(SMALL, block_cache_bytes=0, compression="none", bloom_bits_per_key=0),
    dict(SMALL, block_cache_bytes=64 * KIB, row_cache_bytes=8 * KIB),
], ids=["small-cache", "no-cache", "row-cache"])
def test_readers_see_acknowledged_versions_while_writer_flushes_and_compacts(tmp_path, options):
    levels = run_readers_against_writer(str(tmp_path / "db"), 200, options)
    assert sum(1 for n in levels if n) >= 1, levels


@pytest.mark.slow
def test_readers_against_writer_long(tmp_path):
    run_readers_against_writer(str(tmp_path / "db"), 20000, dict(SMALL, block_cache_bytes=4 * KIB))


# -- (e) get_many at one sequence ---------------------------------------------------------------

def test_get_many_matches_gets_at_snapshot_sequences(tmp_path):
    rng = random.Random(6)
    keys = [b"key%03d" % i for i in range(150)] + [b"absent"]
    with kvcy.connect(tmp_path / "db", **SMALL) as conn:
        history = []
        model = {}
        for step in range(8):
            for _ in range(120):
                k = rng.choice(keys[:-1])
                if rng.random() < 0.2:
                    conn.delete(k)
                    model.pop(k, None)
                else:
                    model[k] = b"%s@%d" % (k, step) + rng.randbytes(rng.randrange(60))
                    conn.put(k, model[k])
            history.append((conn.snapshot(), dict(model)))
            [conn.flush, lambda: None, conn.compact_range][step % 3]()
        engine = conn._engine
        for snap, old in history:
            want = [old.get(k) for k in keys]
            assert snap.get_many(keys) == want
            assert [snap.get(k) for k in keys] == want
            # The engine's C methods at the snapshot's sequence agree too.
            assert engine.get_many(keys, snap.sequence) == want
            assert [engine.get(k, snap.sequence) for k in keys] == want
            snap.close()
        assert conn.get_many(keys) == [model.get(k) for k in keys]
        # Bytes-like keys are read as their bytes; str is refused.
        k = rng.choice(sorted(model))
        assert conn.get_many([bytearray(k), memoryview(k)]) == [model[k], model[k]]
        with pytest.raises(TypeError):
            conn.get_many(["key001"])
        with pytest.raises(TypeError):
            conn.get("key001")


# -- (f) use after close ----------------------------------------------------------------------

def test_reads_after_close_raise_programming_error(tmp_path):
    path = tmp_path / "db"
    build_db(path, n=50)
    conn = kvcy.connect(path)
    assert conn.get(b"key00001") is not None
    snap = conn.snapshot()
    conn.close()
    for call in (lambda: conn.get(b"key00001"), lambda: conn.get_many([b"key00001"]),
                 lambda: conn.get_many([]), lambda: b"key00001" in conn,
                 lambda: snap.get(b"key00001"), lambda: snap.get_many([b"key00001"])):
        with pytest.raises(ProgrammingError):
            call()
    conn.close()                                          # idempotent
    with pytest.raises(ProgrammingError):
        conn.get(b"key00001")


# -- (f) the memtable searched without the GIL while the writer inserts ----------------------

def test_gets_without_the_gil_while_the_writer_inserts_into_the_memtable(tmp_path):
    # Readers search the mutable memtable without the GIL while the writer
    # links new nodes into it (release stores, acquire loads): an
    # acknowledged key must always be found with its value, any other key
    # found whole or not at all.  One memtable: nothing is flushed.
    n = 60_000
    rng = random.Random(11)
    order = list(range(n))
    rng.shuffle(order)                    # inserts land all over the list
    keys = [b"mt%07d" % i for i in range(n)]
    value = [b"v%07d-" % i * (1 + i % 7) for i in range(n)]
    acked = [0]                           # order[:acked[0]] are acknowledged
    done = threading.Event()
    errors = []
    checks = [0, 0, 0]
    conn = kvcy.connect(str(tmp_path / "db"), memtable_max_bytes=64 << 20)

    def writer():
        try:
            for j, i in enumerate(order):
                conn.put(keys[i], value[i])
                acked[0] = j + 1
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def reader(r):
        rr = random.Random(r)
        try:
            while not done.is_set():
                upto = acked[0]
                if upto:
                    i = order[rr.randrange(upto)]
                    got = conn.get(keys[i])
                    assert got == value[i], (i, got)
                i = rr.randrange(n)
                got = conn.get(keys[i])
                assert got is None or got == value[i], (i, got)
                checks[r] += 1
        except BaseException as exc:
            errors.append(exc)
            done.set()

    try:
        run_threads([reader] * 3, writer, errors, 120)
        assert min(checks) > 100, checks
        assert conn.stats()["flushes"] == 0
        assert conn.get_many(keys[:100]) == value[:100]
    finally:
        conn.close()


# -- waiting for the GIL to look free (kvcy/_gil_spin.h) ---------------------

def test_the_gil_wait_is_compiled_in_where_cpython_has_a_gil():
    # The wait reads the GIL's flag through CPython's internal headers; a
    # build that silently fell back to taking the GIL at once would lose
    # the thread scaling of docs/impl.md without failing any other test.
    import sysconfig
    expected = (sys.implementation.name == "cpython"
                and (3, 10) <= sys.version_info[:2] <= (3, 13)
                and not sysconfig.get_config_var("Py_GIL_DISABLED"))
    assert GIL_SPIN_COMPILED == expected


@pytest.mark.skipif(not __import__("kvcy._read_path")._read_path.GIL_SPIN_COMPILED, reason="the GIL's switch count is not readable here")
def test_gets_treat_the_gil_as_shared_while_other_threads_take_it():
    # A get searches cached blocks with the GIL held only while no other
    # thread has taken the GIL within the thread's last 16,384 gets
    # (KVCY_GIL_SHARED_CALLS); otherwise it releases it for the search.
    # In a fresh interpreter, where no other thread wakes up meanwhile.
    code = """if True:
        import threading
        from kvcy._read_path import gil_shared_now
        def hand_over():
            t = threading.Thread(target=lambda: sum(range(1000)))
            t.start()
            t.join()                       # the GIL went to the thread and back
        assert not gil_shared_now()        # a thread's first question: nothing seen yet
        hand_over()
        assert gil_shared_now()
        assert all(gil_shared_now() for _ in range(16_384))
        assert not any(gil_shared_now() for _ in range(1000))    # alone: held
        hand_over()
        assert gil_shared_now()
        print("ok")
    """
    run_script_ok(code, timeout=60)


@pytest.mark.skipif(not GIL_SPIN_COMPILED, reason="the GIL's flag is not readable here")
def test_gets_keep_the_gil_while_another_thread_holds_it_for_long(tmp_path):
    # A get whose spin for the GIL ends with the GIL still held (a thread
    # busy in pure Python keeps it for the 5 ms switch interval) makes the
    # thread's next gets keep the GIL for their whole search: releasing it
    # per get would hand it to the busy thread each time and wait 5 ms to
    # have it back.  Without such a thread, gets never ask for that.
    code = """if True:
        import sys, threading
        import kvcy
        from kvcy._read_path import gil_long_holder_now
        conn = kvcy.connect(sys.argv[1])
        conn.put_many([(b"k%05d" % i, b"v" * 100) for i in range(5000)])
        conn.flush()
        for i in range(20000):
            assert conn.get(b"k%05d" % (i % 5000)) == b"v" * 100
        assert not gil_long_holder_now()      # alone: the GIL is free whenever a get looks
        stop = threading.Event()
        def busy():
            while not stop.is_set():
                pass
        t = threading.Thread(target=busy)
        t.start()
        try:
            for i in range(200):
                assert conn.get(b"k%05d" % i) == b"v" * 100
            assert gil_long_holder_now()
        finally:
            stop.set()
            t.join()
        conn.close()
        print("ok")
    """
    run_script_ok(code, str(tmp_path / "db"))


def test_gets_finish_while_another_thread_keeps_the_gil_busy(tmp_path):
    # Each get spins, for a few microseconds at most, until the GIL looks
    # free before taking it back.  A thread that keeps the GIL in pure
    # Python (handing it over only at the switch interval) must not hang
    # the readers or change what they read.
    n = 2_000
    keys = [b"busy%05d" % i for i in range(n)]
    with kvcy.connect(str(tmp_path / "db"), block_cache_bytes=1 << 16) as conn:
        conn.put_many([(k, k * 3) for k in keys])
        conn.flush()                   # tables: the search runs without the GIL
        done = threading.Event()
        errors = []
        counts = [0, 0, 0]

        def busy():
            while not done.is_set():
                sum(range(20_000))

        def reader(r):
            rr = random.Random(r)
            try:
                for _ in range(3_000):
                    k = keys[rr.randrange(n)]
                    assert conn.get(k) == k * 3, k
                    assert conn.get(k + b"-") is None
                    counts[r] += 1
            except BaseException as exc:
                errors.append(exc)

        def readers_then_stop(r):
            try:
                reader(r)
            finally:
                done.set()

        old = sys.getswitchinterval()
        sys.setswitchinterval(1e-3)
        try:
            threads = [threading.Thread(target=reader, args=(0,)),
                       threading.Thread(target=readers_then_stop, args=(1,)),
                       threading.Thread(target=busy)]
            for t in threads:
                t.start()
            for t in threads[:2]:
                t.join(120)
            done.set()
            threads[2].join(120)
            assert not any(t.is_alive() for t in threads), "a thread hung"
        finally:
            sys.setswitchinterval(old)
        if errors:
            raise errors[0]
        assert counts[:2] == [3_000, 3_000]


# -- searches with the GIL held up to the first block read -------------------
# ReadPath.read() searches with the GIL held while most recent gets found
# their blocks cached, and releases it only to read a block (finish_block);
# once most gets read a block it releases the GIL for the whole search.

def test_a_block_read_is_one_miss_whether_or_not_the_search_held_the_gil(tmp_path):
    conn = kvcy.connect(str(tmp_path / "db"), block_cache_bytes=8 << 20, row_cache_bytes=0)
    for i in range(20000):
        conn.put(b"k%06d" % i, b"v%d" % i * 5)
    conn.flush()
    conn.close()
    conn = kvcy.connect(str(tmp_path / "db"), block_cache_bytes=8 << 20, row_cache_bytes=0)
    try:
        # Keys 500 apart lie in different blocks: each get reads one block.
        # The first gets search with the GIL held and defer the read; after a
        # dozen the policy releases the GIL at once (with a held sample now and then).
        for i in range(0, 20000, 500):
            before = conn.stats()
            assert conn.get(b"k%06d" % i) == b"v%d" % i * 5
            after = conn.stats()
            assert after["block_cache_misses"] - before["block_cache_misses"] == 1
            assert after["block_cache_hits"] == before["block_cache_hits"]
            assert conn.get(b"k%06d" % (i + 1)) == b"v%d" % (i + 1) * 5   # now cached
            assert conn.stats()["block_cache_hits"] == after["block_cache_hits"] + 1
    finally:
        conn.close()


def test_a_deferred_block_without_the_key_goes_on_to_older_tables(tmp_path):
    # No bloom filters: the newer level-0 table's range covers the key, so its
    # block is read (deferred, then read without the GIL) and does not hold
    # the key; the search must go on to the older table, which does.
    options = dict(bloom_bits_per_key=0, row_cache_bytes=0)
    conn = kvcy.connect(str(tmp_path / "db"), **options)
    for i in range(0, 2000, 2):
        conn.put(b"k%05d" % i, b"old%d" % i)
    conn.flush()
    for i in range(1, 2000, 2):
        conn.put(b"k%05d" % i, b"new%d" % i)
    conn.flush()
    conn.close()
    with kvcy.connect(str(tmp_path / "db"), **options) as conn:
        assert conn.stats()["level0_files"] == 2
        for i in range(0, 2000, 2):              # each in the older table only
            assert conn.get(b"k%05d" % i) == b"old%d" % i
        assert conn.get(b"k%05d" % 1999) == b"new1999"
        assert conn.get(b"k99999") is None
