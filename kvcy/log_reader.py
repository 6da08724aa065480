"""Log reader: yields the logical records of a log, and tells damage from a torn tail.

A crash can leave the end of the last record incomplete (a torn tail): a
short header, a record cut off by the end of the file, a fragment chain with
no LAST, or zeros or garbage after the last intact record.  That is
expected; the reader stops there and reports it in `torn_tail_bytes`.

Damage that is followed by the start of an intact record (FULL or FIRST,
with a good checksum) is not a torn tail: something in the middle of the
history was lost.  With paranoid=True the reader raises CorruptionError
naming the file and offset; otherwise it stops at the last intact record
(point-in-time recovery) and records what it dropped in `dropped_bytes` and
`damage`.  It never yields a record after damage, so what it returns is
always a prefix of what was written.

The search for intact records after damage looks at every byte offset, so
damage in the middle of a block is found.  One case is ambiguous: a record
whose header looks sound but whose data runs past the end of the file is
usually a record cut off by a crash, and its data may hold anything (a user
value can even contain bytes that look like log records).  The reader
treats it as a torn tail, but when a chain of intact records runs from
somewhere inside it to the very end of the file it notes where
(`hidden_records_at`), so the caller can tell a length inflated by a bit
flip from a cut-off value by what those records hold (recovery checks
whether they continue the sequence numbers; see recovery.py).

Not thread-safe; recovery reads each log once.
"""
import struct

from kvcy._log_record import record_checksum_ok
from kvcy.errors import CorruptionError
from kvcy.log_format import (FIRST_TYPE, FULL_TYPE, LAST_TYPE, LOG_BLOCK_BYTES,
                             LOG_HEADER_BYTES, MIDDLE_TYPE, ZERO_TYPE)

_LENGTH_TYPE = struct.Struct("<HB")


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
        self.hidden_records_at = None  # see the module docstring

    def _physical(self, offset):
        """Parse the physical record at offset.

        Returns (type, data_start, length, next_offset) for an intact record,
        ("skip", None, 0, next_block) for a block trailer, or
        (None, reason, search_from, to_end) for a missing or damaged one, where
        search_from is where intact records after it would be looked for and
        to_end says they must chain on to the end of the file to count.
        """
        data = self.data
        left_in_block = LOG_BLOCK_BYTES - offset % LOG_BLOCK_BYTES
        if left_in_block < LOG_HEADER_BYTES:
            return ("skip", None, 0, offset + left_in_block)
        if len(data) - offset < LOG_HEADER_BYTES:
            return (None, "truncated record header", len(data), False)
        length, rtype = _LENGTH_TYPE.unpack_from(data, offset + 4)
        header_ok = FULL_TYPE <= rtype <= LAST_TYPE and LOG_HEADER_BYTES + length <= left_in_block
        if header_ok and LOG_HEADER_BYTES + length > len(data) - offset:
            # Cut off by the end of the file: its data is not searched.
            return (None, "record runs past the end of the file", offset + 1, True)
        if rtype == ZERO_TYPE and length == 0 and not any(data[offset:offset + 4]):
            return (None, "zero-filled space", offset + 1, False)
        if rtype < FULL_TYPE or rtype > LAST_TYPE:
            return (None, "record of unknown type %d" % rtype, offset + 1, False)
        if not header_ok:
            return (None, "record length %d runs past its block" % length, offset + 1, False)
        if not record_checksum_ok(data, offset, length):
            return (None, "checksum mismatch", offset + 1, False)
        return (rtype, offset + LOG_HEADER_BYTES, length, offset + LOG_HEADER_BYTES + length)

    def _record_start_at(self, pos):
        """True iff an intact FULL or FIRST record starts at pos."""
        data = self.data
        if len(data) - pos < LOG_HEADER_BYTES:
            return False
        length, rtype = _LENGTH_TYPE.unpack_from(data, pos + 4)
        if rtype != FULL_TYPE and rtype != FIRST_TYPE:
            return False
        if LOG_HEADER_BYTES + length > LOG_BLOCK_BYTES - pos % LOG_BLOCK_BYTES:
            return False
        if LOG_HEADER_BYTES + length > len(data) - pos:
            return False
        return record_checksum_ok(data, pos, length)

    def _chains_to_end(self, pos):
        """True iff intact physical records run from pos to the end of the file."""
        while pos < len(self.data):
            rtype, _, _, nxt = self._physical(pos)
            if rtype is None:
                return False
            pos = nxt
        return True

    def _find_intact(self, start, to_end):
        """Offset of the first intact FULL/FIRST record at or after start, or None."""
        data = self.data
        find = data.find
        pos = start
        end = len(data) - LOG_HEADER_BYTES
        while pos <= end:
            # A record's type byte is at +6; jump to the next candidate type byte.
            cands = [c for c in (find(b"\x01", pos + 6), find(b"\x02", pos + 6)) if c >= 0]
            if not cands:
                return None
            pos = min(cands) - 6
            if pos > end:
                return None
            if self._record_start_at(pos) and (not to_end or self._chains_to_end(pos)):
                return pos
            pos += 1
        return None

    def records_from(self, pos):
        """Logical records starting at pos, up to the first damage (for the caller's
        check of hidden_records_at)."""
        out = []
        fragments = None
        while pos < len(self.data):
            rtype, a, b, nxt = self._physical(pos)
            if rtype == "skip":
                pos = nxt
                continue
            if rtype is None:
                break
            chunk = self.data[a:a + b]
            if rtype == FULL_TYPE:
                out.append(chunk)
            elif rtype == FIRST_TYPE:
                fragments = [chunk]
            elif fragments is not None:
                fragments.append(chunk)
                if rtype == LAST_TYPE:
                    out.append(b"".join(fragments))
                    fragments = None
            pos = nxt
        return out

    def salvage(self, on_damage):
        """Every intact logical record as (offset, payload), skipping damage and
        resuming at the next intact record, where iteration stops (repair's
        reading: keep what survives).  on_damage(offset, description) hears of
        each stretch skipped.  Intact means what it means for iteration."""
        data = self.data
        pos = 0
        fragments = None
        start = 0
        while pos < len(data):
            rtype, a, b, nxt = self._physical(pos)
            if rtype == "skip":
                pos = nxt
                continue
            if rtype is None:
                resume = self._find_intact(b if b > pos else pos + 1, False)
                at = start if fragments is not None else pos
                if resume is None:
                    if nxt or any(data[pos:]):
                        on_damage(at, "%s; the %d bytes to the end dropped" % (a, len(data) - at))
                    return
                on_damage(at, "%s; %d bytes dropped" % (a, resume - at))
                fragments = None
                pos = resume
                continue
            chunk = data[a:a + b]
            if rtype == FULL_TYPE or rtype == FIRST_TYPE:
                if fragments is not None:
                    on_damage(start, "fragmented record without its end")
                if rtype == FULL_TYPE:
                    fragments = None
                    yield pos, chunk
                else:
                    fragments, start = [chunk], pos
            elif fragments is None:
                on_damage(pos, "record fragment without its start")
            else:
                fragments.append(chunk)
                if rtype == LAST_TYPE:
                    yield start, b"".join(fragments)
                    fragments = None
            pos = nxt
        if fragments is not None:
            on_damage(start, "record cut off by the end of the log")

    def _damaged(self, reason, offset, search_from, to_end=False):
        """Handle damage at offset; returns normally only to stop reading."""
        if to_end:
            # A record cut off by the end of the file: a torn tail (see docstring).
            self.hidden_records_at = self._find_intact(search_from, True)
            self.torn_tail_bytes = len(self.data) - self.end_offset
            return
        if self._find_intact(search_from, False) is not None:
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
        fragments = None      # memoryview slices of an open FIRST..LAST chain
        start = 0
        view = memoryview(data)
        while offset < len(data):
            rtype, a, b, nxt = self._physical(offset)
            if rtype == "skip":
                offset = nxt
                continue
            if rtype is None:
                self._damaged(a, offset, b, nxt)
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
