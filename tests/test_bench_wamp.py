"""bench/wamp.py, run tiny: the settled write amplification counts every
table byte written, so it is at least the figure at the end of the fill and
at least the flushes' share; the per-level figures add up to it."""
import os
import sys

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def test_wamp_bench_settles_and_adds_up(tmp_path):
    sys.path.insert(0, BENCH_DIR)
    try:
        import wamp
        out = wamp.main(["--num", "60000", "--quiet", "0.3", "--json", str(tmp_path / "w.json")])
    finally:
        sys.path.remove(BENCH_DIR)
        sys.modules.pop("wamp", None)
    assert out["fill_ops_per_s"] > 0
    assert 0 < out["wamp_end"] <= out["wamp_settled"]
    per_level = sum(level["write_amplification"] for level in out["levels"])
    assert abs(per_level - out["wamp_settled"]) < 0.01
    assert (tmp_path / "w.json").exists()
