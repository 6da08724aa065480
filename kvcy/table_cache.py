"""TableCache: open Table objects by file number, at most max_open_files.

Opening a table reads its footer, index, filter and properties, so open
tables are kept.  The cache is a dict (a hit is one dict lookup, no lock:
reads of a dict are atomic under the GIL); when it is over capacity the
table opened longest ago is dropped (first in, first out: with the working
set usually far below max_open_files, recency tracking would only cost
time on every read).  Dropping only removes the cache's reference; the
file closes when no reader holds the Table any longer, so eviction never
pulls a file from under a reader.  Opens are serialized by a lock.
"""
import threading

from kvcy import filename
from kvcy.table import Table

# File descriptors kept back from max_open_files for logs, MANIFEST, LOG, LOCK.
RESERVED_FILES = 10


class TableCache:
    def __init__(self, dbpath, env, options, block_cache, row_cache):
        self.dbpath = dbpath
        self.env = env
        self.block_cache = block_cache
        self.row_cache = row_cache
        self.capacity = max(options.max_open_files - RESERVED_FILES, 16)
        self._tables = {}
        self._lock = threading.Lock()
        self.opens = 0

    def find_table(self, number, file_size):
        table = self._tables.get(number)
        if table is not None:
            return table
        with self._lock:
            table = self._tables.get(number)
            if table is not None:
                return table
            path = filename.table_file_name(self.dbpath, number)
            file = self.env.new_random_access_file(path)
            try:
                table = Table.open(file, file_size, number, self.block_cache, self.row_cache)
            except BaseException:
                file.close()
                raise
            self.opens += 1
            tables = self._tables
            while len(tables) >= self.capacity:
                tables.pop(next(iter(tables)), None)
            tables[number] = table
            return table

    def get(self, meta, user_key, sequence):
        return self.find_table(meta.number, meta.file_size).get(user_key, sequence)

    def iterator(self, meta):
        return self.find_table(meta.number, meta.file_size).iterator()

    def evict(self, number):
        with self._lock:
            self._tables.pop(number, None)

    def __len__(self):
        return len(self._tables)
