"""bench/partitioned_index.py, run tiny: it measures both databases and
reports the metadata the partitioned one keeps out of memory."""
import os
import re
import sys

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def test_partitioned_index_bench_reports_every_figure(capsys):
    sys.path.insert(0, BENCH_DIR)
    try:
        import partitioned_index
        assert partitioned_index.main(["--num", "20000", "--gets", "500", "--repeat", "1"]) == 0
    finally:
        sys.path.remove(BENCH_DIR)
        sys.modules.pop("partitioned_index", None)
    rows = {m.group(1): (float(m.group(2)), float(m.group(3)))
            for m in re.finditer(r"^(\w+)\s+(\d+)\s+(\d+)\s+[\d.]+x$", capsys.readouterr().out,
                                 re.M)}
    assert set(rows) == {"readrandom", "readmissing", "seekrandom", "table_meta_bytes"}
    assert all(u > 0 and p > 0 for u, p in rows.values())
    unpartitioned, partitioned = rows["table_meta_bytes"]
    assert partitioned * 20 < unpartitioned                 # only the top-level indexes stay
