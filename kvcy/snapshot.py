"""Snapshots: a sequence number plus the Version and memtables it pins.

A snapshot reads the database as it was when it was taken: every read
through it uses its sequence number, and it holds references to the
memtables and the Version of that moment, so neither the entries nor the
files it needs go away.  The SnapshotList tells compaction the oldest live
sequence (entries a live snapshot may still see are kept).

Thread-safety: SnapshotList is guarded by its own lock; a Snapshot is
immutable.
"""
import threading


class SnapshotList:
    def __init__(self):
        self._lock = threading.Lock()
        self._live = {}          # id(handle) -> sequence, for every unreleased snapshot

    def add(self, handle, sequence):
        with self._lock:
            self._live[id(handle)] = sequence

    def remove(self, handle):
        with self._lock:
            self._live.pop(id(handle), None)

    def oldest(self, default):
        """The smallest sequence of any live snapshot, or default when there is none."""
        with self._lock:
            return min(self._live.values(), default=default)

    def __len__(self):
        return len(self._live)
