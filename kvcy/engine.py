"""The engine: the write path and the read path of one open database.

Write path (kvcy._write_path.WritePath, in C): a write takes the write
lock, gets the next sequence numbers, appends its batch to the WAL as one
record (fsynced when sync is asked), inserts it into the memtable and
publishes the new last sequence.  When the memtable reaches
memtable_max_bytes it becomes immutable, a new WAL starts and the
background thread flushes it to a level-0 table; writers wait (a counted
stall) only while max_immutable_memtables are already waiting.

Read path (kvcy._read_path.ReadPath, in C): memtable, immutable memtables
newest first, then level-0 tables newest first, then one table per deeper
level.  Readers take the published state (a ReadState for point reads, the
`read_state` tuple (memtables, Version) for iterators), replaced as a whole
whenever either changes (a flush swaps in its table and drops its memtable
in the same step), and only then the last sequence: every compaction
installed in that Version started before, so it kept every entry visible at
that sequence.

A read-only engine (the writer is another process) never moves: it serves
the memtable its open replayed and the Version it read, with the file of
every table in that Version held open (kvcy/table_cache.py), so the
writer's deletions cannot reach it; Connection.refresh() replaces the
whole engine, passing the old one as `previous` to keep its caches.

Background work (flushes, compactions, timed flushes) runs in
kvcy/background.py, which calls back only through the EngineHooks passed
in here; kvcy/obsolete_files.py deletes the files a change made obsolete.

Errors: a failed WAL append or sync, or a failed background flush, is
latched; later writes raise OperationalError naming it, reads keep working,
and reopening recovers every acknowledged write.

Thread-safety: any number of readers and writers may call in.  Writers are
serialized by the write lock; the memtable list and the current Version are
replaced (never mutated) so readers take no lock.
"""
import threading
import time

from kvcy._memtable import MemTable
from kvcy._latency import LatencyHistogram
from kvcy._read_path import ReadPath, ReadState
from kvcy._write_path import WritePath
from kvcy import filename
from kvcy.background import BackgroundWorker, EngineHooks
from kvcy.cache import BlockCache, RowCache
from kvcy._db_iter import DBIterator
from kvcy._merge import MergingIterator
from kvcy._two_level import LevelIterator
from kvcy.compaction import CompactionContext, drop_obsolete_range_dels, run_compaction
from kvcy.expiry_compaction import expired_table_plans
from kvcy._expiry import now_micros
from kvcy.compaction_picker import overlapping, plan
from kvcy.snapshot import SnapshotList
from kvcy.stats import level_figures
from kvcy.errors import OperationalError, ProgrammingError
from kvcy.log_writer import LogWriter
from kvcy.obsolete_files import delete_obsolete_files
from kvcy.table_cache import TableCache

# One scan step in this many is timed for the latency histogram.
SCAN_TIMING_PERIOD = 64


class Engine:
    def __init__(self, *, dbpath, options, env, lock, info_log, stats, versions,
                 mem, log, last_sequence, imm=(), pinned=None, previous=None, clock=None):
        """pinned: a read-only engine's table files (kvcy.table_cache.pin_table_files).
        previous: the read-only engine a refresh replaces; its caches carry
        over (entries are keyed by table file number, and tables never change).
        clock: decides when expiring values expire, for reads, ttl puts and
        compactions alike (kvcy/_expiry.pyx; None: real time, read in C)."""
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
        self._state_lock = threading.Lock()   # guards imm, writer.mem swaps and read_state
        self.background_error = None
        self.snapshots = SnapshotList()
        self.compaction_lock = threading.Lock()   # one compaction at a time
        self._lock = lock                 # FileLock, None if read-only
        if previous is not None:
            self.block_cache = previous.block_cache
            self.row_cache = previous.row_cache
        else:
            self.block_cache = BlockCache(options.block_cache_bytes)
            self.row_cache = RowCache(options.row_cache_bytes)
        self.table_cache = TableCache(
            dbpath, env, options, self.block_cache, self.row_cache, pinned,
            previous.table_cache if previous is not None else None)
        writer = self.writer = WritePath()
        writer.mem = mem
        writer.last_sequence = last_sequence
        writer.sync_default = options.sync
        writer.memtable_limit = options.memtable_max_bytes
        writer.check_state = self._check_writable
        writer.make_room = self._make_room
        writer.publish_range_dels = self._publish_range_dels
        writer.clock = self.clock = clock
        mem.created = time.monotonic()
        self.reader = None
        self._publish_state()
        self.reader = ReadPath(writer, self._read_state_c)
        # Scans time one step in SCAN_TIMING_PERIOD: a step costs ~0.2 us.
        self.scan_latency = LatencyHistogram("scan_next", SCAN_TIMING_PERIOD)
        self.reader.row_cache = self.row_cache.enabled
        self.reader.clock = clock
        if log is not None:
            writer.set_log(log.file, log.file.size)
        # The hot entry points are the C methods themselves.
        self.write_one = writer.write_one
        self.write_batch = writer.write_batch
        self.get = self.reader.get
        self.get_many = self.reader.get_many
        self.background = None
        self._update_write_throttle()
        self.compaction_context = CompactionContext(
            dbpath=dbpath, env=env, options=options, versions=versions,
            table_cache=self.table_cache, stats=stats, info_log=info_log,
            smallest_snapshot=lambda: self.snapshots.oldest(lambda: self.last_sequence),
            closing=lambda: self.closed, clock=clock)
        if not self.readonly:
            self.background = BackgroundWorker(
                dbpath=dbpath, env=env, options=options, versions=versions, stats=stats,
                info_log=info_log, writer=writer, compaction_lock=self.compaction_lock,
                hooks=EngineHooks(
                    immutables=lambda: self.imm,
                    memtables=self._memtables,
                    background_error=lambda: self.background_error,
                    set_background_error=self.set_background_error,
                    switch_memtable=self._switch_memtable,
                    drop_flushed_memtable=self._drop_flushed_memtable,
                    after_version_change=self._after_version_change,
                    run_compaction=lambda c, version: run_compaction(
                        self.compaction_context, c, version),
                    expired_compaction=self._expired_compaction,
                    stats_dict=self.stats_dict))
            self.background.start()
            self.background.schedule()     # compactions the opened Version may need

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
                                   % ("write" if self.writer.error
                                      else "background flush or compaction",
                                      type(error).__name__, error)) from error

    def set_background_error(self, exc):
        if self.background_error is None:
            self.background_error = exc
            self.writer.blocked = True
            self.info_log.log("background error, writes disabled until reopen: %s: %s",
                              type(exc).__name__, exc)

    def _update_write_throttle(self):
        """Tell the C write path whether level 0 is deep enough to slow writes."""
        self.writer.slowdown = (len(self.versions.current.files[0])
                                >= self.options.level0_slowdown_trigger)

    def _level0_stall(self):
        """REQUIRES: write lock held.  Delay or stop writes while level 0 is too deep."""
        options = self.options
        files = len(self.versions.current.files[0])
        if files >= options.level0_stop_trigger:
            started = time.monotonic()
            self.stats.stalls += 1
            self.info_log.log("stall: %d level-0 files, writes wait for compaction", files)
            self.background.schedule()
            self.background.wait_for(
                lambda: len(self.versions.current.files[0]) < options.level0_stop_trigger
                or self.background_error is not None or self.writer.closed)
            self.stats.stall_seconds += time.monotonic() - started
            if self.background_error is not None or self.writer.closed:
                self._check_writable()
        elif files >= options.level0_slowdown_trigger:
            # LevelDB's gentle brake: each write waits a millisecond so
            # compaction gets CPU before level 0 reaches the stop trigger.
            started = time.monotonic()
            self.stats.slowdowns += 1
            time.sleep(0.001)
            self.stats.stall_seconds += time.monotonic() - started
        self._update_write_throttle()

    def _make_room(self):
        """REQUIRES: write lock held.  Called when the memtable is full or level 0
        is deep: slow down or wait as needed, then switch a full memtable."""
        if self.background_error is not None:
            self._check_writable()
        if self.writer.slowdown:
            self._level0_stall()
        if self.writer.mem.memory_usage() < self.options.memtable_max_bytes:
            return
        self._wait_for_immutable_slot()
        self._switch_memtable()

    def _wait_for_immutable_slot(self):
        """REQUIRES: write lock held.  Wait (a counted stall) while
        max_immutable_memtables memtables are already waiting for a flush."""
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

    def _switch_memtable(self):
        """REQUIRES: write lock held.  Make the memtable immutable and start a new WAL."""
        old = self.writer.mem
        with self.versions.lock:
            number = self.versions.new_file_number()
        old_log = self.log
        if old_log is not None and self.writer.error is None:
            # Writes in the old log must be as durable as later synced writes in
            # the new one, or a power loss could keep the later ones only (a gap).
            old_log.sync()
        file = self.env.new_writable_file(filename.log_file_name(self.dbpath, number))
        self.env.sync_dir(self.dbpath)
        self.log = LogWriter(file, number)
        self.writer.set_log(file, 0)
        mem = MemTable(number)
        mem.created = time.monotonic()
        with self._state_lock:
            self.imm = self.imm + (old,)
            self.writer.mem = mem
            self._publish_state()
        self.stats.memtable_switches += 1
        if old_log is not None:
            try:
                old_log.close()
            except OperationalError as exc:
                self.info_log.log("closing log %s failed: %s", old_log.path, exc)
        self.info_log.log("memtable switched: %d entries, %d bytes; new log %06d",
                          len(old), old.memory_usage(), number)
        self.background.schedule()

    # -- published state (also changed by background work) ----------------

    def _publish_state(self):
        """REQUIRES: _state_lock held.  Readers see memtables and Version change together."""
        mems = (self.writer.mem,) + tuple(reversed(self.imm))
        version = self.versions.current
        self._read_state_c = ReadState(mems, version, self.table_cache.find_table)
        if self.reader is not None:
            self.reader.state = self._read_state_c

    def _publish_range_dels(self):
        """REQUIRES: write lock held.  The memtable gained range tombstones:
        publish them (the write path calls this before their sequence)."""
        with self._state_lock:
            self._publish_state()

    @property
    def read_state(self):
        """(memtables, Version) of the published state, for iterators."""
        state = self._read_state_c
        return state.mems, state.version

    def _memtables(self):
        """(immutable memtables, current memtable), as one memtable switch left them."""
        with self._state_lock:
            return self.imm, self.writer.mem

    def _drop_flushed_memtable(self):
        """The oldest immutable memtable is in a table of the current Version now."""
        with self._state_lock:
            self.imm = self.imm[1:]
            self._publish_state()
        self._update_write_throttle()

    def _after_version_change(self):
        with self._state_lock:
            self._publish_state()
        self._update_write_throttle()
        if self.background is not None:
            self.background.notify()
        delete_obsolete_files(self.env, self.dbpath, self.versions, self.table_cache,
                              self.info_log)

    # -- flush and compaction on request (in the caller's thread) ----------

    def compact_range(self, start=None, stop=None):
        """Compact every file overlapping user keys [start, stop] down through
        every level (None: unbounded), so the range ends up in one level with
        shadowed entries and tombstones dropped where nothing deeper needs them."""
        if self.readonly:
            raise OperationalError("cannot compact: the database is open read-only")
        self.flush(wait=True)
        last_level = 0
        version = self.versions.current
        for level, files in enumerate(version.files):
            if overlapping(files, start, stop):
                last_level = level
        if (any((stop is None or a < stop) and (start is None or start < b)
                for a, b, _ in version.range_dels)
                and last_level + 1 < len(version.files)):
            # Range tombstones hide entries even at the deepest level: rewrite it too.
            last_level += 1
        del version
        for level in range(0, max(last_level, 1)):
            self._check_writable()
            with self.compaction_lock:
                version = self.versions.current
                files = overlapping(version.files[level], start, stop)
                if not files:
                    continue
                c = plan(version, self.options, level, files, "manual L%d" % level)
                # A manual compaction rewrites even a lone file: moving it down
                # would keep the tombstones and old versions it was asked to drop.
                run_compaction(self.compaction_context, c, version, allow_move=False)
                del version, c, files
            self._after_version_change()
        with self.compaction_lock:
            removed = drop_obsolete_range_dels(self.compaction_context)
        if removed:
            self._after_version_change()
        self._rewrite_expired_tables(start, stop)
        if self.background_error is not None:
            self._check_writable()

    def _expired_compaction(self, version):
        # The background worker's idle check: one in-place rewrite of an open
        # table holding expired values, or None.
        plans = expired_table_plans(version, self.table_cache, now_micros(self.clock),
                                    open_only=True)
        return plans[0] if plans else None

    def _rewrite_expired_tables(self, start, stop):
        # The deepest level of the range was not rewritten above: drop what
        # expired there too (kvcy/expiry_compaction.py).  Each rewrite leaves
        # tables whose earliest expiry lies ahead, so the loop ends.
        while True:
            self._check_writable()
            with self.compaction_lock:
                version = self.versions.current
                plans = expired_table_plans(version, self.table_cache, now_micros(self.clock),
                                            start, stop)
                if not plans:
                    return
                edit = run_compaction(self.compaction_context, plans[0], version,
                                      allow_move=False)
                del version, plans
            self._after_version_change()
            if edit is None:
                return                     # abandoned: the database is closing

    def flush(self, wait=True):
        """Switch a non-empty memtable and wait until every memtable is in a table."""
        if self.readonly:
            raise OperationalError("cannot flush: the database is open read-only")
        writer = self.writer
        writer.acquire()
        try:
            self._check_writable()
            if len(writer.mem) or writer.mem.range_dels:
                # Even a memtable far from full goes: flush() means every write so far.
                self._wait_for_immutable_slot()
                self._switch_memtable()
        finally:
            writer.release()
        if wait:
            self.background.wait_for(lambda: not self.imm or self.background_error is not None
                                     or writer.closed)
            if self.background_error is not None:
                self._check_writable()

    # -- read path ---------------------------------------------------------

    # get(key, sequence=None) and get_many(keys, sequence=None) are the C
    # methods of self.reader (kvcy._read_path.ReadPath), bound in __init__.

    # -- iteration ---------------------------------------------------------

    def new_iterator(self, sequence=None, start=None, stop=None, reverse=False,
                     factory=DBIterator):
        """A DBIterator over user keys in [start, stop) as of sequence
        (factory: DBIterator or a subclass taking the same arguments).

        It reads the memtables and the Version current now (memtables before
        the Version, as get() does) and holds them, so their entries and
        files stay while it lives; later writes are hidden by the sequence.
        """
        state = self._read_state_c
        if sequence is None:
            sequence = self.writer.last_sequence
            while state is not self._read_state_c:
                # Python may switch threads between the two reads: a state
                # older than the sequence could lack a range tombstone the
                # sequence covers (the C read path reads both at once).
                state = self._read_state_c
                sequence = self.writer.last_sequence
        mems, version = state.mems, state.version
        children = [m.iterator() for m in mems]
        table_iterator = self.table_cache.iterator
        for meta in version.files[0]:
            children.append(table_iterator(meta))
        for level in range(1, len(version.files)):
            if version.files[level]:
                children.append(LevelIterator(version.files[level], table_iterator))
        it = factory(MergingIterator(children), sequence, start, stop, reverse,
                     pin=(mems, version), range_dels=state.range_dels, clock=self.clock)
        it.latency = self.scan_latency
        return it

    # -- monitoring --------------------------------------------------------

    def latency_histograms(self):
        """The latency histograms (kvcy._latency.LatencyHistogram), by operation."""
        return (self.reader.get_latency, self.writer.put_latency, self.writer.batch_latency,
                self.scan_latency, self.stats.flush_latency, self.stats.compaction_latency)

    def stats_dict(self):
        writer = self.writer
        out = self.stats.as_dict()
        out["gets"] = self.reader.gets
        for name in ("puts", "deletes", "batches", "batch_entries", "wal_records",
                     "wal_bytes", "wal_syncs", "bytes_written", "group_commits",
                     "grouped_writes"):
            out[name] = getattr(writer, name)
        version = self.versions.current
        out["latency"] = {h.name: h.summary() for h in self.latency_histograms()}
        out.update(
            last_sequence=writer.last_sequence,
            memtable_bytes=writer.mem.memory_usage(),
            memtable_entries=len(writer.mem),
            range_tombstones=len(self._read_state_c.range_dels or ()),
            immutable_memtables=len(self.imm),
            log_number=self.log.number if self.log is not None else self.versions.log_number,
            log_bytes=self.writer.log_size if self.log is not None else 0,
            wal_sync_micros=writer.sync_micros,
            block_cache_hits=self.block_cache.hits,
            block_cache_misses=self.block_cache.misses,
            block_cache_bytes=self.block_cache.used_bytes,
            row_cache_hits=self.row_cache.hits,
            row_cache_misses=self.row_cache.misses,
            open_tables=len(self.table_cache),
            table_meta_bytes=self.table_cache.meta_bytes(),
            write_error=str(writer.error) if writer.error is not None else None,
            background_error=(str(self.background_error)
                              if self.background_error is not None else None),
        )
        levels, totals = level_figures(version, self.options, self.stats,
                                       out["bytes_written"], 1 + len(self.imm))
        for figures in levels:
            out["level%d_files" % figures["level"]] = figures["files"]
            out["level%d_bytes" % figures["level"]] = figures["bytes"]
        out["levels"] = levels
        out.update(totals)
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
                # The inputs of the last compactions wait for a later flush
                # or compaction to delete them; none comes now, and no reader
                # is left (the connection closed its iterators and snapshots).
                delete_obsolete_files(self.env, self.dbpath, self.versions, self.table_cache,
                                      self.info_log)
            if self.log is not None:
                if writer.error is None:
                    # Closing makes every acknowledged write durable, not only sync=True ones.
                    self.log.sync()
                writer.retire_log()
                self.log.close()
            self.versions.close()
        finally:
            self.info_log.log("closed at sequence %d", writer.last_sequence)
            self.info_log.close()
            if self._lock is not None:
                self._lock.release()
