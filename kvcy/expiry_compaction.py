"""Rewriting tables whose expiring values have expired (time to live).

Compactions drop expired values as they merge (kvcy/_compaction_loop.pyx),
but the deepest level holding a key range is only rewritten when a level
above compacts into it, so expired values could stay on disk there for
good.  Every table records the earliest expiry among its expiring values
(table property earliest_expiry, 0 when it holds none); a table whose
earliest expiry has passed holds at least one expired value, and rewriting
it in place (its outputs stay at its level, where they cover no more than
it did) drops the expired entries or turns them into tombstones.

compact_range runs these rewrites after moving the range down, so a manual
compaction leaves no expired value behind in its range.  The background
worker (kvcy/background.py) also runs one when it has no other compaction
to do, looking at most once every EXPIRY_CHECK_SECONDS, and only at tables
already open, so that expired values leave the disk without a manual call.

Thread-safety: called with the engine's compaction lock held.
"""
from kvcy.compaction_picker import Compaction, overlapping

# How often, at most, the background worker looks for tables holding
# expired values when it has nothing else to compact.
EXPIRY_CHECK_SECONDS = 60.0


def expired_table_plans(version, table_cache, now_micros, start=None, stop=None,
                        open_only=False):
    """In-place rewrite plans, one per table at level >= 1 that overlaps user
    keys [start, stop] (None: unbounded) and holds a value expired at
    now_micros.  open_only: look only at tables the table cache has open
    (the background check, which must not open every table it passes)."""
    plans = []
    for level in range(1, len(version.files)):
        for meta in overlapping(version.files[level], start, stop):
            if open_only:
                table = table_cache.open_table(meta.number)
                if table is None:
                    continue
            else:
                table = table_cache.find_table(meta.number, meta.file_size)
            earliest = table.properties.earliest_expiry
            if earliest and earliest <= now_micros:
                grandparents = (overlapping(version.files[level + 1], meta.smallest_user,
                                            meta.largest_user)
                                if level + 1 < len(version.files) else [])
                plans.append(Compaction(level, [meta], [], grandparents,
                                        "expired values L%d" % level, in_place=True))
    return plans
