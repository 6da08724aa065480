# cython: language_level=3, embedsignature=True
"""The per-pair loop of TableWriter.add_many, in C.

add_pairs() takes (key, value) pairs from an iterator a chunk at a time.
With the GIL it checks each pair's shape (a tuple of two bytes objects
within the size limits) and notes its pointers; then, without the GIL, it
checks that the user keys strictly increase (memcmp) and appends each key
with the TableWriter's tag to the C TableBuilder, which compresses,
checksums and writes the blocks as they fill.  So a thread that produces
the pairs can run while the table is being built.

A pair the C loop does not take (any other bytes-like type, a str, a key
or value over its limit, a key out of order or repeated, not a 2-tuple)
ends the call: it is handed back to TableWriter, whose add() converts it
or raises the error that names it, and the loop goes on from there.

Not thread-safe: one TableWriter owns its builder.  REQUIRES: `last` is
the last user key added (None before the first) and every key the
builder holds was added with `tag`.
"""
from libc.stdint cimport uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.ref cimport PyObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE

from kvcy._dbformat cimport compare_user_keys
from kvcy._table_builder cimport TableBuilder

cdef enum:
    CHUNK_PAIRS = 4096           # pairs noted with the GIL, then added without it
    TAG_BYTES = 8
    PREFETCH_AHEAD = 4           # pairs whose bytes are fetched into the cache early

cdef extern from *:
    # GCC/Clang: start loading the cache line at p (no fault if p is bad).
    void __builtin_prefetch(const void* p) noexcept nogil


cdef struct Pair:
    const unsigned char* key
    size_t key_len
    const unsigned char* value
    size_t value_len




cdef Py_ssize_t append_chunk(TableBuilder builder, Pair* pairs, Py_ssize_t n,
                             const unsigned char* last, size_t last_len, bint has_last,
                             unsigned char* ikey, const unsigned char* tag) noexcept nogil:
    # Add pairs[0:n] in order: the count added.  Stops at a key not after
    # the one before it (count < n, builder.refused == 0) or when the
    # builder fails (builder.error or builder.refused set).
    cdef Py_ssize_t i
    for i in range(n):
        # The pairs' bytes are scattered Python objects, often not in the
        # CPU cache: ask for the ones a few pairs ahead while this one is added.
        if i + PREFETCH_AHEAD < n:
            __builtin_prefetch(pairs[i + PREFETCH_AHEAD].key)
            __builtin_prefetch(pairs[i + PREFETCH_AHEAD].value)
        if has_last and compare_user_keys(pairs[i].key, pairs[i].key_len, last, last_len) <= 0:
            return i
        memcpy(ikey, pairs[i].key, pairs[i].key_len)
        memcpy(ikey + pairs[i].key_len, tag, TAG_BYTES)
        if builder.append(ikey, pairs[i].key_len + TAG_BYTES,
                          pairs[i].value, pairs[i].value_len) < 0:
            return i
        last, last_len, has_last = pairs[i].key, pairs[i].key_len, True
    return n


def add_pairs(TableBuilder builder not None, iterator, bytes tag not None, last,
              size_t max_key_bytes, size_t max_value_bytes):
    """Add pairs from iterator until it ends or a pair needs Python.

    Returns (added, first, last, stopped, error): the number of pairs
    added, the first user key added (None when none was), the last (or the `last` passed in), the pair that ended the
    call (None when the iterator ran out) and the exception the builder
    (an I/O error, no memory) or the iterator failed with (else None), for
    the caller to raise once it has counted what went in.  TypeError if tag is not 8 bytes."""
    cdef Pair* pairs
    cdef unsigned char* ikey
    cdef Py_ssize_t n, done, added = 0
    cdef object item, key, value, first = None, stopped = None, error = None
    cdef list held                       # keeps the chunk's objects alive without the GIL
    cdef const unsigned char* tag_p = <const unsigned char*>PyBytes_AS_STRING(tag)
    cdef const unsigned char* last_p = NULL
    cdef size_t last_len = 0
    cdef bint has_last
    cdef bint more = True
    if len(tag) != TAG_BYTES:
        raise TypeError("tag must be %d bytes" % TAG_BYTES)
    if last is not None and type(last) is not bytes:
        raise TypeError("last must be bytes or None")
    pairs = <Pair*>malloc(CHUNK_PAIRS * sizeof(Pair))
    ikey = <unsigned char*>malloc(max_key_bytes + TAG_BYTES)
    if pairs == NULL or ikey == NULL:
        free(pairs)
        free(ikey)
        raise MemoryError()
    try:
        while more and stopped is None and error is None:
            held = []
            n = 0
            while n < CHUNK_PAIRS:
                try:
                    item = next(iterator)
                except StopIteration:
                    more = False
                    break
                except BaseException as exc:
                    # The iterator failed: the pairs it gave before go in
                    # first, as a loop of add() calls would have added them.
                    error = exc
                    break
                if type(item) is not tuple or PyTuple_GET_SIZE(item) != 2:
                    stopped = item
                    break
                key = <object>PyTuple_GET_ITEM(item, 0)
                value = <object>PyTuple_GET_ITEM(item, 1)
                if (type(key) is not bytes or type(value) is not bytes
                        or <size_t>PyBytes_GET_SIZE(key) > max_key_bytes
                        or <size_t>PyBytes_GET_SIZE(value) > max_value_bytes):
                    stopped = item
                    break
                held.append(item)
                pairs[n].key = <const unsigned char*>PyBytes_AS_STRING(key)
                pairs[n].key_len = <size_t>PyBytes_GET_SIZE(key)
                pairs[n].value = <const unsigned char*>PyBytes_AS_STRING(value)
                pairs[n].value_len = <size_t>PyBytes_GET_SIZE(value)
                n += 1
            has_last = last is not None
            if has_last:
                last_p = <const unsigned char*>PyBytes_AS_STRING(last)
                last_len = <size_t>PyBytes_GET_SIZE(last)
            with nogil:
                done = append_chunk(builder, pairs, n, last_p, last_len, has_last,
                                    ikey, tag_p)
            added += done
            if done > 0:
                if first is None:
                    first = <object>PyTuple_GET_ITEM(held[0], 0)
                last = <object>PyTuple_GET_ITEM(held[done - 1], 0)
            if done < n:
                # This pair came before any failure of the iterator: its
                # error is the one a loop of add() calls would have met.
                error = None
                if builder.error or builder.refused:
                    try:
                        builder.raise_error()
                    except BaseException as exc:
                        error = exc
                else:
                    stopped = held[done]     # out of order or repeated: add() says which
                break
    finally:
        free(pairs)
        free(ikey)
    return added, first, last, stopped, error
