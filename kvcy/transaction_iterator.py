"""TransactionIterator: a transaction's scan, its own writes laid over its snapshot.

Transaction.scan() returns one.  It merges two sorted sources by user key:
the DBIterator of the transaction's snapshot (what was committed when the
transaction began) and the transaction's writes in the scan's range as they
were when the scan was opened (sorted; a value of None is a delete).  For a
key in both, the write wins, and a delete hides the snapshot's entry.  The
transaction's pending delete_range calls hide the snapshot's keys in their
ranges (the iterator steps over them with one seek); its writes made after
them are among the writes.  It
has DBIterator's interface (Python iteration, take(), valid/seek/next/prev,
key/value/item), so a Cursor works over it unchanged.

Positions follow LevelDB's MergingIterator: after a forward move the
snapshot iterator stands on its first key >= the current key and `_wi` on
the first write >= it; after a backward move, on the last ones <= it.  A
change of direction seeks both again.

Every move reports the keys it looked at to the scan's ReadRange, which
keeps their hull; commit() checks that nothing was written into that hull
after the snapshot, so an insert that would have changed what the scan saw
(a phantom) is a conflict too.

Thread-safety: one thread at a time, as DBIterator.
"""
from bisect import bisect_left, bisect_right

from kvcy.dbformat import as_user_bytes
from kvcy.errors import ProgrammingError

# Where Python iteration stands (DBIterator's states): nothing read yet; a
# cursor move landed on the entry the next __next__ returns; an entry given.
_FRESH, _PENDING, _YIELDED = 0, 1, 2


class ReadRange:
    """The part of a scan's range [start, stop) that the scan has read.

    lo..hi is the hull of the keys looked at, both included; None for lo
    (hi) means down to start (up to stop).  Empty until the first move."""

    __slots__ = ("start", "stop", "lo", "hi", "empty")

    def __init__(self, start, stop):
        self.start = start
        self.stop = stop
        self.lo = None
        self.hi = None
        self.empty = True

    def add(self, lo, hi):
        """Keys lo..hi were read (None: the range's own end)."""
        if self.empty:
            self.lo, self.hi, self.empty = lo, hi, False
            return
        if self.lo is not None:
            self.lo = None if lo is None else min(self.lo, lo)
        if self.hi is not None:
            self.hi = None if hi is None else max(self.hi, hi)

    def bounds(self):
        """(lo, hi) of the part read as a half-open range, within [start, stop)
        (None: unbounded)."""
        lo, hi = self.start, self.stop
        if self.lo is not None and (lo is None or self.lo > lo):
            lo = self.lo
        if self.hi is not None:
            after = self.hi + b"\x00"           # the first key after hi
            if hi is None or after < hi:
                hi = after
        return lo, hi


def deleted_ranges(ranges, start=None, stop=None):
    """The union of the [lo, hi) ranges within [start, stop) (None: open),
    as sorted, disjoint (lo, hi) pairs."""
    clipped = sorted((lo if start is None else max(lo, start),
                      hi if stop is None else min(hi, stop)) for lo, hi in ranges)
    out = []
    for lo, hi in clipped:
        if lo >= hi:
            continue
        if out and lo <= out[-1][1]:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


class TransactionIterator:
    """(key, value) pairs of a transaction's snapshot with its writes over them."""

    def __init__(self, base, writes, read_range, reverse, deleted=()):
        self._base = base                       # DBIterator at the snapshot, bounded
        self._keys = [key for key, _ in writes]     # sorted, within the bounds
        self._values = [value for _, value in writes]
        # The transaction's range deletes (deleted_ranges()): their starts and stops.
        self._del_starts = [lo for lo, _ in deleted]
        self._del_stops = [hi for _, hi in deleted]
        self._read = read_range
        self._reverse = bool(reverse)
        self._forward = True                    # direction of the last move
        self._wi = 0                            # index into _keys (see the module doc)
        self._key = None                        # current entry; None: not valid
        self._value = None
        self._state = _FRESH
        self._closed = False

    def _check(self):
        if self._closed:
            raise ProgrammingError("the iterator is closed")

    def _invalid(self, what):
        self._check()
        error = self._base.status()
        if error is not None:
            raise error
        raise ValueError("%s() on an invalid iterator" % what)

    # -- merging -------------------------------------------------------------

    def _deleted(self, key):
        """The (start, stop) of the transaction's range delete holding key, or None."""
        i = bisect_right(self._del_starts, key) - 1
        if i >= 0 and key < self._del_stops[i]:
            return self._del_starts[i], self._del_stops[i]
        return None

    def _settle_forward(self, origin):
        # The smallest key of either source from the current positions on,
        # skipping the transaction's deletes.  origin: where the move started.
        base, keys, values = self._base, self._keys, self._values
        while True:
            bk = base.key() if base.valid() else None
            wk = keys[self._wi] if self._wi < len(keys) else None
            if wk is not None and (bk is None or wk <= bk):
                value = values[self._wi]
                if value is not None:
                    self._key, self._value = wk, value
                    break
                if bk == wk:
                    base.next()                 # the snapshot's entry is deleted
                self._wi += 1
                continue
            if bk is None:
                self._key = self._value = None
            else:
                hole = self._del_starts and self._deleted(bk)
                if hole:
                    base.seek(hole[1])          # past the snapshot's keys it deletes
                    continue
                self._key, self._value = bk, base.value()
            break
        self._read.add(origin, self._key)

    def _settle_backward(self, origin):
        base, keys, values = self._base, self._keys, self._values
        while True:
            bk = base.key() if base.valid() else None
            wk = keys[self._wi] if self._wi >= 0 else None
            if wk is not None and (bk is None or wk >= bk):
                value = values[self._wi]
                if value is not None:
                    self._key, self._value = wk, value
                    break
                if bk == wk:
                    base.prev()
                self._wi -= 1
                continue
            if bk is None:
                self._key = self._value = None
            else:
                hole = self._del_starts and self._deleted(bk)
                if hole:
                    base.seek_for_prev(hole[0])     # before the snapshot's keys it deletes
                    if base.valid() and base.key() == hole[0]:
                        base.prev()
                    continue
                self._key, self._value = bk, base.value()
            break
        self._read.add(self._key, origin)

    def _to_first(self):
        self._base.seek_to_first()
        self._wi = 0
        self._forward = True
        self._settle_forward(None)

    def _to_last(self):
        self._base.seek_to_last()
        self._wi = len(self._keys) - 1
        self._forward = False
        self._settle_backward(None)

    def _step_forward(self):
        current, base, keys = self._key, self._base, self._keys
        if not self._forward:
            base.seek(current)
            self._wi = bisect_left(keys, current)
            self._forward = True
        if base.valid() and base.key() == current:
            base.next()
        if self._wi < len(keys) and keys[self._wi] == current:
            self._wi += 1
        self._settle_forward(current)

    def _step_backward(self):
        current, base, keys = self._key, self._base, self._keys
        if self._forward:
            base.seek_for_prev(current)
            self._wi = bisect_right(keys, current) - 1
            self._forward = False
        if base.valid() and base.key() == current:
            base.prev()
        if self._wi >= 0 and keys[self._wi] == current:
            self._wi -= 1
        self._settle_backward(current)

    # -- Python iteration (in scan order) -------------------------------------

    def __iter__(self):
        self._check()
        return self

    def __next__(self):
        self._check()
        if self._state == _FRESH:
            self._to_last() if self._reverse else self._to_first()
        elif self._state == _YIELDED and self._key is not None:
            self._step_backward() if self._reverse else self._step_forward()
        elif self._key is None and self._base.status() is not None:
            raise self._base.status()
        self._state = _YIELDED
        if self._key is None:
            raise StopIteration
        return (self._key, self._value)

    def take(self, n, how=0):
        """Up to n pairs in scan order, as DBIterator.take (how: 0 from the
        entry under the cursor, 1 step first, 2 from the first of the scan)."""
        if n < 0:
            raise ValueError("take() needs n >= 0, not %d" % n)
        self._check()
        out = []
        if n == 0:
            return out
        if how == 2:
            self._to_last() if self._reverse else self._to_first()
        elif how == 1:
            if self._key is not None:
                self._step_backward() if self._reverse else self._step_forward()
        elif how != 0:
            raise ValueError("take() how must be 0, 1 or 2, not %d" % how)
        self._state = _YIELDED
        step = self._step_backward if self._reverse else self._step_forward
        while self._key is not None:
            out.append((self._key, self._value))
            if len(out) >= n:
                break
            step()
        return out

    # -- cursor moves ---------------------------------------------------------

    def valid(self):
        self._check()
        return self._key is not None

    def seek_to_first(self):
        self._check()
        self._state = _PENDING
        self._to_first()

    def seek_to_last(self):
        self._check()
        self._state = _PENDING
        self._to_last()

    def seek(self, user_key):
        """Position at the first key >= user_key (within the bounds)."""
        self._check()
        key = as_user_bytes(user_key, "user_key")
        self._state = _PENDING
        self._base.seek(key)
        self._wi = bisect_left(self._keys, key)
        self._forward = True
        self._settle_forward(key)

    def seek_for_prev(self, user_key):
        """Position at the last key <= user_key (within the bounds)."""
        self._check()
        key = as_user_bytes(user_key, "user_key")
        self._state = _PENDING
        self._base.seek_for_prev(key)
        self._wi = bisect_right(self._keys, key) - 1
        self._forward = False
        self._settle_backward(key)

    def next(self):
        """Move to the next larger key.  REQUIRES: valid()."""
        if self._closed or self._key is None:
            self._invalid("next")
        self._state = _PENDING
        self._step_forward()

    def prev(self):
        """Move to the next smaller key.  REQUIRES: valid()."""
        if self._closed or self._key is None:
            self._invalid("prev")
        self._state = _PENDING
        self._step_backward()

    def key(self):
        if self._closed or self._key is None:
            self._invalid("key")
        return self._key

    def value(self):
        if self._closed or self._key is None:
            self._invalid("value")
        return self._value

    def item(self):
        if self._closed or self._key is None:
            self._invalid("item")
        return (self._key, self._value)

    def status(self):
        return self._base.status()

    # -- lifetime -------------------------------------------------------------

    def close(self):
        """Close the iterator and its snapshot iterator; idempotent."""
        self._closed = True
        self._key = self._value = None
        self._base.close()

    @property
    def closed(self):
        return self._closed

    @property
    def sequence(self):
        """The sequence of the transaction's snapshot."""
        return self._base.sequence

    @property
    def reverse(self):
        return self._reverse

    def __enter__(self):
        self._check()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        if self._closed:
            return "<TransactionIterator (closed)>"
        return "<TransactionIterator at sequence %d%s>" % (self.sequence,
                                                           ", reverse" if self._reverse else "")
