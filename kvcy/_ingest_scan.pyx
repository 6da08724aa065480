# cython: language_level=3, embedsignature=True
"""The per-entry work of Connection.ingest, in C without the GIL.

check_keys() reads a TableWriter file front to back (kvcy._table_scan:
every block through its CRC32C and structure checks) and checks each key:
the TableWriter tag (sequence 0, kind value) and user keys strictly
increasing.  rewrite_keys() copies such a file's entries into a
TableBuilder with another tag (the sequence the ingest gives the file).
Both stop at the first entry that breaks the rule and hand back its key
and the one before it; kvcy.ingest words the error, naming the file.

Not thread-safe: each call owns its TableRun.  REQUIRES: the Table is
open and not closed during the call.
"""
from libc.stdint cimport uint64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcmp, memcpy
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize

from kvcy._dbformat cimport KIND_VALUE, TAG_BYTES, compare_user_keys
from kvcy._table cimport Table
from kvcy._table_builder cimport TableBuilder
from kvcy._table_scan cimport TableRun, RunState, run_first, run_next

# Why a scan stopped before the end (the first element of the result).
# Not on disk.
SCAN_OK = 0
SCAN_BAD_TAG = 1                 # check_keys: the key's tag is not the TableWriter's
SCAN_NOT_VALUE = 2               # rewrite_keys: the entry is not a value (a deletion)
SCAN_OUT_OF_ORDER = 3            # the user key is not after the one before it
SCAN_SHORT_KEY = 4               # an internal key shorter than its tag

cdef enum:
    C_OK = 0
    C_BAD_TAG = 1
    C_NOT_VALUE = 2
    C_OUT_OF_ORDER = 3
    C_SHORT_KEY = 4
    C_NO_MEMORY = 5
    C_BUILD_FAILED = 6


cdef struct KeyCopy:
    unsigned char* data
    size_t len
    size_t cap


cdef bint key_copy(KeyCopy* k, const unsigned char* p, size_t n) noexcept nogil:
    # k = p[:n]; False when memory runs out.
    cdef unsigned char* grown
    if n > k.cap:
        grown = <unsigned char*>realloc(k.data, n if n > 2 * k.cap else 2 * k.cap)
        if grown == NULL:
            return False
        k.data = grown
        k.cap = n if n > 2 * k.cap else 2 * k.cap
    memcpy(k.data, p, n)
    k.len = n
    return True




cdef int walk(RunState* s, KeyCopy* first, KeyCopy* prev, uint64_t* entries,
              const unsigned char* want_tag, TableBuilder builder,
              const unsigned char* new_tag, KeyCopy* out) noexcept nogil:
    # Step through the run checking each entry; with a builder, append
    # each user key + new_tag to it.  C_* code; run errors leave s.error set
    # (the code is then C_OK and the caller looks at s.error).  On a bad
    # entry, out holds its internal key.
    cdef int r = run_first(s)
    cdef const unsigned char* key
    cdef size_t klen, ulen
    while r > 0:
        key = s.data.key
        klen = s.data.key_len
        if klen < TAG_BYTES:
            key_copy(out, key, klen)
            return C_SHORT_KEY
        ulen = klen - TAG_BYTES
        if want_tag != NULL and memcmp(key + ulen, want_tag, TAG_BYTES) != 0:
            return C_BAD_TAG if key_copy(out, key, klen) else C_NO_MEMORY
        if want_tag == NULL and key[ulen] != KIND_VALUE:
            return C_NOT_VALUE if key_copy(out, key, klen) else C_NO_MEMORY
        if entries[0] > 0 and compare_user_keys(key, ulen, prev.data, prev.len) <= 0:
            return C_OUT_OF_ORDER if key_copy(out, key, klen) else C_NO_MEMORY
        if not key_copy(prev, key, ulen):
            return C_NO_MEMORY
        if entries[0] == 0 and not key_copy(first, key, ulen):
            return C_NO_MEMORY
        if builder is not None:
            if not key_copy(out, key, ulen + TAG_BYTES):
                return C_NO_MEMORY
            memcpy(out.data + ulen, new_tag, TAG_BYTES)
            if builder.append(out.data, ulen + TAG_BYTES, s.data.value, s.data.value_len) < 0:
                return C_BUILD_FAILED
        entries[0] += 1
        r = run_next(s)
    return C_OK


cdef tuple scan(Table table, const unsigned char* want_tag, TableBuilder builder,
                const unsigned char* new_tag):
    cdef TableRun run = TableRun([table])
    cdef KeyCopy first, prev, out
    cdef uint64_t entries = 0
    cdef int code
    first.data = prev.data = out.data = NULL
    first.len = prev.len = out.len = 0
    first.cap = prev.cap = out.cap = 0
    try:
        with nogil:
            code = walk(&run.s, &first, &prev, &entries, want_tag, builder, new_tag, &out)
        if code == C_NO_MEMORY:
            raise MemoryError()
        if code == C_BUILD_FAILED:
            builder.raise_error()
        if run.s.error:
            raise run.error_exception()
        smallest = PyBytes_FromStringAndSize(<const char*>first.data, first.len) if entries else None
        largest = PyBytes_FromStringAndSize(<const char*>prev.data, prev.len) if entries else None
        bad = None
        if code != C_OK:
            bad = PyBytes_FromStringAndSize(<const char*>out.data, out.len)
        # C_* codes C_BAD_TAG..C_SHORT_KEY are the SCAN_* values.
        return code, smallest, largest, entries, bad
    finally:
        run.release()
        free(first.data)
        free(prev.data)
        free(out.data)


def check_keys(Table table not None, bytes tag not None):
    """Scan every entry of table: (status, smallest, largest, entries, bad).

    status is SCAN_OK, or why the scan stopped (SCAN_BAD_TAG: an entry
    without `tag`; SCAN_OUT_OF_ORDER; SCAN_SHORT_KEY) with bad the internal
    key of the entry and largest the user key before it.  smallest and
    largest are user keys (None when no entry was read).  Raises
    CorruptionError (or an I/O error) for a damaged block."""
    if len(tag) != TAG_BYTES:
        raise ValueError("tag must be %d bytes" % TAG_BYTES)
    return scan(table, <const unsigned char*>PyBytes_AS_STRING(tag), None, NULL)


def rewrite_keys(Table table not None, TableBuilder builder not None, bytes tag not None):
    """Append every entry of table to builder as user key + tag: (status,
    smallest, largest, entries, bad), as check_keys, where status may be
    SCAN_NOT_VALUE (an entry that is not a value).  The builder's own
    errors (I/O, no memory) are raised."""
    if len(tag) != TAG_BYTES:
        raise ValueError("tag must be %d bytes" % TAG_BYTES)
    return scan(table, NULL, builder, <const unsigned char*>PyBytes_AS_STRING(tag))
