"""Counters and gauges of one database, and their Prometheus rendering.

Stats belong to a connection's engine (no module-level state).  Counters
are plain integer attributes bumped under the engine's locks or by one
thread; reading them without a lock gives a value that was true at some
moment, which is all monitoring needs.
"""


class Stats:
    COUNTERS = (
        "puts", "deletes", "gets", "get_hits", "batches", "batch_entries",
        "bytes_written", "bytes_read",
        "wal_records", "wal_bytes", "wal_syncs",
        "recovered_records", "recovered_logs", "torn_tail_bytes", "dropped_bytes",
        "memtable_switches", "flushes", "flush_bytes",
        "compactions", "compaction_bytes_read", "compaction_bytes_written",
        "stalls", "stall_seconds",
    )

    def __init__(self):
        for name in self.COUNTERS:
            setattr(self, name, 0)

    def as_dict(self):
        return {name: getattr(self, name) for name in self.COUNTERS}


def prometheus_text(values, prefix="kvcy"):
    """Render a flat {name: number} mapping in Prometheus text format."""
    lines = []
    for name in sorted(values):
        value = values[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        metric = "%s_%s" % (prefix, name)
        lines.append("# TYPE %s %s" % (metric, "gauge"))
        lines.append("%s %s" % (metric, value))
    return "\n".join(lines) + "\n"
