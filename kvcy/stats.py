"""Counters and gauges of one database, and their Prometheus rendering.

Stats belong to a connection's engine (no module-level state).  Counters
are plain integer attributes bumped under the engine's locks or by one
thread; reading them without a lock gives a value that was true at some
moment, which is all monitoring needs.
"""
from kvcy._latency import LatencyHistogram


class Stats:
    COUNTERS = (
        "puts", "deletes", "gets", "batches", "batch_entries",
        "bytes_written",
        "wal_records", "wal_bytes", "wal_syncs", "group_commits", "grouped_writes",
        "recovered_records", "recovered_logs", "torn_tail_bytes", "dropped_bytes",
        "memtable_switches", "flushes", "flush_bytes",
        "compactions", "compaction_bytes_read", "compaction_bytes_written",
        "compaction_entries_dropped", "trivial_moves",
        "stalls", "slowdowns", "stall_seconds",
    )

    def __init__(self):
        for name in self.COUNTERS:
            setattr(self, name, 0)
        # Every flush and compaction is timed (they take milliseconds or more).
        self.flush_latency = LatencyHistogram("flush")
        self.compaction_latency = LatencyHistogram("compaction")

    def as_dict(self):
        return {name: getattr(self, name) for name in self.COUNTERS}


def prometheus_text(values, prefix="kvcy"):
    """Render a flat {name: value} mapping in Prometheus text format.

    Names in Stats.COUNTERS are counters (with the conventional _total
    suffix); other numbers are gauges; a text value (an error) becomes an
    info-style gauge of 1 with the text as a label, 0 when it is None.
    """
    lines = []
    for name in sorted(values):
        value = values[name]
        metric = "%s_%s" % (prefix, name)
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)):
            if name in Stats.COUNTERS:
                lines.append("# TYPE %s_total counter" % metric)
                lines.append("%s_total %s" % (metric, value))
            else:
                lines.append("# TYPE %s gauge" % metric)
                lines.append("%s %s" % (metric, value))
        elif value is None or isinstance(value, str):
            lines.append("# TYPE %s gauge" % metric)
            if value is None:
                lines.append("%s 0" % metric)
            else:
                text = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
                lines.append('%s{message="%s"} 1' % (metric, text))
    return "\n".join(lines) + "\n"
