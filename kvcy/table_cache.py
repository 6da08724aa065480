"""TableCache: open Table objects by file number, at most max_open_files.

Opening a table reads its footer, index, filter and properties, so open
tables are kept in an LRU.  Evicting one only drops the cache's reference;
the file closes when no reader holds the Table any longer, so eviction never
pulls a file from under a reader.  Thread-safe (one lock; two threads may
race to open the same table, and the second result is dropped).
"""
import threading

from cachetools import LRUCache

from kvcy import filename
from kvcy.table import Table


class TableCache:
    def __init__(self, dbpath, env, options, block_cache, row_cache):
        self.dbpath = dbpath
        self.env = env
        self.block_cache = block_cache
        self.row_cache = row_cache
        self._tables = LRUCache(maxsize=max(options.max_open_files - 10, 16))
        self._lock = threading.Lock()
        self.opens = 0

    def find_table(self, number, file_size):
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
        with self._lock:
            self._tables[number] = table
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
