"""Checkpoints, kvcy.destroy and approximate sizes: whole-database file operations.

A checkpoint is an openable copy of a database as of one sequence number,
taken while writes continue:

  1. Under the write lock and the version lock (so no write, flush or
     compaction moves in between): note the last sequence, pin the current
     Version (holding it keeps its tables on disk, kvcy/version_set.py) and
     copy the logs at or above the log number (every acknowledged write is
     in the OS, log_writer.py, and no write lands while the lock is held).
     The logs are a memtable's worth, so writers wait only that long.
  2. Outside the locks: hard-link every table of the pinned Version (copy
     when linking fails, e.g. across file systems, EXDEV).
  3. Write a MANIFEST holding that Version and the log number, then CURRENT,
     fsync everything and the directory.  The copy is built in a temporary
     sibling directory and renamed to dest, so a crash leaves no half copy.
     The temporary directory has a lock file beside it, held while it is
     built; the next checkpoint into the same parent removes any whose lock
     nobody holds (its maker died), so kill -9 leaves no lasting litter.

Opening the copy replays its logs onto the Version, which yields exactly the
writes up to the noted sequence.
"""
import contextlib
import fcntl
import glob
import os
import shutil
import tempfile

from kvcy import filename
from kvcy.dbformat import KIND_FOR_SEEK, MAX_SEQUENCE, encode_internal_key
from kvcy.env import lock_file
from kvcy.errors import OperationalError, ProgrammingError
from kvcy.version_edit import VersionEdit
from kvcy.version_set import write_manifest

_COPY_CHUNK = 1 << 20


def _refuse_existing(dest):
    if os.path.lexists(dest):
        raise ProgrammingError("checkpoint destination %r already exists; "
                               "give a path that does not exist yet" % dest)


def link_or_copy(src, dst):
    """Hard-link src to dst (tables and closed logs never change), or copy it
    when the file system refuses a link.  Returns the bytes placed."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
        fsync_path(dst)
    return os.path.getsize(dst)


def _copy_prefix(src, dst, length):
    """Copy the first length bytes of src (a log still being appended)."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        remaining = length
        while remaining:
            chunk = fin.read(min(remaining, _COPY_CHUNK))
            if not chunk:
                raise OperationalError("log %s ended at %d bytes, expected %d"
                                       % (src, length - remaining, length))
            fout.write(chunk)
            remaining -= len(chunk)
        fout.flush()
        os.fsync(fout.fileno())


def fsync_path(path):
    """fsync a file or directory by name."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_checkpoint(engine, dest, progress=None):
    """Write a checkpoint of the open engine's database to dest (which must
    not exist).  Returns the sequence number the copy holds every write up to.
    progress: an optional callable(done, total) in bytes."""
    dest = os.fspath(dest)
    _refuse_existing(dest)
    parent = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(parent):
        raise ProgrammingError("checkpoint destination's directory %r does not exist" % parent)
    _remove_abandoned_work(parent)
    # The lock file first and the directory named after it: a directory
    # never exists without its held lock.
    lock_fd, lock_path = tempfile.mkstemp(prefix=_WORK_PREFIX, suffix=_LOCK_SUFFIX, dir=parent)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    work = lock_path[:-len(_LOCK_SUFFIX)]
    try:
        os.mkdir(work)
        sequence, version, log_number, manifest_sequence = _capture(engine, work)
        tables = [meta for level in version.files for meta in level]
        total = sum(meta.file_size for meta in tables)
        done = 0
        for meta in tables:
            done += link_or_copy(filename.table_file_name(engine.dbpath, meta.number),
                                 filename.table_file_name(work, meta.number))
            if progress is not None:
                progress(done, total)
        _write_manifest(engine.env, work, version, log_number, manifest_sequence,
                        engine.versions.next_file_number)
        fsync_path(work)
        _refuse_existing(dest)
        os.rename(work, dest)
        fsync_path(parent)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        os.remove(lock_path)
        os.close(lock_fd)
    return sequence


_WORK_PREFIX = ".kvcy-checkpoint-"
_LOCK_SUFFIX = ".lock"


def _remove_abandoned_work(parent):
    """Remove the temporary directories of checkpoints whose process died
    (their lock file is not held); leave those still being built alone."""
    for lock_path in glob.glob(os.path.join(glob.escape(parent),
                                            _WORK_PREFIX + "*" + _LOCK_SUFFIX)):
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            continue                       # finished meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue                   # a live checkpoint
            shutil.rmtree(lock_path[:-len(_LOCK_SUFFIX)], ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                os.remove(lock_path)
        finally:
            os.close(fd)


def _capture(engine, work):
    """Step 1 of the module docstring.  Returns (sequence, Version, log number,
    the MANIFEST's last sequence: the last one held by logs below the log number)."""
    writer = engine.writer
    writer.acquire()
    try:
        engine._check_writable()
        with engine.versions.lock:
            sequence = writer.last_sequence
            version = engine.versions.current
            log_number = engine.versions.log_number
            manifest_sequence = engine.versions.last_sequence   # what the older logs held
            for name in engine.env.get_children(engine.dbpath):
                parsed = filename.parse_file_name(name)
                if parsed is None or parsed[0] != "log" or parsed[1] < log_number:
                    continue
                src = os.path.join(engine.dbpath, name)
                # Copied, never linked: opening the copy may truncate a torn
                # tail or append, which must not reach the original's logs.
                _copy_prefix(src, os.path.join(work, name), os.path.getsize(src))
    finally:
        writer.release()
    return sequence, version, log_number, manifest_sequence


def _write_manifest(env, work, version, log_number, sequence, next_file_number):
    number = next_file_number      # above every table and log copied
    edit = VersionEdit(log_number=log_number, next_file_number=number + 1,
                       last_sequence=sequence)
    for level, files in enumerate(version.files):
        for meta in files:
            edit.add_file(level, meta)
    edit.new_range_dels = list(version.range_dels)
    write_manifest(env, work, number, edit)
    env.write_file_atomically(filename.current_file_name(work),
                              ("MANIFEST-%06d\n" % number).encode())


def approximate_size(engine, start, stop):
    """Bytes of the current Version's tables holding keys in [start, stop)
    (None: unbounded).  A table wholly inside counts whole; one the range
    cuts counts the share of its data blocks between the two keys, found in
    its index (RocksDB's GetApproximateSizes).  Memtables are not counted."""
    version = engine.versions.current
    total = 0
    for level in version.files:
        for meta in level:
            if stop is not None and meta.smallest_user >= stop:
                continue
            if start is not None and meta.largest_user < start:
                continue
            inside_start = start is None or start <= meta.smallest_user
            inside_stop = stop is None or meta.largest_user < stop
            if inside_start and inside_stop:
                total += meta.file_size
                continue
            table = engine.table_cache.find_table(meta.number, meta.file_size)
            low = 0 if inside_start else table.approximate_offset_of(
                encode_internal_key(start, MAX_SEQUENCE, KIND_FOR_SEEK))
            high = meta.file_size if inside_stop else table.approximate_offset_of(
                encode_internal_key(stop, MAX_SEQUENCE, KIND_FOR_SEEK))
            total += max(0, min(high, meta.file_size) - low)
    return total


def destroy(path):
    """Remove the database at path: its kvcy files, then the directory if
    nothing else is left in it.  Refuses a database some connection holds
    open (OperationalError naming the holder) and a directory that is not a
    kvcy database (ProgrammingError).  A destroy cut short by a crash is
    finished by calling destroy again."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ProgrammingError("cannot destroy %r: no such directory" % path)
    names = os.listdir(path)
    if filename.CURRENT not in names and filename.DESTROYING not in names:
        raise ProgrammingError("cannot destroy %r: not a kvcy database (no CURRENT file)"
                               % path)
    lock = lock_file(filename.lock_file_name(path))
    try:
        marker = os.path.join(path, filename.DESTROYING)
        if filename.CURRENT in names:
            # One atomic step makes the directory unopenable (recovery refuses
            # the marker) and lets a destroy cut short here be run again.
            os.rename(filename.current_file_name(path), marker)
            fsync_path(path)
        for name in names:
            parsed = filename.parse_file_name(name)
            if parsed is not None and parsed[0] not in ("lock", "current", "destroying"):
                os.remove(os.path.join(path, name))
        # The marker goes after every other file, LOCK last while still
        # held, so no opener can hold a LOCK file that is about to vanish.
        os.remove(marker)
        os.remove(filename.lock_file_name(path))
    finally:
        lock.release()
    if not os.listdir(path):
        os.rmdir(path)
