"""Refresher: the thread that moves a read-only connection forward every
refresh_interval seconds (Connection.refresh(), kvcy/connection.py).

Between two refreshes the connection serves one state, as without the
option.  A refresh that fails (for example on an I/O error) leaves the
connection on the state it had; the next interval tries again, and
`failures` and `last_error` say what happened.  The thread holds the
connection only through a weak reference, so an unclosed connection can
still be garbage collected; close() stops and joins it.

Thread-safety: refresh() serializes itself; stop() may be called from any
thread, and from the refresher's own thread (it then does not join).
"""
import threading
import weakref

from kvcy.errors import ProgrammingError


class Refresher:
    def __init__(self, conn, interval):
        self.interval = interval
        self.refreshes = 0
        self.failures = 0
        self.last_error = None
        self._refresh = weakref.WeakMethod(conn.refresh)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kvcy-refresh", daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stopped.wait(self.interval):
            refresh = self._refresh()
            if refresh is None:
                return                    # the connection was garbage collected
            try:
                refresh()
            except ProgrammingError:
                return                    # closed (or forked) meanwhile
            except Exception as exc:      # keep serving the old state; try again later
                self.failures += 1
                self.last_error = exc
            else:
                self.refreshes += 1
            del refresh

    def stop(self):
        """Stop the thread; idempotent."""
        self._stopped.set()
        if self._thread is not threading.current_thread() and self._thread.is_alive():
            self._thread.join()
