"""The LOG file: a human-readable record of what the engine did and when.

Opening, recovery (with torn tails and drops), memtable switches, flushes,
compactions, stalls and background errors each append one line:

    2026-11-23T21:00:00.123456Z [thread] message

The previous run's LOG is kept as LOG.old.  With max_bytes (the
info_log_max_bytes option), a LOG that reaches that size is rotated: it
becomes LOG.old (replacing the one there) and a new LOG starts, so the two
never hold much more than twice max_bytes.  Lines go straight to the OS
(no buffering to lose); a failure to write the LOG never fails the
operation it describes.  Thread-safe (one lock around the append and the
rotation).
"""
import datetime
import os
import threading


class InfoLog:
    def __init__(self, env, path, old_path=None, max_bytes=0):
        self._lock = threading.Lock()
        self._file = None
        self._env = env
        self._path = path
        self._old_path = old_path
        self._max_bytes = max_bytes if old_path is not None else 0   # 0: never rotate
        self.rotations = 0
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
            if self._file is None:
                return
            try:
                self._file.append(line.encode("utf-8", "replace"))
                if self._max_bytes and self._file.size >= self._max_bytes:
                    self._rotate()
            except Exception:
                pass

    def _rotate(self):
        """REQUIRES: _lock held.  LOG -> LOG.old, then a new LOG."""
        self._file.close()
        self._file = None
        try:
            self._env.rename_file(self._path, self._old_path)
        except Exception:
            # Keep appending to the LOG we have rather than truncate it.
            self._max_bytes = 0
            self._file = self._env.new_appendable_file(self._path)
            return
        self._file = self._env.new_writable_file(self._path)
        self.rotations += 1
        self._file.append(_line("LOG rotated at %d bytes; earlier lines are in %s",
                                (self._max_bytes, os.path.basename(self._old_path)))
                          .encode("utf-8"))

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
