"""The engine: the write path and the read path of one open database.

Write path (kvcy._write_path.WritePath, in C): a write takes the write
lock, gets the next sequence numbers, appends its batch to the WAL as one
record (fsynced when sync is asked), inserts it into the memtable and
publishes the new last sequence.  A reader that starts after that sees the
write; one that started before does not, because it reads at the sequence
it saw when it started.

Read path: memtable, then immutable memtables newest first, then tables.

A failed WAL append or sync leaves the log in an unknown state, so the
error is latched: later writes raise OperationalError naming the cause,
reads keep working, and reopening recovers the durable prefix.

Thread-safety: any number of readers and writers may call in; writers are
serialized by the write lock, readers take no lock.  Opening (recovery) and
background work live in recovery.py and background.py.
"""
from kvcy._write_path import WritePath
from kvcy.dbformat import DELETED
from kvcy.errors import OperationalError, ProgrammingError


class Engine:
    def __init__(self, *, dbpath, options, env, lock, info_log, stats, versions,
                 mem, log, last_sequence):
        self.dbpath = dbpath
        self.options = options
        self.env = env
        self.info_log = info_log
        self.stats = stats
        self.versions = versions          # VersionSet: live files, log number
        self.readonly = options.readonly
        self.log = log                    # LogWriter of the current WAL (None if read-only);
                                          # appends go through self.writer, not log.add_record
        self._lock = lock                 # FileLock, None if read-only
        writer = self.writer = WritePath()
        writer.mem = mem
        writer.last_sequence = last_sequence
        writer.sync_default = options.sync
        writer.memtable_limit = 1 << 62   # no memtable switch before tables exist
        writer.check_state = self._check_writable
        writer.make_room = self._make_room
        if log is not None:
            writer.set_log(log.file, log.file.size)
        # The hot entry points are the C methods themselves.
        self.write_one = writer.write_one
        self.write_batch = writer.write_batch

    @property
    def mem(self):
        return self.writer.mem

    @property
    def last_sequence(self):
        return self.writer.last_sequence

    @property
    def closed(self):
        return self.writer.closed

    # -- write path (slow paths; the fast path is WritePath) ---------------

    def _check_writable(self):
        if self.writer.closed:
            raise ProgrammingError("cannot write: the database is closed")
        if self.readonly:
            raise OperationalError("cannot write: the database is open read-only")
        error = self.writer.error
        if error is not None:
            raise OperationalError("cannot write: an earlier write failed and writes are "
                                   "disabled until the database is reopened (%s)" % error
                                   ) from error

    def _make_room(self):
        """REQUIRES: write lock held.  Called when the memtable is full."""

    # -- read path ---------------------------------------------------------

    def get(self, key, sequence=None):
        """The value of key visible at sequence (default: latest), or None."""
        writer = self.writer
        if sequence is None:
            sequence = writer.last_sequence
        self.stats.gets += 1
        value = writer.mem.get(key, sequence)
        if value is None or value is DELETED:
            return None
        return value

    # -- monitoring --------------------------------------------------------

    def stats_dict(self):
        writer = self.writer
        out = self.stats.as_dict()
        for name in ("puts", "deletes", "batches", "batch_entries", "wal_records",
                     "wal_bytes", "wal_syncs", "bytes_written"):
            out[name] = getattr(writer, name)
        out.update(
            last_sequence=writer.last_sequence,
            memtable_bytes=writer.mem.memory_usage(),
            memtable_entries=len(writer.mem),
            log_number=self.log.number if self.log is not None else self.versions.log_number,
            log_bytes=self.log.size if self.log is not None else 0,
            write_error=str(writer.error) if writer.error is not None else None,
        )
        return out

    # -- lifecycle ---------------------------------------------------------

    def close(self):
        writer = self.writer
        writer.acquire()
        try:
            if writer.closed:
                return
            writer.closed = True
        finally:
            writer.release()
        try:
            if self.log is not None:
                if writer.error is None:
                    # Closing makes every acknowledged write durable, not only sync=True ones.
                    self.log.sync()
                self.log.close()
            self.versions.close()
        finally:
            self.info_log.log("closed at sequence %d", writer.last_sequence)
            self.info_log.close()
            if self._lock is not None:
                self._lock.release()
