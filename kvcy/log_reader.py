"""Log reader: yields the logical records of a log, and tells damage from a torn tail.

A crash can leave the end of the last record incomplete (a torn tail): a
short header, a length past the end of the file, a fragment chain with no
LAST, or a zero-filled or garbled tail after the last intact record.  That
is expected; the reader stops there and reports it in `torn_tail_bytes`.

Damage that is followed by an intact record is not a torn tail: something
in the middle of the history was lost.  With paranoid=True the reader
raises CorruptionError naming the file and offset; otherwise it stops at
the last intact record (point-in-time recovery) and records what it dropped
in `dropped_bytes` and `damage`.  It never yields a record after damage, so
what it returns is always a prefix of what was written.

Not thread-safe; recovery reads each log once.
"""
import struct

from kvcy._log_record import record_checksum_ok
from kvcy.errors import CorruptionError
from kvcy.log_format import (FIRST_TYPE, FULL_TYPE, LAST_TYPE, LOG_BLOCK_BYTES,
                             LOG_HEADER_BYTES, MIDDLE_TYPE, ZERO_TYPE)

_HEADER = struct.Struct("<IHB")


class LogReader:
    """Iterate over (offset, payload) of every intact logical record."""

    def __init__(self, data, path="<log>", paranoid=True):
        # The whole log is read up front: logs are bounded by the memtable size.
        self.data = data
        self.path = path
        self.paranoid = paranoid
        self.torn_tail_bytes = 0     # bytes after the last intact record, when a tail was torn
        self.dropped_bytes = 0       # bytes skipped because of damage (paranoid=False only)
        self.damage = None           # description of the damage that stopped reading
        self.end_offset = 0          # offset just past the last intact logical record

    def _physical(self, offset):
        """Parse the physical record at offset.

        Returns (type, data_start, length, next_offset), or (None, reason,
        offset, next_offset) when the record is missing or damaged.
        """
        data = self.data
        in_block = offset % LOG_BLOCK_BYTES
        left_in_block = LOG_BLOCK_BYTES - in_block
        if left_in_block < LOG_HEADER_BYTES:
            return ("skip", None, 0, offset + left_in_block)
        if len(data) - offset < LOG_HEADER_BYTES:
            return (None, "truncated record header", offset, len(data))
        _, length, rtype = _HEADER.unpack_from(data, offset)
        if rtype == ZERO_TYPE and length == 0:
            return (None, "zero-filled space", offset, offset + left_in_block)
        if LOG_HEADER_BYTES + length > left_in_block:
            return (None, "record length %d runs past its block" % length, offset,
                    offset + left_in_block)
        if LOG_HEADER_BYTES + length > len(data) - offset:
            return (None, "record runs past the end of the file", offset, len(data))
        if not record_checksum_ok(data, offset, length):
            return (None, "checksum mismatch", offset, offset + LOG_HEADER_BYTES + length)
        if rtype > LAST_TYPE:
            return (None, "unknown record type %d" % rtype, offset, offset + LOG_HEADER_BYTES + length)
        return (rtype, offset + LOG_HEADER_BYTES, length, offset + LOG_HEADER_BYTES + length)

    def _intact_record_after(self, offset):
        """True iff some intact physical record starts at or after offset.

        Every block begins with a record header, so a resync tries each later
        block start and, in the current block, the records after offset.
        """
        pos = offset
        while pos < len(self.data):
            rtype, _, _, nxt = self._physical(pos)
            if rtype is not None and rtype != "skip":
                return True
            if nxt <= pos:
                break
            pos = nxt
        return False

    def _damaged(self, reason, offset, resync_from):
        """Handle damage at offset; returns normally only to stop reading."""
        if self._intact_record_after(resync_from):
            self.damage = "%s at offset %d of %s" % (reason, offset, self.path)
            if self.paranoid:
                raise CorruptionError("log damaged: %s, with intact records after it"
                                      % self.damage)
            self.dropped_bytes = len(self.data) - self.end_offset
        else:
            self.torn_tail_bytes = len(self.data) - self.end_offset

    def __iter__(self):
        data = self.data
        offset = 0
        fragments = None      # list of memoryview slices of an open FIRST..LAST chain
        start = 0
        view = memoryview(data)
        while offset < len(data):
            rtype, a, b, nxt = self._physical(offset)
            if rtype == "skip":
                offset = nxt
                continue
            if rtype is None:
                self._damaged(a, b, nxt)
                return
            chunk = view[a:a + b]
            if rtype == FULL_TYPE:
                if fragments is not None:
                    self._damaged("FULL record inside a fragmented record", offset, offset)
                    return
                self.end_offset = nxt
                yield offset, bytes(chunk)
            elif rtype == FIRST_TYPE:
                if fragments is not None:
                    self._damaged("FIRST record inside a fragmented record", offset, offset)
                    return
                fragments = [chunk]
                start = offset
            elif rtype == MIDDLE_TYPE:
                if fragments is None:
                    self._damaged("MIDDLE record without FIRST", offset, nxt)
                    return
                fragments.append(chunk)
            elif rtype == LAST_TYPE:
                if fragments is None:
                    self._damaged("LAST record without FIRST", offset, nxt)
                    return
                fragments.append(chunk)
                self.end_offset = nxt
                payload = b"".join(fragments)
                fragments = None
                yield start, payload
            offset = nxt
        if fragments is not None:
            # A FIRST..MIDDLE chain the crash cut off before its LAST.
            self.torn_tail_bytes = len(data) - self.end_offset
