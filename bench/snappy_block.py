"""Per-block cost of kvcy's C snappy codec against python-snappy (cramjam).

    python bench/snappy_block.py [--blocks 64] [--block-bytes 4096] [--repeat 7]

Blocks hold 100-byte values, each half random bytes and half one repeated
byte (about 2:1 compressible).  For each codec: ns per compress and per
uncompress call through Python (best of --repeat timeit runs over all
blocks in turn), and the total compressed size; then the same calls on a
1-byte input, the fixed per-call cost.  When Cython can build a
tiny helper, also the cost of the C functions alone (what a nogil caller
pays: no Python call, no bytes object).  A measurement, not a test.
"""
import argparse
import random
import statistics
import timeit

import snappy

from kvcy import _snappy


def values_block(rng, n, value_bytes=100):
    out = bytearray()
    half = value_bytes // 2
    while len(out) < n:
        out += rng.randbytes(half)
        out += bytes([rng.randrange(256)]) * (value_bytes - half)
    return bytes(out[:n])


def c_costs(blocks, packed, rounds):
    """(ns per compress, ns per uncompress) of the C functions alone, via
    bench/_snappy_c_loop.pyx built by pyximport; None if that fails."""
    import os
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [here, os.path.dirname(here)]      # the helper; kvcy's .pxd
    try:
        import pyximport
        pyximport.install(language_level=3, inplace=False)
        from _snappy_c_loop import c_loop
    except Exception as exc:            # no compiler, etc.: skip this row
        print("(C-only timing skipped: %s)" % str(exc).splitlines()[0])
        return None
    return [min(x) for x in zip(*(c_loop(blocks, packed, rounds) for _ in range(5)))]


def per_call_ns(fn, inputs, repeat):
    it = iter(inputs * 1000)
    number = len(inputs) * 50
    runs = timeit.repeat(lambda: fn(next(it)), number=number, repeat=repeat)
    return min(runs) / number * 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=64)
    ap.add_argument("--block-bytes", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(42)
    blocks = [values_block(rng, args.block_bytes) for _ in range(args.blocks)]
    ours = [_snappy.compress(b) for b in blocks]
    theirs = [snappy.compress(b) for b in blocks]
    assert all(snappy.uncompress(p) == b for p, b in zip(ours, blocks))
    assert all(_snappy.uncompress(p) == b for p, b in zip(theirs, blocks))
    raw = sum(map(len, blocks))
    print("%d blocks of %d bytes (100-byte values, half random, half repeated)"
          % (args.blocks, args.block_bytes))
    print("%-28s %14s %14s %12s" % ("codec", "compress ns", "uncompress ns", "ratio"))
    for name, comp, uncomp, packed in (
            ("kvcy._snappy (Python call)", _snappy.compress, _snappy.uncompress, ours),
            ("python-snappy (cramjam)", snappy.compress, snappy.uncompress, theirs)):
        c = per_call_ns(comp, blocks, args.repeat)
        u = per_call_ns(uncomp, packed, args.repeat)
        print("%-28s %14.0f %14.0f %12.3f" % (name, c, u, sum(map(len, packed)) / raw))
    tiny = [b"x"]
    for name, comp, uncomp in (("kvcy, 1-byte input", _snappy.compress, _snappy.uncompress),
                               ("python-snappy, 1-byte input", snappy.compress,
                                snappy.uncompress)):
        print("%-28s %14.0f %14.0f %12s" % (name, per_call_ns(comp, tiny, args.repeat),
                                            per_call_ns(uncomp, [comp(b"x")], args.repeat), ""))
    costs = c_costs(blocks, ours, rounds=200)
    if costs:
        print("%-28s %14.0f %14.0f %12s" % ("kvcy C functions alone", costs[0], costs[1], ""))


if __name__ == "__main__":
    main()
