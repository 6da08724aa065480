"""bench/read_threads.py, run tiny on kvcy alone: every thread count is
measured on the compacted, reopened database."""
import os
import sys

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def test_read_threads_bench_measures_every_count(capsys):
    sys.path.insert(0, BENCH_DIR)
    try:
        import read_threads
        results = read_threads.main(["--num", "20000", "--gets", "3000", "--repeat", "1",
                                     "--threads", "1,2", "--peers", ""])
    finally:
        sys.path.remove(BENCH_DIR)
        sys.modules.pop("read_threads", None)
    assert set(results) == {"kvcy"} and set(results["kvcy"]) == {1, 2}
    assert all(rate > 0 for rate in results["kvcy"].values())
    assert "2 threads" in capsys.readouterr().out
