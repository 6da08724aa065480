"""TableCache: open Table objects by file number, at most max_open_files.

Opening a table reads its footer, index, filter and properties, so open
tables are kept.  The cache is a dict (a hit is one dict lookup, no lock:
reads of a dict are atomic under the GIL); when it is over capacity the
table opened longest ago is dropped (first in, first out: with the working
set usually far below max_open_files, recency tracking would only cost
time on every read).  Dropping only removes the cache's reference; the
file closes when no reader holds the Table any longer, so eviction never
pulls a file from under a reader.  Opens are serialized by a lock.

Pinned files (read-only connections): a writer in another process deletes
the tables its compactions replaced, and a read-only connection must keep
reading the Version it opened.  pin_table_files() opens the file of every
table of that Version at open time; POSIX keeps an unlinked file readable
through a descriptor that is still open.  A cache built with pinned files
opens those tables through them (never by path), so its tables never go
missing; max_open_files then bounds only how many tables keep their index
and filter parsed in memory, while every pinned file keeps one descriptor.
A pinned file closes when the last cache, Table or iterator using it is
gone, so iterators of an older Version keep reading after a refresh.
"""
import threading

from kvcy import filename
from kvcy.table import Table

# File descriptors kept back from max_open_files for logs, MANIFEST, LOG, LOCK.
RESERVED_FILES = 10


def pin_table_files(dbpath, env, numbers, reuse=None):
    """{number: RandomAccessFile} open on each table in numbers; files
    already open in reuse (an older pin map) are shared, not reopened.

    Raises FileMissingError when a table is gone (the writer replaced the
    Version meanwhile; the caller reads the MANIFEST again)."""
    reuse = reuse or {}
    pinned = {}
    try:
        for number in numbers:
            file = reuse.get(number)
            if file is None:
                file = env.new_random_access_file(filename.table_file_name(dbpath, number))
            pinned[number] = file
    except BaseException:
        for number, file in pinned.items():
            if reuse.get(number) is not file:
                file.close()
        raise
    return pinned


class TableCache:
    def __init__(self, dbpath, env, options, block_cache, row_cache, pinned=None,
                 previous=None):
        """pinned: {number: open file} from pin_table_files(), or None.
        previous: an older TableCache whose parsed tables of pinned numbers
        are taken over (a refresh keeps its warm tables)."""
        self.dbpath = dbpath
        self.env = env
        self.block_cache = block_cache
        self.row_cache = row_cache
        self.capacity = max(options.max_open_files - RESERVED_FILES, 16)
        self.pinned = pinned or {}
        self._tables = {}
        self._lock = threading.Lock()
        self.opens = 0
        if previous is not None and pinned:
            for number, table in list(previous._tables.items()):
                if pinned.get(number) is table.file and len(self._tables) < self.capacity:
                    self._tables[number] = table

    def find_table(self, number, file_size):
        table = self._tables.get(number)
        if table is not None:
            return table
        with self._lock:
            table = self._tables.get(number)
            if table is not None:
                return table
            file = self.pinned.get(number)
            pinned = file is not None
            if not pinned:
                file = self.env.new_random_access_file(
                    filename.table_file_name(self.dbpath, number))
            try:
                table = Table.open(file, file_size, number, self.block_cache, self.row_cache)
            except BaseException:
                if not pinned:
                    file.close()
                raise
            self.opens += 1
            tables = self._tables
            while len(tables) >= self.capacity:
                tables.pop(next(iter(tables)), None)
            tables[number] = table
            return table

    def open_table(self, number):
        """The Table of number if it is open now, else None (opens nothing)."""
        return self._tables.get(number)

    def get(self, meta, user_key, sequence):
        return self.find_table(meta.number, meta.file_size).get(user_key, sequence)

    def iterator(self, meta):
        return self.find_table(meta.number, meta.file_size).iterator()

    def evict(self, number):
        with self._lock:
            self._tables.pop(number, None)

    def __len__(self):
        return len(self._tables)

    def meta_bytes(self):
        """Bytes the open tables keep in memory outside the block cache: each
        one's index block (the top-level index of a partitioned one) and
        bloom filter, and a partitioned one's flags of partitions checked in
        place, held as long as it is open."""
        total = 0
        for table in list(self._tables.values()):
            bloom = table.bloom
            total += (table.index.size + (bloom.size if bloom is not None else 0)
                      + table.part_state_bytes)
        return total
