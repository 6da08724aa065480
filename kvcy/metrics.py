"""Prometheus metrics of a connection, through prometheus-client.

stats_families() turns one stats() dict into metric families named after
Prometheus conventions (kvcy_<key>_total counters, kvcy_<key> gauges,
per-level gauges with a `level` label); ConnectionCollector adds the C
latency histograms of kvcy/_latency.pyx as Prometheus histograms
(kvcy_latency_seconds{operation=...}) and is what a registry scrapes.
MetricsServer serves one connection's collector over HTTP with its own
registry (never the process-wide default one), on 127.0.0.1 unless told
otherwise; it answers GET with the metrics and nothing else.

Thread-safety: a scrape runs in the HTTP server's thread and reads the
engine's counters without locks (see kvcy/stats.py), the histograms with
the GIL held.  The collector keeps only a weak reference to its
connection, so a forgotten connection can still be garbage-collected.
"""
import os
import weakref

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, SummaryMetricFamily)
from prometheus_client.utils import floatToGoString

from kvcy.errors import OperationalError, ProgrammingError
from kvcy.stats import COUNTER_KEYS

# Upper bounds (seconds) of the exported latency buckets: 1 us to 10 s in
# 1-2-5 steps.  The C histograms have 368 fine buckets (12.5% wide); each
# fine bucket is counted under the first bound at or above its upper edge,
# so a count "le" a bound never includes a latency above it.
LATENCY_BOUNDS = tuple(float("%de%d" % (m, e)) for e in range(-6, 1) for m in (1, 2, 5)) + (10.0,)

LEVEL_FIGURES = ("files", "bytes", "read_amplification", "write_amplification",
                 "compaction_debt_bytes")
_LEVEL_KEYS = frozenset("level%d_%s" % (n, what) for n in range(64) for what in ("files", "bytes"))


def _help(key):
    return 'kvcy stats()["%s"]; see docs/operations.md#stats' % key


def stats_families(values, prefix="kvcy"):
    """The metric families of a stats dict, without the latency figures."""
    families = []
    for key in sorted(values):
        value = values[key]
        if key in ("latency", "levels") or key in _LEVEL_KEYS:
            continue           # below, and as kvcy_level_files / kvcy_level_bytes
        name = "%s_%s" % (prefix, key)
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (int, float)):
            if key in COUNTER_KEYS:
                families.append(CounterMetricFamily(name, _help(key), value=value))
            else:
                families.append(GaugeMetricFamily(name, _help(key), value=value))
        elif value is None:
            families.append(GaugeMetricFamily(name, _help(key) + " (1 once latched)", value=0))
        elif isinstance(value, str):
            g = GaugeMetricFamily(name, _help(key) + " (1 once latched)", labels=["message"])
            g.add_metric([value.replace("\n", " ")], 1)
            families.append(g)
    for what in LEVEL_FIGURES:
        g = GaugeMetricFamily("%s_level_%s" % (prefix, what),
                              'kvcy stats()["levels"][n]["%s"]' % what, labels=["level"])
        for figures in values.get("levels", ()):
            g.add_metric([str(figures["level"])], figures[what])
        families.append(g)
    return families


def latency_summary(latency, prefix="kvcy"):
    """stats()["latency"] (percentiles in microseconds) as one Prometheus
    summary in seconds: what a stats dict has, having no buckets."""
    name = "%s_latency_seconds" % prefix
    s = SummaryMetricFamily(name, "latency of the timed operations, by operation",
                            labels=["operation"])
    for op in sorted(latency):
        figures = latency[op]
        count = figures["samples"]
        for key, q in (("p50", "0.5"), ("p90", "0.9"), ("p99", "0.99"), ("p999", "0.999")):
            s.add_sample(name, {"operation": op, "quantile": q}, figures[key] / 1e6)
        s.add_metric([op], count_value=count, sum_value=figures["mean"] * count / 1e6)
    return s


def cumulative_buckets(histogram, bounds=LATENCY_BOUNDS):
    """([(le, cumulative count)] ending with "+Inf", sum in seconds) of a
    kvcy._latency.LatencyHistogram, coarsened to bounds."""
    fine, total_seconds = histogram.buckets()   # [(exclusive upper edge s, count)], in order
    edges = [edge for edge, _ in fine]
    out = []
    i = seen = 0
    for bound in bounds:
        # Relative slack: edges are computed in ns and divided by 1e9.
        while i < len(edges) and edges[i] <= bound * (1 + 1e-9):
            seen += fine[i][1]
            i += 1
        out.append((floatToGoString(bound), seen))
    out.append(("+Inf", seen + sum(count for _, count in fine[i:])))
    return out, total_seconds


def latency_histograms(histograms, prefix="kvcy"):
    """The C latency histograms as one Prometheus histogram family.  Its
    _count is the operations timed (one in 8 gets, puts and batches, one in
    64 scan steps, every flush and compaction), not every operation."""
    h = HistogramMetricFamily("%s_latency_seconds" % prefix,
                              "latency of the timed operations, by operation",
                              labels=["operation"])
    for histogram in histograms:
        buckets, total = cumulative_buckets(histogram)
        h.add_metric([histogram.name], buckets, total)
    return h


class ConnectionCollector:
    """A prometheus-client collector of one kvcy Connection: its stats()
    figures and latency histograms, read at each scrape.  Yields nothing
    once the connection is closed or gone."""

    def __init__(self, conn, prefix="kvcy"):
        self._conn = weakref.ref(conn)
        self.prefix = prefix

    def collect(self):
        conn = self._conn()
        if conn is None or conn.closed:
            return
        try:
            engine = conn._check()
            values = engine.stats_dict()
            histograms = engine.latency_histograms()
        except ProgrammingError:
            return             # closed between the check and the read
        yield from stats_families(values, self.prefix)
        yield latency_histograms(histograms, self.prefix)


class _StatsDictCollector:
    def __init__(self, values, prefix):
        self.values = values
        self.prefix = prefix

    def collect(self):
        yield from stats_families(self.values, self.prefix)
        if "latency" in self.values:
            yield latency_summary(self.values["latency"], self.prefix)


def render(source, prefix="kvcy"):
    """Prometheus text of a stats dict or of an open Connection."""
    registry = CollectorRegistry(auto_describe=False)
    if isinstance(source, dict):
        registry.register(_StatsDictCollector(source, prefix))
    else:
        source._check()           # a closed connection is an error, not empty text
        registry.register(ConnectionCollector(source, prefix))
    return generate_latest(registry).decode("utf-8")


def _check_port(port):
    if isinstance(port, bool) or not isinstance(port, int):
        raise ProgrammingError("port must be an int, not %s" % type(port).__name__)
    if not 0 <= port <= 65535:
        raise ProgrammingError("port must be in 0..65535 (0: any free port), not %d" % port)


class MetricsServer:
    """An HTTP endpoint serving one connection's metrics (GET, any path;
    other methods get 405).  Started by Connection.serve_metrics(); stopped
    by close(), which the connection's close() calls."""

    def __init__(self, conn, port, addr="127.0.0.1", prefix="kvcy"):
        _check_port(port)
        if not isinstance(addr, str) or not addr:
            raise ProgrammingError("addr must be a host name or address, not %r" % (addr,))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(ConnectionCollector(conn, prefix))
        try:
            self._httpd, self._thread = start_http_server(port, addr, registry=registry)
        except OSError as exc:
            raise OperationalError("cannot serve metrics on %s port %d: %s"
                                   % (addr, port, exc.strerror or exc)) from exc
        self._thread.name = "kvcy-metrics"
        self._pid = os.getpid()
        self.address, self.port = self._httpd.server_address[:2]
        self.closed = False

    @property
    def url(self):
        host = "[%s]" % self.address if ":" in self.address else self.address
        return "http://%s:%d/metrics" % (host, self.port)

    def close(self):
        """Stop serving and free the port; idempotent."""
        if self.closed:
            return
        self.closed = True
        if os.getpid() != self._pid:
            # The child of a fork has no serving thread to wait for; it only
            # drops its copy of the socket, and the parent keeps serving.
            self._httpd.server_close()
            return
        self._httpd.shutdown()          # waits for the serving loop to end
        self._httpd.server_close()
        self._thread.join()

    def __repr__(self):
        return "<kvcy.metrics.MetricsServer %s%s>" % (self.url, " closed" if self.closed else "")
