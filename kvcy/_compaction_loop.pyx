# cython: language_level=3, embedsignature=True
"""The inner loop of a compaction, in C and without the GIL: merge, drop, cut.

Merges the input runs (kvcy._table_scan: each level-0 table alone, a deeper
level's tables as one run) into one stream of internal entries, newest first
per user key, and decides for each entry:
  * an entry is dropped when a newer entry of the same user key exists that
    every live snapshot can see (its sequence <= smallest_snapshot): no
    reader can ever see the older one again;
  * a tombstone is dropped when it is itself visible to every snapshot and
    no level below the output holds a file whose range includes its key,
    since there is nothing left for it to hide (checked in C against the
    deeper levels' key ranges, with one cursor per level that only moves
    forward, as the keys do: LevelDB's IsBaseLevelForKey);
  * an entry is dropped when a range tombstone of the Version covers its
    key with a sequence above the entry's and at most smallest_snapshot
    (the same rule for a range as for a point tombstone);
  * an expiring value whose expiry is at or before `now_micros` (the clock
    read once when the compaction starts; kvcy/_expiry.pyx) is a tombstone
    of its sequence: dropped where a tombstone would be, else written out
    as one, so it keeps hiding the older versions below it;
  * everything else goes to the current output table (TableBuilder.append,
    which builds, compresses, checksums and writes blocks without the GIL).
An output table is closed once it reaches target_file_bytes, but only
between two user keys, so every version of a user key lands in one file and
files of a level never share a user key.

The GIL is taken only to open and close an output file (Python callbacks),
for a block that must be read through a Python file object, and about every
STOP_CHECK_SECONDS to ask whether to stop (the database is closing).  With
few inputs a linear scan for the smallest key beats a heap (LevelDB's
MergingIterator does the same).
"""
from libc.stdint cimport uint64_t
from libc.stdlib cimport malloc, free
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from kvcy._byte_buffer cimport Buf, buf_assign, buf_free, buf_seek_key
from kvcy._coding cimport load_fixed64
from kvcy._expiry cimport EXPIRY_BYTES, is_expired
from kvcy._dbformat cimport (KIND_DELETE, KIND_EXPIRING_VALUE, MAX_SEQUENCE, TAG_BYTES,
                             pack_tag, compare_user_keys,
                             compare_internal)
from kvcy._table_builder cimport TableBuilder
from kvcy._table_scan cimport TableRun, RunState, run_first, run_next
from kvcy._range_del cimport RangeTombstones

cdef enum:
    STOP_CHECK_ENTRIES = 4096    # look at the clock this often

cdef double STOP_CHECK_SECONDS = 0.1


# The key ranges of one level below the output, for the tombstone rule.
cdef struct LevelRanges:
    const unsigned char** smallest   # user keys (bytes kept alive by the caller's lists)
    size_t* smallest_len
    const unsigned char** largest
    size_t* largest_len
    size_t count
    size_t cursor                    # first file whose largest key >= the last key asked


cdef bint is_base_level(LevelRanges* levels, size_t n, const unsigned char* ukey,
                        size_t ulen) noexcept nogil:
    # True iff no deeper level has a file whose range includes ukey.
    # REQUIRES: successive calls ask for non-decreasing keys.
    cdef size_t i
    cdef LevelRanges* lv
    for i in range(n):
        lv = &levels[i]
        while lv.cursor < lv.count and compare_user_keys(
                lv.largest[lv.cursor], lv.largest_len[lv.cursor], ukey, ulen) < 0:
            lv.cursor += 1
        if lv.cursor < lv.count and compare_user_keys(
                lv.smallest[lv.cursor], lv.smallest_len[lv.cursor], ukey, ulen) <= 0:
            return False
    return True


cdef double now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline int pick_smallest(RunState** runs, size_t n) noexcept nogil:
    # Index of the run on the smallest internal key, -1 when all ended.
    cdef int best = -1
    cdef size_t i
    cdef RunState* b = NULL
    cdef RunState* r
    for i in range(n):
        r = runs[i]
        if not r.valid:
            continue
        if b == NULL or compare_internal(
                r.data.key, r.data.key_len - TAG_BYTES,
                load_fixed64(r.data.key + r.data.key_len - TAG_BYTES),
                b.data.key, b.data.key_len - TAG_BYTES,
                load_fixed64(b.data.key + b.data.key_len - TAG_BYTES)) < 0:
            best = <int>i
            b = r
    return best


def run_compaction_loop(list runs not None, uint64_t smallest_snapshot, list deeper_levels not None,
                        open_output, close_output, uint64_t target_file_bytes,
                        should_stop=None, double stop_check_seconds=STOP_CHECK_SECONDS,
                        RangeTombstones range_dels=None,
                        uint64_t now_micros=0, dict counts=None):
    """Merge the TableRuns into output tables; returns (entries_in,
    entries_dropped, stopped).

    now_micros: expiring values with an expiry at or before it are
    tombstones (0: none is).  counts, when given, gets "expired": how many
    expiring values this compaction turned into tombstones or dropped as
    such (shadowed ones are counted as dropped only).

    deeper_levels: for each level below the output, a list of
    (smallest_user_key, largest_user_key) bytes pairs of its files in key
    order.  open_output() -> TableBuilder; close_output(builder) finishes
    and records it.  should_stop() -> True to abandon the compaction; it is
    asked at a user-key boundary at most every stop_check_seconds.
    range_dels: the Version's range tombstones (None: none).
    """
    cdef size_t nruns = len(runs), nlevels = len(deeper_levels), i, j, nfiles
    cdef RunState** states = <RunState**>malloc((nruns or 1) * sizeof(RunState*))
    cdef LevelRanges* levels = <LevelRanges*>malloc((nlevels or 1) * sizeof(LevelRanges))
    cdef LevelRanges* lv
    cdef RunState* src
    cdef Buf cur = Buf(NULL, 0, 0)          # the current user key
    cdef Buf tomb = Buf(NULL, 0, 0)         # an expired value's key, retagged as a tombstone
    cdef bint is_tombstone, expired_entry
    cdef unsigned long long expired = 0
    cdef bint has_current = False
    cdef uint64_t last_seq_for_key = MAX_SEQUENCE + 1
    cdef uint64_t tag, seq
    cdef const unsigned char* key
    cdef size_t klen, ulen
    cdef TableBuilder builder = None
    cdef unsigned long long entries = 0, dropped = 0, since_check = 0
    cdef bint drop, stopped = False, no_memory = False, check_stop = should_stop is not None
    cdef int best, r
    cdef double last_check
    cdef TableRun failed_run = None
    cdef object exc = None
    if states == NULL or levels == NULL:
        free(states)
        free(levels)
        raise MemoryError()
    for j in range(nlevels):
        levels[j].smallest = levels[j].largest = NULL
        levels[j].smallest_len = levels[j].largest_len = NULL
    try:
        for i in range(nruns):
            states[i] = &(<TableRun?>runs[i]).s
        for j in range(nlevels):
            files = deeper_levels[j]
            nfiles = len(files)
            lv = &levels[j]
            lv.cursor = 0
            lv.smallest = <const unsigned char**>malloc((nfiles or 1) * sizeof(void*))
            lv.largest = <const unsigned char**>malloc((nfiles or 1) * sizeof(void*))
            lv.smallest_len = <size_t*>malloc((nfiles or 1) * sizeof(size_t))
            lv.largest_len = <size_t*>malloc((nfiles or 1) * sizeof(size_t))
            lv.count = nfiles
            if (lv.smallest == NULL or lv.largest == NULL or lv.smallest_len == NULL
                    or lv.largest_len == NULL):
                raise MemoryError()
            for i in range(nfiles):
                small, large = files[i]
                lv.smallest[i] = <const unsigned char*>PyBytes_AS_STRING(<bytes?>small)
                lv.smallest_len[i] = PyBytes_GET_SIZE(small)
                lv.largest[i] = <const unsigned char*>PyBytes_AS_STRING(<bytes?>large)
                lv.largest_len[i] = PyBytes_GET_SIZE(large)
        with nogil:
            last_check = now()
            for i in range(nruns):
                if run_first(states[i]) < 0:
                    with gil:
                        failed_run = <TableRun>runs[i]
                    break
            while failed_run is None:
                best = pick_smallest(states, nruns)
                if best < 0:
                    break
                src = states[best]
                key = src.data.key
                klen = src.data.key_len
                ulen = klen - TAG_BYTES
                tag = load_fixed64(key + ulen)
                seq = tag >> 8
                entries += 1
                since_check += 1
                if not has_current or compare_user_keys(key, ulen, cur.data, cur.len) != 0:
                    if buf_assign(&cur, key, ulen) < 0:
                        no_memory = True
                        break
                    has_current = True
                    last_seq_for_key = MAX_SEQUENCE + 1
                    # A user-key boundary: the only place an output may end.
                    if builder is not None and builder.offset >= target_file_bytes:
                        with gil:
                            try:
                                close_output(builder)
                            except BaseException as e:
                                exc = e
                            builder = None
                        if exc is not None:
                            break
                    # (A count since the last look, not entries % N: with two
                    # versions per key the boundaries would all be odd.)
                    if check_stop and since_check >= STOP_CHECK_ENTRIES:
                        since_check = 0
                        if now() - last_check >= stop_check_seconds:
                            last_check = now()
                            with gil:
                                try:
                                    stopped = bool(should_stop())
                                except BaseException as e:
                                    exc = e
                            if stopped or exc is not None:
                                break
                drop = False
                is_tombstone = (tag & 0xFF) == KIND_DELETE
                # Expired entries are invisible to every reader, whatever its
                # snapshot, so one may stand in for a tombstone of its sequence.
                expired_entry = ((tag & 0xFF) == KIND_EXPIRING_VALUE and now_micros != 0
                                 and src.data.value_len >= EXPIRY_BYTES
                                 and is_expired(src.data.value, now_micros))
                if last_seq_for_key <= smallest_snapshot:
                    drop = True              # shadowed by a newer entry every snapshot sees
                elif ((is_tombstone or expired_entry) and seq <= smallest_snapshot
                      and is_base_level(levels, nlevels, key, ulen)):
                    drop = True              # nothing below for the tombstone to hide
                elif (range_dels is not None
                      and range_dels.covering(key, ulen, smallest_snapshot) > seq):
                    drop = True              # deleted by a range every snapshot sees
                if expired_entry and not last_seq_for_key <= smallest_snapshot:
                    expired += 1
                last_seq_for_key = seq
                if drop:
                    dropped += 1
                else:
                    if builder is None:
                        with gil:
                            try:
                                builder = open_output()
                                if builder is None:
                                    raise TypeError("open_output() returned None")
                            except BaseException as e:
                                exc = e
                                builder = None
                        if exc is not None:
                            break
                    if expired_entry:
                        if buf_seek_key(&tomb, key, ulen, pack_tag(seq, KIND_DELETE)) < 0:
                            no_memory = True
                            break
                        r = builder.append(tomb.data, tomb.len, NULL, 0)
                    else:
                        r = builder.append(key, klen, src.data.value, src.data.value_len)
                    if r < 0:
                        with gil:
                            try:
                                builder.raise_error()
                            except BaseException as e:
                                exc = e
                        break
                r = run_next(src)
                if r < 0:
                    with gil:
                        failed_run = <TableRun>runs[best]
                    break
        if exc is not None:
            raise exc
        if failed_run is not None:
            raise failed_run.error_exception()
        if no_memory:
            raise MemoryError()
        if builder is not None and not stopped:
            close_output(builder)
            builder = None
        if counts is not None:
            counts["expired"] = expired
        return entries, dropped, stopped
    finally:
        # Give back the blocks the runs hold now, not when the runs are
        # collected (a traceback may keep them alive for long).
        for run in runs:
            if isinstance(run, TableRun):
                (<TableRun>run).release()
        buf_free(&cur)
        buf_free(&tomb)
        for j in range(nlevels):
            free(levels[j].smallest)
            free(levels[j].largest)
            free(levels[j].smallest_len)
            free(levels[j].largest_len)
        free(levels)
        free(states)
