"""The engine: the write path and the read path of one open database.

Write path (kvcy._write_path.WritePath, in C): a write takes the write
lock, gets the next sequence numbers, appends its batch to the WAL as one
record (fsynced when sync is asked), inserts it into the memtable and
publishes the new last sequence.  When the memtable reaches
memtable_max_bytes it becomes immutable, a new WAL starts and the
background thread flushes it to a level-0 table; writers wait (a counted
stall) only while max_immutable_memtables are already waiting.

Read path: memtable, immutable memtables newest first, then level-0 tables
newest first, then one table per deeper level.  A reader reads at the last
sequence published when it started; it reads the memtable list before the
Version, and the flush installs the new Version before it drops the
immutable memtable, so an entry is never missing from both.

Errors: a failed WAL append or sync, or a failed background flush, is
latched; later writes raise OperationalError naming it, reads keep working,
and reopening recovers every acknowledged write.

Thread-safety: any number of readers and writers may call in.  Writers are
serialized by the write lock; the memtable list and the current Version are
replaced (never mutated) so readers take no lock.
"""
import bisect
import os
import time

from kvcy._memtable import MemTable
from kvcy._write_path import WritePath
from kvcy import filename
from kvcy.background import BackgroundWorker
from kvcy.cache import BlockCache, RowCache
from kvcy.dbformat import DELETED
from kvcy.errors import OperationalError, ProgrammingError
from kvcy.flush import write_level0_table
from kvcy.log_writer import LogWriter
from kvcy.table_cache import TableCache
from kvcy.version_edit import VersionEdit


class Engine:
    def __init__(self, *, dbpath, options, env, lock, info_log, stats, versions,
                 mem, log, last_sequence, imm=()):
        self.dbpath = dbpath
        self.options = options
        self.env = env
        self.info_log = info_log
        self.stats = stats
        self.versions = versions          # VersionSet: live files, log number
        self.readonly = options.readonly
        self.log = log                    # LogWriter of the current WAL (None if read-only);
                                          # appends go through self.writer, not log.add_record
        self.imm = tuple(imm)             # immutable memtables, oldest first (replaced, never mutated)
        self.background_error = None
        self._lock = lock                 # FileLock, None if read-only
        self.block_cache = BlockCache(options.block_cache_bytes)
        self.row_cache = RowCache(options.row_cache_bytes)
        self.table_cache = TableCache(dbpath, env, options, self.block_cache, self.row_cache)
        writer = self.writer = WritePath()
        writer.mem = mem
        writer.last_sequence = last_sequence
        writer.sync_default = options.sync
        writer.memtable_limit = options.memtable_max_bytes
        writer.check_state = self._check_writable
        writer.make_room = self._make_room
        mem.created = time.monotonic()
        if log is not None:
            writer.set_log(log.file, log.file.size)
        # The hot entry points are the C methods themselves.
        self.write_one = writer.write_one
        self.write_batch = writer.write_batch
        self.background = None
        if not self.readonly:
            self.background = BackgroundWorker(self)
            self.background.start()

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
        error = self.writer.error or self.background_error
        if error is not None:
            raise OperationalError("cannot write: an earlier %s failed and writes are "
                                   "disabled until the database is reopened (%s: %s)"
                                   % ("write" if self.writer.error else "background flush",
                                      type(error).__name__, error)) from error

    def set_background_error(self, exc):
        if self.background_error is None:
            self.background_error = exc
            self.info_log.log("background error, writes disabled until reopen: %s: %s",
                              type(exc).__name__, exc)

    def _make_room(self):
        """REQUIRES: write lock held.  The memtable is full: wait if needed, then switch."""
        if self.background_error is not None:
            self._check_writable()
        limit = self.options.max_immutable_memtables
        if len(self.imm) >= limit:
            started = time.monotonic()
            self.stats.stalls += 1
            self.info_log.log("stall: %d immutable memtables waiting for flush", len(self.imm))
            self.background.schedule()
            self.background.wait_for(
                lambda: len(self.imm) < limit or self.background_error is not None
                or self.writer.closed)
            self.stats.stall_seconds += time.monotonic() - started
            if self.background_error is not None or self.writer.closed:
                self._check_writable()
        self._switch_memtable()

    def _switch_memtable(self):
        """REQUIRES: write lock held.  Make the memtable immutable and start a new WAL."""
        old = self.writer.mem
        with self.versions.lock:
            number = self.versions.new_file_number()
        file = self.env.new_writable_file(filename.log_file_name(self.dbpath, number))
        old_log = self.log
        self.log = LogWriter(file, number)
        self.writer.set_log(file, 0)
        mem = MemTable(number)
        mem.created = time.monotonic()
        self.imm = self.imm + (old,)      # before the memtable: see the read-path note
        self.writer.mem = mem
        self.stats.memtable_switches += 1
        if old_log is not None:
            try:
                old_log.close()
            except OperationalError as exc:
                self.info_log.log("closing log %s failed: %s", old_log.path, exc)
        self.info_log.log("memtable switched: %d entries, %d bytes; new log %06d",
                          len(old), old.memory_usage(), number)
        self.background.schedule()

    # -- background work ---------------------------------------------------

    def background_work(self):
        """Run by the background thread: flush waiting memtables, then timed flushes."""
        while self.imm and self.background_error is None and not self.writer.closed:
            self._flush_oldest()
        self._maybe_timed_switch()

    def _maybe_timed_switch(self):
        interval = self.options.flush_interval
        mem = self.writer.mem
        if (interval <= 0 or len(mem) == 0 or mem.created is None
                or time.monotonic() - mem.created < interval
                or mem.data_bytes < self.options.memtable_min_bytes):
            return
        if not self.writer.try_acquire():
            return            # a writer holds the lock; try again at the next tick
        try:
            if not self.writer.closed and len(self.writer.mem):
                self._switch_memtable()
        finally:
            self.writer.release()

    def _flush_oldest(self):
        imm = self.imm[0]
        vset = self.versions
        with vset.lock:
            number = vset.new_file_number()
            vset.pending_outputs.add(number)
        try:
            started = time.monotonic()
            meta = write_level0_table(self.dbpath, self.env, self.options, imm, number)
            # Logs before the next memtable's log hold nothing more once this is recorded.
            next_log = self.imm[1].log_number if len(self.imm) > 1 else self.writer.mem.log_number
            edit = VersionEdit(log_number=next_log, last_sequence=imm.last_sequence)
            if meta is not None:
                edit.add_file(0, meta)
            with vset.lock:
                vset.log_and_apply(edit)
        finally:
            with vset.lock:
                vset.pending_outputs.discard(number)
        self.imm = self.imm[1:]
        stats = self.stats
        stats.flushes += 1
        if meta is not None:
            stats.flush_bytes += meta.file_size
        self.info_log.log("flushed memtable of log %06d to table %06d: %d entries, %d bytes "
                          "in %.3fs", imm.log_number, number, len(imm),
                          meta.file_size if meta else 0, time.monotonic() - started)
        self.background.notify()
        self.delete_obsolete_files()

    def delete_obsolete_files(self):
        """Delete logs older than the log number and tables no live Version lists."""
        vset = self.versions
        with vset.lock:
            live = vset.live_files()
            log_number = vset.log_number
            manifest = vset.manifest_number
        for name in self.env.get_children(self.dbpath):
            parsed = filename.parse_file_name(name)
            if parsed is None:
                continue
            kind, number = parsed
            if ((kind == "log" and number < log_number)
                    or (kind == "sst" and number not in live)
                    or (kind == "manifest" and number < manifest)):
                try:
                    self.env.remove_file(os.path.join(self.dbpath, name))
                except OperationalError as exc:
                    self.info_log.log("could not delete obsolete %s: %s", name, exc)
                    continue
                if kind == "sst":
                    self.table_cache.evict(number)
                self.info_log.log("deleted obsolete file %s", name)

    def flush(self, wait=True):
        """Switch a non-empty memtable and wait until every memtable is in a table."""
        if self.readonly:
            raise OperationalError("cannot flush: the database is open read-only")
        writer = self.writer
        writer.acquire()
        try:
            self._check_writable()
            if len(writer.mem):
                if len(self.imm) >= self.options.max_immutable_memtables:
                    self._make_room()
                else:
                    self._switch_memtable()
        finally:
            writer.release()
        if wait:
            self.background.wait_for(lambda: not self.imm or self.background_error is not None
                                     or writer.closed)
            if self.background_error is not None:
                self._check_writable()

    # -- read path ---------------------------------------------------------

    def get(self, key, sequence=None):
        """The value of key visible at sequence (default: latest), or None."""
        writer = self.writer
        if sequence is None:
            sequence = writer.last_sequence
        self.stats.gets += 1
        value = writer.mem.get(key, sequence)
        if value is None:
            value = self._get_slow(key, sequence)
        if value is DELETED:
            return None
        return value

    def _get_slow(self, key, sequence):
        for mem in reversed(self.imm):
            value = mem.get(key, sequence)
            if value is not None:
                return value
        version = self.versions.current
        table_get = self.table_cache.get
        files = version.files
        for meta in files[0]:
            if meta.smallest_user <= key <= meta.largest_user:
                value = table_get(meta, key, sequence)
                if value is not None:
                    return value
        for level in range(1, len(files)):
            level_files = files[level]
            if not level_files:
                continue
            i = bisect.bisect_left(version.largest_users(level), key)
            if i < len(level_files):
                meta = level_files[i]
                if meta.smallest_user <= key:
                    value = table_get(meta, key, sequence)
                    if value is not None:
                        return value
        return None

    # -- monitoring --------------------------------------------------------

    def stats_dict(self):
        writer = self.writer
        out = self.stats.as_dict()
        for name in ("puts", "deletes", "batches", "batch_entries", "wal_records",
                     "wal_bytes", "wal_syncs", "bytes_written"):
            out[name] = getattr(writer, name)
        version = self.versions.current
        out.update(
            last_sequence=writer.last_sequence,
            memtable_bytes=writer.mem.memory_usage(),
            memtable_entries=len(writer.mem),
            immutable_memtables=len(self.imm),
            log_number=self.log.number if self.log is not None else self.versions.log_number,
            log_bytes=self.log.size if self.log is not None else 0,
            block_cache_hits=self.block_cache.hits,
            block_cache_misses=self.block_cache.misses,
            block_cache_bytes=self.block_cache.used_bytes,
            row_cache_hits=self.row_cache.hits,
            row_cache_misses=self.row_cache.misses,
            open_tables=len(self.table_cache),
            write_error=str(writer.error) if writer.error is not None else None,
            background_error=(str(self.background_error)
                              if self.background_error is not None else None),
        )
        for level in range(len(version.files)):
            out["level%d_files" % level] = version.num_files(level)
            out["level%d_bytes" % level] = version.level_bytes(level)
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
            if self.background is not None:
                self.background.stop()
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
