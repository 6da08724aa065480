"""Running a compaction plan: merge the inputs into new tables one level down.

The inputs (from compaction_picker) are read as sorted runs of tables
(kvcy._table_scan: each level-0 table alone, a deeper level's tables as one
run) by the C loop in kvcy._compaction_loop, which merges them, drops what
no reader can see any more and cuts output tables at target_file_bytes on
user-key boundaries, all without the GIL, so a compaction runs on the
second core beside the writers.  The outputs are written and synced before one VersionEdit
deletes the inputs and adds the outputs; until that edit is in the
MANIFEST the outputs are orphans that the next open deletes, so a crash
mid-compaction loses nothing.  A plan whose single input overlaps nothing
below is applied as a trivial move (the file changes level, no bytes move).
The Version's range tombstones drop the entries they cover (for every
snapshot), and the same edit removes the tombstones that have nothing left
to hide (kvcy/range_del.py).

Thread-safety: run by the background thread (or by compact_range under the
engine's compaction lock); it pins the Version it compacts.  It sees the
database only through a CompactionContext: the parts it reads and writes,
and two callables for what only the engine knows.
"""
import time
from dataclasses import dataclass
from typing import Callable, Any

from kvcy import filename
from kvcy._compaction_loop import run_compaction_loop
from kvcy._expiry import now_micros
from kvcy._table_scan import TableRun
from kvcy._table_builder import TableBuilder
from kvcy.version_edit import FileMetaData, VersionEdit
from kvcy.version_set import internal_sort_key
from kvcy.range_del import obsolete_range_dels, table_holds_older, version_range_tombstones


@dataclass(frozen=True, kw_only=True, slots=True)
class CompactionContext:
    """What a compaction needs of the database it runs in."""

    dbpath: str
    env: Any
    options: Any
    versions: Any                    # VersionSet: file numbers, pending outputs, log_and_apply
    table_cache: Any                 # opens the input tables
    stats: Any
    info_log: Any
    smallest_snapshot: Callable      # () -> sequence of the oldest live snapshot (or the last)
    closing: Callable                # () -> True once the database is closing
    clock: Any = None                # expiry's clock (kvcy/_expiry.pyx): None (real time) or a callable


class _Outputs:
    """Output tables of one compaction: open, finish and sync them."""

    def __init__(self, ctx, level):
        self.ctx = ctx
        self.level = level
        self.files = []           # FileMetaData of finished outputs
        self.numbers = []         # every number taken, finished or not
        self._open = {}           # id(builder) -> (number, file)

    def open(self):
        ctx = self.ctx
        vset = ctx.versions
        with vset.lock:
            number = vset.new_file_number()
            vset.pending_outputs.add(number)
        self.numbers.append(number)
        path = filename.table_file_name(ctx.dbpath, number)
        file = ctx.env.new_writable_file(path)
        builder = TableBuilder(file, ctx.options, path)
        self._open[id(builder)] = (number, file)
        return builder

    def close(self, builder):
        number, file = self._open.pop(id(builder))
        try:
            size = builder.finish()
            file.sync()
        finally:
            file.close()
        props = builder.props
        self.files.append(FileMetaData(number, size, props.smallest, props.largest))

    def abandon(self):
        for number, file in self._open.values():
            try:
                file.close()
            except Exception:
                pass
        self._open.clear()

    def release(self):
        vset = self.ctx.versions
        with vset.lock:
            for number in self.numbers:
                vset.pending_outputs.discard(number)


def _input_runs(table_cache, c):
    """The plan's inputs as TableRuns: each level-0 file alone (they may
    overlap), a deeper level's files as one run in key order."""
    def tables(files):
        return [table_cache.find_table(f.number, f.file_size) for f in files]
    runs = []
    for level, files in ((c.level, c.inputs[0]), (c.level + 1, c.inputs[1])):
        if not files:
            continue
        if level == 0:
            runs.extend(TableRun(tables([f])) for f in files)
        else:
            ordered = sorted(files, key=lambda f: internal_sort_key(f.smallest))
            runs.append(TableRun(tables(ordered)))
    return runs


def _deeper_ranges(version, output_level):
    """For each level below output_level, its files' (smallest, largest)
    user keys in order: where a tombstone may still hide something."""
    return [[(f.smallest_user, f.largest_user) for f in files]
            for files in version.files[output_level + 1:] if files]


def run_compaction(ctx, c, version, allow_move=True):
    """Execute plan c, made from `version`; returns the VersionEdit applied.
    allow_move=False rewrites even a plan that could move its file down."""
    options = ctx.options
    vset = ctx.versions
    stats = ctx.stats
    started = time.monotonic()
    edit = VersionEdit()
    if allow_move and c.is_trivial_move(options):
        meta = c.inputs[0][0]
        edit.delete_file(c.level, meta.number)
        edit.add_file(c.level + 1, meta)
        with vset.lock:
            vset.log_and_apply(edit)
        stats.trivial_moves += 1
        ctx.info_log.log("moved table %06d from level %d to %d (%d bytes)", meta.number,
                            c.level, c.level + 1, meta.file_size)
        return edit
    runs = _input_runs(ctx.table_cache, c)
    smallest_snapshot = ctx.smallest_snapshot()
    outputs = _Outputs(ctx, c.output_level)
    counts = {}
    try:
        # "now" is read once: every expiring value of the inputs is judged
        # against the same instant.
        entries, dropped, stopped = run_compaction_loop(
            runs, smallest_snapshot, _deeper_ranges(version, c.output_level),
            outputs.open, outputs.close, options.target_file_bytes,
            ctx.closing, range_dels=version_range_tombstones(version),
            now_micros=now_micros(ctx.clock), counts=counts)
        if stopped:
            outputs.abandon()
            ctx.info_log.log("compaction %r abandoned: the database is closing", c)
            return None
        if outputs.files:
            ctx.env.sync_dir(ctx.dbpath)   # the outputs' names outlive a power loss
        for level, meta in c.all_inputs():
            edit.delete_file(level, meta.number)
        for meta in outputs.files:
            edit.add_file(c.output_level, meta)
        inputs = [meta for _, meta in c.all_inputs()]
        _drop_obsolete_range_dels(ctx, version.apply(edit), smallest_snapshot, edit,
                                  (min(m.smallest_user for m in inputs),
                                   max(m.largest_user for m in inputs)))
        with vset.lock:
            vset.log_and_apply(edit)
    except BaseException:
        outputs.abandon()
        raise
    finally:
        outputs.release()
    read = c.input_bytes()
    written = sum(f.file_size for f in outputs.files)
    stats.compactions += 1
    stats.compaction_latency.add(time.monotonic() - started)
    stats.compaction_bytes_read += read
    stats.compaction_bytes_written += written
    stats.add_level_write(c.output_level, written)
    stats.compaction_entries_dropped += dropped
    stats.compaction_entries_expired += counts.get("expired", 0)
    ctx.info_log.log("compacted %s: %d entries in, %d dropped, %d bytes -> %d bytes in %d "
                        "tables at level %d, %.3fs", c, entries, dropped, read, written,
                        len(outputs.files), c.output_level, time.monotonic() - started)
    return edit


def _drop_obsolete_range_dels(ctx, version, smallest_snapshot, edit, near=None):
    """Add to edit the removal of version's tombstones with nothing left to
    hide (near: only those meeting that (lo, hi) key range, both included)."""
    if not version.range_dels:
        return
    def holds_older(meta, start, stop, sequence, scan):
        return table_holds_older(ctx.table_cache.find_table(meta.number, meta.file_size),
                                 start, stop, sequence, scan)
    for sequence in obsolete_range_dels(version, smallest_snapshot, holds_older, near):
        edit.delete_range_del(sequence)


def drop_obsolete_range_dels(ctx):
    """Remove the current Version's range tombstones that have nothing left
    to hide, in an edit of their own.  REQUIRES: the compaction lock held
    (no compaction changes the files meanwhile)."""
    version = ctx.versions.current
    edit = VersionEdit()
    _drop_obsolete_range_dels(ctx, version, ctx.smallest_snapshot(), edit)
    if not edit.deleted_range_dels:
        return False
    with ctx.versions.lock:
        ctx.versions.log_and_apply(edit)
    ctx.info_log.log("removed %d range tombstones with nothing left to hide",
                     len(edit.deleted_range_dels))
    return True
