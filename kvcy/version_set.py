"""Versions and the VersionSet: which table files are live, recorded durably.

A Version is an immutable list of files per level.  Readers and
compactions pin the Version they use by holding a reference to it: the
VersionSet tracks every Version it made current in a WeakSet, so CPython's
reference counting is the refcount, and a Version is live exactly while
someone holds it.  Obsolete table files are those no live Version lists
(and no flush or compaction is still writing), so a file a reader uses is
never deleted under it.

The VersionSet owns the current Version, the file-number counter, the log
number (logs older than it are no longer needed) and the last sequence.
log_and_apply() appends an edit to MANIFEST and fsyncs it before the new
Version becomes current; a new MANIFEST (written at every open) starts
with a snapshot of the whole state, and CURRENT is switched to it by an
atomic rename followed by a directory sync.

A MANIFEST write or sync that fails leaves the file holding the edit or
not: nobody can tell until the next open reads it.  The VersionSet then
latches manifest_error: later log_and_apply calls raise, and no file may be
deleted on the strength of the in-memory state (obsolete_files.py checks
it), since the edit that made a file obsolete, or the one that made a new
table live, may be on disk either way; the next open reads the MANIFEST
and deletes what it does not name (LevelDB stops deleting files after a
background error for this reason).

Thread-safety: log_and_apply and the counters REQUIRE the caller to hold
the engine's version lock; `current` may be read without it (a reference
assignment is atomic).
"""
import os
import threading
import weakref

from kvcy import filename
from kvcy.errors import CorruptionError, OperationalError
from kvcy.log_reader import LogReader
from kvcy.log_writer import LogWriter
from kvcy.version_edit import FileMetaData, VersionEdit

NUM_LEVELS = 7


def write_manifest(env, dbpath, number, edit):
    """Write MANIFEST-number holding edit alone, synced (a fresh database
    state, as repair and checkpoints make); the caller points CURRENT at it."""
    writer = LogWriter(env.new_writable_file(filename.manifest_file_name(dbpath, number)),
                       number)
    try:
        writer.add_record(edit.encode(), sync=True)
    finally:
        writer.close()


def internal_sort_key(ikey):
    """Sort key giving internal-key order: user key ascending, tag descending."""
    return (ikey[:-8], -int.from_bytes(ikey[-8:], "little"))


class Version:
    """Files per level.  L0 is ordered newest first; L1+ by smallest key.
    range_dels: the flushed range tombstones (start, stop, sequence), by sequence."""

    __slots__ = ("files", "range_dels", "range_tombstones", "_largest_users", "__weakref__")

    def __init__(self, files=None, num_levels=NUM_LEVELS, range_dels=()):
        self.files = files if files is not None else [[] for _ in range(num_levels)]
        self.range_dels = tuple(range_dels)
        self.range_tombstones = None      # their RangeTombstones, built once when first read
        self._largest_users = {}

    def largest_users(self, level):
        """Largest user keys of a level's files, for bisect (L1+ are sorted, disjoint)."""
        keys = self._largest_users.get(level)
        if keys is None:
            keys = self._largest_users[level] = [f.largest_user for f in self.files[level]]
        return keys

    def apply(self, edit):
        """A new Version: this one with edit's deletions and additions."""
        files = [list(level) for level in self.files]
        if edit.deleted_files:
            for level in range(len(files)):
                files[level] = [f for f in files[level]
                                if (level, f.number) not in edit.deleted_files]
        for level, meta in edit.new_files:
            if level >= len(files):
                raise CorruptionError("version edit adds file %d to level %d of %d"
                                      % (meta.number, level, len(files)))
            files[level].append(meta)
        files[0].sort(key=lambda f: f.number, reverse=True)
        for level in range(1, len(files)):
            files[level].sort(key=lambda f: internal_sort_key(f.smallest))
        range_dels = self.range_dels
        if edit.new_range_dels or edit.deleted_range_dels:
            range_dels = sorted({t for t in range_dels + tuple(edit.new_range_dels)
                                 if t[2] not in edit.deleted_range_dels},
                                key=lambda t: t[2])
        return Version(files, len(files), range_dels)

    def live_numbers(self):
        return {f.number for level in self.files for f in level}

    def num_files(self, level):
        return len(self.files[level])

    def level_bytes(self, level):
        return sum(f.file_size for f in self.files[level])


class VersionSet:
    def __init__(self, dbpath, env, num_levels=NUM_LEVELS):
        self.dbpath = dbpath
        self.env = env
        self.num_levels = num_levels
        self.current = Version(num_levels=num_levels)
        self.next_file_number = 2
        self.manifest_number = 0
        self.manifest_end = 0           # bytes of the MANIFEST recover() read
        self.log_number = 0
        self.last_sequence = 0
        self.compact_pointers = {}
        self._manifest = None           # LogWriter of the live MANIFEST
        self.lock = threading.Lock()    # the version lock of the module docstring
        self._live = weakref.WeakSet()  # every Version made current and still referenced
        self.pending_outputs = set()    # numbers of tables being written, not yet recorded
        self.manifest_error = None      # the failed MANIFEST write; see the module doc

    def new_file_number(self):
        n = self.next_file_number
        self.next_file_number += 1
        return n

    def live_files(self):
        """Numbers of every table a live Version lists, plus those being written."""
        live = set(self.pending_outputs)
        for version in list(self._live) + [self.current]:
            live |= version.live_numbers()
        return live

    def _install(self, version):
        self.current = version
        self._live.add(version)

    def mark_file_number_used(self, number):
        if self.next_file_number <= number:
            self.next_file_number = number + 1

    # -- recovery ----------------------------------------------------------

    def recover(self, paranoid=True, previous=None):
        """Load the state named by CURRENT.  Returns the number of edits read.

        previous: a VersionSet recovered earlier from the same directory (a
        read-only connection's refresh).  When CURRENT still names the
        MANIFEST it read, only the edits appended since are decoded and
        applied to its state (a MANIFEST only grows until it is replaced)."""
        current_path = filename.current_file_name(self.dbpath)
        name = self.env.read_file(current_path).decode("utf-8", "replace")
        if not name.endswith("\n") or "/" in name.strip() or not name.strip():
            raise CorruptionError("CURRENT does not name a manifest: %r" % name[:64])
        name = name.strip()
        parsed = filename.parse_file_name(name)
        if parsed is None or parsed[0] != "manifest":
            raise CorruptionError("CURRENT names %r, which is not a manifest" % name)
        path = os.path.join(self.dbpath, name)
        if not self.env.file_exists(path):
            raise CorruptionError("CURRENT names %s, which does not exist" % path)
        reader = LogReader(self.env.read_file(path), path=path, paranoid=True)
        version = Version(num_levels=self.num_levels)
        fields = {}
        edits = 0
        resume_at = 0
        if (previous is not None and previous.manifest_number == parsed[1]
                and previous.manifest_end <= len(reader.data)):
            version = previous.current
            fields = dict(log_number=previous.log_number, last_sequence=previous.last_sequence,
                          next_file_number=previous.next_file_number)
            self.compact_pointers = dict(previous.compact_pointers)
            resume_at = previous.manifest_end
        for offset, payload in reader:
            if offset < resume_at:
                continue
            try:
                edit = VersionEdit.decode(payload)
            except CorruptionError as exc:
                raise CorruptionError("%s at offset %d of %s" % (exc, offset, path)) from exc
            version = version.apply(edit)
            for key in ("log_number", "next_file_number", "last_sequence"):
                if getattr(edit, key) is not None:
                    fields[key] = getattr(edit, key)
            for level, key in edit.compact_pointers:
                self.compact_pointers[level] = key
            edits += 1
        for key in ("log_number", "next_file_number", "last_sequence"):
            if key not in fields:
                raise CorruptionError("manifest %s records no %s" % (path, key.replace("_", " ")))
        self._install(version)
        self.log_number = fields["log_number"]
        self.next_file_number = fields["next_file_number"]
        self.last_sequence = fields["last_sequence"]
        self.manifest_number = parsed[1]
        self.manifest_end = reader.end_offset
        self.mark_file_number_used(self.manifest_number)
        self.mark_file_number_used(self.log_number)
        for number in version.live_numbers():
            self.mark_file_number_used(number)
        return edits

    # -- recording changes -------------------------------------------------

    def _snapshot_edit(self):
        edit = VersionEdit(log_number=self.log_number, next_file_number=self.next_file_number,
                           last_sequence=self.last_sequence)
        edit.compact_pointers = sorted(self.compact_pointers.items())
        for level, files in enumerate(self.current.files):
            for meta in files:
                edit.add_file(level, meta)
        edit.new_range_dels = list(self.current.range_dels)
        return edit

    def log_and_apply(self, edit):
        """Record edit durably, then make the edited Version current.

        REQUIRES: self.lock held.  The first call after open starts a new
        MANIFEST holding a snapshot, then points CURRENT at it.
        """
        if self.manifest_error is not None:
            raise OperationalError(
                "cannot record a change of the database's files: an earlier MANIFEST write "
                "failed (%s: %s); reopen the database" % (
                    type(self.manifest_error).__name__, self.manifest_error)
            ) from self.manifest_error
        if edit.log_number is not None:
            self.mark_file_number_used(edit.log_number)
        version = self.current.apply(edit)
        new_manifest = self._manifest is None
        if new_manifest:
            number = self.new_file_number()
        edit.next_file_number = self.next_file_number
        try:
            if new_manifest:
                path = filename.manifest_file_name(self.dbpath, number)
                writer = LogWriter(self.env.new_writable_file(path), number)
                try:
                    writer.add_record(self._snapshot_edit().encode())
                    writer.add_record(edit.encode(), sync=True)
                    self.env.write_file_atomically(filename.current_file_name(self.dbpath),
                                                   ("MANIFEST-%06d\n" % number).encode())
                except BaseException:
                    writer.close()
                    raise
                self._manifest = writer
                self.manifest_number = number
            else:
                self._manifest.add_record(edit.encode(), sync=True)
        except Exception as exc:
            self.manifest_error = exc
            raise
        self._install(version)
        if edit.log_number is not None:
            self.log_number = edit.log_number
        if edit.last_sequence is not None:
            self.last_sequence = edit.last_sequence
        for level, key in edit.compact_pointers:
            self.compact_pointers[level] = key

    def close(self):
        if self._manifest is not None:
            self._manifest.close()
            self._manifest = None
