"""kvcy/metrics.py: the prometheus-client collector, the latency histograms
as Prometheus histograms, prometheus_text() and conn.serve_metrics().

The endpoint is scraped over real HTTP and its text parsed with
prometheus-client's own parser, so what is checked is what Prometheus
would read.
"""
import os
import random
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import kvcy
from kvcy._latency import LatencyHistogram
from kvcy.errors import OperationalError, ProgrammingError
from kvcy.metrics import LATENCY_BOUNDS, ConnectionCollector, cumulative_buckets
from kvcy.stats import prometheus_text

OPERATIONS = {"get", "put", "write_batch", "scan_next", "flush", "compaction"}


def scrape(url, method="GET"):
    request = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode("utf-8")


def families(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams, name, sample_name=None, **labels):
    """The value of the one sample of family name (and sample_name) with labels."""
    found = [s.value for s in fams[name].samples
             if (sample_name is None or s.name == sample_name)
             and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, sample_name, labels, found)
    return found[0]


@pytest.fixture
def busy_conn(db_path):
    """A connection that ran every timed kind of operation."""
    conn = kvcy.connect(db_path, memtable_max_bytes=64 * 1024, level0_compaction_trigger=2)
    rng = random.Random(5)
    keys = [b"key-%06d" % rng.randrange(10 ** 6) for _ in range(3000)]
    for k in keys:
        conn.put(k, b"v" * 40)
    for i in range(0, 96, 6):      # 16 batches: one in 8 is timed
        conn.put_many([(b"batch-%d" % j, b"x") for j in range(i, i + 6)])
    for k in keys:
        conn.get(k)
    assert sum(1 for _ in conn.scan()) > 0
    conn.compact_range()
    yield conn
    conn.close()


def test_endpoint_serves_counters_gauges_levels_and_histograms(busy_conn):
    server = busy_conn.serve_metrics(0)
    assert server.address == "127.0.0.1" and server.port > 0
    fams = families(scrape(server.url))
    stats = busy_conn.stats()
    # Counters: typed counter, named with _total, equal to stats().
    assert fams["kvcy_puts"].type == "counter"
    assert value(fams, "kvcy_puts", "kvcy_puts_total") == stats["puts"] == 3000
    assert value(fams, "kvcy_batch_entries", "kvcy_batch_entries_total") == 96
    assert value(fams, "kvcy_block_cache_misses", "kvcy_block_cache_misses_total") >= 1
    assert fams["kvcy_compactions"].type == "counter"
    assert value(fams, "kvcy_compactions", "kvcy_compactions_total") == stats["compactions"] >= 1
    # Gauges.
    assert fams["kvcy_last_sequence"].type == "gauge"
    assert value(fams, "kvcy_last_sequence") == stats["last_sequence"] == 3096
    assert value(fams, "kvcy_write_error") == 0
    # Per-level figures, one sample per level.
    for figure in ("files", "bytes", "read_amplification", "write_amplification",
                   "compaction_debt_bytes"):
        fam = fams["kvcy_level_" + figure]
        assert fam.type == "gauge"
        assert {s.labels["level"] for s in fam.samples} == {str(n) for n in range(7)}
    for level in stats["levels"]:
        assert value(fams, "kvcy_level_files", level=str(level["level"])) == level["files"]
        assert value(fams, "kvcy_level_bytes", level=str(level["level"])) == level["bytes"]
    assert value(fams, "kvcy_read_amplification") == stats["read_amplification"]
    # Latency: one histogram per operation, cumulative, ending in +Inf == _count.
    latency = fams["kvcy_latency_seconds"]
    assert latency.type == "histogram"
    for op in OPERATIONS:
        buckets = [(s.labels["le"], s.value) for s in latency.samples
                   if s.name == "kvcy_latency_seconds_bucket" and s.labels["operation"] == op]
        assert [float(le) for le, _ in buckets] == list(LATENCY_BOUNDS) + [float("inf")]
        counts = [c for _, c in buckets]
        assert counts == sorted(counts)
        count = value(fams, "kvcy_latency_seconds", "kvcy_latency_seconds_count", operation=op)
        assert counts[-1] == count == stats["latency"][op]["samples"] > 0
        total = value(fams, "kvcy_latency_seconds", "kvcy_latency_seconds_sum", operation=op)
        assert total == pytest.approx(stats["latency"][op]["mean"] * count / 1e6, rel=0.01,
                                      abs=1e-6)
    # One get in 8 is timed.
    assert value(fams, "kvcy_latency_seconds", "kvcy_latency_seconds_count",
                 operation="get") == stats["gets"] // 8


def test_endpoint_serves_no_data_and_no_write_path(db_path):
    with kvcy.connect(db_path) as conn:
        conn.put(b"secret-key", b"secret-value")
        server = conn.serve_metrics(0)
        for path in ("/metrics", "/", "/secret-key", "/?name[]=kvcy_puts_total"):
            body = scrape("http://127.0.0.1:%d%s" % (server.port, path))
            assert "secret" not in body
        for method in ("POST", "PUT", "DELETE"):
            with pytest.raises(urllib.error.HTTPError) as info:
                scrape(server.url, method=method)
            assert info.value.code == 405
        assert conn.get(b"secret-key") == b"secret-value"
        assert conn.stats()["puts"] == 1


def test_endpoint_stops_when_the_connection_closes(db_path):
    conn = kvcy.connect(db_path)
    server = conn.serve_metrics(0)
    assert "kvcy_puts_total 0.0" in scrape(server.url)
    conn.close()
    assert server.closed
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()


def test_closing_in_a_forked_child_leaves_the_parent_serving(db_path):
    with kvcy.connect(db_path) as conn:
        server = conn.serve_metrics(0)
        pid = os.fork()
        if pid == 0:                      # the child: close must not hang or stop the parent
            try:
                conn.close()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert "kvcy_puts_total" in scrape(server.url)


def test_serve_metrics_arguments_and_state(db_path, tmp_path):
    with kvcy.connect(db_path) as conn:
        for bad in ("9100", 9100.0, True, -1, 65536):
            with pytest.raises(ProgrammingError, match="port"):
                conn.serve_metrics(bad)
        with pytest.raises(ProgrammingError, match="addr"):
            conn.serve_metrics(0, addr="")
        server = conn.serve_metrics(0, addr="localhost")
        with pytest.raises(ProgrammingError, match="already serves its metrics at"):
            conn.serve_metrics(0)
        with kvcy.connect(str(tmp_path / "other")) as other:
            with pytest.raises(OperationalError, match="cannot serve metrics on 127.0.0.1 port"):
                other.serve_metrics(server.port)
        server.close()
        server.close()                    # idempotent
        again = conn.serve_metrics(0)     # a closed server can be replaced
        assert scrape(again.url)
    with pytest.raises(ProgrammingError, match="closed"):
        conn.serve_metrics(0)


def test_read_only_connection_serves_its_metrics(db_path):
    with kvcy.connect(db_path) as conn:
        conn.put(b"a", b"1")
    with kvcy.connect(db_path, readonly=True) as ro:
        ro.get(b"a")
        fams = families(scrape(ro.serve_metrics(0).url))
        assert value(fams, "kvcy_gets", "kvcy_gets_total") == 1
        assert value(fams, "kvcy_last_sequence") == 1


def test_collector_yields_nothing_once_the_connection_is_closed_or_gone(db_path):
    conn = kvcy.connect(db_path)
    collector = ConnectionCollector(conn)
    assert {f.name for f in collector.collect()} >= {"kvcy_puts", "kvcy_latency_seconds"}
    conn.close()
    assert list(collector.collect()) == []
    del conn                                  # a weak reference: the connection can go
    assert collector._conn() is None and list(collector.collect()) == []


def test_cumulative_buckets_never_count_a_latency_above_its_bound():
    h = LatencyHistogram("x")
    for seconds in (0.5e-6, 1.5e-6, 3e-6, 0.9e-3, 20.0):
        h.add(seconds)
    buckets, total = cumulative_buckets(h)
    got = dict(buckets)
    assert (got["1e-06"], got["2e-06"], got["5e-06"], got["0.0005"], got["0.001"],
            got["10.0"], got["+Inf"]) == (1, 2, 3, 3, 4, 4, 5)
    assert total == pytest.approx(20.0009050, rel=1e-6)
    # Latencies above the largest bound (10 s) are counted under +Inf only.
    h = LatencyHistogram("slow")
    for seconds in (0.5, 20.0, 40.0, 3000.0):
        h.add(seconds)
    assert cumulative_buckets(h)[0][-3:] == [("5.0", 1), ("10.0", 1), ("+Inf", 4)]
    h = LatencyHistogram("slower")
    for seconds in (40.0, 3000.0):
        h.add(seconds)
    assert [count for _, count in cumulative_buckets(h)[0]] == [0] * len(LATENCY_BOUNDS) + [2]
    # Random latencies: a bound counts every latency 12.5% or more below it
    # and none above it.
    rng = random.Random(3)
    values = [rng.lognormvariate(-9, 3) for _ in range(5000)]
    h = LatencyHistogram("y")
    for v in values:
        h.add(v)
    buckets, _ = cumulative_buckets(h)
    for le, count in buckets[:-1]:
        bound = float(le)
        assert sum(v <= bound / 1.125 for v in values) <= count <= sum(v <= bound for v in values)
    assert buckets[-1] == ("+Inf", len(values))


def test_prometheus_text_of_a_stats_dict(busy_conn):
    stats = busy_conn.stats()
    stats["background_error"] = 'disk "full"\nreally'
    fams = families(prometheus_text(stats))
    assert value(fams, "kvcy_flushes", "kvcy_flushes_total") == stats["flushes"]
    assert value(fams, "kvcy_background_error", message='disk "full" really') == 1
    assert value(fams, "kvcy_level_files", level="1") == stats["level1_files"]
    assert "kvcy_level1_files" not in fams        # only the labelled family
    # The dict has percentiles, not buckets: a summary, in seconds.
    latency = fams["kvcy_latency_seconds"]
    assert latency.type == "summary"
    get = stats["latency"]["get"]
    assert value(fams, "kvcy_latency_seconds", operation="get", quantile="0.99") == \
        pytest.approx(get["p99"] / 1e6)
    assert value(fams, "kvcy_latency_seconds", "kvcy_latency_seconds_count",
                 operation="get") == get["samples"]
    assert families(prometheus_text(stats, prefix="db1"))["db1_puts"].type == "counter"


def test_prometheus_text_of_a_connection_has_histograms(busy_conn, db_path):
    fams = families(prometheus_text(busy_conn))
    assert fams["kvcy_latency_seconds"].type == "histogram"
    assert value(fams, "kvcy_puts", "kvcy_puts_total") == 3000
    busy_conn.close()
    with pytest.raises(ProgrammingError, match="closed"):
        prometheus_text(busy_conn)
