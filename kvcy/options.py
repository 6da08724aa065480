"""Options: every knob of a kvcy database, its default and its valid range.

An Options value is immutable (a frozen dataclass) and always valid: the
constructor, ``replace()`` and ``dataclasses.replace()`` all run
``validate()``, which checks the type and range of each field and the
relations between fields, raising ProgrammingError that names the bad field
and value. Options holds typed values only (ints for sizes, floats for
seconds); turning "64MiB", "5s" and YAML files into Options is config.py's
job. Each field carries its one-line description and its kind in the field
metadata, which config.options_to_yaml() renders into conf/kvcy.yaml, so the
code, the default file and docs/configuration.md share one source.

The module constants are hard limits that the engine enforces before
anything reaches the write-ahead log.

Thread-safety: Options values are immutable and may be shared freely.
"""

import dataclasses
import difflib
import math
from dataclasses import dataclass, field

from kvcy.errors import ProgrammingError

_KIB = 1024
_MIB = 1024 * _KIB
_GIB = 1024 * _MIB

# Hard limits, checked before a write is logged.
MAX_KEY_BYTES = 64 * _KIB        # longest user key
MAX_VALUE_BYTES = 64 * _MIB      # longest value
MAX_BATCH_BYTES = 1 * _GIB       # largest encoded write batch

COMPRESSION_CHOICES = ("snappy", "none")

# Field kinds (metadata "kind"): how a value is typed, parsed and rendered.
KIND_BOOL = "bool"          # a real bool; 1 and "yes" are refused
KIND_INT = "int"            # a count
KIND_SIZE = "size"          # a count of bytes; config accepts "64MiB"
KIND_DURATION = "duration"  # seconds as float; config accepts "5s"
KIND_CHOICE = "choice"      # one string out of metadata "choices"


def _opt(default, doc, kind, minimum=None, maximum=None, choices=None,
         section=None):
    """Declare an option: its default plus the metadata validate() and
    options_to_yaml() read. section starts a new group in conf/kvcy.yaml."""
    return field(default=default, metadata={
        "doc": doc, "kind": kind, "min": minimum, "max": maximum,
        "choices": choices, "section": section})


@dataclass(frozen=True, slots=True)
class Options:
    """Validated, immutable settings of one database."""

    # -- opening ---------------------------------------------------------
    create_if_missing: bool = _opt(
        True, "create the database if the directory holds none",
        KIND_BOOL, section="Opening")
    error_if_exists: bool = _opt(
        False, "refuse to open a database that already exists", KIND_BOOL)
    readonly: bool = _opt(
        False, "open without writing anything; writes raise; cannot be "
        "combined with error_if_exists", KIND_BOOL)
    refresh_interval: float = _opt(
        0.0, "seconds between automatic refresh() calls of a read-only "
        "connection; 0: only explicit refresh(); only with readonly",
        KIND_DURATION, minimum=0)
    paranoid_checks: bool = _opt(
        True, "treat any checksum failure as corruption instead of "
        "skipping the damaged record", KIND_BOOL)
    sync: bool = _opt(
        False, "sync the write-ahead log to disk before each write returns",
        KIND_BOOL)

    # -- memtable --------------------------------------------------------
    memtable_max_bytes: int = _opt(
        4 * _MIB, "memtable size that switches to a new memtable and "
        "flushes the old one", KIND_SIZE, minimum=4096,
        section="Memtable and flushing")
    memtable_min_bytes: int = _opt(
        64 * _KIB, "a timer flush skips memtables smaller than this; at most "
        "memtable_max_bytes",
        KIND_SIZE, minimum=0)
    flush_interval: float = _opt(
        0.0, "seconds between timer flushes; 0 disables the timer",
        KIND_DURATION, minimum=0)
    max_immutable_memtables: int = _opt(
        2, "memtables waiting for flush before writes stall", KIND_INT,
        minimum=1)

    # -- tables ----------------------------------------------------------
    block_size: int = _opt(
        4 * _KIB, "target uncompressed size of an SSTable data block",
        KIND_SIZE, minimum=256, section="SSTables")
    restart_interval: int = _opt(
        16, "keys between prefix-compression restart points in a block",
        KIND_INT, minimum=1)
    compression: str = _opt(
        "snappy", "block compression: snappy or none", KIND_CHOICE,
        choices=COMPRESSION_CHOICES)
    partitioned_index: bool = _opt(
        False, "cut each table's index and bloom filter into block_size "
        "partitions, read in place from the table's mapping (or through the "
        "block cache), so that memory stays within the configured budgets "
        "however many keys the tables hold (a table of one partition is "
        "written as before)", KIND_BOOL)
    bloom_bits_per_key: int = _opt(
        10, "bloom filter bits per key (about 1% false positives at 10); "
        "0 disables bloom filters", KIND_INT, minimum=0, maximum=64)

    # -- caches ----------------------------------------------------------
    block_cache_bytes: int = _opt(
        32 * _MIB, "capacity of the uncompressed block cache; 0 disables "
        "it", KIND_SIZE, minimum=0, section="Caches")
    row_cache_bytes: int = _opt(
        0, "capacity of the key/value row cache; 0 disables it",
        KIND_SIZE, minimum=0)
    max_open_files: int = _opt(
        1000, "SSTable files the table cache keeps open", KIND_INT,
        minimum=16)

    # -- compaction ------------------------------------------------------
    level0_compaction_trigger: int = _opt(
        4, "level-0 files that start a compaction", KIND_INT, minimum=1,
        section="Compaction")
    level0_slowdown_trigger: int = _opt(
        8, "level-0 files at which each write is delayed; at least "
        "level0_compaction_trigger", KIND_INT,
        minimum=1)
    level0_stop_trigger: int = _opt(
        12, "level-0 files at which writes wait for compaction; at "
        "least level0_slowdown_trigger", KIND_INT,
        minimum=1)
    level1_max_bytes: int = _opt(
        10 * _MIB, "size of level 1 before it is compacted; level n+1 may "
        "hold level_size_multiplier times level n", KIND_SIZE, minimum=1)
    level_size_multiplier: int = _opt(
        10, "growth factor of the size limit from one level to the next",
        KIND_INT, minimum=2)
    max_levels: int = _opt(
        7, "number of levels, level 0 included", KIND_INT, minimum=2,
        maximum=20)
    target_file_bytes: int = _opt(
        2 * _MIB, "size at which compaction and flush cut a new SSTable",
        KIND_SIZE, minimum=1)

    # -- threads ---------------------------------------------------------
    read_threads: int = _opt(
        0, "threads in the read pool, which reads a large get_many in "
        "parallel chunks and serves kvcy.aio's reads; 0: no pool, reads run "
        "in the caller's thread", KIND_INT, minimum=0, section="Threads")
    write_threads: int = _opt(
        0, "threads in the write pool, which commits the writes given to "
        "Connection.submit() and kvcy.aio, grouping queued ones; 0: no pool; "
        "not with readonly", KIND_INT, minimum=0)
    background_threads: int = _opt(
        1, "threads running flushes and compactions", KIND_INT, minimum=1)

    # -- monitoring ------------------------------------------------------
    stats_interval: float = _opt(
        0.0, "seconds between stats dumps to the LOG file; 0 disables "
        "them", KIND_DURATION, minimum=0, section="Monitoring")
    info_log_max_bytes: int = _opt(
        4 * _MIB, "size at which the LOG file is rotated to LOG.old and a "
        "new LOG started; 0 never rotates it during a run", KIND_SIZE, minimum=0)

    def __post_init__(self):
        self.validate()
        for f in dataclasses.fields(self):
            if f.metadata["kind"] == KIND_DURATION:
                # Normalise int seconds so equal options compare equal.
                object.__setattr__(self, f.name, float(getattr(self, f.name)))

    def validate(self):
        """Raise ProgrammingError naming the first bad field, else None."""
        for f in dataclasses.fields(self):
            check_option(f.name, getattr(self, f.name))
        _check_order(self, "level0_compaction_trigger",
                     "level0_slowdown_trigger")
        _check_order(self, "level0_slowdown_trigger", "level0_stop_trigger")
        _check_order(self, "memtable_min_bytes", "memtable_max_bytes")
        if self.readonly and self.error_if_exists:
            raise ProgrammingError(
                "option 'error_if_exists' cannot be True with readonly=True: "
                "a read-only open needs an existing database")
        if self.refresh_interval and not self.readonly:
            raise ProgrammingError(
                "option 'refresh_interval' needs readonly=True: a writable "
                "connection is always current")
        if self.readonly and self.write_threads:
            raise ProgrammingError(
                "option 'write_threads' must be 0 with readonly=True: "
                "a read-only connection has no write pool")

    def replace(self, **changes):
        """Return a validated copy with changes applied.

        Unknown names raise ProgrammingError, suggesting close matches."""
        for name in changes:
            if name not in _FIELDS:
                raise unknown_option(name)
        return dataclasses.replace(self, **changes)

    @classmethod
    def names(cls):
        """Return the option names as a tuple, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))


_FIELDS = {f.name: f for f in dataclasses.fields(Options)}

# Options config.py parses with parse_size / parse_duration.
SIZE_OPTIONS = frozenset(
    n for n, f in _FIELDS.items() if f.metadata["kind"] == KIND_SIZE)
DURATION_OPTIONS = frozenset(
    n for n, f in _FIELDS.items() if f.metadata["kind"] == KIND_DURATION)


def option_field(name):
    """Return the dataclasses.Field of option name (metadata: doc, kind,
    min, max, choices, section). Unknown names raise ProgrammingError."""
    try:
        return _FIELDS[name]
    except KeyError:
        raise unknown_option(name) from None


def unknown_option(name, where=None):
    """Return a ProgrammingError for an unknown option name, saying where it
    came from (a file name, "keyword arguments") and suggesting close names."""
    msg = "unknown option %r" % (name,)
    if where:
        msg += " in %s" % (where,)
    if isinstance(name, str):
        close = difflib.get_close_matches(name, list(_FIELDS), n=3)
        if close:
            msg += "; did you mean %s?" % " or ".join("%r" % c for c in close)
    return ProgrammingError(msg)


def describe_option(name):
    """Return what option name accepts, e.g. "an integer >= 256"."""
    meta = option_field(name).metadata
    kind = meta["kind"]
    if kind == KIND_BOOL:
        return "a bool"
    if kind == KIND_CHOICE:
        return "one of %s" % ", ".join("%r" % c for c in meta["choices"])
    noun = "a number of seconds" if kind == KIND_DURATION else "an integer"
    lo, hi = meta["min"], meta["max"]
    if lo is not None and hi is not None:
        return "%s in %s..%s" % (noun, lo, hi)
    if lo is not None:
        return "%s >= %s" % (noun, lo)
    return noun


def check_option(name, value, where=None):
    """Check one option's type and range on its own (relations between
    options are checked by Options.validate()).

    where, if given, is added to the message ("option 'x' in conf/a.yaml").
    Raises ProgrammingError naming the option and the bad value."""
    meta = option_field(name).metadata
    kind = meta["kind"]
    if kind == KIND_BOOL:
        ok = isinstance(value, bool)
    elif kind == KIND_CHOICE:
        ok = isinstance(value, str) and value in meta["choices"]
    else:
        if kind == KIND_DURATION:
            ok = (isinstance(value, (int, float))
                  and not isinstance(value, bool) and math.isfinite(value))
        else:
            ok = isinstance(value, int) and not isinstance(value, bool)
        lo, hi = meta["min"], meta["max"]
        if ok and lo is not None and value < lo:
            ok = False
        if ok and hi is not None and value > hi:
            ok = False
    if not ok:
        label = "option %r" % (name,)
        if where:
            label += " in %s" % (where,)
        raise ProgrammingError("%s must be %s, got %r"
                               % (label, describe_option(name), value))


def _check_order(opts, small, large):
    """Raise unless option small <= option large."""
    a, b = getattr(opts, small), getattr(opts, large)
    if a > b:
        raise ProgrammingError("option %r must be <= %s (%r), got %r"
                               % (small, large, b, a))
