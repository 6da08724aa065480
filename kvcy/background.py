"""The background thread: flushes immutable memtables, runs timed flushes.

One daemon thread per writable database.  It sleeps on a condition until
work is scheduled (a memtable switch, conn.flush(), a compaction trigger)
or the flush_interval timer comes due, then asks the engine to do the work.
An exception in background work is latched as the engine's background
error: writes fail with OperationalError naming it from then on, reads keep
working, and nothing already stored is lost (the WAL still holds every
write not yet in a table).

Thread-safety: schedule() and stop() may be called from any thread.
"""
import threading
import time


class BackgroundWorker:
    def __init__(self, engine, name="kvcy-background"):
        self.engine = engine
        self.cv = threading.Condition()      # guards pending/stopping; waiters for progress
        self.pending = False
        self.stopping = False
        self.busy = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self):
        self.thread.start()

    def schedule(self):
        with self.cv:
            self.pending = True
            self.cv.notify_all()

    def _tick_seconds(self):
        interval = self.engine.options.flush_interval
        if interval <= 0:
            return None
        return max(min(interval / 4.0, 1.0), 0.01)

    def _run(self):
        engine = self.engine
        while True:
            with self.cv:
                if not self.pending and not self.stopping:
                    self.cv.wait(self._tick_seconds())
                if self.stopping:
                    return
                self.pending = False
                self.busy = True
            try:
                if engine.background_error is None:
                    engine.background_work()
            except BaseException as exc:        # latched, see module docstring
                engine.set_background_error(exc)
            finally:
                with self.cv:
                    self.busy = False
                    self.cv.notify_all()

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
