"""bench/seek_tree_shape.py, run tiny: both modes measure every round."""
import os
import sys

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def test_seek_tree_shape_bench_measures_both_modes(capsys):
    sys.path.insert(0, BENCH_DIR)
    try:
        import seek_tree_shape
        results = seek_tree_shape.main(["--num", "3000", "--seeks", "200", "--rounds", "2"])
    finally:
        sys.path.remove(BENCH_DIR)
        sys.modules.pop("seek_tree_shape", None)
    assert set(results) == {"now", "settled"}
    assert all(len(r) == 2 and min(r) > 0 for r in results.values())
    assert "settled" in capsys.readouterr().out
