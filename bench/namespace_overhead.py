"""What a namespace costs per call: get, put and scan through conn.namespace()
against the same calls on the plain connection.

    python bench/namespace_overhead.py [--num 200000] [--repeat 5] [--micro]

Loads --num keys (16-byte keys, 100-byte values, memtable large enough
that nothing flushes) into the default namespace and into a namespace,
then times random gets, puts and one full scan of each, --repeat times;
prints the median ops/s and the namespace's cost per call in ns.
--micro instead times one get and one put of a single key with timeit
(best of 7 runs of 200,000 calls), the per-call cost without the noise of
a loop over many keys.
"""
import argparse
import os
import random
import statistics
import tempfile
import time

import kvcy


def timed_pair(funcs, count, repeat):
    """Median ops/s of each func, the funcs run alternately (so that noise
    from other processes hits both alike)."""
    runs = [[] for _ in funcs]
    for _ in range(repeat):
        for func, out in zip(funcs, runs):
            started = time.perf_counter()
            func()
            out.append(time.perf_counter() - started)
    return [count / statistics.median(out) for out in runs]


def micro():
    import timeit
    with kvcy.connect(os.path.join(tempfile.mkdtemp(), "db"),
                      memtable_max_bytes=512 << 20) as conn:
        users = conn.namespace("users")
        key, value = b"k" * 16, b"v" * 100
        conn.put(key, value)
        users.put(key, value)
        calls = 200_000

        def best(func):
            return min(timeit.repeat(func, number=calls, repeat=7)) / calls * 1e9
        g0, g1 = best(lambda: conn.get(key)), best(lambda: users.get(key))
        p1, p0 = best(lambda: users.put(key, value)), best(lambda: conn.put(key, value))
    print("get: connection %.0f ns, namespace %.0f ns (%+.0f ns)" % (g0, g1, g1 - g0))
    print("put: connection %.0f ns, namespace %.0f ns (%+.0f ns)" % (p0, p1, p1 - p0))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--micro", action="store_true")
    args = parser.parse_args()
    if args.micro:
        return micro()
    num = args.num
    keys = [b"%016d" % i for i in range(num)]
    value = b"v" * 100
    order = keys[:]
    random.Random(1).shuffle(order)
    with kvcy.connect(os.path.join(tempfile.mkdtemp(), "db"),
                      memtable_max_bytes=512 << 20) as conn:
        users = conn.namespace("users")
        targets = (conn, users)
        for target in targets:
            for i in range(0, num, 1000):
                target.put_many([(k, value) for k in keys[i:i + 1000]])

        def gets(get):
            return lambda: [get(k) for k in order]

        def puts(put):
            return lambda: [put(k, value) for k in order]

        def scan(target):
            return lambda: [None for _ in target.scan()]
        figures = [timed_pair([make(t) for t in (t1, t2)], num, args.repeat)
                   for make, t1, t2 in ((lambda t: gets(t.get), conn, users),
                                        (lambda t: puts(t.put), conn, users),
                                        (scan, conn, users))]
    rows = [(label, figures[0][n], figures[1][n], figures[2][n])
            for n, label in enumerate(("connection", "namespace"))]
    print("%-11s %12s %12s %12s" % ("", "get/s", "put/s", "scan rows/s"))
    for label, g, p, s in rows:
        print("%-11s %12.0f %12.0f %12.0f" % (label, g, p, s))
    (_, g0, p0, s0), (_, g1, p1, s1) = rows
    print("namespace cost per call: get %+.0f ns, put %+.0f ns, scan row %+.0f ns"
          % ((1 / g1 - 1 / g0) * 1e9, (1 / p1 - 1 / p0) * 1e9, (1 / s1 - 1 / s0) * 1e9))


if __name__ == "__main__":
    main()
