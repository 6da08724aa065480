"""Tests for kvcy._compaction_loop.run_compaction_loop, driven directly with
TableRuns over real table files, against a Python model of the drop rules:
shadowed versions (with and without a snapshot), tombstones dropped only
where no deeper level's file range includes their key (several deeper
levels with several files each, so the forward-only cursors move), outputs
cut at user-key boundaries, the stop check (also when every key has two
versions, which made every boundary an odd entry count), and errors raised
by the callbacks.  Engine-level compaction is in test_compaction.py.
"""
import os

import pytest

from kvcy._compaction_loop import run_compaction_loop
from kvcy._table_builder import TableBuilder
from kvcy._table_scan import TableRun
from kvcy.dbformat import KIND_DELETE, KIND_VALUE, encode_internal_key, parse_internal_key
from kvcy.options import Options

from test_table import ENV, build_table, open_table


class Outputs:
    """open_output/close_output callbacks writing numbered tables in a directory."""

    def __init__(self, directory, fail_open=False):
        self.dir = directory
        self.files = []
        self.fail_open = fail_open
        self._open = {}

    def open(self):
        if self.fail_open:
            raise OSError("no room for an output")
        path = os.path.join(self.dir, "out%03d.sst" % (len(self.files) + len(self._open)))
        file = ENV.new_writable_file(path)
        builder = TableBuilder(file, Options(block_size=1024), path)
        self._open[id(builder)] = (path, file)
        return builder

    def close(self, builder):
        path, file = self._open.pop(id(builder))
        builder.finish()
        file.close()
        self.files.append(path)

    def entries(self):
        out = []
        for number, path in enumerate(self.files):
            out.append(TableRun([open_table(path, number=500 + number)]).entries())
        return out


def run_of(tmp_path, name, entries, number):
    path = tmp_path / name
    build_table(path, sorted(entries, key=order), block_size=1024)
    return TableRun([open_table(path, number=number)])


def order(entry):
    user_key, seq, kind = parse_internal_key(entry[0])
    return (user_key, -((seq << 8) | kind))


def model(entries, smallest_snapshot, deeper):
    """What the loop must keep: the drop rules over the merged entries."""
    kept = []
    last_key, last_seq = None, None
    for ikey, value in sorted(entries, key=order):
        user_key, seq, kind = parse_internal_key(ikey)
        if user_key != last_key:
            last_key, last_seq = user_key, None
        drop = False
        if last_seq is not None and last_seq <= smallest_snapshot:
            drop = True
        elif (kind == KIND_DELETE and seq <= smallest_snapshot
              and not any(lo <= user_key <= hi for files in deeper for lo, hi in files)):
            drop = True
        last_seq = seq
        if not drop:
            kept.append((ikey, value))
    return kept


def test_drop_rules_and_tombstones_against_deeper_levels(tmp_path):
    newer, older = [], []
    for i in range(3000):
        key = b"k%05d" % i
        kind = KIND_DELETE if i % 3 == 0 else KIND_VALUE
        newer.append((encode_internal_key(key, 1000 + i, kind), b"" if kind == KIND_DELETE
                      else b"new%d" % i))
        if i % 2 == 0:
            older.append((encode_internal_key(key, 10 + i % 7, KIND_VALUE), b"old%d" % i))
    # Two deeper levels, several files each, covering some key ranges.
    deeper = [[(b"k00100", b"k00200"), (b"k00900", b"k01000"), (b"k02500", b"k02600")],
              [(b"k00000", b"k00050"), (b"k01500", b"k01700")]]
    for snapshot in (50, 1500, 10 ** 9):
        outs = Outputs(str(tmp_path / ("snap%d" % snapshot)))
        os.makedirs(outs.dir)
        runs = [run_of(tmp_path, "a%d.sst" % snapshot, newer, 1),
                run_of(tmp_path, "b%d.sst" % snapshot, older, 2)]
        entries, dropped, stopped = run_compaction_loop(
            runs, snapshot, deeper, outs.open, outs.close, 16 * 1024)
        want = model(newer + older, snapshot, deeper)
        got = [e for table in outs.entries() for e in table]
        assert got == want, snapshot
        assert (entries, dropped, stopped) == (len(newer) + len(older),
                                               len(newer) + len(older) - len(want), False)
        # Cut at user-key boundaries: no user key spans two outputs.
        users = [{parse_internal_key(k)[0] for k, _ in table} for table in outs.entries()]
        assert len(users) > 1
        for a, b in zip(users, users[1:]):
            assert not a & b


def two_versions_per_key(tmp_path, n):
    a = [(encode_internal_key(b"key%06d" % i, 100 + i, KIND_VALUE), b"v") for i in range(n)]
    b = [(encode_internal_key(b"key%06d" % i, 1, KIND_VALUE), b"w") for i in range(n)]
    return [run_of(tmp_path, "a.sst", a, 1), run_of(tmp_path, "b.sst", b, 2)]


def test_stop_is_asked_when_every_key_has_two_versions(tmp_path):
    outs = Outputs(str(tmp_path))
    asked = []

    def should_stop():
        asked.append(1)
        return True
    entries, dropped, stopped = run_compaction_loop(
        two_versions_per_key(tmp_path, 20_000), 0, [], outs.open, outs.close, 1 << 20,
        should_stop, 0.0)
    assert asked and stopped
    assert entries < 40_000


def test_callback_errors_propagate_and_release_blocks(tmp_path):
    runs = two_versions_per_key(tmp_path, 5_000)
    with pytest.raises(OSError, match="no room"):
        run_compaction_loop(runs, 0, [], Outputs(str(tmp_path), fail_open=True).open,
                            None, 1 << 20)

    def broken_stop():
        raise RuntimeError("stop check broke")
    with pytest.raises(RuntimeError, match="stop check broke"):
        run_compaction_loop(runs, 0, [], Outputs(str(tmp_path)).open,
                            Outputs(str(tmp_path)).close, 1 << 20, broken_stop, 0.0)

    def no_builder():
        return None
    with pytest.raises(TypeError, match="returned None"):
        run_compaction_loop(runs, 0, [], no_builder, None, 1 << 20)
