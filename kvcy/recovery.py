"""Opening a database: directory, lock, MANIFEST, WAL replay, a fresh log.

Open order:
  1. create or check the directory; take the LOCK (not for read-only opens);
  2. CURRENT -> MANIFEST -> the VersionSet (a new database gets its first
     MANIFEST here);
  3. replay every log numbered >= the manifest's log number, in order, into
     one memtable, checking that sequence numbers continue without a gap
     from the manifest's last sequence through each batch and each log;
  4. (writable opens) when the one log named by the MANIFEST replayed
     cleanly (no torn tail, no damage) and holds less than half a memtable,
     keep its records in the memtable and append to it (LevelDB's
     reuse_logs), so a short open-write-close leaves no table behind;
     otherwise flush what was recovered to a level-0 table, start a new
     empty log, record both in one MANIFEST edit, and only then delete the
     older logs, orphaned tables and stray files.
A crash at any step leaves files from which the same state recovers: until
the MANIFEST edit the old logs are authoritative and the new table is an
orphan that the next open deletes.

A torn tail (the normal result of a crash) is dropped silently and counted.
Damage with intact data after it, or a sequence gap, is CorruptionError with
paranoid_checks (the default); without it, replay stops at the last intact
batch (point-in-time recovery) and the LOG and stats say what was dropped.
"""
import os
import time

from kvcy._memtable import MemTable
from kvcy._write_batch import apply_batch, batch_header
from kvcy import filename
from kvcy.engine import Engine
from kvcy.flush import write_level0_table
from kvcy.errors import CorruptionError, OperationalError, ProgrammingError
from kvcy.env import FileMissingError
from kvcy.info_log import BufferedInfoLog, InfoLog, NullInfoLog
from kvcy.log_reader import LogReader
from kvcy.log_writer import LogWriter
from kvcy.stats import Stats
from kvcy.table_cache import pin_table_files
from kvcy.version_edit import VersionEdit
from kvcy.version_set import VersionSet

def _prepare_directory(dbpath, options, env):
    if os.path.isdir(dbpath):
        if (not env.file_exists(filename.current_file_name(dbpath))
                and (options.readonly or not options.create_if_missing)
                and not any(filename.parse_file_name(n) not in (None, ("lock", None),
                                                                ("info_log", None))
                            for n in env.get_children(dbpath))):
            raise OperationalError("database %s does not exist (create_if_missing=%s%s)"
                                   % (dbpath, options.create_if_missing,
                                      ", readonly=True" if options.readonly else ""))
        return
    if os.path.exists(dbpath):
        raise OperationalError("cannot open %s: it exists and is not a directory" % dbpath)
    if options.readonly or not options.create_if_missing:
        raise OperationalError("database %s does not exist (create_if_missing=%s%s)"
                               % (dbpath, options.create_if_missing,
                                  ", readonly=True" if options.readonly else ""))
    env.create_dir(dbpath)


def _files(dbpath, env):
    """{kind: sorted numbers} of the numbered files in dbpath."""
    found = {}
    for name in env.get_children(dbpath):
        parsed = filename.parse_file_name(name)
        if parsed and parsed[1] is not None:
            found.setdefault(parsed[0], []).append(parsed[1])
    for numbers in found.values():
        numbers.sort()
    return found


def _load_versions(dbpath, options, env, files, previous=None):
    vset = VersionSet(dbpath, env, num_levels=options.max_levels)
    current = filename.current_file_name(dbpath)
    if env.file_exists(os.path.join(dbpath, filename.DESTROYING)):
        raise OperationalError("%s is half removed by an interrupted kvcy.destroy; call "
                               "kvcy.destroy(%r) again to finish it" % (dbpath, dbpath))
    if env.file_exists(current):
        if options.error_if_exists:
            raise ProgrammingError("database %s already exists (error_if_exists=True)" % dbpath)
        vset.recover(previous=previous)
        return vset, False
    if ((files.get("log") or files.get("sst") or files.get("manifest"))
            and not _creation_leftovers(dbpath, env, files)):
        raise CorruptionError("%s holds database files but no CURRENT file; it cannot be "
                              "opened safely" % dbpath)
    if options.readonly or not options.create_if_missing:
        raise OperationalError("database %s does not exist (create_if_missing=%s%s)"
                               % (dbpath, options.create_if_missing,
                                  ", readonly=True" if options.readonly else ""))
    return vset, True


def _creation_leftovers(dbpath, env, files):
    """True iff the files of a directory without CURRENT hold nothing: no
    table, every log empty, every MANIFEST readable and naming no table and
    no write.  A creating open that failed or crashed before it installed
    CURRENT leaves such files; the next open creates the database afresh
    (and deletes them) instead of refusing the directory."""
    if files.get("sst"):
        return False
    for number in files.get("log", []):
        if env.get_file_size(filename.log_file_name(dbpath, number)) != 0:
            return False
    for number in files.get("manifest", []):
        path = filename.manifest_file_name(dbpath, number)
        try:
            for _, payload in LogReader(env.read_file(path), path=path):
                edit = VersionEdit.decode(payload)
                if edit.new_files or edit.last_sequence:
                    return False
        except CorruptionError:
            return False
    return True


def replay_logs(dbpath, numbers, options, env, info_log, stats, mem, last_sequence):
    """Replay logs into mem, continuing from last_sequence; return
    (last_sequence, damaged, clean_end).

    damaged is True when anything other than a torn tail was dropped;
    clean_end is True when the last log ends exactly where its last intact
    record ends (nothing torn or dropped), so it can be appended to.
    """
    clean_end = False
    paranoid = options.paranoid_checks
    for index, number in enumerate(numbers):
        path = filename.log_file_name(dbpath, number)
        reader = LogReader(env.read_file(path), path=path, paranoid=paranoid)
        records = 0
        for offset, payload in reader:
            try:
                seq, count = batch_header(payload)
            except CorruptionError as exc:
                # The record passed its CRC yet holds a bad batch: not a torn tail.
                what = "bad write batch at offset %d of %s: %s" % (offset, path, exc)
                if paranoid:
                    raise CorruptionError(what) from exc
                _stop(info_log, what)
                return last_sequence, True, False
            if count == 0:
                continue
            if seq != last_sequence + 1:
                what = ("sequence %s at offset %d of %s: expected %d, found %d (%s)"
                        % ("gap" if seq > last_sequence else "regression", offset, path,
                           last_sequence + 1, seq,
                           "writes in the middle of the history were lost"
                           if seq > last_sequence else "the log repeats older history"))
                if paranoid:
                    raise CorruptionError(what)
                _stop(info_log, what)
                return last_sequence, True, False
            last_sequence = apply_batch(payload, mem)
            records += 1
        if reader.hidden_records_at is not None and _continues(reader, last_sequence):
            what = ("log damaged: the record at offset %d of %s claims a length past the end "
                    "of the file, yet intact write batches that continue the history follow "
                    "it" % (reader.end_offset, path))
            if paranoid:
                raise CorruptionError(what)
            stats.dropped_bytes += len(reader.data) - reader.end_offset
            _stop(info_log, what)
            return last_sequence, True, False
        stats.recovered_records += records
        stats.recovered_logs += 1
        if reader.torn_tail_bytes:
            tail = reader.data[reader.end_offset:]
            if tail.count(0) == len(tail):
                # Space the WAL writer reserved for its next appends (a log
                # that was open when the process died): nothing was torn.
                info_log.log("log %s: %d bytes of reserved space after offset %d",
                             path, len(tail), reader.end_offset)
            else:
                stats.torn_tail_bytes += reader.torn_tail_bytes
                info_log.log("log %s: dropped a torn tail of %d bytes after offset %d",
                             path, reader.torn_tail_bytes, reader.end_offset)
        if reader.damage is not None:
            stats.dropped_bytes += reader.dropped_bytes
            later = numbers[index + 1:]
            _stop(info_log, "log damaged: %s; dropped %d bytes%s" % (
                reader.damage, reader.dropped_bytes,
                " and the later logs %s" % later if later else ""))
            return last_sequence, True, False
        info_log.log("log %s: replayed %d records", path, records)
        clean_end = reader.end_offset == len(reader.data)
    return last_sequence, False, clean_end


def _continues(reader, last_sequence):
    """True iff the records hidden in a cut-off tail are write batches that
    carry on from last_sequence (so the "cut-off" was really a flipped length)."""
    payload = reader.first_record_at(reader.hidden_records_at)
    if payload is not None:
        try:
            seq, count = batch_header(payload)
        except CorruptionError:
            return False
        return count > 0 and seq == last_sequence + 1
    return False


def _stop(info_log, what):
    info_log.log("point-in-time recovery (paranoid_checks=False) stopped: %s", what)


def _remove_obsolete(dbpath, env, vset, info_log):
    """Delete logs older than the log number, old manifests and temp files."""
    for name in env.get_children(dbpath):
        if name == filename.CURRENT + ".tmp":
            env.remove_file(os.path.join(dbpath, name))     # left by a crash mid-switch
            continue
        parsed = filename.parse_file_name(name)
        if parsed is None:
            continue
        kind, number = parsed
        obsolete = ((kind == "log" and number < vset.log_number)
                    or (kind == "manifest" and number != vset.manifest_number)
                    or kind == "dbtmp"
                    or (kind == "sst" and number not in vset.current.live_numbers()))
        if obsolete:
            try:
                env.remove_file(os.path.join(dbpath, name))
                info_log.log("removed obsolete file %s", name)
            except OperationalError as exc:
                info_log.log("could not remove obsolete file %s: %s", name, exc)


# A read-only open that fails while the writer's MANIFEST stays as it was
# tries this many times in all: real damage fails every time the same way.
READONLY_OPEN_ATTEMPTS = 5
# Failures while the MANIFEST moved are races with the writer and are tried
# again at once, for at most this long.
READONLY_RACE_SECONDS = 30.0


def _manifest_mark(dbpath, env):
    """(CURRENT's bytes, size of the MANIFEST it names), or None if unreadable.

    Every edit the writer records changes it, and the writer deletes a log,
    a MANIFEST or a table only after recording the edit that made it
    obsolete: a read-only open that failed while the mark moved raced the
    writer, one that failed with the mark unchanged met real damage."""
    try:
        current = env.read_file(filename.current_file_name(dbpath))
        name = current.decode("utf-8", "replace").strip()
        if not name or "/" in name:
            return current, None
        return current, env.get_file_size(os.path.join(dbpath, name))
    except OperationalError:        # FileMissingError included
        return None


def _recover_readonly(dbpath, options, env, info_log, previous):
    """_recover_state() for a read-only open, with every table of the Version
    pinned open: (state, stats, pinned).  previous: the engine a refresh
    replaces, or None; its open table files are shared, and only the
    MANIFEST edits recorded since it was read are decoded."""
    reuse = previous.table_cache.pinned if previous is not None else None
    failures = 0
    deadline = time.monotonic() + READONLY_RACE_SECONDS
    while True:
        before = _manifest_mark(dbpath, env)
        stats = Stats()
        try:
            state = _recover_state(dbpath, options, env, info_log, stats,
                                   previous.versions if previous is not None else None)
            pinned = pin_table_files(dbpath, env, sorted(state[0].current.live_numbers()),
                                     reuse)
        except (CorruptionError, FileMissingError):
            if _manifest_mark(dbpath, env) != before and time.monotonic() < deadline:
                time.sleep(0.001)     # the writer moved on under this attempt
                continue
            failures += 1
            if failures >= READONLY_OPEN_ATTEMPTS:
                raise
            time.sleep(0.01 * failures)
            continue
        damaged = state[5]
        if damaged and _manifest_mark(dbpath, env) != before and time.monotonic() < deadline:
            # paranoid_checks=False "dropped" a log the writer had just retired.
            continue
        return state, stats, pinned


def _recover_state(dbpath, options, env, info_log, stats, previous=None):
    """MANIFEST and log replay: (vset, created, logs, mem, last_sequence, damaged, clean_end).
    previous: the VersionSet of the read-only engine a refresh replaces."""
    files = _files(dbpath, env)
    vset, created = _load_versions(dbpath, options, env, files, previous)
    if options.readonly:
        # List again after reading the MANIFEST: a log that its log number
        # names cannot have been deleted before this listing unless the
        # MANIFEST moved (a race the caller retries).
        files = _files(dbpath, env)
    logs = [n for n in files.get("log", []) if n >= vset.log_number]
    if vset.log_number and vset.log_number not in logs:
        what = "log %06d named by the manifest is missing" % vset.log_number
        if options.paranoid_checks:
            raise CorruptionError("%s in %s" % (what, dbpath))
        info_log.log("%s; continuing (paranoid_checks=False)", what)
    for number in logs:
        vset.mark_file_number_used(number)
    tables = set(files.get("sst", []))
    missing = sorted(n for n in vset.current.live_numbers() if n not in tables)
    if missing:
        raise CorruptionError("table %s listed in the MANIFEST of %s is missing"
                              % (", ".join("%06d.sst" % n for n in missing), dbpath))
    mem = MemTable()
    last_sequence, damaged, clean_end = replay_logs(dbpath, logs, options, env, info_log,
                                                    stats, mem, vset.last_sequence)
    return vset, created, logs, mem, last_sequence, damaged, clean_end


def open_engine(dbpath, options, env, previous=None, clock=None):
    """Open the database; previous: the read-only engine a refresh replaces;
    clock: what decides expiry (kvcy/_expiry.pyx; None: real time)."""
    dbpath = os.fspath(dbpath)
    _prepare_directory(dbpath, options, env)
    lock = None
    if not options.readonly:
        lock = env.lock_file(filename.lock_file_name(dbpath))
    vset = log = None
    info_log = NullInfoLog() if options.readonly else BufferedInfoLog()
    try:
        pinned = None
        if options.readonly:
            state, stats, pinned = _recover_readonly(dbpath, options, env, info_log, previous)
        else:
            stats = Stats()
            state = _recover_state(dbpath, options, env, info_log, stats)
        vset, created, logs, mem, last_sequence, damaged, clean_end = state
        if options.readonly:
            log_number = vset.log_number
        elif (logs == [vset.log_number] and clean_end and not damaged
              and mem.memory_usage() < options.memtable_max_bytes // 2):
            # Keep appending to the one log, its records kept in the
            # memtable (LevelDB's reuse_logs): an open that is closed soon
            # after, as scripts and dbm users do, then leaves no tiny
            # level-0 table behind.  The MANIFEST already names this log.
            log_number = vset.log_number
            log = LogWriter(env.new_appendable_file(
                filename.log_file_name(dbpath, log_number)), log_number)
            recovered = len(mem)
            info_log.log("log %06d reused: %d entries kept in the memtable", log_number,
                         recovered)
            _remove_obsolete(dbpath, env, vset, info_log)
        else:
            with vset.lock:
                table_number = vset.new_file_number()
                log_number = vset.new_file_number()
            meta = write_level0_table(dbpath, env, options, mem, table_number)
            log = LogWriter(env.new_writable_file(
                filename.log_file_name(dbpath, log_number)), log_number)
            env.sync_dir(dbpath)
            # Everything up to last_sequence is now in tables; the new log is empty.
            edit = VersionEdit(log_number=log_number, last_sequence=last_sequence)
            for start, stop, sequence in mem.range_dels:     # they move into the Version
                edit.add_range_del(start, stop, sequence)
            if meta is not None:
                edit.add_file(0, meta)
                stats.flushes += 1
                stats.flush_bytes += meta.file_size
                info_log.log("recovered memtable flushed to table %06d (%d entries, %d bytes)",
                             table_number, len(mem), meta.file_size)
            with vset.lock:
                vset.log_and_apply(edit)
            _remove_obsolete(dbpath, env, vset, info_log)
            recovered = len(mem)
            mem = MemTable(log_number)
        mem.log_number = log_number
        if options.readonly:
            recovered = len(mem)
        info_log.log("opened %s%s at sequence %d: %d entries recovered from %d logs%s",
                     dbpath, " (new)" if created else "", last_sequence, recovered, len(logs),
                     "; damaged history dropped" if damaged else "")
        if not options.readonly:
            buffered = info_log
            info_log = InfoLog(env, filename.info_log_file_name(dbpath),
                               os.path.join(dbpath, filename.INFO_LOG_OLD),
                               options.info_log_max_bytes)
            buffered.replay_into(info_log)
        return Engine(dbpath=dbpath, options=options, env=env, lock=lock, info_log=info_log,
                      stats=stats, versions=vset, mem=mem, log=log,
                      last_sequence=last_sequence, pinned=pinned, previous=previous,
                      clock=clock)
    except BaseException:
        if log is not None:
            log.close()
        if vset is not None:
            vset.close()
        if info_log is not None:
            info_log.close()
        if lock is not None:
            lock.release()
        raise
