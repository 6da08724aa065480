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
compaction leaves no expired value behind in its range.

Thread-safety: called with the engine's compaction lock held.
"""
from kvcy.compaction_picker import Compaction, overlapping


def expired_table_plans(version, table_cache, now_micros, start=None, stop=None):
    """In-place rewrite plans, one per table at level >= 1 that overlaps user
    keys [start, stop] (None: unbounded) and holds a value expired at
    now_micros."""
    plans = []
    for level in range(1, len(version.files)):
        for meta in overlapping(version.files[level], start, stop):
            table = table_cache.find_table(meta.number, meta.file_size)
            earliest = table.properties.earliest_expiry
            if earliest and earliest <= now_micros:
                grandparents = (overlapping(version.files[level + 1], meta.smallest_user,
                                            meta.largest_user)
                                if level + 1 < len(version.files) else [])
                plans.append(Compaction(level, [meta], [], grandparents,
                                        "expired values L%d" % level, in_place=True))
    return plans
