"""TableWriter: a sorted run of (key, value) pairs as a standalone table file.

The file is in kvcy's table format (docs/format.md) with every entry an
internal key of sequence 0 and kind value, so conn.ingest() can check it
with the table reader and give it a sequence of its own when it goes in.
Keys must arrive strictly increasing: a table is sorted by construction,
and refusing bad order here names the two keys, where a later failure
could only say the file is damaged.
"""
import os
from dataclasses import dataclass

from kvcy._dbformat import FORMAT_CONSTANTS
from kvcy._table_builder import TableBuilder
from kvcy._table_writer_loop import add_pairs
from kvcy.dbformat import as_user_bytes
from kvcy.env import default_env
from kvcy.errors import DataError, NotSupportedError, ProgrammingError
from kvcy.options import MAX_KEY_BYTES, MAX_VALUE_BYTES, Options

# The tag of every entry: sequence 0, kind value (fixed64 little-endian).
_TAG = FORMAT_CONSTANTS["KIND_VALUE"].to_bytes(8, "little")

# The options that shape a table file; the others concern a whole database.
TABLE_OPTIONS = ("block_size", "compression", "restart_interval", "bloom_bits_per_key",
                 "partitioned_index")


@dataclass(frozen=True)
class TableInfo:
    """What TableWriter.finish() wrote: user key range, pair count, file size."""
    smallest: bytes
    largest: bytes
    count: int
    file_size: int


def _short(key, limit=40):
    return repr(key[:limit]) + ("..." if len(key) > limit else "")


class TableWriter:
    """Write strictly increasing (key, value) pairs to a new table at path.

        with kvcy.TableWriter(path) as w:
            w.add(b"a", b"1")
            w.add_many(sorted_pairs)
        w.info   # TableInfo(smallest, largest, count, file_size)

    options: the table-shaping options (TABLE_OPTIONS); the ingesting
    database keeps the file's blocks as written only when it copies the
    file unchanged (see Connection.ingest).
    """

    def __init__(self, path, **options):
        for name in options:
            if name not in TABLE_OPTIONS:
                raise NotSupportedError(
                    "TableWriter option %r has no effect on a table file; it takes %s"
                    % (name, ", ".join(TABLE_OPTIONS)))
        self.path = os.fspath(path)
        self.options = Options().replace(**options)
        self.options.validate()
        self._file = default_env().new_writable_file(self.path)
        self._builder = TableBuilder(self._file, self.options, self.path)
        self._smallest = None
        self._last = None
        self._count = 0
        self.info = None

    def _check_open(self):
        if self.info is not None or self._builder is None:
            raise ProgrammingError("TableWriter %s is finished or closed" % self.path)

    def add(self, key, value):
        """Append one pair; key must sort after every key added so far."""
        self._check_open()
        key = as_user_bytes(key, "key")
        value = as_user_bytes(value, "value")
        last = self._last
        if last is not None and key <= last:
            what = "duplicate key" if key == last else "key out of order"
            raise ProgrammingError("TableWriter %s: %s: %s after %s (keys must be strictly "
                                   "increasing)" % (self.path, what, _short(key), _short(last)))
        if len(key) > MAX_KEY_BYTES:
            raise DataError("key of %d bytes exceeds the %d-byte limit" % (len(key), MAX_KEY_BYTES))
        if len(value) > MAX_VALUE_BYTES:
            raise DataError("value of %d bytes exceeds the %d-byte limit"
                            % (len(value), MAX_VALUE_BYTES))
        self._builder.add(key + _TAG, value)
        if last is None:
            self._smallest = key
        self._last = key
        self._count += 1

    def add_many(self, pairs):
        """add() each (key, value) of an iterable, in order.

        Pairs of bytes go through a C loop (kvcy._table_writer_loop) that
        checks their order with memcmp and builds the table without a
        Python call per pair; any other pair goes through add()."""
        self._check_open()
        iterator = iter(pairs)
        while True:
            added, first, last, stopped, error = add_pairs(self._builder, iterator, _TAG, self._last,
                                                           MAX_KEY_BYTES, MAX_VALUE_BYTES)
            if added:
                if self._last is None:
                    self._smallest = first
                self._count += added
                self._last = last
            if error is not None:
                raise error
            if stopped is None:
                return
            key, value = stopped
            self.add(key, value)         # converts it, or raises the error naming it

    # The names of Connection's writes, as DESIGN.md's example has them.
    put = add
    put_many = add_many

    def finish(self):
        """Write the table's index and footer, sync and close it; return TableInfo."""
        if self.info is not None:
            return self.info
        if self._builder is None:
            raise ProgrammingError("TableWriter %s was closed without finish()" % self.path)
        try:
            size = self._builder.finish()
            self._file.sync()
        except BaseException:
            self.abandon()
            raise
        self._file.close()
        self._builder = None
        self.info = TableInfo(self._smallest or b"", self._last or b"", self._count, size)
        return self.info

    def abandon(self):
        """Close and delete the unfinished file."""
        if self._builder is None:
            return
        self._builder = None
        self._file.close()
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        # An exception inside the block leaves no half-written table behind.
        if exc_type is None:
            self.finish()
        else:
            self.abandon()
        return False

