"""Cursor: DB-API flavoured access to ordered key ranges.

    cur = conn.cursor()
    cur.scan(b"a", b"m")          # sets the result set (a snapshot), returns cur
    cur.fetchone(); cur.fetchmany(100); cur.fetchall()
    cur.seek(b"key")              # the next fetch starts at the first key >= key
    cur.next(); cur.prev()        # move one entry and return it (None at the end)

Each scan() reads one point in time: writes made after it are not in its
result set.  A scan() that fails leaves the previous result set usable.
Transaction.cursor() makes a cursor whose scans are the transaction's.  Rows are (key, value) tuples of bytes.  A cursor is closed by
close(), by its with block, or when its connection closes; using it after
that raises ProgrammingError.  Not thread-safe: one thread per cursor (the
connection itself may be shared).
"""
from kvcy.errors import ProgrammingError


# Where a cursor stands in its result set.
_BEFORE = 0      # before the first row (a fresh scan, or prev() past the start)
_PENDING = 1     # on a row that the next fetch returns (after seek())
_ON = 2          # on the row returned last
_AFTER = 3       # past the last row


# Rows fetchall() asks the C iterator for per call.
FETCH_CHUNK_ROWS = 1024


class Cursor:
    def __init__(self, conn):
        self._conn = conn
        self._it = None
        self._state = _BEFORE
        self._closed = False
        self.arraysize = 1          # DB-API: rows fetchmany() returns by default
        self.rowcount = -1          # DB-API: unknown for a scan
        self.description = (("key", None, None, None, None, None, False),
                            ("value", None, None, None, None, None, False))

    def _check(self):
        if self._closed:
            raise ProgrammingError("cannot operate on a closed cursor")
        self._conn._check()

    def _result(self):
        self._check()
        if self._it is None:
            raise ProgrammingError("no result set: call scan() first")
        return self._it

    # Moves in scan order, whatever the direction of the scan.
    def _first(self, it):
        it.seek_to_last() if it.reverse else it.seek_to_first()

    def _last(self, it):
        it.seek_to_first() if it.reverse else it.seek_to_last()

    def _forward(self, it):
        it.prev() if it.reverse else it.next()

    def _backward(self, it):
        it.next() if it.reverse else it.prev()

    def scan(self, start=None, stop=None, *, prefix=None, reverse=False):
        """Make the keys in [start, stop) (and with prefix) the result set; returns self.

        If it raises (a bad argument, a closed connection), the previous
        result set stays as it was, position included."""
        self._check()
        it = self._conn.scan(start, stop, prefix=prefix, reverse=reverse)
        old, self._it = self._it, it
        self._state = _BEFORE
        if old is not None:
            old.close()
        return self

    execute = scan

    def next(self):
        """Move to the next row (in scan order) and return it, or None at the end."""
        it = self._result()
        state = self._state
        if state == _BEFORE:
            self._first(it)
        elif state == _ON:
            self._forward(it)
        elif state == _AFTER:
            return None
        # _PENDING: the row seek() stopped on is the one to return.
        if it.valid():
            self._state = _ON
            return it.item()
        self._state = _AFTER
        return None

    def prev(self):
        """Move to the previous row (against scan order) and return it, or None
        when there is none (the cursor then stands before the first row)."""
        it = self._result()
        state = self._state
        if state == _BEFORE:
            return None
        if state == _AFTER:
            self._last(it)
        else:
            self._backward(it)
        if it.valid():
            self._state = _ON
            return it.item()
        self._state = _BEFORE
        return None

    def fetchone(self):
        """The next row, or None when the result set is exhausted."""
        return self.next()

    def fetchmany(self, size=None):
        """Up to size rows (default: arraysize)."""
        self._result()
        if size is None:
            size = self.arraysize
        if not isinstance(size, int) or size < 0:
            raise ProgrammingError("fetchmany size must be a non-negative int, got %r" % (size,))
        return self._take(size)

    def _take(self, size):
        # Up to size rows in one C call (DBIterator.take), keeping the state.
        it = self._result()
        state = self._state
        if state == _AFTER or size == 0:
            return []
        how = {_BEFORE: 2, _ON: 1, _PENDING: 0}[state]
        rows = it.take(size, how)
        # On the last row taken, or run off the end: as next() leaves it.
        self._state = _ON if len(rows) == size else _AFTER
        return rows

    def fetchall(self):
        """Every remaining row."""
        rows = []
        while True:
            chunk = self._take(FETCH_CHUNK_ROWS)
            rows += chunk
            if len(chunk) < FETCH_CHUNK_ROWS:
                return rows

    def seek(self, key):
        """Position so that the next fetch returns the first key >= key
        (the last key <= key for a reverse scan)."""
        it = self._result()
        if it.reverse:
            it.seek_for_prev(key)
        else:
            it.seek(key)
        self._state = _PENDING if it.valid() else _AFTER
        return self

    def __iter__(self):
        self._result()
        return iter(self.next, None)

    def close(self):
        """Close the cursor; idempotent."""
        self._closed = True
        it, self._it = self._it, None
        if it is not None:
            it.close()

    @property
    def closed(self):
        return self._closed

    def __enter__(self):
        self._check()
        return self

    def __exit__(self, *exc_info):
        self.close()
