"""kvcy/stats.py: the per-level figures, the stats line and the
stats_interval timer that writes it to the LOG."""
import json
import os
import random
import re
import time
from types import SimpleNamespace

import pytest

import kvcy
from kvcy.options import Options
from kvcy.stats import Stats, level_figures, stats_line
from kvcy.version_set import Version

MIB = 1024 * 1024


def fake_version(sizes_by_level):
    """A Version whose files are stand-ins with only file_size."""
    return Version([[SimpleNamespace(file_size=size) for size in sizes]
                    for sizes in sizes_by_level], len(sizes_by_level))


def test_level_figures_by_their_definitions():
    options = Options(level0_compaction_trigger=2, level0_slowdown_trigger=2,
                      level0_stop_trigger=2, level1_max_bytes=10 * MIB,
                      level_size_multiplier=10, max_levels=4)
    stats = Stats()
    stats.flush_bytes = 3 * MIB
    stats.add_level_write(1, 4 * MIB)
    stats.add_level_write(1, 2 * MIB)
    stats.add_level_write(3, 1 * MIB)
    version = fake_version([[MIB, MIB], [6 * MIB, 6 * MIB], [], [50 * MIB, 80 * MIB]])
    levels, totals = level_figures(version, options, stats, user_bytes=2 * MIB, memtables=2)
    assert [f["level"] for f in levels] == [0, 1, 2, 3]
    assert [f["files"] for f in levels] == [2, 2, 0, 2]
    assert [f["bytes"] for f in levels] == [2 * MIB, 12 * MIB, 0, 130 * MIB]
    # Every level-0 table, one table per other non-empty level.
    assert [f["read_amplification"] for f in levels] == [2, 1, 0, 1]
    assert totals["read_amplification"] == 2 + 4
    # Table bytes written into the level per user byte.
    assert [f["write_amplification"] for f in levels] == [1.5, 3.0, 0.0, 0.5]
    assert totals["write_amplification"] == 5.0
    # Level 0 at its trigger owes all of it; level 1 owes what is over
    # 10 MiB; the last level owes nothing, whatever its size.
    assert [f["compaction_debt_bytes"] for f in levels] == [2 * MIB, 2 * MIB, 0, 0]
    assert totals["compaction_debt_bytes"] == 4 * MIB
    # Below the trigger level 0 owes nothing; before any write, no amplification.
    levels, totals = level_figures(fake_version([[MIB], [], [], []]), options, Stats(), 0, 1)
    assert levels[0]["compaction_debt_bytes"] == 0
    assert totals == {"read_amplification": 2, "write_amplification": 0.0,
                      "compaction_debt_bytes": 0}


def test_level_figures_of_a_live_database(db_path):
    rng = random.Random(7)
    with kvcy.connect(db_path, memtable_max_bytes=64 * 1024, target_file_bytes=32 * 1024,
                      level0_compaction_trigger=2) as conn:
        for _ in range(4):
            conn.put_many([(b"%08d" % rng.randrange(10 ** 8), rng.randbytes(60))
                           for _ in range(2000)])
        conn.compact_range()
        s = conn.stats()
    levels = s["levels"]
    assert len(levels) == 7
    for f in levels:
        assert f["files"] == s["level%d_files" % f["level"]]
        assert f["bytes"] == s["level%d_bytes" % f["level"]]
    assert levels[0]["files"] == 0 and levels[1]["files"] > 1
    assert s["read_amplification"] == 1 + 1          # the memtable, one level-1 table
    assert s["compaction_debt_bytes"] == 0
    # What the write amplification adds up to: flushes plus compactions.
    assert levels[0]["write_amplification"] == round(s["flush_bytes"] / s["bytes_written"], 3)
    assert s["write_amplification"] == pytest.approx(
        (s["flush_bytes"] + s["compaction_bytes_written"]) / s["bytes_written"], abs=0.01)
    assert s["write_amplification"] > 1


def test_stats_line_is_json_after_a_marker():
    line = stats_line({"puts": 3, "levels": [{"level": 0}], "write_error": None})
    assert line == 'stats {"levels":[{"level":0}],"puts":3,"write_error":null}'


def log_stats_lines(db_path):
    with open(os.path.join(db_path, "LOG"), encoding="utf-8") as f:
        return [json.loads(m.group(1)) for m in re.finditer(r"\] stats (\{.*\})$", f.read(), re.M)]


def test_stats_interval_writes_stats_lines_to_the_log(db_path):
    with kvcy.connect(db_path, stats_interval=0.05) as conn:
        for i in range(10):
            conn.put(b"k%d" % i, b"v")
        deadline = time.monotonic() + 10
        while len(log_stats_lines(db_path)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        conn.put(b"late", b"v")
    lines = log_stats_lines(db_path)
    assert len(lines) >= 3
    assert lines[-1]["puts"] >= 10 and lines[-1]["levels"][0]["level"] == 0
    assert set(lines[-1]["latency"]) == {"get", "put", "write_batch", "scan_next", "flush",
                                         "compaction"}


def test_stats_interval_paces_the_lines(db_path):
    started = time.monotonic()
    with kvcy.connect(db_path, stats_interval=0.2):
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    # One line per 0.2 s, the first 0.2 s after the open; a loaded machine
    # may delay a line, never add one.
    assert 1 <= len(log_stats_lines(db_path)) <= int(elapsed / 0.2)


def test_no_stats_lines_without_stats_interval(db_path):
    with kvcy.connect(db_path, flush_interval=0.01) as conn:
        conn.put(b"k", b"v")
        time.sleep(0.2)
    assert log_stats_lines(db_path) == []


def test_table_meta_bytes_counts_the_open_tables_index_and_filter(db_path):
    with kvcy.connect(db_path) as conn:
        assert conn.stats()["table_meta_bytes"] == 0
        conn.put_many([(b"%08d" % i, b"v" * 100) for i in range(20000)])
        conn.flush()
        conn.get(b"%08d" % 5)                       # opens the table
        tables = list(conn._engine.table_cache._tables.values())
        assert len(tables) == 1
        (table,) = tables
        expected = table.index.size + table.bloom.size
        assert expected > 20000                     # about 2 bytes a key
        assert conn.stats()["table_meta_bytes"] == expected
        conn._engine.table_cache.evict(table.number)
        assert conn.stats()["table_meta_bytes"] == 0
