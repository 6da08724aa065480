"""Counters and gauges of one database: the figures behind conn.stats().

Stats belong to a connection's engine (no module-level state).  Counters
are plain integer attributes bumped under the engine's locks or by one
thread; reading them without a lock gives a value that was true at some
moment, which is all monitoring needs.

level_figures() derives the per-level figures (files, bytes, read and
write amplification, compaction debt) from a Version; stats_line() is the
LOG line that stats_interval writes.  The Prometheus rendering lives in
kvcy/metrics.py; prometheus_text() here is its entry point for a stats dict.
"""
import json

from kvcy._latency import LatencyHistogram
from kvcy.compaction_picker import max_bytes_for_level


class Stats:
    COUNTERS = (
        "puts", "deletes", "gets", "batches", "batch_entries",
        "bytes_written",
        "wal_records", "wal_bytes", "wal_syncs", "group_commits", "grouped_writes",
        "recovered_records", "recovered_logs", "torn_tail_bytes", "dropped_bytes",
        "memtable_switches", "flushes", "flush_bytes",
        "compactions", "compaction_bytes_read", "compaction_bytes_written",
        "compaction_entries_dropped", "compaction_entries_expired", "trivial_moves",
        "stalls", "slowdowns", "stall_seconds",
    )

    def __init__(self):
        for name in self.COUNTERS:
            setattr(self, name, 0)
        # Every flush and compaction is timed (they take milliseconds or more).
        self.flush_latency = LatencyHistogram("flush")
        self.compaction_latency = LatencyHistogram("compaction")
        # {output level: table bytes compactions wrote into it}, for the
        # per-level write amplification (flushes write level 0: flush_bytes).
        self.level_bytes_written = {}

    def add_level_write(self, level, nbytes):
        """Count nbytes of tables a compaction wrote into level."""
        self.level_bytes_written[level] = self.level_bytes_written.get(level, 0) + nbytes

    def as_dict(self):
        return {name: getattr(self, name) for name in self.COUNTERS}


# Counters of a stats dict that do not come from Stats (the engine's caches).
CACHE_COUNTERS = ("block_cache_hits", "block_cache_misses",
                  "row_cache_hits", "row_cache_misses")

# Every key of a stats dict that only grows.
COUNTER_KEYS = frozenset(Stats.COUNTERS + CACHE_COUNTERS)


def level_figures(version, options, stats, user_bytes, memtables):
    """([per-level dict], totals dict) for stats()["levels"] and the totals.

    files, bytes: the tables of the level now.
    read_amplification: tables a point lookup may have to probe in the
      level (every level-0 table; one table of a deeper non-empty level).
      The total adds the memtables, which every lookup probes first.
    write_amplification: table bytes written into the level (flushes for
      level 0, compactions below) per key-and-value byte the connection
      wrote (user_bytes), since it opened; 0.0 before any write.  The total
      is their sum (the WAL is not counted).
    compaction_debt_bytes: bytes compaction has to move out of the level
      before it is within its target again: all of level 0 once it holds
      level0_compaction_trigger tables, and for a deeper level what it holds
      beyond its target size; the last level has none.
    """
    levels = []
    deepest = len(version.files) - 1
    for level in range(len(version.files)):
        files = version.num_files(level)
        size = version.level_bytes(level)
        if level == 0:
            written = stats.flush_bytes
            probes = files
            debt = size if files >= options.level0_compaction_trigger else 0
        else:
            written = stats.level_bytes_written.get(level, 0)
            probes = 1 if files else 0
            debt = (max(0, size - max_bytes_for_level(options, level))
                    if level < deepest else 0)
        levels.append({
            "level": level, "files": files, "bytes": size,
            "read_amplification": probes,
            "write_amplification": round(written / user_bytes, 3) if user_bytes else 0.0,
            "compaction_debt_bytes": debt,
        })
    totals = {
        "read_amplification": memtables + sum(f["read_amplification"] for f in levels),
        "write_amplification": round(sum(f["write_amplification"] for f in levels), 3),
        "compaction_debt_bytes": sum(f["compaction_debt_bytes"] for f in levels),
    }
    return levels, totals


def stats_line(values):
    """The LOG line of a stats dict: "stats " and the dict as compact JSON,
    keys sorted, so that `grep ' stats {' LOG` and a JSON reader recover it."""
    return "stats " + json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)


def prometheus_text(values, prefix="kvcy"):
    """Prometheus text format (version 0.0.4) of a stats dict, or of a
    Connection (then the latency figures are histograms; see kvcy/metrics.py).

    Keys in COUNTER_KEYS are counters (with the conventional _total
    suffix), other numbers gauges, stats()["levels"] gauges with a `level`
    label, stats()["latency"] a summary with an `operation` label; a text
    value (an error) is a gauge of 1 with the text as a `message` label, 0
    while it is None.
    """
    from kvcy.metrics import render          # metrics imports this module
    return render(values, prefix)
