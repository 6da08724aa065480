# cython: language_level=3, embedsignature=True
"""NamespaceIterator: a DBIterator over one namespace's stored keys that
speaks the namespace's own keys.

A namespace's keys are stored as key_prefix + key (kvcy/namespace_keys.py).
The iterator's bounds are stored keys, always inside the namespace's range
[key_prefix, prefix_stop(key_prefix)), so it never leaves the namespace;
what it returns (key(), item(), iteration, take()) drops key_prefix
(DBIterator.key_skip, so that costs nothing per entry), and what it is
given (seek(), seek_for_prev()) gets key_prefix put in front.
Everything else is DBIterator's.

Thread-safety: one thread at a time, as DBIterator.
"""
from cpython.bytes cimport PyBytes_GET_SIZE

from kvcy._db_iter cimport DBIterator
from kvcy._db_iter import prefix_stop
from kvcy.dbformat import as_user_bytes


cdef class NamespaceIterator(DBIterator):
    """DBIterator over key_prefix + [start, stop), yielding keys without key_prefix."""

    cdef bytes key_prefix        # what every stored key of the namespace starts with

    def __init__(self, bytes key_prefix not None, merging_iter, sequence, start=None,
                 stop=None, reverse=False, pin=None, range_dels=None, clock=None):
        # The bounds must lie inside the namespace's range, so that every
        # key seen starts with key_prefix (DBIterator.key_skip's condition).
        if (start is None or not bytes(start).startswith(key_prefix) or
                stop is None or bytes(stop) > prefix_stop(key_prefix)):
            raise ValueError("NamespaceIterator bounds %r..%r outside the range of %r"
                             % (start, stop, key_prefix))
        self.key_prefix = key_prefix
        DBIterator.__init__(self, merging_iter, sequence, start, stop, reverse, pin,
                            range_dels, clock)
        self.key_skip = PyBytes_GET_SIZE(key_prefix)

    def seek(self, key):
        """Position at the first visible key >= key (within the bounds)."""
        DBIterator.seek(self, self.key_prefix + as_user_bytes(key, "key"))

    def seek_for_prev(self, key):
        """Position at the last visible key <= key (within the bounds)."""
        DBIterator.seek_for_prev(self, self.key_prefix + as_user_bytes(key, "key"))

    def __repr__(self):
        return "<NamespaceIterator of %r%s>" % (self.key_prefix, " (closed)" if self.closed else "")
