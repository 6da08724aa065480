"""TwoLevelIterator: iterate a table through its index, then its data blocks.

Speaks the internal-iterator protocol (valid, seek_to_first, seek_to_last,
seek, next, prev, key, value, status) over internal keys.  Empty data blocks
are skipped in both directions.  An error (corrupt block, failed read) is
sticky: the iterator becomes invalid, status() returns the error and every
accessor raises it.  Not thread-safe; one reader owns an iterator.
"""


class TwoLevelIterator:
    __slots__ = ("table", "index_iter", "data_iter", "error")

    def __init__(self, table):
        self.table = table
        self.index_iter = table.index.iterator()
        self.data_iter = None
        self.error = None

    def _fail(self, exc):
        self.error = exc
        self.data_iter = None

    def _check(self):
        if self.error is not None:
            raise self.error

    def _load(self):
        """Open the data block the index iterator points at (None when past the end)."""
        if not self.index_iter.valid():
            status = self.index_iter.status()
            if status is not None:
                raise status
            self.data_iter = None
            return False
        self.data_iter = self.table.block_from_index_value(self.index_iter.value()).iterator()
        return True

    def _skip_empty_forward(self):
        while self.data_iter is None or not self.data_iter.valid():
            if self.data_iter is not None and self.data_iter.status() is not None:
                raise self.data_iter.status()
            if self.data_iter is not None:
                self.index_iter.next()
            if not self._load():
                return
            self.data_iter.seek_to_first()

    def _skip_empty_backward(self):
        while self.data_iter is None or not self.data_iter.valid():
            if self.data_iter is not None and self.data_iter.status() is not None:
                raise self.data_iter.status()
            if self.data_iter is not None:
                self.index_iter.prev()
            if not self._load():
                return
            self.data_iter.seek_to_last()

    def valid(self):
        return self.error is None and self.data_iter is not None and self.data_iter.valid()

    def status(self):
        return self.error

    def seek_to_first(self):
        self._check()
        try:
            self.index_iter.seek_to_first()
            if self._load():
                self.data_iter.seek_to_first()
                self._skip_empty_forward()
        except Exception as exc:
            self._fail(exc)
            raise

    def seek_to_last(self):
        self._check()
        try:
            self.index_iter.seek_to_last()
            if self._load():
                self.data_iter.seek_to_last()
                self._skip_empty_backward()
        except Exception as exc:
            self._fail(exc)
            raise

    def seek(self, target):
        self._check()
        try:
            self.index_iter.seek(target)
            if self._load():
                self.data_iter.seek(target)
                self._skip_empty_forward()
        except Exception as exc:
            self._fail(exc)
            raise

    def next(self):
        self._check()
        try:
            self.data_iter.next()
            self._skip_empty_forward()
        except Exception as exc:
            self._fail(exc)
            raise

    def prev(self):
        self._check()
        try:
            self.data_iter.prev()
            self._skip_empty_backward()
        except Exception as exc:
            self._fail(exc)
            raise

    def key(self):
        self._check()
        return self.data_iter.key()

    def value(self):
        self._check()
        return self.data_iter.value()
