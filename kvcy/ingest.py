"""Adding table files built outside the database (Connection.ingest).

Files come from kvcy.TableWriter: every entry has sequence 0 and kind value.
Ingest runs in three steps:

1. Check, before anything changes: each file is read whole (format, every
   block checksum, key order, entry count), must hold only values of
   sequence 0, and the files' key ranges must not overlap one another.
   The per-entry checks run in C without the GIL (kvcy._ingest_scan),
   several files in parallel threads.
2. Under the compaction lock and the engine's write lock, with every
   memtable flushed first (a memtable is read before the tables, so an
   older memtable entry of an ingested key would otherwise shadow it):
   take sequence S = last_sequence + 1 and copy each file into the data
   directory under a new file number, every entry rewritten to carry S.
   The ingested pairs then shadow older values exactly as if they had been
   written at S, and a snapshot taken before (sequence < S) never sees them.
3. Record every new file in ONE VersionEdit that also advances
   last_sequence to S.  A crash before that record leaves only unrecorded
   files, orphans the next open deletes: all of the files are in, or none.

Each file goes to the deepest level above every file it overlaps: level 0
if it overlaps anything in level 0, the last level if it overlaps nothing.
A file that overlaps nothing, ingested while no snapshot (nor transaction)
is live, is copied unchanged (hard-linked with move=True) and keeps
sequence 0: no reader can tell the difference, and no entry is decoded.
A file that overlaps a live range tombstone always takes S, above the
tombstone, which would otherwise hide it.
Writers wait while the files are copied.
"""
import os
import shutil
import struct
from concurrent.futures import ThreadPoolExecutor

from kvcy import filename
from kvcy._ingest_scan import (SCAN_BAD_TAG, SCAN_NOT_VALUE, SCAN_OK, SCAN_OUT_OF_ORDER,
                               SCAN_SHORT_KEY, check_keys, rewrite_keys)
from kvcy._table_builder import TableBuilder
from kvcy.compaction_picker import overlapping
from kvcy.dbformat import KIND_VALUE, TAG_BYTES, parse_internal_key
from kvcy.env import PosixEnv
from kvcy.range_del import overlaps_range_del
from kvcy.errors import CorruptionError, OperationalError, ProgrammingError
from kvcy.namespace_keys import is_reserved
from kvcy.table import Table
from kvcy.version_edit import FileMetaData, VersionEdit

_TAG = struct.Struct("<Q")
ZERO_TAG = _TAG.pack(KIND_VALUE)         # sequence 0, kind value: TableWriter's tag
MAX_CHECK_THREADS = 8                    # files checked at once, at most


class _Source:
    """One file to ingest, checked: path and user-key range."""

    def __init__(self, path, file_size, smallest, largest, entries):
        self.path = path
        self.file_size = file_size
        self.smallest = smallest
        self.largest = largest
        self.entries = entries


def check_ingest_file(env, path):
    """Read and check the whole table at path; return its _Source (None if it
    holds no entries).  Raises CorruptionError or ProgrammingError naming it.

    Table.open checks the footer, index, filter and properties; the scan
    reads every data block through its CRC32C and block-structure checks
    (kvcy._table_scan, in C) while kvcy._ingest_scan checks each key: the TableWriter
    tag (sequence 0, kind value) and user keys strictly increasing."""
    try:
        file = env.new_random_access_file(path)
    except FileNotFoundError as exc:
        raise ProgrammingError("cannot ingest %s: no such file" % path) from exc
    try:
        try:
            table = Table.open(file, file.size)
            smallest, largest, entries = _scan_keys(table, path)
        except CorruptionError as exc:
            raise CorruptionError("cannot ingest %s: %s" % (path, exc)) from exc
        recorded = table.properties.num_entries
        if recorded != entries:
            raise CorruptionError("cannot ingest %s: its properties record %d entries, "
                                  "it holds %d" % (path, recorded, entries))
        if entries == 0:
            return None
        return _Source(path, file.size, smallest, largest, entries)
    finally:
        file.close()


def _scan_keys(table, path):
    """(smallest user key, largest user key, entries) of table, every key
    checked in C (kvcy._ingest_scan)."""
    status, smallest, largest, entries, bad = check_keys(table, ZERO_TAG)
    if status == SCAN_BAD_TAG:
        user, sequence, kind = parse_internal_key(bad)
        raise ProgrammingError(
            "cannot ingest %s: key %r has sequence %d, kind %d; a kvcy.TableWriter "
            "file holds values of sequence 0 (not a kvcy.TableWriter file)"
            % (path, user, sequence, kind))
    if status == SCAN_OUT_OF_ORDER:
        raise CorruptionError("key %r is not after the key before it, %r"
                              % (bad[:-TAG_BYTES], largest))
    if status == SCAN_SHORT_KEY:
        raise CorruptionError("entry key %r is shorter than its %d-byte tag" % (bad, TAG_BYTES))
    return smallest, largest, entries


def check_ingest_files(env, paths):
    """check_ingest_file() of each path, in order.  Several files are
    checked by parallel threads: the scan of each runs in C without the
    GIL, so the checks use every core.  Raises the first path's error."""
    # (Only through the real file system: a wrapping env, e.g. the tests'
    # fault injection, counts its operations in a repeatable order.)
    if len(paths) < 2 or type(env) is not PosixEnv:
        return [check_ingest_file(env, path) for path in paths]
    threads = min(len(paths), os.cpu_count() or 1, MAX_CHECK_THREADS)
    with ThreadPoolExecutor(threads, thread_name_prefix="kvcy-ingest-check") as pool:
        return list(pool.map(lambda path: check_ingest_file(env, path), paths))


def check_disjoint(sources, reserve_namespaces=False):
    """Sort sources by key; ProgrammingError naming two files whose ranges overlap,
    or (reserve_namespaces: the database has namespaces) a file with keys in
    the region reserved for them."""
    sources = sorted(sources, key=lambda s: s.smallest)
    for source in sources:
        if reserve_namespaces and source.largest is not None and is_reserved(source.largest):
            raise ProgrammingError(
                "cannot ingest %s: its key %r starts with b'\\xff\\xff', the prefix kvcy "
                "reserves for namespaces" % (source.path, source.largest))
    for before, after in zip(sources, sources[1:]):
        if after.smallest <= before.largest:
            raise ProgrammingError(
                "cannot ingest %s and %s together: their key ranges overlap (%r..%r and "
                "%r..%r)" % (before.path, after.path, before.smallest, before.largest,
                             after.smallest, after.largest))
    return sources


def target_level(version, smallest, largest):
    """The deepest level above every file overlapping [smallest, largest]."""
    levels = len(version.files)
    for level in range(levels):
        if overlapping(version.files[level], smallest, largest):
            return max(level - 1, 0)
    return levels - 1


def rewrite_with_sequence(env, options, source, dest, sequence):
    """Copy source's entries to a new table at dest with every entry at
    sequence; return (file size, smallest internal key, largest internal key).
    Refuses (ProgrammingError) a deletion or a repeated user key."""
    tag = _TAG.pack((sequence << 8) | KIND_VALUE)
    src = env.new_random_access_file(source.path)
    out = env.new_writable_file(dest)
    try:
        builder = TableBuilder(out, options, dest)
        status, _, prev, _, bad = rewrite_keys(Table.open(src, src.size), builder, tag)
        if status == SCAN_NOT_VALUE:
            raise ProgrammingError("cannot ingest %s: key %r is a deletion; ingested "
                                   "files hold values only" % (source.path, bad[:-TAG_BYTES]))
        if status == SCAN_OUT_OF_ORDER:
            raise ProgrammingError("cannot ingest %s: key %r repeats or is out of order "
                                   "(after %r)" % (source.path, bad[:-TAG_BYTES], prev))
        if status != SCAN_OK:
            raise CorruptionError("cannot ingest %s: entry key %r is shorter than its "
                                  "%d-byte tag" % (source.path, bad, TAG_BYTES))
        size = builder.finish()
        out.sync()
        return size, builder.props.smallest, builder.props.largest
    finally:
        out.close()
        src.close()


def copy_unchanged(source, dest, move):
    """Put source's bytes at dest, synced: a hard link when move=True (the
    source goes once the file is recorded), else a copy; return the size."""
    if move:
        try:
            os.link(source.path, dest)
            return source.file_size
        except OSError:
            pass              # another file system, or no hard links: copy
    shutil.copyfile(source.path, dest)
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return source.file_size


def _flushed_and_locked(engine):
    """Flush every memtable, then hold the compaction lock and the write
    lock with none left (writes between the flush and the lock go again)."""
    writer = engine.writer
    while True:
        engine.flush(wait=True)
        engine.compaction_lock.acquire()
        writer.acquire()
        if not len(writer.mem) and not writer.mem.range_dels and not engine.imm:
            return
        writer.release()
        engine.compaction_lock.release()


def ingest_files(engine, env, paths, move=False):
    """Add the TableWriter files at paths to engine's database atomically;
    return the sequence they carry (None if they hold no entries).
    move=True deletes the source files once they are in."""
    if engine.readonly:
        raise OperationalError("cannot ingest: the database is open read-only")
    paths = [os.fspath(path) for path in paths]
    sources = check_ingest_files(env, paths)
    sources = check_disjoint([s for s in sources if s is not None],
                             engine.writer.reserve_namespaces)
    if not sources:
        if move:
            for path in paths:
                os.remove(path)
        return None
    versions = engine.versions
    writer = engine.writer
    numbers = []
    _flushed_and_locked(engine)
    try:
        engine._check_writable()
        sequence = writer.last_sequence + 1
        version = versions.current
        edit = VersionEdit(last_sequence=sequence)
        last_level = len(version.files) - 1
        # Without a live snapshot (transactions hold one too), a file that
        # overlaps nothing can keep sequence 0: no reader can tell it from
        # sequence S, and copying its bytes skips decoding every entry.  The
        # snapshot list stays locked until the file is in, so none starts
        # in between and sees it early.
        snapshot_lock = engine.snapshots._lock
        snapshot_lock.acquire()
        # (Only through the real file system: a wrapping env sees every write.)
        unchanged = len(engine.snapshots) == 0 and type(env) is PosixEnv
        try:
            for source in sources:
                with versions.lock:
                    number = versions.new_file_number()
                    versions.pending_outputs.add(number)
                numbers.append(number)
                dest = filename.table_file_name(engine.dbpath, number)
                level = target_level(version, source.smallest, source.largest)
                # A range tombstone would hide sequence 0: such a file takes S.
                if (unchanged and level == last_level and not overlaps_range_del(
                        version.range_dels, source.smallest, source.largest)):
                    size = copy_unchanged(source, dest, move)
                    smallest = source.smallest + ZERO_TAG
                    largest = source.largest + ZERO_TAG
                else:
                    size, smallest, largest = rewrite_with_sequence(
                        env, engine.options, source, dest, sequence)
                edit.add_file(level, FileMetaData(number, size, smallest, largest))
            env.sync_dir(engine.dbpath)     # the tables' names must outlive a power loss
        except BaseException:
            # Nothing is recorded: the copies go now (else the next open would).
            for number in numbers:
                try:
                    env.remove_file(filename.table_file_name(engine.dbpath, number))
                except OSError:
                    pass
            snapshot_lock.release()
            with versions.lock:
                versions.pending_outputs.difference_update(numbers)
            raise
        try:
            with versions.lock:
                versions.log_and_apply(edit)
        finally:
            snapshot_lock.release()
            # A failed record may still be on disk: the files stay for reopen to judge.
            with versions.lock:
                versions.pending_outputs.difference_update(numbers)
        writer.last_sequence = sequence
        del version
    finally:
        writer.release()
        engine.compaction_lock.release()
    engine.info_log.log("ingested %d files as tables %s at sequence %d", len(sources),
                        ", ".join("%06d" % n for n in numbers), sequence)
    engine._after_version_change()
    if move:
        for path in paths:
            os.remove(path)
    return sequence
