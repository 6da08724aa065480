"""The background thread: flushes immutable memtables, compacts, runs timed flushes.

One daemon thread per writable database.  It sleeps on a condition until
work is scheduled (a memtable switch, conn.flush(), a compaction trigger)
or a timer comes due, then works one round: it flushes every waiting
memtable, oldest first, compacts while a level needs it and no memtable
waits, and switches a memtable that has waited flush_interval.  Every
stats_interval it writes a stats line (kvcy.stats.stats_line) to the LOG.
An exception in background work is latched as the engine's background
error: writes fail with OperationalError naming it from then on, reads keep
working, and nothing already stored is lost (the WAL still holds every
write not yet in a table).

The engine imports this module, never the reverse.  The worker gets the
parts it shares with the engine (env, VersionSet, write path, stats, info
log, compaction lock) and an EngineHooks of the engine steps it calls
back: the memtable list, the published read state and the background
error stay the engine's to change.

Thread-safety: schedule(), notify(), wait_for() and stop() may be called
from any thread; the work runs in the worker's thread only.
"""
import threading
import time
from dataclasses import dataclass
from typing import Callable

from kvcy import expiry_compaction
from kvcy.compaction_picker import pick_compaction
from kvcy.flush import write_level0_table
from kvcy.stats import stats_line
from kvcy.version_edit import VersionEdit


@dataclass(frozen=True, kw_only=True, slots=True)
class EngineHooks:
    """What background work may ask of the engine: its own steps, passed in
    at construction so that this module never imports the engine."""

    immutables: Callable             # () -> the immutable memtables now, oldest first
    memtables: Callable              # () -> (immutables, current memtable), read together
    background_error: Callable       # () -> the latched background error, or None
    set_background_error: Callable   # (exc): latch exc; later writes fail naming it
    switch_memtable: Callable        # (): REQUIRES write lock; memtable -> immutable
    drop_flushed_memtable: Callable  # (): the oldest immutable one is in a table now
    after_version_change: Callable   # (): publish, wake waiters, delete obsolete files
    run_compaction: Callable         # (c, version): kvcy.compaction.run_compaction
    expired_compaction: Callable     # (version) -> a Compaction rewriting a table whose
                                     # expiring values have passed, or None
    stats_dict: Callable             # () -> the engine's stats() dict


class BackgroundWorker:
    def __init__(self, *, dbpath, env, options, versions, stats, info_log, writer,
                 compaction_lock, hooks, name="kvcy-background"):
        self.dbpath = dbpath
        self.env = env
        self.options = options
        self.versions = versions
        self.stats = stats
        self.info_log = info_log
        self.writer = writer                 # WritePath: mem, closed, try_acquire/release
        self.compaction_lock = compaction_lock
        self.hooks = hooks
        self.cv = threading.Condition()      # guards pending/stopping; waiters for progress
        self.pending = False
        self.stopping = False
        self.busy = False
        self.next_stats = time.monotonic() + options.stats_interval
        self.next_expiry_check = time.monotonic()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        self.thread.start()

    def schedule(self):
        with self.cv:
            self.pending = True
            self.cv.notify_all()

    def _tick_seconds(self):
        """How long to sleep without work: until the next timed-flush check
        or stats line, whichever is sooner; None when neither timer is on."""
        ticks = []
        interval = self.options.flush_interval
        if interval > 0:
            ticks.append(max(min(interval / 4.0, 1.0), 0.01))
        if self.options.stats_interval > 0:
            ticks.append(max(self.next_stats - time.monotonic(), 0.001))
        return min(ticks) if ticks else None

    def _run(self):
        hooks = self.hooks
        while True:
            with self.cv:
                if not self.pending and not self.stopping:
                    self.cv.wait(self._tick_seconds())
                if self.stopping:
                    return
                self.pending = False
                self.busy = True
            try:
                if hooks.background_error() is None:
                    self._work()
            except BaseException as exc:        # latched, see module docstring
                hooks.set_background_error(exc)
            finally:
                with self.cv:
                    self.busy = False
                    self.cv.notify_all()
            self._maybe_log_stats()

    def wait_for(self, predicate, timeout=None):
        """Block until predicate() is true (checked whenever work finishes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cv:
            while not predicate():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.cv.wait(remaining if remaining is not None else 0.5)
        return True

    def notify(self):
        with self.cv:
            self.cv.notify_all()

    def stop(self):
        with self.cv:
            self.stopping = True
            self.cv.notify_all()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join()

    # -- the work (in the worker's thread) ---------------------------------

    def _work(self):
        """One round: flush waiting memtables, compact, timed flushes."""
        hooks = self.hooks
        writer = self.writer
        while hooks.immutables() and hooks.background_error() is None and not writer.closed:
            self._flush_oldest()
        while hooks.background_error() is None and not writer.closed and not hooks.immutables():
            if not self._compact_once():
                break
        self._maybe_timed_switch()

    def _maybe_log_stats(self):
        """Write the stats line when stats_interval has passed since the last
        one (or the open).  Monitoring never fails the worker: a failure to
        gather the stats becomes the line."""
        interval = self.options.stats_interval
        now = time.monotonic()
        if interval <= 0 or now < self.next_stats:
            return
        # The next line is due one interval after this one, not after a
        # missed deadline: a long compaction delays a line, it adds no burst.
        self.next_stats = now + interval
        try:
            line = stats_line(self.hooks.stats_dict())
        except Exception as exc:
            line = "stats unavailable: %s: %s" % (type(exc).__name__, exc)
        self.info_log.log("%s", line)

    def _compact_once(self):
        """Run the compaction the current Version needs most; False if none."""
        with self.compaction_lock:
            version = self.versions.current
            c = pick_compaction(version, self.options)
            if c is None:
                c = self._expired_compaction(version)
            if c is None:
                return False
            self.hooks.run_compaction(c, version)
            del version, c              # unpin the inputs so they can be deleted now
        self.hooks.after_version_change()
        return True

    def _expired_compaction(self, version):
        # Nothing else to compact: now and then, rewrite a table whose
        # expiring values have passed (kvcy/expiry_compaction.py).
        now = time.monotonic()
        if now < self.next_expiry_check:
            return None
        self.next_expiry_check = now + expiry_compaction.EXPIRY_CHECK_SECONDS
        return self.hooks.expired_compaction(version)

    def _maybe_timed_switch(self):
        interval = self.options.flush_interval
        writer = self.writer
        mem = writer.mem
        if (interval <= 0 or len(mem) == 0 or mem.created is None
                or time.monotonic() - mem.created < interval
                or mem.data_bytes < self.options.memtable_min_bytes):
            return
        if not writer.try_acquire():
            return            # a writer holds the lock; try again at the next tick
        try:
            if not writer.closed and len(writer.mem):
                self.hooks.switch_memtable()
        finally:
            writer.release()

    def _flush_oldest(self):
        hooks = self.hooks
        imm = hooks.immutables()[0]
        vset = self.versions
        with vset.lock:
            number = vset.new_file_number()
            vset.pending_outputs.add(number)
        try:
            started = time.monotonic()
            meta = write_level0_table(self.dbpath, self.env, self.options, imm, number)
            # Logs before the next memtable's log hold nothing more once this is recorded.
            # Read together (under the engine's state lock): a memtable switch
            # between two separate reads could skip the log of the memtable it
            # made immutable, and that log would be deleted unflushed.
            waiting, mem = hooks.memtables()
            next_log = waiting[1].log_number if len(waiting) > 1 else mem.log_number
            # An empty memtable adds nothing; the history still ends where it did.
            last = imm.last_sequence if len(imm) or imm.range_dels else vset.last_sequence
            edit = VersionEdit(log_number=next_log, last_sequence=last)
            for start, stop, sequence in imm.range_dels:     # they move into the Version
                edit.add_range_del(start, stop, sequence)
            if meta is not None:
                edit.add_file(0, meta)
                self.env.sync_dir(self.dbpath)     # the table's name must outlive a power loss
            with vset.lock:
                vset.log_and_apply(edit)
        finally:
            with vset.lock:
                vset.pending_outputs.discard(number)
        hooks.drop_flushed_memtable()
        stats = self.stats
        stats.flushes += 1
        stats.flush_latency.add(time.monotonic() - started)
        if meta is not None:
            stats.flush_bytes += meta.file_size
        self.info_log.log("flushed memtable of log %06d to table %06d: %d entries, %d bytes "
                          "in %.3fs", imm.log_number, number, len(imm),
                          meta.file_size if meta else 0, time.monotonic() - started)
        hooks.after_version_change()
