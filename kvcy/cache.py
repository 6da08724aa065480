"""The two caches of a database.

  block cache: (table file number, block offset) -> a decompressed, checked
               block, in C memory (kvcy._block_cache.BlockCache, re-exported
               here).  It sits on the hot read path, which runs without the
               GIL, so it is C with its own locks.
  row cache:   (table file number, user key) -> (sequence, kind, value) of
               the newest entry of that key in that table, or None when the
               table holds no entry for it (a bloom false positive).  A
               cachetools LRU cache bounded in bytes, in the Python layer;
               off by default (row_cache_bytes=0), and when on, table probes
               go through it with the GIL held.
Keys name immutable things, so nothing is ever invalidated: a table file is
never rewritten under the same number, so a cached entry is right for as
long as the file can be read.  cachetools caches are not thread-safe; the
row cache takes its own lock around every call.  Hits and misses are
counted for stats().
"""
import threading

from cachetools import LRUCache

from kvcy._block_cache import ENTRY_OVERHEAD_BYTES, BlockCache

__all__ = ["BlockCache", "RowCache", "ByteLRUCache", "ENTRY_OVERHEAD_BYTES"]



class ByteLRUCache:
    def __init__(self, capacity_bytes, sizeof):
        self.capacity_bytes = capacity_bytes
        self._cache = LRUCache(maxsize=max(capacity_bytes, 1), getsizeof=sizeof) \
            if capacity_bytes > 0 else None
        self._sizeof = sizeof
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key, default=None):
        cache = self._cache
        if cache is None:
            self.misses += 1
            return default
        with self._lock:
            try:
                value = cache[key]
            except KeyError:
                self.misses += 1
                return default
        self.hits += 1
        return value

    def put(self, key, value):
        cache = self._cache
        if cache is None or self._sizeof(value) > self.capacity_bytes:
            return
        with self._lock:
            cache[key] = value

    @property
    def used_bytes(self):
        return self._cache.currsize if self._cache is not None else 0

    def __len__(self):
        return len(self._cache) if self._cache is not None else 0

    def clear(self):
        if self._cache is not None:
            with self._lock:
                self._cache.clear()


def _row_size(row):
    if row is None:
        return ENTRY_OVERHEAD_BYTES
    return len(row[2]) + ENTRY_OVERHEAD_BYTES


class RowCache(ByteLRUCache):
    """Newest entry of a user key per table, keyed by (file number, user key)."""

    def __init__(self, capacity_bytes):
        super().__init__(capacity_bytes, _row_size)

    @property
    def enabled(self):
        return self._cache is not None
