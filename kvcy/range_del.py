"""Range tombstones in the Version: compaction's view, cleanup, conflicts, ingest.

conn.delete_range(start, stop) writes one batch entry of kind
KIND_RANGE_DELETE (kvcy/_write_batch.pxd) that takes one sequence number T.
It deletes every entry of a key in [start, stop) whose sequence is below T,
for every reader whose sequence is at least T.  Its life:

* the write path puts it in the memtable's range_dels (not the skiplist)
  and publishes a read state holding it before T becomes visible;
* reads fragment the live tombstones once per read state
  (kvcy._range_del.RangeTombstones) and hide covered entries;
* a flush moves the memtable's tombstones into the Version with the
  flush's VersionEdit (NEW_RANGE_DEL); every new MANIFEST's first edit and
  every checkpoint's MANIFEST carry the Version's tombstones;
* compaction drops an entry covered by a Version tombstone with
  entry sequence < T <= the smallest live snapshot (run_compaction_loop);
* a tombstone leaves the Version (DELETED_RANGE_DEL) once T <= the
  smallest snapshot and no live table holds an entry in [start, stop)
  older than T (its smallest_sequence property says so, or a scan of the
  range in the table finds none): it has nothing left to hide
  (obsolete_range_dels below).

Memtables hold only entries newer than the Version's tombstones (a memtable
is flushed whole, oldest first), so only tables need checking.

Thread-safety: functions of immutable inputs; callers hold the locks their
own module docstrings name.
"""
from kvcy._range_del import build_range_tombstones
from kvcy.dbformat import KIND_FOR_SEEK, MAX_SEQUENCE, encode_internal_key


def version_range_tombstones(version):
    """The RangeTombstones of a Version, or None when it holds none."""
    return build_range_tombstones((), version)


def _overlapping_files(version, start, stop):
    for files in version.files:
        for meta in files:
            if meta.smallest_user < stop and meta.largest_user >= start:
                yield meta


def obsolete_range_dels(version, smallest_snapshot, holds_older, near=None):
    """Sequences of the tombstones of version with nothing left to hide.
    near: (lo, hi) user keys, both included: scan tables only for the
    tombstones that meet them (a compaction's key range; None: for every
    tombstone); the others are judged by their tables' properties alone.

    holds_older(meta, start, stop, sequence, scan) -> True iff table meta
    may hold an entry with a user key in [start, stop) older than sequence
    (scan=False: answer from the table's properties alone).
    REQUIRES: version is the Version the result is applied to, or one that
    differs from it by tables whose entries are all newer than every
    tombstone of version (flushes, ingests with a fresh sequence)."""
    out = []
    for start, stop, sequence in version.range_dels:
        if sequence > smallest_snapshot:
            continue
        scan = near is None or (start <= near[1] and near[0] < stop)
        if not any(holds_older(meta, start, stop, sequence, scan)
                   for meta in _overlapping_files(version, start, stop)):
            out.append(sequence)
    return out


def table_holds_older(table, start, stop, sequence, scan=True):
    """True iff table (a kvcy.table.Table) holds an entry with a user key in
    [start, stop) and a sequence below `sequence`.  Cheap when the table's
    smallest_sequence says no; otherwise it scans the range in the table,
    which after compaction dropped the covered entries holds only newer
    ones (scan=False: True without scanning)."""
    if table.properties.smallest_sequence > sequence:
        return False
    if not scan:
        return True
    it = table.iterator()
    it.seek(encode_internal_key(start, MAX_SEQUENCE, KIND_FOR_SEEK))
    while it.valid():
        if it.user_key() >= stop:
            break
        if it.sequence() < sequence:
            return True
        it.next()
    if it.status() is not None:
        raise it.status()
    return False


def overlaps_range_del(range_dels, smallest, largest):
    """True iff a tombstone of range_dels ((start, stop, sequence)) covers a
    key of [smallest, largest] (user keys, both included)."""
    return any(start < stop and start <= largest and smallest < stop
               for start, stop, _ in range_dels)


def range_dels_after(state, since):
    """The live tombstones of a read state written after sequence since."""
    if state.range_dels is None:
        return []
    return [t for t in state.range_dels.tombstones if t[2] > since]


def range_del_conflict(tombstones, keys, ranges):
    """The first (start, stop) of tombstones that covers a key of keys or
    meets a half-open range (lo, hi) of ranges (None: unbounded), or None."""
    for start, stop, _ in tombstones:
        if start >= stop:
            continue
        for key in keys:
            if start <= key < stop:
                return start, stop
        for lo, hi in ranges:
            if (lo is None or lo < stop) and (hi is None or start < hi):
                return start, stop
    return None
