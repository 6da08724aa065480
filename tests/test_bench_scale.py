"""bench/scale.py, run tiny: every phase runs and the JSON holds its figures."""
import json
import os
import sys

import pytest

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


@pytest.fixture
def scale():
    sys.path.insert(0, BENCH_DIR)
    try:
        import scale
        yield scale
    finally:
        sys.path.remove(BENCH_DIR)
        sys.modules.pop("scale", None)


def test_scale_small_run_reports_every_phase(scale, tmp_path, capsys):
    out = tmp_path / "scale.json"
    assert scale.main(["--num", "3000", "--sizes", "500", "--put-many", "2000", "--reads",
                       "300", "--table-pairs", "1000", "--processes", "1", "--in-process",
                       "--quiet", "--dir", str(tmp_path / "dbs"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [row["num"] for row in result["ingest"]] == [500, 3000]
    big = result["ingest"][1]
    assert big["load"]["tables"] == 3 and big["reads"]["open_tables"] == 3
    assert big["load"]["disk_bytes"] > 0 and 0 < big["load"]["write_amplification"] < 1
    assert big["reads"]["readrandom"] > 0 and big["reads"]["index_bytes"] > 0
    assert result["put_many"]["load"]["num"] == 2000
    assert result["put_many"]["load"]["write_amplification"] > 1      # WAL + tables
    assert set(result["readrandom_vs_smallest"]) == {"500", "3000"}
    assert os.listdir(tmp_path / "dbs") == []                      # databases removed
    assert "readrandom relative to 500 keys" in capsys.readouterr().out


def test_scale_partitioned_keeps_only_top_level_indexes_in_memory(scale, tmp_path):
    figures = {}
    for partitioned in (False, True):
        out = tmp_path / ("p.json" if partitioned else "u.json")
        argv = ["--num", "20000", "--sizes", "", "--skip-put-many", "--reads", "300",
                "--table-pairs", "10000", "--processes", "1", "--in-process", "--quiet",
                "--dir", str(tmp_path / "dbs"), "--json", str(out)]
        assert scale.main(argv + (["--partitioned"] if partitioned else [])) == 0
        reads = json.loads(out.read_text())["ingest"][0]["reads"]
        figures[partitioned] = reads["index_bytes"] + reads["bloom_bytes"]
    assert figures[True] * 10 < figures[False], figures


def test_scale_interleaved_reads_every_size_in_turns(scale, tmp_path, capsys):
    out = tmp_path / "scale.json"
    argv = ["--num", "4000", "--sizes", "1000", "--skip-put-many", "--reads", "200",
            "--repeat", "1", "--table-pairs", "1000", "--processes", "1", "--in-process",
            "--quiet", "--dir", str(tmp_path / "dbs"), "--json", str(out)]
    with pytest.raises(SystemExit):
        scale.main(argv + ["--interleave", "2"])           # the databases would be gone
    assert scale.main(argv + ["--keep", "--interleave", "3"]) == 0
    inter = json.loads(out.read_text())["interleaved"]
    assert set(inter) == {"1000", "4000"}
    assert [len(inter[n]["runs"]) for n in ("1000", "4000")] == [3, 3]
    assert inter["1000"]["vs_smallest"] == 1.0 and inter["4000"]["readrandom"] > 0
    assert "interleaved readrandom (3 rounds, one process)" in capsys.readouterr().out


def test_scatter_stride_visits_every_key_once(scale):
    for num in (1, 2, 10, 1000, 4096, 10_000_000 + 1):
        step = scale.scatter_stride(num)
        if num <= 4096:
            assert sorted((j * step) % num for j in range(num)) == list(range(num))
        else:
            assert __import__("math").gcd(step, num) == 1
