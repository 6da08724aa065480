# cython: language_level=3, embedsignature=True
"""The inner loop of a compaction, in C: merge, drop, cut output files.

Walks a merged stream of internal entries (newest first per user key) and
decides for each entry, without creating Python objects:
  * an entry is dropped when a newer entry of the same user key exists that
    every live snapshot can see (its sequence <= smallest_snapshot): no
    reader can ever see the older one again;
  * a tombstone is dropped when it is itself visible to every snapshot and
    no deeper level may hold the key (is_base_level(user_key), a Python
    callback called once per such tombstone), since there is nothing left
    for it to hide;
  * everything else goes to the current output table.
An output table is closed once it reaches target_file_bytes, but only
between two user keys, so every version of a user key lands in one file and
files of a level never share a user key.  Python is called back to open and
close output files and, every few thousand entries, to ask whether to stop
(the database is closing).
"""
from libc.stdint cimport uint64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize

from kvcy._coding cimport load_fixed64
from kvcy._dbformat cimport KIND_DELETE, MAX_SEQUENCE, compare_user_keys
from kvcy._iterator cimport InternalIterator
from kvcy._table_builder cimport TableBuilder

cdef enum:
    STOP_CHECK_ENTRIES = 4096


def run_compaction_loop(InternalIterator it not None, uint64_t smallest_snapshot,
                        is_base_level, open_output, close_output,
                        uint64_t target_file_bytes, should_stop=None):
    """Merge it into output tables; returns (entries_in, entries_dropped, stopped).

    open_output() -> TableBuilder; close_output(builder) finishes and records
    it.  is_base_level(user_key) -> True iff no level below the output may
    hold user_key.  should_stop() -> True to abandon the compaction.
    """
    cdef unsigned char* cur = NULL          # the current user key
    cdef size_t cur_len = 0, cur_cap = 0
    cdef bint has_current = False
    cdef uint64_t last_seq_for_key = MAX_SEQUENCE + 1
    cdef uint64_t tag, seq
    cdef const unsigned char* key
    cdef size_t klen, ulen
    cdef unsigned char* grown
    cdef TableBuilder builder = None
    cdef unsigned long long entries = 0, dropped = 0
    cdef bint drop, stopped = False
    try:
        it.c_seek_to_first()
        while it.is_valid():
            key = it.key_ptr()
            klen = it.key_len()
            if klen < 8:
                raise ValueError("internal key shorter than its tag")
            ulen = klen - 8
            tag = load_fixed64(key + ulen)
            seq = tag >> 8
            entries += 1
            if not has_current or compare_user_keys(key, ulen, cur, cur_len) != 0:
                if ulen > cur_cap:
                    grown = <unsigned char*>realloc(cur, ulen + 64)
                    if grown == NULL:
                        raise MemoryError()
                    cur = grown
                    cur_cap = ulen + 64
                if ulen:
                    memcpy(cur, key, ulen)
                cur_len = ulen
                has_current = True
                last_seq_for_key = MAX_SEQUENCE + 1
                # A user-key boundary: the only place an output may end.
                if builder is not None and builder.offset >= target_file_bytes:
                    close_output(builder)
                    builder = None
                if should_stop is not None and entries % STOP_CHECK_ENTRIES == 0 and should_stop():
                    stopped = True
                    break
            drop = False
            if last_seq_for_key <= smallest_snapshot:
                drop = True                  # shadowed by a newer entry every snapshot sees
            elif ((tag & 0xFF) == KIND_DELETE and seq <= smallest_snapshot
                  and is_base_level(PyBytes_FromStringAndSize(<const char*>key, ulen))):
                drop = True                  # nothing below for the tombstone to hide
            last_seq_for_key = seq
            if drop:
                dropped += 1
            else:
                if builder is None:
                    builder = open_output()
                builder.add_raw(key, klen, it.value_ptr(), it.value_len())
            it.c_next()
        if builder is not None and not stopped:
            close_output(builder)
            builder = None
        return entries, dropped, stopped
    finally:
        free(cur)
