"""Tests for kvcy.version_set: VersionSet.log_and_apply, recover and live_files.

Each test drives a VersionSet directly on a temporary directory (no engine):
edits appended to MANIFEST and read back by recover() in a fresh VersionSet
must rebuild the same files per level, log number, last sequence and next
file number; CURRENT names the manifest of the first log_and_apply; a torn
manifest tail is the normal result of a crash and is dropped, damage in
the middle or a CURRENT that names no usable manifest is CorruptionError;
live_files() keeps a file while any Version listing it is still held.
"""
import errno
import gc
import os

import pytest

from kvcy.dbformat import KIND_VALUE, encode_internal_key
from kvcy.env import PosixEnv
from kvcy.errors import CorruptionError, OperationalError
from kvcy.log_format import LOG_HEADER_BYTES
from kvcy.log_reader import LogReader
from kvcy.log_writer import LogWriter
from kvcy.version_edit import FileMetaData, VersionEdit
from kvcy.version_set import NUM_LEVELS, Version, VersionSet

from fault_env import FaultEnv


# --- helpers -------------------------------------------------------------------------

def meta(number, smallest, largest, size=None, seq=1):
    return FileMetaData(number, size if size is not None else 1000 + number,
                        encode_internal_key(smallest, seq, KIND_VALUE),
                        encode_internal_key(largest, seq, KIND_VALUE))


def apply(vset, edit):
    with vset.lock:
        vset.log_and_apply(edit)


def state(vset):
    """Everything recover() must rebuild, as plain comparable values."""
    return {
        "files": [[(f.number, f.file_size, f.smallest, f.largest) for f in level]
                  for level in vset.current.files],
        "log_number": vset.log_number,
        "last_sequence": vset.last_sequence,
        "next_file_number": vset.next_file_number,
        "compact_pointers": dict(vset.compact_pointers),
    }


def recovered(path, env=None):
    vset = VersionSet(str(path), env or PosixEnv())
    vset.recover()
    return vset


def manifests(path):
    return sorted(n for n in os.listdir(path) if n.startswith("MANIFEST-"))


def current_text(path):
    return (path / "CURRENT").read_bytes()


def record_offsets(data):
    return [offset for offset, _ in LogReader(data)]


def three_edits():
    """Edits that add, delete and move files over two levels, move the log
    number on and set a compaction pointer."""
    e1 = VersionEdit(log_number=3, last_sequence=0)
    e1.add_file(0, meta(5, b"a", b"m"))
    e1.add_file(0, meta(6, b"c", b"z"))
    e2 = VersionEdit(last_sequence=100)
    e2.delete_file(0, 5)
    e2.add_file(1, meta(8, b"n", b"t"))
    e2.add_file(1, meta(7, b"a", b"k"))
    e3 = VersionEdit(log_number=9, last_sequence=150)
    e3.delete_file(0, 6)
    e3.add_file(1, meta(6, b"l", b"m"))           # a trivial move from L0 to L1
    e3.compact_pointers.append((1, encode_internal_key(b"k", 99, KIND_VALUE)))
    return [e1, e2, e3]


@pytest.fixture
def vdir(tmp_path):
    path = tmp_path / "vs"
    path.mkdir()
    return path


@pytest.fixture
def applied(vdir):
    """A VersionSet that applied three_edits (kept open), and its state after each."""
    vset = VersionSet(str(vdir), PosixEnv())
    states = []
    for edit in three_edits():
        for level, m in edit.new_files:
            vset.mark_file_number_used(m.number)
        apply(vset, edit)
        states.append(state(vset))
    yield vset, states
    vset.close()


# --- log_and_apply and recover ------------------------------------------------------------

def test_recover_rebuilds_files_per_level_and_the_counters(vdir, applied):
    vset, states = applied
    final = states[-1]
    assert final["files"][0] == []
    assert [f[0] for f in final["files"][1]] == [7, 6, 8]       # L1 by smallest key
    assert final["log_number"] == 9 and final["last_sequence"] == 150
    fresh = recovered(vdir)
    assert state(fresh) == final
    assert fresh.current.files == vset.current.files


def test_recover_counts_the_edits_it_applied(vdir, applied):
    # A new manifest starts with a snapshot edit: 1 + the 3 edits.
    assert VersionSet(str(vdir), PosixEnv()).recover() == 4


def test_numbers_after_recover_never_collide_with_recorded_ones(vdir, applied):
    vset, _ = applied
    fresh = recovered(vdir)
    used = {fresh.manifest_number, fresh.log_number}
    used |= fresh.current.live_numbers()
    n = fresh.new_file_number()
    assert n > max(used)
    assert n >= vset.next_file_number


def test_recover_then_log_and_apply_starts_a_new_manifest(vdir, applied):
    vset, states = applied
    vset.close()
    fresh = recovered(vdir)
    old_manifest = manifests(vdir)
    edit = VersionEdit(last_sequence=200)
    edit.add_file(2, meta(fresh.new_file_number(), b"x", b"y"))
    apply(fresh, edit)
    try:
        assert fresh.manifest_number > int(old_manifest[0].split("-")[1])
        assert current_text(vdir) == b"MANIFEST-%06d\n" % fresh.manifest_number
        assert set(manifests(vdir)) == set(old_manifest) | {"MANIFEST-%06d" % fresh.manifest_number}
        again = recovered(vdir)
        assert state(again) == state(fresh)
        assert again.last_sequence == 200
        assert [f[0] for f in state(again)["files"][1]] == [f[0] for f in states[-1]["files"][1]]
    finally:
        fresh.close()


def test_current_names_the_new_manifest_after_the_first_log_and_apply(vdir):
    vset = VersionSet(str(vdir), PosixEnv())
    try:
        assert not (vdir / "CURRENT").exists()
        apply(vset, VersionEdit(log_number=vset.new_file_number(), last_sequence=0))
        name = "MANIFEST-%06d" % vset.manifest_number
        assert current_text(vdir) == name.encode() + b"\n"
        assert manifests(vdir) == [name]
        assert not (vdir / "CURRENT.tmp").exists()
        size = (vdir / name).stat().st_size
        apply(vset, VersionEdit(last_sequence=5))
        # Later edits append to the same manifest; CURRENT does not move.
        assert manifests(vdir) == [name]
        assert current_text(vdir) == name.encode() + b"\n"
        assert (vdir / name).stat().st_size > size
    finally:
        vset.close()


def test_every_edit_is_synced_before_log_and_apply_returns(vdir, fault_env):
    vset = VersionSet(str(vdir), fault_env)
    try:
        apply(vset, VersionEdit(log_number=vset.new_file_number(), last_sequence=0))
        edit = VersionEdit(last_sequence=42)
        edit.add_file(0, meta(vset.new_file_number(), b"a", b"b"))
        apply(vset, edit)
        expected = state(vset)
    finally:
        vset.close()
    fault_env.simulate_crash()
    assert state(recovered(vdir)) == expected


def test_a_failed_append_leaves_the_current_version(vdir, fault_env):
    vset = VersionSet(str(vdir), fault_env)
    try:
        apply(vset, VersionEdit(log_number=vset.new_file_number(), last_sequence=0))
        before = state(vset)
        version = vset.current
        edit = VersionEdit(last_sequence=7)
        edit.add_file(0, meta(vset.new_file_number(), b"a", b"b"))
        fault_env.fail_after(0, errno.ENOSPC, ops=("append",))
        with pytest.raises(OperationalError, match="(?i)no space"):
            apply(vset, edit)
        fault_env.clear_faults()
        assert vset.current is version
        assert vset.last_sequence == before["last_sequence"]
        assert vset.live_files() == set()
    finally:
        vset.close()
    fresh = state(recovered(vdir))
    assert fresh["files"] == before["files"] and fresh["last_sequence"] == 0


def test_a_failed_switch_of_current_keeps_the_old_manifest_authoritative(vdir, applied):
    vset, states = applied
    vset.close()
    env = FaultEnv()
    fresh = VersionSet(str(vdir), env)
    fresh.recover()
    old_current = current_text(vdir)
    env.fail_after(0, errno.EIO, ops=("rename",))
    edit = VersionEdit(last_sequence=999)
    with pytest.raises(OperationalError):
        apply(fresh, edit)
    env.clear_faults()
    fresh.close()
    assert current_text(vdir) == old_current
    assert not (vdir / "CURRENT.tmp").exists()
    assert state(recovered(vdir)) == states[-1]


# --- damage ---------------------------------------------------------------------------

def _only_manifest(path):
    (name,) = manifests(path)
    return path / name


def test_torn_manifest_tail_is_tolerated(vdir, applied):
    vset, states = applied
    vset.close()
    manifest = _only_manifest(vdir)
    data = manifest.read_bytes()
    offsets = record_offsets(data)
    assert len(offsets) == 4                         # snapshot + three edits
    for cut in (offsets[3] + 1, offsets[3] + LOG_HEADER_BYTES, len(data) - 1):
        manifest.write_bytes(data[:cut])
        assert state(recovered(vdir))["files"] == states[1]["files"], cut
        assert recovered(vdir).last_sequence == states[1]["last_sequence"]
    # Zeros after the last intact record (a preallocated tail) are a torn tail too.
    manifest.write_bytes(data + bytes(100))
    assert state(recovered(vdir)) == states[2]


def test_corrupted_middle_record_raises_corruption(vdir, applied):
    vset, _ = applied
    vset.close()
    manifest = _only_manifest(vdir)
    data = bytearray(manifest.read_bytes())
    offsets = record_offsets(bytes(data))
    data[offsets[1] + LOG_HEADER_BYTES + 2] ^= 0x10
    manifest.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match=manifest.name):
        recovered(vdir)


def test_intact_record_that_is_not_an_edit_raises_corruption(vdir, applied):
    vset, _ = applied
    vset.close()
    manifest = _only_manifest(vdir)
    writer = LogWriter(PosixEnv().new_appendable_file(str(manifest)))
    writer.add_record(b"\x63\x01garbage")          # unknown tag 99
    writer.close()
    with pytest.raises(CorruptionError, match=manifest.name):
        recovered(vdir)


def test_manifest_without_a_log_number_raises_corruption(vdir):
    path = vdir / "MANIFEST-000002"
    writer = LogWriter(PosixEnv().new_writable_file(str(path)))
    writer.add_record(VersionEdit(next_file_number=3, last_sequence=0).encode())
    writer.close()
    (vdir / "CURRENT").write_bytes(b"MANIFEST-000002\n")
    with pytest.raises(CorruptionError, match="log number"):
        recovered(vdir)


@pytest.mark.parametrize("content", [
    b"MANIFEST-000777\n", b"", b"\n", b"garbage\n", b"{m}", b"000003.log\n",
    b"../vs/{m}\n", b"{m}/\n", b"\xff\xfe\x00\n",
], ids=["missing", "empty", "newline", "garbage", "no-newline", "not-a-manifest",
        "path", "slash", "binary"])
def test_bad_current_raises_corruption(vdir, applied, content):
    vset, _ = applied
    vset.close()
    name = _only_manifest(vdir).name
    assert current_text(vdir) == name.encode() + b"\n"
    (vdir / "CURRENT").write_bytes(content.replace(b"{m}", name.encode()))
    with pytest.raises(CorruptionError):
        recovered(vdir)


# --- live files -----------------------------------------------------------------------------

def test_live_files_keep_the_files_of_a_held_version(vdir):
    vset = VersionSet(str(vdir), PosixEnv())
    try:
        edit = VersionEdit(log_number=vset.new_file_number(), last_sequence=0)
        numbers = [vset.new_file_number() for _ in range(3)]
        for n in numbers:
            edit.add_file(0, meta(n, b"a", b"z"))
        apply(vset, edit)
        assert vset.live_files() == set(numbers)
        held = vset.current                       # a reader pins this Version
        drop = VersionEdit()
        drop.delete_file(0, numbers[0])
        apply(vset, drop)
        assert numbers[0] not in vset.current.live_numbers()
        assert vset.live_files() == set(numbers)  # still listed by the held Version
        del held
        gc.collect()
        assert vset.live_files() == set(numbers[1:])
    finally:
        vset.close()


def test_live_files_with_several_held_versions_and_pending_outputs(vdir):
    vset = VersionSet(str(vdir), PosixEnv())
    try:
        apply(vset, VersionEdit(log_number=vset.new_file_number(), last_sequence=0))
        held = []
        numbers = []
        for i in range(4):
            n = vset.new_file_number()
            numbers.append(n)
            edit = VersionEdit()
            edit.add_file(0, meta(n, b"a", b"z"))
            if i:
                edit.delete_file(0, numbers[i - 1])   # each edit replaces the previous file
            apply(vset, edit)
            held.append(vset.current)
        assert vset.current.live_numbers() == {numbers[-1]}
        assert vset.live_files() == set(numbers)
        pending = vset.new_file_number()
        vset.pending_outputs.add(pending)
        assert vset.live_files() == set(numbers) | {pending}
        vset.pending_outputs.discard(pending)
        del held[1]
        gc.collect()
        assert vset.live_files() == {numbers[0], numbers[2], numbers[3]}
        held.clear()
        gc.collect()
        assert vset.live_files() == {numbers[-1]}   # the current Version always counts
    finally:
        vset.close()


def test_an_unreferenced_version_that_never_became_current_is_not_live(vdir):
    vset = VersionSet(str(vdir), PosixEnv())
    try:
        apply(vset, VersionEdit(log_number=vset.new_file_number(), last_sequence=0))
        edit = VersionEdit()
        edit.add_file(0, meta(vset.new_file_number(), b"a", b"b"))
        scratch = vset.current.apply(edit)          # e.g. a compaction's trial Version
        assert isinstance(scratch, Version) and len(scratch.files) == NUM_LEVELS
        assert vset.live_files() == set()
    finally:
        vset.close()
