"""Names of the files in a database directory.

    NNNNNN.log        write-ahead log (one per memtable)
    NNNNNN.sst        sorted string table
    MANIFEST-NNNNNN   version edits (log format)
    CURRENT           name of the live MANIFEST, replaced by atomic rename
    LOCK              held (flock) by the one writer; names its holder
    DESTROYING        CURRENT renamed by kvcy.destroy: a destroy is under way
    LOG, LOG.old      human-readable event log
    NNNNNN.dbtmp      temporary file, removed at open

All numbers come from one counter (the version set's next file number), so
names never collide.  See docs/format.md ("Directory").
"""
import os
import re

CURRENT = "CURRENT"
LOCK = "LOCK"
DESTROYING = "DESTROYING"
INFO_LOG = "LOG"
INFO_LOG_OLD = "LOG.old"

_NUMBERED = re.compile(r"^(\d+)\.(log|sst|dbtmp)$")
_MANIFEST = re.compile(r"^MANIFEST-(\d+)$")


def log_file_name(dbpath, number):
    return os.path.join(dbpath, "%06d.log" % number)


def table_file_name(dbpath, number):
    return os.path.join(dbpath, "%06d.sst" % number)


def temp_file_name(dbpath, number):
    return os.path.join(dbpath, "%06d.dbtmp" % number)


def manifest_file_name(dbpath, number):
    return os.path.join(dbpath, "MANIFEST-%06d" % number)


def current_file_name(dbpath):
    return os.path.join(dbpath, CURRENT)


def lock_file_name(dbpath):
    return os.path.join(dbpath, LOCK)


def info_log_file_name(dbpath):
    return os.path.join(dbpath, INFO_LOG)


def parse_file_name(name):
    """(kind, number) for a file kvcy owns, or None.

    kind is one of "log", "sst", "dbtmp", "manifest", "current", "lock",
    "info_log", "destroying"; number is None for the unnumbered kinds.
    """
    m = _NUMBERED.match(name)
    if m:
        return m.group(2), int(m.group(1))
    m = _MANIFEST.match(name)
    if m:
        return "manifest", int(m.group(1))
    if name == CURRENT:
        return "current", None
    if name == LOCK:
        return "lock", None
    if name == DESTROYING:
        return "destroying", None
    if name in (INFO_LOG, INFO_LOG_OLD):
        return "info_log", None
    return None
