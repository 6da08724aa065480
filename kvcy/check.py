"""check(): read every file of a database and report what is damaged.

kvcy.check(path) verifies a closed database; Connection.check() verifies
the Version an open connection is using.  Every live table is read whole:
the footer, the index block, the bloom filter (every key of the table must
pass it), the properties, and every data block with its CRC32C, with key
order checked inside each block, across blocks and against the index's
separators; each table's real key range and size are compared with what
the MANIFEST records, and the levels below 0 must be sorted and disjoint.
The MANIFEST and CURRENT are parsed, and every log the database still
needs is read record by record (a torn tail after a crash is normal and is
not a problem; damage with intact records after it is).

Damage never raises: each problem is recorded with the file, the offset of
the block or record when there is one, and what is wrong.  Only a path
that is not a database, or a database another process holds open for
writing (its LOCK), raises OperationalError.

Blocks are read straight from the files (not through the block cache), so a
check does not evict a running connection's hot blocks.  The table walk
here (check_table, data_block_entries) is also what kvcy.repair scans with.

Thread-safety: a check uses only its own file handles; Connection.check()
pins its Version, so a concurrent compaction cannot delete a table under it.
"""
import os
import re
from dataclasses import dataclass, field
from typing import Callable

from kvcy import filename
from kvcy._block import Block
from kvcy._bloom import BloomFilter
from kvcy._write_batch import batch_header
from kvcy.dbformat import KIND_DELETE, KIND_EXPIRING_VALUE, KIND_VALUE
from kvcy.env import FileMissingError, default_env
from kvcy.errors import CorruptionError, OperationalError
from kvcy.log_reader import LogReader
from kvcy.table_format import FOOTER_BYTES, BlockHandle, Footer, read_block
from kvcy.table_properties import TableProperties
from kvcy.version_edit import VersionEdit
from kvcy.version_set import Version

__all__ = ["check", "check_database", "CheckReport", "Problem", "TableReport", "check_table",
           "data_block_entries", "looks_like_database", "lock_database"]

# progress() is called at least once per this many data blocks of a table.
PROGRESS_BLOCKS = 64


@dataclass
class Problem:
    """One thing found wrong: the file (a name inside the database
    directory), the offset of the damaged block or record (None when the
    problem is not at one place) and what is wrong."""
    file: str
    offset: object
    what: str

    def __str__(self):
        where = "" if self.offset is None else " at offset %d" % self.offset
        return "%s%s: %s" % (self.file, where, self.what)

    def to_dict(self):
        return {"file": self.file, "offset": self.offset, "what": self.what}


@dataclass
class CheckReport:
    """What check() read and what it found; ok is True iff nothing is wrong."""
    path: str
    problems: list = field(default_factory=list)
    manifest: object = None          # the MANIFEST name CURRENT points at, if it does
    tables_checked: int = 0
    blocks_checked: int = 0
    keys_checked: int = 0
    logs_checked: int = 0
    log_records_checked: int = 0
    bytes_checked: int = 0
    manifest_torn_tail: object = field(default=None, repr=False)   # (offset, bytes) of an incomplete last MANIFEST record

    @property
    def ok(self):
        return not self.problems

    def add(self, file, offset, what):
        self.problems.append(Problem(file, offset, what))

    def to_dict(self):
        """Plain data for JSON output (`kvcy check --json`)."""
        return {"path": self.path, "ok": self.ok, "manifest": self.manifest,
                "tables_checked": self.tables_checked, "blocks_checked": self.blocks_checked,
                "keys_checked": self.keys_checked, "logs_checked": self.logs_checked,
                "log_records_checked": self.log_records_checked,
                "bytes_checked": self.bytes_checked,
                "problems": [p.to_dict() for p in self.problems]}

    def __str__(self):
        lines = ["%s: %s (%d tables, %d blocks, %d keys, %d logs checked)"
                 % (self.path, "ok" if self.ok else "%d problem%s" % (
                     len(self.problems), "" if len(self.problems) == 1 else "s"),
                    self.tables_checked, self.blocks_checked, self.keys_checked,
                    self.logs_checked)]
        lines += ["  " + str(p) for p in self.problems]
        return "\n".join(lines)


# -- tables --------------------------------------------------------------

def _tag(ikey):
    return int.from_bytes(ikey[-8:], "little")


def _in_order(a, b):
    """True iff internal key a sorts strictly before b (user key ascending, tag descending)."""
    ua, ub = a[:-8], b[:-8]
    return ua < ub or (ua == ub and _tag(a) > _tag(b))


def _short(key, limit=40):
    text = repr(bytes(key[:limit]))
    return text + ("..." if len(key) > limit else "")


def data_block_entries(raw, want_values=True):
    """[(internal key, value or None)] of a data block's raw contents, every
    entry checked: block structure (kvcy._block), kind byte, and strict order.
    CorruptionError names the first bad entry."""
    it = Block(raw).iterator()
    it.seek_to_first()
    out = []
    prev = None
    while it.valid():
        key = it.key()
        kind = key[-8]
        if kind == KIND_EXPIRING_VALUE:
            if len(it.value()) < 8:
                raise CorruptionError("entry %s: expiring value shorter than its 8-byte expiry"
                                      % _short(key[:-8]))
        elif kind != KIND_VALUE and kind != KIND_DELETE:
            raise CorruptionError("entry %s of unknown kind %d" % (_short(key[:-8]), kind))
        if prev is not None and not _in_order(prev, key):
            raise CorruptionError("key %s is out of order after %s"
                                  % (_short(key[:-8]), _short(prev[:-8])))
        out.append((key, it.value() if want_values else None))
        prev = key
        it.next()
    status = it.status()
    if status is not None:
        raise status
    return out


class TableReport:
    """What check_table() found in one table file."""

    def __init__(self, name, file_size):
        self.name = name
        self.file_size = file_size
        self.problems = []           # Problem
        self.index_ok = False        # the footer and index could be read: handles is complete
        self.data_end = None         # where the data blocks end, if the footer says
        self.handles = []            # data blocks the index lists, in order
        self.filters = []            # the BloomFilter (or None) each of them answers to
        self.good_handles = []       # those that read and checked out
        self.smallest = None         # smallest and largest internal key found
        self.largest = None
        self.max_sequence = 0
        self.entries = 0
        self.blocks = 0              # data blocks read (good or not)

    @property
    def ok(self):
        return not self.problems

    def add(self, offset, what):
        self.problems.append(Problem(self.name, offset, what))


def _read_meta(file, file_size, report):
    """Footer, index, filter and properties: (index Block or None, bloom, properties)."""
    name = report.name
    if file_size < FOOTER_BYTES:
        report.add(None, "%d bytes is too short to be a table" % file_size)
        return None, None, None
    try:
        footer = Footer.decode(file.read(file_size - FOOTER_BYTES, FOOTER_BYTES), name)
    except CorruptionError as exc:
        report.add(file_size - FOOTER_BYTES, "footer: %s" % _strip(exc, name))
        return None, None, None
    ends = [footer.index.offset, footer.properties.offset]
    if footer.filter.size:
        ends.append(footer.filter.offset)
    report.data_end = min(ends)        # version 2: the properties come first
    parts = [("index", footer.index, Block), ("properties", footer.properties,
                                               TableProperties.decode)]
    if footer.filter.size:
        parts.insert(1, ("filter", footer.filter, BloomFilter))
    found = {}
    for what, handle, parse in parts:
        try:
            found[what] = parse(read_block(file, handle, file_size, name, what))
        except CorruptionError as exc:
            report.add(handle.offset, "%s block: %s" % (what, _strip(exc, name)))
    index, bloom, properties = found.get("index"), found.get("filter"), found.get("properties")
    if index is not None:
        if footer.partitioned:
            _read_partitions(file, file_size, footer, index, report)
        else:
            try:
                report.handles = _index_handles(index)
                report.filters = [bloom] * len(report.handles)
                report.index_ok = True
            except CorruptionError as exc:
                report.add(footer.index.offset, "index block: %s" % _strip(exc, name))
    return index, bloom, properties


def _index_handles(index):
    """[(separator, BlockHandle)] of an index Block; CorruptionError if damaged."""
    it = index.iterator()
    it.seek_to_first()
    handles = []
    while it.valid():
        handle, end = BlockHandle.decode(it.value())
        if end != len(it.value()):
            raise CorruptionError("an entry's value is not one block handle")
        handles.append((it.key(), handle))
        it.next()
    if it.status() is not None:
        raise it.status()
    return handles


def _read_partitions(file, file_size, footer, top, report):
    """A partitioned table's index and filter partitions, through its
    top-level index: the data block handles, each with its partition's filter."""
    name = report.name
    try:
        parts = []
        it = top.iterator()
        it.seek_to_first()
        entries = []
        while it.valid():
            entries.append(it.value())
            it.next()
        if it.status() is not None:
            raise it.status()
        for value in entries:
            index_handle, pos = BlockHandle.decode(value)
            filter_handle, pos = BlockHandle.decode(value, pos)
            if pos != len(value):
                raise CorruptionError("an entry's value is not two block handles")
            parts.append((index_handle, filter_handle))
    except CorruptionError as exc:
        report.add(footer.index.offset, "top-level index block: %s" % _strip(exc, name))
        return
    ok = True
    for index_handle, filter_handle in parts:
        bloom = None
        if filter_handle.size:
            try:
                bloom = BloomFilter(read_block(file, filter_handle, file_size, name, "filter"))
            except CorruptionError as exc:
                report.add(filter_handle.offset, "filter partition: %s" % _strip(exc, name))
        try:
            handles = _index_handles(Block(read_block(file, index_handle, file_size, name,
                                                      "index")))
        except CorruptionError as exc:
            report.add(index_handle.offset, "index partition: %s" % _strip(exc, name))
            ok = False
            continue
        report.handles.extend(handles)
        report.filters.extend([bloom] * len(handles))
    report.index_ok = ok


_WHERE = re.compile(r"^(?:table \S+: )?(?:\w+ block(?: at offset \d+)?: )?(?:block: )?")


def _strip(exc, name):
    """The message of exc without the "table <name>: <kind> block at offset N: "
    prefix the readers add (the Problem says where)."""
    return _WHERE.sub("", str(exc), count=1) or str(exc)


def check_table(file, file_size, name, progress=None):
    """Read and check every part of the table in file; returns a TableReport.

    progress, if given, is called with the bytes of the table read so far
    (at least every PROGRESS_BLOCKS blocks).  Never raises on damage."""
    report = TableReport(name, file_size)
    index, bloom, properties = _read_meta(file, file_size, report)
    prev_last = None
    prev_separator = None
    filter_misses = 0
    for number, ((separator, handle), bloom) in enumerate(zip(report.handles,
                                                              report.filters)):
        report.blocks += 1
        try:
            entries = data_block_entries(read_block(file, handle, file_size, name),
                                         want_values=False)
        except CorruptionError as exc:
            report.add(handle.offset, "data block: %s" % _strip(exc, name))
            prev_last = None
            continue
        report.good_handles.append(handle)
        if entries:
            first, last = entries[0][0], entries[-1][0]
            if prev_last is not None and not _in_order(prev_last, first):
                report.add(handle.offset, "data block starts with key %s, not after the "
                           "previous block's last key %s" % (_short(first[:-8]),
                                                             _short(prev_last[:-8])))
            if _in_order(separator, last) or (prev_separator is not None
                                              and not _in_order(prev_separator, first)):
                report.add(handle.offset, "data block's keys lie outside its index entry")
            if report.smallest is None:
                report.smallest = first
            report.largest = last
            prev_last = last
            for key, _ in entries:
                seq = _tag(key) >> 8
                if seq > report.max_sequence:
                    report.max_sequence = seq
                if bloom is not None and not bloom.may_contain(key[:-8]):
                    filter_misses += 1
            report.entries += len(entries)
        prev_separator = separator
        if progress is not None and number % PROGRESS_BLOCKS == PROGRESS_BLOCKS - 1:
            progress(handle.offset + handle.size)
    if filter_misses:
        report.add(None, "filter block: %d keys of the table do not pass its bloom filter "
                   "(reads would miss them)" % filter_misses)
    if properties is not None and report.index_ok and report.ok:
        for what, found in (("entries", report.entries), ("data blocks", report.blocks)):
            recorded = properties.num_entries if what == "entries" else properties.data_blocks
            if recorded != found:
                report.add(None, "properties record %d %s, the table holds %d"
                           % (recorded, what, found))
    return report


def _open_table(env, dbpath, name):
    file = env.new_random_access_file(os.path.join(dbpath, name))
    return file, file.size


def _check_tables(env, dbpath, metas, report, progress):
    """Check each (level, FileMetaData) table against what the manifest records."""
    for level, meta in metas:
        name = os.path.basename(filename.table_file_name(dbpath, meta.number))
        try:
            file, size = _open_table(env, dbpath, name)
        except FileMissingError:
            report.add(name, None, "table listed in level %d of the MANIFEST is missing" % level)
            continue
        try:
            base = report.bytes_checked
            table = check_table(file, size, name,
                                None if progress is None else lambda n: progress(base + n))
        finally:
            file.close()
        report.problems.extend(table.problems)
        report.tables_checked += 1
        report.blocks_checked += table.blocks
        report.keys_checked += table.entries
        report.bytes_checked += size
        if progress is not None:
            progress(report.bytes_checked)
        if isinstance(meta, _Unlisted):
            continue
        if meta.file_size != size:
            report.add(name, None, "the MANIFEST records %d bytes, the file has %d"
                       % (meta.file_size, size))
        if table.ok and (table.smallest, table.largest) != (meta.smallest, meta.largest):
            report.add(name, None, "key range %s..%s differs from the MANIFEST's %s..%s"
                       % (_short(table.smallest[:-8]) if table.smallest else None,
                          _short(table.largest[:-8]) if table.largest else None,
                          _short(meta.smallest_user), _short(meta.largest_user)))


def _check_levels(version, manifest, report):
    for level, files in enumerate(version.files):
        if level == 0:
            continue
        for a, b in zip(files, files[1:]):
            if not a.largest_user < b.smallest_user:
                report.add(manifest, None, "level %d: tables %06d and %06d overlap"
                           % (level, a.number, b.number))


# -- MANIFEST and logs -----------------------------------------------------

def _read_manifest(env, dbpath, report):
    """The Version and fields CURRENT's MANIFEST records, or None (problems added)."""
    try:
        text = env.read_file(filename.current_file_name(dbpath)).decode("utf-8", "replace")
    except FileMissingError:
        report.add(filename.CURRENT, None, "missing: the database cannot be opened "
                   "(kvcy.repair rebuilds it)")
        return None
    name = text.strip()
    parsed = filename.parse_file_name(name) if text.endswith("\n") else None
    if parsed is None or parsed[0] != "manifest":
        report.add(filename.CURRENT, None, "does not name a MANIFEST: %r" % text[:64])
        return None
    report.manifest = name
    try:
        data = env.read_file(os.path.join(dbpath, name))
    except FileMissingError:
        report.add(name, None, "missing, yet CURRENT names it")
        return None
    report.bytes_checked += len(data)
    reader = LogReader(data, path=name, paranoid=False)
    version = Version()
    fields = {}
    try:
        for offset, payload in reader:
            try:
                edit = VersionEdit.decode(payload)
                version = version.apply(edit)
            except CorruptionError as exc:
                report.add(name, offset, "version edit: %s" % exc)
                return None
            for key in ("log_number", "next_file_number", "last_sequence"):
                if getattr(edit, key) is not None:
                    fields[key] = getattr(edit, key)
    except CorruptionError as exc:
        report.add(name, reader.end_offset, str(exc))
        return None
    if reader.damage is not None:
        report.add(name, reader.end_offset, "damaged record (%s); %d bytes after it unread"
                   % (reader.damage.split(" at offset")[0], reader.dropped_bytes))
        return None
    if reader.torn_tail_bytes:
        # Normal after a crash while a change was being recorded; named
        # only if the state before it does not check out (see check_database).
        report.manifest_torn_tail = (reader.end_offset, reader.torn_tail_bytes)
    missing = [k for k in ("log_number", "next_file_number", "last_sequence") if k not in fields]
    if missing:
        report.add(name, None, "records no %s" % ", ".join(k.replace("_", " ") for k in missing))
        return None
    return version, fields


def _check_logs(env, dbpath, numbers, last_sequence, report, progress, live):
    """Read each log; with last_sequence, check that sequences run on without a gap."""
    for number in numbers:
        name = "%06d.log" % number
        try:
            data = env.read_file(os.path.join(dbpath, name))
        except FileMissingError:
            if live:
                continue              # the writer finished with it while we looked
            raise
        reader = LogReader(data, path=name, paranoid=False)
        try:
            for offset, payload in reader:
                report.log_records_checked += 1
                try:
                    seq, count = batch_header(payload)
                except CorruptionError as exc:
                    report.add(name, offset, "bad write batch: %s" % exc)
                    last_sequence = None
                    continue
                if last_sequence is not None and count:
                    if seq != last_sequence + 1:
                        report.add(name, offset, "sequence %d follows %d: writes in between "
                                   "are missing" % (seq, last_sequence))
                    last_sequence = seq + count - 1
        except CorruptionError as exc:     # not raised with paranoid=False; kept for safety
            report.add(name, reader.end_offset, str(exc))
        if reader.damage is not None:
            report.add(name, reader.end_offset, "damaged record (%s) with intact records "
                       "after it: opening would drop the %d bytes from here to the end "
                       "(kvcy.repair keeps the intact records)"
                       % (reader.damage.split(" at offset")[0], reader.dropped_bytes))
            last_sequence = None
        report.logs_checked += 1
        report.bytes_checked += len(data)
        if progress is not None:
            progress(report.bytes_checked)


# -- the whole database ----------------------------------------------------

def looks_like_database(env, dbpath):
    """OperationalError unless dbpath is a directory holding kvcy files."""
    if not os.path.isdir(dbpath):
        raise OperationalError("%s is not a kvcy database: %s" % (
            dbpath, "no such directory" if not os.path.exists(dbpath) else "not a directory"))
    for name in env.get_children(dbpath):
        parsed = filename.parse_file_name(name)
        if parsed is not None and parsed[0] in ("current", "manifest", "sst", "log"):
            return
    raise OperationalError("%s is not a kvcy database (no CURRENT, MANIFEST, table or log "
                           "files)" % dbpath)


def lock_database(env, dbpath, doing):
    """Take the database's LOCK, or OperationalError saying who holds it."""
    try:
        return env.lock_file(filename.lock_file_name(dbpath))
    except OperationalError as exc:
        raise OperationalError("cannot %s %s while it is open for writing: %s"
                               % (doing, dbpath, exc)) from exc


def _numbered(env, dbpath, kind):
    numbers = []
    for name in env.get_children(dbpath):
        parsed = filename.parse_file_name(name)
        if parsed is not None and parsed[0] == kind:
            numbers.append(parsed[1])
    return sorted(numbers)


def _total_bytes(env, dbpath, names):
    total = 0
    for name in names:
        try:
            total += env.get_file_size(os.path.join(dbpath, name))
        except OperationalError:
            pass
    return total


def check_database(dbpath, env, version=None, progress=None):
    """Check the database in dbpath; version: a live connection's pinned
    Version (its tables are checked instead of the MANIFEST's).  Returns a
    CheckReport."""
    report = CheckReport(dbpath)
    live = version is not None
    recovered = _read_manifest(env, dbpath, report)
    if not live and recovered is not None:
        version = recovered[0]
    if version is not None:
        metas = [(level, meta) for level, files in enumerate(version.files) for meta in files]
        log_numbers = [n for n in _numbered(env, dbpath, "log")
                       if recovered is None or n >= recovered[1]["log_number"]]
    else:
        # Without a MANIFEST, every table in the directory is checked.
        metas = [(None, _Unlisted(n)) for n in _numbered(env, dbpath, "sst")]
        log_numbers = _numbered(env, dbpath, "log")
    names = (["%06d.sst" % meta.number for _, meta in metas]
             + ["%06d.log" % n for n in log_numbers])
    total = _total_bytes(env, dbpath, names) + report.bytes_checked
    report_progress = None
    if progress is not None:
        def report_progress(done):
            progress(min(done, total), total)
        report_progress(report.bytes_checked)
    _check_tables(env, dbpath, metas, report, report_progress)
    if version is not None:
        _check_levels(version, report.manifest or "MANIFEST", report)
    if recovered is not None:
        fields = recovered[1]
        if fields["log_number"] and fields["log_number"] not in log_numbers and not live:
            report.add("%06d.log" % fields["log_number"], None,
                       "missing, yet the MANIFEST names it as the current log")
        last = None if live else fields["last_sequence"]
    else:
        last = None
    _check_logs(env, dbpath, log_numbers, last, report, report_progress, live)
    if report.problems and report.manifest_torn_tail is not None:
        offset, size = report.manifest_torn_tail
        report.add(report.manifest, offset, "ends in %d bytes of an incomplete record: the "
                   "last change it recorded was lost (damage, or a crash while recording "
                   "it), which may explain the problems above" % size)
    if progress is not None:
        progress(total, total)
    return report


class _Unlisted:
    """A table found in the directory when no MANIFEST says what it should hold."""
    __slots__ = ("number",)

    def __init__(self, number):
        self.number = number


def check(path: "str | os.PathLike[str]", *,
          progress: "Callable[[int, int], object] | None" = None) -> CheckReport:
    """Check the closed database at path; returns a CheckReport.

    progress: an optional callable(done, total), in bytes read.  Raises
    OperationalError if path is not a database or another process has it
    open for writing (use Connection.check() there); damage is reported in
    the CheckReport, never raised."""
    dbpath = os.fspath(path)
    env = default_env()
    looks_like_database(env, dbpath)
    lock = lock_database(env, dbpath, "check")
    try:
        return check_database(dbpath, env, progress=progress)
    finally:
        lock.release()
