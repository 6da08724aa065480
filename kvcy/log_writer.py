"""Log writer: appends logical records (write batches, version edits) to a log.

Each add_record() turns its payload into framed bytes (kvcy._log_record, in
C) and hands them to the file with one append, so a kill -9 after
add_record() returns loses nothing: the bytes are in the OS.  sync() makes
them survive power loss.  Not thread-safe: the engine's writer owns it.
Format: kvcy/log_format.py and docs/format.md ("Log files").
"""
from kvcy._log_record import LogFramer


class LogWriter:
    __slots__ = ("file", "_framer", "_append", "number", "path")

    def __init__(self, file, number=None):
        """file: an env WritableFile, positioned at its end (its size)."""
        self.file = file
        self.number = number
        self.path = file.path
        self._framer = LogFramer(file.size)
        self._append = file.append

    def add_record(self, payload, sync=False):
        self._append(self._framer.frame(payload))
        if sync:
            self.file.sync()

    def sync(self):
        self.file.sync()

    @property
    def size(self):
        return self.file.size

    def close(self):
        self.file.close()
