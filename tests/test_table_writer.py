"""TableWriter.add_many's C loop (kvcy/_table_writer_loop.pyx) and the C
key check and rewrite of ingest (kvcy/_ingest_scan.pyx)."""
import struct
import sys
import threading
import time
import types

import pytest

import kvcy
from kvcy._ingest_scan import (SCAN_BAD_TAG, SCAN_NOT_VALUE, SCAN_OK, SCAN_OUT_OF_ORDER,
                               check_keys, rewrite_keys)
from kvcy._table_builder import TableBuilder
from kvcy.env import default_env
from kvcy.errors import CorruptionError, DataError, ProgrammingError
from kvcy.options import MAX_KEY_BYTES
from kvcy.table import Table

CHUNK = 4096                     # pairs the C loop takes per GIL release


def key(i):
    return b"k%07d" % i


def read_back(path):
    """Every (user key, value) of a TableWriter file, through ingest."""
    db = path.parent / ("db-" + path.name)
    with kvcy.connect(db) as conn:
        conn.ingest([path])
        return list(conn.scan())


def raw_table(path, entries, block_size=1):
    """A table of (internal key, value) entries exactly as given (one per
    block), which TableWriter would refuse: for the ingest checks."""
    options = types.SimpleNamespace(block_size=block_size, compression="none",
                                    restart_interval=16, bloom_bits_per_key=10)
    file = default_env().new_writable_file(str(path))
    builder = TableBuilder(file, options, str(path))
    for ikey, value in entries:
        builder.add(ikey, value)
    builder.finish()
    file.sync()
    file.close()


def open_table(path):
    file = default_env().new_random_access_file(str(path))
    return Table.open(file, file.size), file


def tag(sequence, kind):
    return struct.pack("<Q", (sequence << 8) | kind)


VALUE0 = tag(0, kvcy.dbformat.KIND_VALUE)


# -- add_many ---------------------------------------------------------------

@pytest.mark.parametrize("as_list", [True, False])
def test_add_many_over_several_chunks_keeps_every_pair(tmp_path, as_list):
    pairs = [(key(i), b"value %d" % i) for i in range(CHUNK * 2 + 17)]
    with kvcy.TableWriter(tmp_path / "t") as writer:
        writer.add_many(pairs if as_list else iter(pairs))
    assert (writer.info.smallest, writer.info.largest, writer.info.count) == (
        key(0), key(len(pairs) - 1), len(pairs))
    assert read_back(tmp_path / "t") == pairs


def test_add_many_after_add_continues_the_order_check(tmp_path):
    with kvcy.TableWriter(tmp_path / "t") as writer:
        writer.add(key(5), b"x")
        with pytest.raises(ProgrammingError, match=r"key out of order: b'k0000004' after "
                                                   r"b'k0000005'"):
            writer.add_many([(key(4), b"y")])
        writer.add_many([(key(6), b"z")])
    assert writer.info.count == 2 and writer.info.smallest == key(5)


@pytest.mark.parametrize("position", [1, CHUNK - 1, CHUNK, CHUNK + 3])
def test_add_many_names_a_repeated_key_anywhere_in_a_chunk(tmp_path, position):
    pairs = [(key(i), b"v") for i in range(CHUNK + 10)]
    pairs.insert(position, pairs[position - 1])
    path = tmp_path / "t"
    with pytest.raises(ProgrammingError) as info:
        with kvcy.TableWriter(path) as writer:
            writer.add_many(iter(pairs))
    assert "duplicate key: %r after %r" % (key(position - 1), key(position - 1)) \
        in str(info.value)
    assert not path.exists()


def test_add_many_counts_what_went_in_before_a_bad_pair(tmp_path):
    writer = kvcy.TableWriter(tmp_path / "t")
    with pytest.raises(ProgrammingError, match="out of order"):
        writer.add_many([(key(1), b"a"), (key(2), b"b"), (key(0), b"c")])
    writer.add(key(3), b"d")                 # the writer goes on after a refused pair
    info = writer.finish()
    assert (info.smallest, info.largest, info.count) == (key(1), key(3), 3)


def test_add_many_keeps_the_pairs_an_iterator_gave_before_it_failed(tmp_path):
    def failing():
        for i in range(10):
            yield key(i), b"v"
        raise OSError("source went away")

    writer = kvcy.TableWriter(tmp_path / "t")
    with pytest.raises(OSError, match="source went away"):
        writer.add_many(failing())
    writer.add(key(10), b"w")
    assert writer.finish().count == 11
    assert [k for k, _ in read_back(tmp_path / "t")] == [key(i) for i in range(11)]


def test_add_many_reports_a_bad_pair_before_a_later_iterator_failure(tmp_path):
    def bad_then_failing():
        yield key(2), b"v"
        yield key(1), b"v"
        raise OSError("never reached by a loop of add()")

    with kvcy.TableWriter(tmp_path / "t") as writer:
        with pytest.raises(ProgrammingError, match="out of order"):
            writer.add_many(bad_then_failing())
    assert writer.info.count == 1


def test_add_many_converts_other_bytes_like_pairs(tmp_path):
    pairs = [(key(0), b"a"), (bytearray(key(1)), memoryview(b"b")), [key(2), b"c"],
             (key(3), bytearray(b"d"))]
    with kvcy.TableWriter(tmp_path / "t") as writer:
        writer.add_many(pairs)
    assert read_back(tmp_path / "t") == [(key(i), v) for i, v in enumerate([b"a", b"b",
                                                                            b"c", b"d"])]


def test_add_many_refuses_bad_pairs_with_the_errors_of_add(tmp_path):
    with kvcy.TableWriter(tmp_path / "t") as writer:
        with pytest.raises(TypeError, match="key must be bytes-like, not str"):
            writer.add_many([(key(0), b"a"), ("k1", b"b")])
        with pytest.raises(DataError, match="exceeds the %d-byte limit" % MAX_KEY_BYTES):
            writer.add_many([(b"z" * (MAX_KEY_BYTES + 1), b"b")])
        with pytest.raises(ValueError):
            writer.add_many([(key(5),)])
    assert writer.info.count == 1


def test_add_many_after_finish_refused(tmp_path):
    writer = kvcy.TableWriter(tmp_path / "t")
    writer.finish()
    with pytest.raises(ProgrammingError, match="finished"):
        writer.add_many([(b"a", b"1")])


def test_add_many_lets_another_thread_run_while_it_builds(tmp_path):
    # With a switch interval far longer than the call, another thread gets
    # the GIL during add_many only where the loop releases it.
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(None)
            time.sleep(0.0002)           # releases the GIL, then waits for it

    pairs = [(key(i), b"v" * 100) for i in range(100_000)]
    old = sys.getswitchinterval()
    counter = threading.Thread(target=count)
    counter.start()
    try:
        time.sleep(0.01)
        with kvcy.TableWriter(tmp_path / "t") as writer:
            sys.setswitchinterval(30)
            before = len(ticks)
            writer.add_many(pairs)
            during = len(ticks) - before
            sys.setswitchinterval(old)
    finally:
        sys.setswitchinterval(old)
        stop.set()
        counter.join()
    assert writer.info.count == len(pairs) and during > 0


# -- ingest's checks in C ----------------------------------------------------

def test_check_keys_reports_range_and_count(tmp_path):
    with kvcy.TableWriter(tmp_path / "t") as writer:
        writer.add_many((key(i), b"v") for i in range(1000))
    table, file = open_table(tmp_path / "t")
    try:
        assert check_keys(table, VALUE0) == (SCAN_OK, key(0), key(999), 1000, None)
    finally:
        file.close()


def _debug_build():
    """True in a KVCY_DEBUG=1 build, whose block builder refuses keys out of
    order (an invariant check), so no unsorted table can be made with it."""
    from kvcy._block_builder import BlockBuilder
    builder = BlockBuilder()
    builder.add(b"b" + VALUE0, b"")
    try:
        builder.add(b"a" + VALUE0, b"")
    except ProgrammingError:
        return True
    return False


@pytest.mark.skipif(_debug_build(), reason="a KVCY_DEBUG build cannot write the unsorted "
                                           "table this test needs")
def test_check_keys_stops_at_a_key_out_of_order(tmp_path):
    raw_table(tmp_path / "t", [(b"b" + VALUE0, b"1"), (b"c" + VALUE0, b"2"),
                               (b"a" + VALUE0, b"3")])
    table, file = open_table(tmp_path / "t")
    try:
        assert check_keys(table, VALUE0) == (SCAN_OUT_OF_ORDER, b"b", b"c", 2, b"a" + VALUE0)
    finally:
        file.close()
    with kvcy.connect(tmp_path / "db") as conn:
        with pytest.raises(CorruptionError, match=r"key b'a' is not after the key before it, "
                                                  r"b'c'"):
            conn.ingest([tmp_path / "t"])


def test_check_keys_stops_at_another_tag(tmp_path):
    raw_table(tmp_path / "t", [(b"a" + VALUE0, b"1"), (b"b" + tag(7, 1), b"2")])
    table, file = open_table(tmp_path / "t")
    try:
        status, smallest, largest, entries, bad = check_keys(table, VALUE0)
    finally:
        file.close()
    assert (status, entries, bad) == (SCAN_BAD_TAG, 1, b"b" + tag(7, 1))
    with kvcy.connect(tmp_path / "db") as conn:
        with pytest.raises(ProgrammingError, match="key b'b' has sequence 7, kind 1"):
            conn.ingest([tmp_path / "t"])


def test_rewrite_keys_gives_every_entry_the_new_tag(tmp_path):
    with kvcy.TableWriter(tmp_path / "t") as writer:
        writer.add_many((key(i), b"v%d" % i) for i in range(3000))
    table, file = open_table(tmp_path / "t")
    out = default_env().new_writable_file(str(tmp_path / "out"))
    try:
        options = kvcy.options.Options()
        builder = TableBuilder(out, options, str(tmp_path / "out"))
        new = tag(42, kvcy.dbformat.KIND_VALUE)
        assert rewrite_keys(table, builder, new) == (SCAN_OK, key(0), key(2999), 3000, None)
        builder.finish()
    finally:
        out.close()
        file.close()
    table, file = open_table(tmp_path / "out")
    try:
        it = table.iterator()
        it.seek_to_first()
        got = []
        while it.valid():
            got.append((it.key(), it.value()))
            it.next()
    finally:
        file.close()
    assert got == [(key(i) + new, b"v%d" % i) for i in range(3000)]


def test_rewrite_keys_stops_at_a_deletion(tmp_path):
    raw_table(tmp_path / "t", [(b"a" + VALUE0, b"1"),
                               (b"b" + tag(0, kvcy.dbformat.KIND_DELETE), b"")])
    table, file = open_table(tmp_path / "t")
    out = default_env().new_writable_file(str(tmp_path / "out"))
    try:
        builder = TableBuilder(out, kvcy.options.Options(), str(tmp_path / "out"))
        status, _, _, entries, bad = rewrite_keys(table, builder, tag(9, 1))
    finally:
        out.close()
        file.close()
    assert (status, entries, bad[:1]) == (SCAN_NOT_VALUE, 1, b"b")


def test_ingest_through_a_wrapping_env_reads_and_rewrites_with_the_gil(tmp_path, fault_env):
    # A FaultEnv's files have no descriptor the C scan may use: every block
    # is read through Python (the scan takes the GIL for it), the rewritten
    # table written through its append(); a read error stops the ingest.
    for name, first in (("a", 0), ("b", 5000)):
        with kvcy.TableWriter(tmp_path / name) as writer:
            writer.add_many((key(i), b"new %d" % i) for i in range(first, first + 3000))
    with kvcy.connect(tmp_path / "db", env=fault_env) as conn:
        conn.put(key(10), b"old")                # "a" overlaps it: rewritten
        fault_env.fail_nth(3, ops=("read",), only=lambda path: path.endswith("b"))
        with pytest.raises(kvcy.OperationalError):
            conn.ingest([tmp_path / "a", tmp_path / "b"])
        assert fault_env.injected == 1
        assert conn.get(key(10)) == b"old" and conn.get(key(5000)) is None
        fault_env.clear_faults()
        conn.ingest([tmp_path / "a", tmp_path / "b"])
        assert conn.get(key(10)) == b"new 10"
        assert len(list(conn.scan())) == 6000


def test_put_and_put_many_are_add_and_add_many(tmp_path):
    path = str(tmp_path / "t.sst")
    with kvcy.TableWriter(path) as w:
        w.put(b"a", b"1")
        w.put_many([(b"b", b"2"), (b"c", b"3")])
        with pytest.raises(kvcy.ProgrammingError, match="key out of order"):
            w.put(b"b", b"x")
    assert w.info.count == 3 and (w.info.smallest, w.info.largest) == (b"a", b"c")
