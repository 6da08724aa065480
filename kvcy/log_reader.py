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
_TYPE_NAMES = {FULL_TYPE: "FULL", FIRST_TYPE: "FIRST", MIDDLE_TYPE: "MIDDLE", LAST_TYPE: "LAST"}

# What LogReader._logical() met (see there).
_BAD_RECORD, _UNENDED, _ORPHAN, _CUT_OFF = range(4)


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

    def _logical(self, pos, on_damage):
        """Logical records from pos on, as (start, payload, end): the one loop
        that assembles FULL records and FIRST..MIDDLE..LAST chains.

        Damage goes to on_damage(what, reason, at, chain_start, search_from,
        to_end), what being one of: _BAD_RECORD, a physical record that
        _physical() rejects (search_from and to_end as it says); _UNENDED, a
        FULL or FIRST record while a chain is open (search_from: at itself,
        an intact record); _ORPHAN, a MIDDLE or LAST with no chain open
        (search_from: the record after it); _CUT_OFF, a chain the end of the
        data cut off.  chain_start is where the open chain began, or None.
        It returns the offset to go on from, with any open chain dropped, or
        None to stop."""
        data = self.data
        view = memoryview(data)
        fragments = None      # memoryview slices of an open FIRST..LAST chain
        start = pos
        while pos < len(data):
            rtype, a, b, nxt = self._physical(pos)
            if rtype == "skip":
                pos = nxt
                continue
            if rtype is None:
                damage = (_BAD_RECORD, a, b, nxt)
            elif (rtype == FULL_TYPE or rtype == FIRST_TYPE) and fragments is not None:
                damage = (_UNENDED, "%s record inside a fragmented record"
                          % _TYPE_NAMES[rtype], pos, False)
            elif (rtype == MIDDLE_TYPE or rtype == LAST_TYPE) and fragments is None:
                damage = (_ORPHAN, "%s record without FIRST" % _TYPE_NAMES[rtype], nxt, False)
            else:
                damage = None
            if damage is not None:
                what, reason, search_from, to_end = damage
                pos = on_damage(what, reason, pos, start if fragments is not None else None,
                                search_from, to_end)
                if pos is None:
                    return
                fragments = None
                continue
            chunk = view[a:a + b]
            if rtype == FULL_TYPE:
                yield pos, bytes(chunk), nxt
            elif rtype == FIRST_TYPE:
                fragments = [chunk]
                start = pos
            else:
                fragments.append(chunk)
                if rtype == LAST_TYPE:
                    yield start, b"".join(fragments), nxt
                    fragments = None
            pos = nxt
        if fragments is not None:
            # A FIRST..MIDDLE chain the end of the data cut off before its LAST.
            on_damage(_CUT_OFF, "record cut off by the end of the log", pos, start,
                      len(data), True)

    def first_record_at(self, pos):
        """The payload of the logical record at pos, or None if damage comes
        first (for the caller's check of hidden_records_at)."""
        for _, payload, _ in self._logical(pos, lambda *damage: None):
            return payload
        return None

    def salvage(self, on_damage):
        """Every intact logical record as (offset, payload), skipping damage and
        resuming at the next intact record, where iteration stops (repair's
        reading: keep what survives).  on_damage(offset, description) hears of
        each stretch skipped.  Intact means what it means for iteration."""
        data = self.data

        def skip(what, reason, pos, chain_start, search_from, to_end):
            at = chain_start if chain_start is not None else pos
            if what == _CUT_OFF:
                on_damage(at, reason)
                return None
            if what == _UNENDED:
                on_damage(chain_start, "fragmented record without its end")
                return pos                                     # the new record starts afresh
            if what == _ORPHAN:
                on_damage(pos, "record fragment without its start")
                return search_from
            resume = self._find_intact(search_from if search_from > pos else pos + 1, False)
            if resume is None:
                if to_end or any(data[pos:]):
                    on_damage(at, "%s; the %d bytes to the end dropped" % (reason, len(data) - at))
                return None
            on_damage(at, "%s; %d bytes dropped" % (reason, resume - at))
            return resume

        for start, payload, _ in self._logical(0, skip):
            yield start, payload

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
        def stop(what, reason, pos, chain_start, search_from, to_end):
            self._damaged(reason, pos, search_from, to_end)
            return None

        for start, payload, end in self._logical(0, stop):
            self.end_offset = end
            yield start, payload
