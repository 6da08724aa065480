"""Cursor: DB-API flavoured access to ordered key ranges.

    cur = conn.cursor()
    cur.scan(b"a", b"m")          # sets the result set (a snapshot), returns cur
    cur.fetchone(); cur.fetchmany(100); cur.fetchall()
    cur.seek(b"key")              # the next fetch starts at the first key >= key
    cur.next(); cur.prev()        # move one entry and return it (None at the end)

Each scan() reads one point in time: writes made after it are not in its
result set.  Rows are (key, value) tuples of bytes.  A cursor is closed by
close(), by its with block, or when its connection closes; using it after
that raises ProgrammingError.  Not thread-safe: one thread per cursor (the
connection itself may be shared).
"""
from kvcy.errors import ProgrammingError


class Cursor:
    def __init__(self, conn):
        self._conn = conn
        self._it = None
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

    def scan(self, start=None, stop=None, *, prefix=None, reverse=False):
        """Make the keys in [start, stop) (and with prefix) the result set; returns self."""
        self._check()
        if self._it is not None:
            self._it.close()
        self._it = self._conn.scan(start, stop, prefix=prefix, reverse=reverse)
        return self

    execute = scan

    def fetchone(self):
        """The next row, or None when the result set is exhausted."""
        return next(self._result(), None)

    def fetchmany(self, size=None):
        """Up to size rows (default: arraysize)."""
        it = self._result()
        if size is None:
            size = self.arraysize
        if not isinstance(size, int) or size < 0:
            raise ProgrammingError("fetchmany size must be a non-negative int, got %r" % (size,))
        rows = []
        if size == 0:
            return rows
        for row in it:
            rows.append(row)
            if len(rows) >= size:
                break
        return rows

    def fetchall(self):
        """Every remaining row."""
        return list(self._result())

    def seek(self, key):
        """Position so that the next fetch returns the first key >= key
        (the last key <= key for a reverse scan)."""
        it = self._result()
        if it.reverse:
            it.seek_for_prev(key)
        else:
            it.seek(key)
        return self

    def next(self):
        """Move to the next row (in scan order) and return it, or None at the end."""
        return next(self._result(), None)

    def prev(self):
        """Move to the previous row (against scan order) and return it, or None."""
        it = self._result()
        if not it.valid():
            # Past the end: step back onto the last row of the scan order.
            if it.reverse:
                it.seek_to_first()
            else:
                it.seek_to_last()
        elif it.reverse:
            it.next()
        else:
            it.prev()
        return it.item() if it.valid() else None

    def __iter__(self):
        return self._result()

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
