"""Test helpers that look at an open database's background work and files.

wait_until_idle(conn): block until the background thread has nothing to do
(no flush, compaction or scheduled round), so a test that then compares the
directory with the live tables does not race the engine's own work.
table_numbers(path) / live_table_numbers(conn): the .sst files on disk and
the tables the current Version lists, at every level.
close_and_find_orphans(conn, path): close once idle and compare.
"""
import os

from kvcy import filename


def wait_until_idle(conn, timeout=60):
    worker = conn._engine.background
    if worker is None:           # read-only: no background work
        return
    idle = worker.wait_for(lambda: not worker.busy and not worker.pending, timeout=timeout)
    assert idle, "background work still running after %ss" % timeout


def table_numbers(path):
    """Numbers of the table files in directory path."""
    out = set()
    for name in os.listdir(path):
        parsed = filename.parse_file_name(name)
        if parsed and parsed[0] == "sst":
            out.add(parsed[1])
    return out


def live_table_numbers(conn):
    """Numbers of the tables the connection's current Version lists, every level."""
    return conn._engine.versions.current.live_numbers()


def close_and_find_orphans(conn, path):
    """Close conn once its background work is idle; return (orphans, missing):
    table numbers in path that its last Version did not list, and listed
    ones not in path.  Compared after close() because a table a reader's
    iterator pinned through a compaction stays until the next flush,
    compaction or close deletes it; close() deletes every obsolete table."""
    wait_until_idle(conn)
    live = live_table_numbers(conn)
    conn.close()
    on_disk = table_numbers(path)
    return sorted(on_disk - live), sorted(live - on_disk)
