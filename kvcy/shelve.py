"""kvcy.shelve: the standard library's shelve over kvcy.dbm.

    with kvcy.shelve.open("data/objs") as shelf:   # as shelve.open()
        shelf["config"] = {"retries": 3}          # any picklable object

open() returns a shelve.Shelf (the stdlib class itself, through the
DbfilenameShelf subclass below), so pickling, writeback, sync() and close()
behave exactly as they do over dbm; only the store underneath is kvcy.dbm.
shelve.Shelf(kvcy.dbm.open(path, "c")) works as well.

Thread-safety: as the stdlib's shelves, none; use one shelf per thread or
guard it with a lock.
"""
import shelve as _shelve

from kvcy import dbm as _dbm

__all__ = ["open", "Shelf", "DbfilenameShelf"]

Shelf = _shelve.Shelf


class DbfilenameShelf(_shelve.Shelf):
    """A shelf over kvcy.dbm.open(filename, flag): the twin of the stdlib's
    shelve.DbfilenameShelf, which opens the stdlib's dbm instead."""

    def __init__(self, filename, flag="c", protocol=None, writeback=False):
        super().__init__(_dbm.open(filename, flag), protocol, writeback)

    def clear(self):
        """Remove every entry: kvcy.dbm's clear() in batches, not one
        popitem() per key as MutableMapping.clear() would."""
        self.cache.clear()
        self.dict.clear()


def open(filename, flag="c", protocol=None, writeback=False):
    """Open a shelf of pickled objects in the kvcy database ``filename``
    (a directory).  flag is kvcy.dbm.open()'s ('c' by default: create if
    missing); protocol the pickle protocol (None: pickle.DEFAULT_PROTOCOL);
    writeback=True caches every entry read and writes it back at sync()
    and close(), as shelve.open() does."""
    return DbfilenameShelf(filename, flag, protocol, writeback)
