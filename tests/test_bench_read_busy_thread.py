"""bench/read_busy_thread.py, run tiny: it measures one reader alone and
beside a thread busy in Python, and the reader's keys are all found."""
import os
import sys

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def test_read_busy_thread_bench_measures_both_cases(capsys):
    sys.path.insert(0, BENCH_DIR)
    try:
        import read_busy_thread
        alone, beside = read_busy_thread.main(["--num", "3000", "--seconds", "0.05",
                                               "--repeat", "1"])
    finally:
        sys.path.remove(BENCH_DIR)
        sys.modules.pop("read_busy_thread", None)
    assert alone > 0 and beside > 0
    assert "beside a busy thread" in capsys.readouterr().out
