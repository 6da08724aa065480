"""repair(): rebuild a usable database from whatever tables and logs survive.

The approach is LevelDB's RepairDB (db/repair.cc), which trusts no MANIFEST:

  1. take the LOCK; list the tables, logs and MANIFESTs in the directory;
  2. scan every table (kvcy.check.check_table).  A table that checks out is
     used as it is; from a damaged one only the data blocks that read and
     check out are kept.  When its footer or index is lost, the data blocks
     are found by their checksums instead: each block ends with a
     compression byte and the CRC32C of its contents, so scanning forward
     from offset 0 for the next place where that trailer matches finds the
     blocks one after another (the scan stops at the first block that is
     not a data block: the filter or properties block after the last one);
  3. replay every log into a memtable, skipping damaged records and
     resuming at the next intact one (recovery stops at the first damage;
     repair keeps what follows);
  4. merge everything and write it as new tables, keeping for each key its
     newest surviving entry (a tombstone drops the key);
  5. write a fresh MANIFEST naming the new tables (all in level 1: they are
     one sorted run) and an empty log; move the damaged tables, every log and
     every old MANIFEST into lost/; point CURRENT at the new MANIFEST; remove
     the undamaged tables, whose entries all live in the new ones.

Unlike LevelDB, which lists every recovered table in level 0 by file
number, repair merges: once the MANIFEST is gone, nothing records which of
two overlapping tables is newer (file numbers do not say it: a compaction
output has a higher number than the older level-0 tables beside it), and a
read that found the older one first would return a stale value.  Merging
orders entries by their sequence numbers, which is always right.  It costs
one rewrite of the database.

A crash during repair leaves the old CURRENT (until step 5's switch) and
files the next repair picks up again; nothing is deleted before CURRENT
names the new MANIFEST.  Values in damaged blocks and records are lost, and
an older value of such a key may come back: the report lists every dropped
block and record so an operator knows which key ranges to look at.
Range tombstones (conn.delete_range) are read from every MANIFEST edit and
log record that checks out and applied by the merge, so the new tables hold
no entry they deleted and the new MANIFEST needs none of them; a tombstone
in a damaged MANIFEST record or log record is lost, and the keys it deleted
(those still in some table) come back.
"""
import os
from dataclasses import dataclass, field
from typing import Callable

from kvcy import filename
from kvcy._crc32c import crc32c, unmask
from kvcy._memtable import MemTable
from kvcy._merge import MergingIterator
from kvcy._table_builder import TableBuilder
from kvcy._write_batch import apply_batch
from kvcy._range_del import RangeTombstones
from kvcy.check import (Problem, check_table, data_block_entries, lock_database,
                        looks_like_database)
from kvcy.config import resolve_options
from kvcy.dbformat import KIND_DELETE
from kvcy.env import default_env
from kvcy.errors import CorruptionError
from kvcy.log_reader import LogReader
from kvcy.table import Table
from kvcy.table_format import (BLOCK_TRAILER_BYTES, FOOTER_BYTES, MAX_BLOCK_BYTES, BlockHandle,
                               read_block)
from kvcy.version_edit import FileMetaData, VersionEdit
from kvcy.version_set import write_manifest

__all__ = ["repair", "RepairReport"]

LOST_DIR = "lost"
REPAIR_LEVEL = 1               # the merged output is one sorted, disjoint run
_SIZE_CHECK_ENTRIES = 256      # entries between output-size checks


@dataclass
class RepairReport:
    """What repair() kept, dropped and moved."""
    path: str
    tables_scanned: int = 0
    logs_replayed: int = 0
    log_records_replayed: int = 0
    entries_scanned: int = 0       # entries read from tables and logs, before merging
    keys_recovered: int = 0        # live keys written to the new tables
    last_sequence: int = 0
    range_tombstones: int = 0      # range tombstones read (MANIFEST, logs) and applied
    tables_written: list = field(default_factory=list)   # names of the new tables
    manifest: str = None                                  # the new MANIFEST's name
    damaged: list = field(default_factory=list)           # Problem: what was found wrong
    dropped: list = field(default_factory=list)           # Problem: blocks, records, tables
    lost: list = field(default_factory=list)              # paths now under lost/
    removed: list = field(default_factory=list)           # undamaged tables merged and removed

    @property
    def ok(self):
        """True iff nothing was dropped."""
        return not self.dropped

    def to_dict(self):
        out = {name: getattr(self, name) for name in (
            "path", "tables_scanned", "logs_replayed", "log_records_replayed",
            "entries_scanned", "keys_recovered", "last_sequence", "range_tombstones",
            "tables_written",
            "manifest", "lost", "removed")}
        out["ok"] = self.ok
        out["damaged"] = [p.to_dict() for p in self.damaged]
        out["dropped"] = [p.to_dict() for p in self.dropped]
        return out

    def __str__(self):
        lines = ["%s: repaired; %d keys recovered into %d table%s; %s"
                 % (self.path, self.keys_recovered, len(self.tables_written),
                    "" if len(self.tables_written) == 1 else "s",
                    "nothing dropped" if self.ok else "dropped:")]
        lines += ["  " + str(p) for p in self.dropped]
        if self.lost:
            lines.append("  originals kept in %s: %s"
                         % (os.path.join(self.path, LOST_DIR),
                            ", ".join(os.path.basename(p) for p in self.lost)))
        return "\n".join(lines)


# -- tables ----------------------------------------------------------------

def find_blocks_by_checksum(data, end):
    """Handles of the data blocks at the start of data[:end], found without
    an index: from each block's start, the first offset where a valid
    trailer (compression byte 0 or 1, masked CRC32C of the contents and that
    byte) follows ends the block.  Returns (handles, stop, complete): the
    scan stops at the first checked block that is not a data block (the
    filter or properties block after the data: complete is True), or where
    no block ends (damage: complete is False)."""
    handles = []
    view = memoryview(data)
    start = 0
    while start < end:
        crc = 0
        found = None
        pos = start
        limit = min(end - BLOCK_TRAILER_BYTES, start + MAX_BLOCK_BYTES)
        while pos <= limit:
            kind = data[pos]
            if kind <= 1:
                stored = int.from_bytes(view[pos + 1:pos + 5], "little")
                if unmask(stored) == crc32c(view[pos:pos + 1], crc):
                    handle = BlockHandle(start, pos - start)
                    try:
                        entries = data_block_entries(
                            read_block(_Bytes(data), handle, len(data) + FOOTER_BYTES, "",
                                       "data"), want_values=False)
                    except CorruptionError:
                        entries = None
                    if not entries:
                        # A checked block that holds no data entries: the
                        # filter or properties block after the data blocks.
                        return handles, start, True
                    found = handle
                    break
            crc = crc32c(view[pos:pos + 1], crc)
            pos += 1
        if found is None:
            return handles, start, False
        handles.append(found)
        start = found.offset + found.size + BLOCK_TRAILER_BYTES
    return handles, start, True


class _Bytes:
    """read_block's file interface over bytes in memory."""
    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data

    def read(self, offset, n):
        return bytes(self.data[offset:offset + n])


def _salvage_table(env, path, name, scan, mem, report):
    """Put the entries of a damaged table's good data blocks into mem."""
    data = env.read_file(path)
    reader = _Bytes(data)
    if scan.index_ok:
        handles = scan.good_handles
    else:
        end = scan.data_end if scan.data_end is not None else max(len(data) - FOOTER_BYTES, 0)
        handles, stopped, complete = find_blocks_by_checksum(data, end)
        if not complete:
            report.dropped.append(Problem(name, stopped, "%d bytes of data blocks could not "
                                          "be read without the index" % (end - stopped)))
    kept = 0
    for handle in handles:
        try:
            entries = data_block_entries(read_block(reader, handle, len(data), name))
        except CorruptionError:
            continue
        for ikey, value in entries:
            tag = int.from_bytes(ikey[-8:], "little")
            mem.add(tag >> 8, tag & 0xFF, ikey[:-8], value)
        kept += len(entries)
    return kept


def _scan_tables(env, dbpath, numbers, report, sources):
    """Check every table; returns ([undamaged names], [damaged names])."""
    clean, damaged = [], []
    for number in numbers:
        name = "%06d.sst" % number
        path = os.path.join(dbpath, name)
        file = env.new_random_access_file(path)
        scan = check_table(file, file.size, name)
        report.tables_scanned += 1
        if scan.ok:
            table = Table.open(file, file.size, number)
            sources.append(table.iterator())
            report.entries_scanned += scan.entries
            report.last_sequence = max(report.last_sequence, scan.max_sequence)
            clean.append(name)
            continue
        file.close()
        mem = MemTable()
        report.damaged.extend(scan.problems)
        kept = _salvage_table(env, path, name, scan, mem, report)
        good = {h.offset for h in scan.good_handles}
        bad = {h.offset for _, h in scan.handles if h.offset not in good}
        for problem in scan.problems:
            if problem.offset in bad:
                report.dropped.append(problem)
                bad.discard(problem.offset)
        if kept:
            sources.append(mem.iterator())
            report.entries_scanned += kept
            report.last_sequence = max(report.last_sequence, mem.last_sequence)
        else:
            report.dropped.append(Problem(name, None, "no readable data block: table dropped"))
        damaged.append(name)
    return clean, damaged


# -- logs ------------------------------------------------------------------

def _log_records(data, name, report):
    """Every intact logical record of a log, skipping damage and resuming at
    the next intact record (LogReader.salvage), each skip reported."""
    reader = LogReader(data, path=name, paranoid=False)
    return reader.salvage(lambda at, what: report.dropped.append(Problem(name, at, what)))


def _replay_logs(env, dbpath, numbers, report, sources, tombstones):
    for number in numbers:
        name = "%06d.log" % number
        mem = MemTable()
        for offset, payload in _log_records(env.read_file(os.path.join(dbpath, name)),
                                            name, report):
            try:
                last = apply_batch(payload, mem)
            except CorruptionError as exc:
                report.dropped.append(Problem(name, offset, "bad write batch: %s" % exc))
                continue
            report.log_records_replayed += 1
            report.last_sequence = max(report.last_sequence, last)
        report.logs_replayed += 1
        tombstones.extend(mem.range_dels)
        if len(mem):
            report.entries_scanned += len(mem)
            sources.append(mem.iterator())


def _manifest_last_sequence(env, path, tombstones):
    """The last sequence a (possibly damaged) MANIFEST records, or 0; adds
    the range tombstones its readable edits leave live to tombstones."""
    last = 0
    live = {}
    try:
        for _, payload in LogReader(env.read_file(path), path=path, paranoid=False):
            edit = VersionEdit.decode(payload)
            if edit.last_sequence is not None:
                last = max(last, edit.last_sequence)
            for start, stop, sequence in edit.new_range_dels:
                live[sequence] = (start, stop, sequence)
            for sequence in edit.deleted_range_dels:
                live.pop(sequence, None)
    except CorruptionError:
        pass
    tombstones.extend(live.values())
    return last


# -- writing the result ------------------------------------------------------

class _Output:
    """New tables of at most about target_file_bytes each."""

    def __init__(self, dbpath, env, options, numbers):
        self.dbpath, self.env, self.options = dbpath, env, options
        self.numbers = numbers          # iterator of fresh file numbers
        self.builder = self.file = None
        self.metas = []

    def add(self, ikey, value):
        if self.builder is None:
            self.number = next(self.numbers)
            path = filename.table_file_name(self.dbpath, self.number)
            self.file = self.env.new_writable_file(path)
            self.builder = TableBuilder(self.file, self.options, path)
        self.builder.add(ikey, value)

    def full(self):
        return self.builder is not None and (self.builder.file_size()
                                             >= self.options.target_file_bytes)

    def finish(self):
        if self.builder is None:
            return
        size = self.builder.finish()
        self.file.sync()
        self.file.close()
        props = self.builder.props
        self.metas.append(FileMetaData(self.number, size, props.smallest, props.largest))
        self.builder = self.file = None


def _merge(sources, output, report, range_dels=None):
    """Write the newest entry of each key; a tombstone drops the key, and so
    does a range tombstone newer than the entry (range_dels: RangeTombstones)."""
    it = MergingIterator(sources)
    it.seek_to_first()
    prev = None
    n = 0
    while it.valid():
        user_key = it.user_key()
        if user_key != prev:
            prev = user_key
            if it.kind() != KIND_DELETE and (
                    range_dels is None
                    or range_dels.covering_sequence(user_key) <= it.sequence()):
                output.add(it.key(), it.value())
                report.keys_recovered += 1
                n += 1
                if n % _SIZE_CHECK_ENTRIES == 0 and output.full():
                    output.finish()
        it.next()
    if it.status() is not None:
        raise it.status()
    output.finish()


def _archive(env, dbpath, name, report):
    """Move dbpath/name into dbpath/lost/ (a name already there gets a suffix)."""
    lost = os.path.join(dbpath, LOST_DIR)
    env.create_dir(lost)
    target = os.path.join(lost, name)
    suffix = 1
    while env.file_exists(target):
        target = os.path.join(lost, "%s.%d" % (name, suffix))
        suffix += 1
    env.rename_file(os.path.join(dbpath, name), target)
    report.lost.append(target)


def repair(path: "str | os.PathLike[str]", *,
           progress: "Callable[[int, int], object] | None" = None) -> RepairReport:
    """Rebuild the database at path from the tables and logs that survive;
    returns a RepairReport (what was recovered, dropped, and moved to lost/).

    progress: an optional callable(done, total), counting table and log
    files scanned.  Raises OperationalError if path is not a database or
    another process has it open."""
    dbpath = os.fspath(path)
    env = default_env()
    looks_like_database(env, dbpath)
    lock = lock_database(env, dbpath, "repair")
    try:
        return _repair_locked(dbpath, env, progress)
    finally:
        lock.release()


def _repair_locked(dbpath, env, progress):
    options = resolve_options(None)
    report = RepairReport(dbpath)
    found = {}
    highest = 1
    for name in env.get_children(dbpath):
        parsed = filename.parse_file_name(name)
        if parsed is None or parsed[1] is None:
            continue
        found.setdefault(parsed[0], []).append(parsed[1])
        highest = max(highest, parsed[1])
    tables = sorted(found.get("sst", []))
    logs = sorted(found.get("log", []))
    manifests = sorted(found.get("manifest", []))
    total = len(tables) + len(logs) + 1
    sources = []
    tombstones = []                 # range tombstones: applied by the merge, then gone
    for number in manifests:
        report.last_sequence = max(report.last_sequence, _manifest_last_sequence(
            env, filename.manifest_file_name(dbpath, number), tombstones))
    clean, damaged = [], []
    for done, number in enumerate(tables):
        c, d = _scan_tables(env, dbpath, [number], report, sources)
        clean += c
        damaged += d
        if progress is not None:
            progress(done + 1, total)
    for done, number in enumerate(logs):
        _replay_logs(env, dbpath, [number], report, sources, tombstones)
        if progress is not None:
            progress(len(tables) + done + 1, total)
    numbers = iter(range(highest + 1, 1 << 62))
    output = _Output(dbpath, env, options, numbers)
    report.range_tombstones = len({t[2] for t in tombstones})
    _merge(sources, output, report, RangeTombstones(tombstones) if tombstones else None)
    del sources                     # close the clean tables before they are removed
    log_number = next(numbers)
    log = env.new_writable_file(filename.log_file_name(dbpath, log_number))
    try:
        log.sync()
    finally:
        log.close()
    manifest_number = next(numbers)
    edit = VersionEdit(log_number=log_number, next_file_number=next(numbers),
                       last_sequence=report.last_sequence)
    for meta in output.metas:
        edit.add_file(REPAIR_LEVEL, meta)
    write_manifest(env, dbpath, manifest_number, edit)
    env.sync_dir(dbpath)
    for name in damaged + ["%06d.log" % n for n in logs] + [
            os.path.basename(filename.manifest_file_name(dbpath, n)) for n in manifests]:
        _archive(env, dbpath, name, report)
    env.sync_dir(dbpath)
    env.write_file_atomically(filename.current_file_name(dbpath),
                              ("MANIFEST-%06d\n" % manifest_number).encode())
    for name in clean:
        env.remove_file(os.path.join(dbpath, name))
        report.removed.append(name)
    env.sync_dir(dbpath)
    report.manifest = os.path.basename(filename.manifest_file_name(dbpath, manifest_number))
    report.tables_written = ["%06d.sst" % m.number for m in output.metas]
    if progress is not None:
        progress(total, total)
    return report
