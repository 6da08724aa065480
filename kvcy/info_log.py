"""The LOG file: a human-readable record of what the engine did and when.

Opening, recovery (with torn tails and drops), memtable switches, flushes,
compactions, stalls and background errors each append one line:

    2026-11-23T21:00:00.123456Z [thread] message

The previous run's LOG is kept as LOG.old.  Lines go straight to the OS
(no buffering to lose); a failure to write the LOG never fails the
operation it describes.  Thread-safe (one lock around the append).
"""
import datetime
import threading


class InfoLog:
    def __init__(self, env, path, old_path=None):
        self._lock = threading.Lock()
        self._file = None
        try:
            if old_path is not None and env.file_exists(path):
                env.rename_file(path, old_path)
            self._file = env.new_writable_file(path)
        except Exception:
            self._file = None      # the LOG is advisory; the database still opens

    def log(self, fmt, *args):
        if self._file is None:
            return
        self.write_line(_line(fmt, args))

    def write_line(self, line):
        with self._lock:
            try:
                self._file.append(line.encode("utf-8", "replace"))
            except Exception:
                pass

    def close(self):
        with self._lock:
            if self._file is not None:
                try:
                    self._file.close()
                finally:
                    self._file = None


def _line(fmt, args):
    message = fmt % args if args else fmt
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return "%s [%s] %s\n" % (now, threading.current_thread().name, message)


class BufferedInfoLog:
    """Holds the lines of an open in progress: a failed open writes no LOG
    (and so does not rotate away the LOG of the last good run)."""

    def __init__(self):
        self.lines = []

    def log(self, fmt, *args):
        self.lines.append(_line(fmt, args))

    def replay_into(self, info_log):
        for line in self.lines:
            info_log.write_line(line)
        self.lines = []

    def close(self):
        pass


class NullInfoLog:
    """Stands in for the LOG of a read-only open, which must not write."""

    def log(self, fmt, *args):
        pass

    def close(self):
        pass
