"""Deleting obsolete files: logs, MANIFESTs and tables nothing needs any more.

Called after every flush and compaction (docs/impl.md, "File garbage
collection").  A log is obsolete once the log number has passed it, a
MANIFEST once a newer one is current, a table once no live Version lists
it and no flush or compaction is writing it (its number is a pending
output).  The open removes the obsolete files of the previous run itself
(kvcy/recovery.py).

Thread-safety: may run in any thread, concurrently with flushes and
compactions; it reads the VersionSet's numbers under its lock.
"""
import os

from kvcy import filename
from kvcy.errors import OperationalError


def delete_obsolete_files(env, dbpath, versions, table_cache, info_log):
    """Delete logs older than the log number and tables no live Version lists.
    Does nothing once a MANIFEST write failed (kvcy/version_set.py): the
    MANIFEST on disk may still name what looks obsolete in memory."""
    if versions.manifest_error is not None:
        info_log.log("obsolete files kept: a MANIFEST write failed, the next open decides")
        return
    # List first: a table created after the listing cannot be mistaken for
    # garbage, and one listed here is either live or pending by now (its
    # number enters pending_outputs before its file is created).
    names = env.get_children(dbpath)
    with versions.lock:
        live = versions.live_files()
        log_number = versions.log_number
        manifest = versions.manifest_number
        next_number = versions.next_file_number
    for name in names:
        parsed = filename.parse_file_name(name)
        if parsed is None:
            continue
        kind, number = parsed
        if ((kind == "log" and number < log_number)
                or (kind == "sst" and number not in live and number < next_number)
                or (kind == "manifest" and number < manifest)):
            try:
                env.remove_file(os.path.join(dbpath, name))
            except OperationalError as exc:
                info_log.log("could not delete obsolete %s: %s", name, exc)
                continue
            if kind == "sst":
                table_cache.evict(number)
            info_log.log("deleted obsolete file %s", name)
