# cython: language_level=3, embedsignature=True
"""NamespaceIterator: a DBIterator over one namespace's stored keys that
speaks the namespace's own keys.

A namespace's keys are stored as key_prefix + key (kvcy/namespace_keys.py).
The iterator's bounds are stored keys, always inside the namespace's range
[key_prefix, prefix_stop(key_prefix)), so it never leaves the namespace;
what it returns (key(), item(), iteration, take()) drops key_prefix, and
what it is given (seek(), seek_for_prev()) gets key_prefix put in front.
Everything else is DBIterator's.

Thread-safety: one thread at a time, as DBIterator.
"""
from cpython.bytes cimport PyBytes_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM

from kvcy._db_iter cimport DBIterator
from kvcy.dbformat import as_user_bytes


cdef class NamespaceIterator(DBIterator):
    """DBIterator over key_prefix + [start, stop), yielding keys without key_prefix."""

    cdef bytes key_prefix        # what every stored key of the namespace starts with
    cdef Py_ssize_t prefix_len

    def __init__(self, bytes key_prefix not None, *args, **kwargs):
        self.key_prefix = key_prefix
        self.prefix_len = PyBytes_GET_SIZE(key_prefix)
        DBIterator.__init__(self, *args, **kwargs)

    cdef object current_item(self):
        cdef tuple item = DBIterator.current_item(self)
        cdef bytes key = <bytes>PyTuple_GET_ITEM(item, 0)
        return (key[self.prefix_len:], <object>PyTuple_GET_ITEM(item, 1))

    def key(self):
        """The current key, without the namespace's prefix."""
        return DBIterator.key(self)[self.prefix_len:]

    def seek(self, key):
        """Position at the first visible key >= key (within the bounds)."""
        DBIterator.seek(self, self.key_prefix + as_user_bytes(key, "key"))

    def seek_for_prev(self, key):
        """Position at the last visible key <= key (within the bounds)."""
        DBIterator.seek_for_prev(self, self.key_prefix + as_user_bytes(key, "key"))

    def __repr__(self):
        return "<NamespaceIterator of %r%s>" % (self.key_prefix, " (closed)" if self.closed else "")
