"""What the latency histograms cost the hot paths, in instructions.

    python bench/latency_cost.py --tree HEAD_TREE --tree BASE_TREE [--num 100000]
        [--scan-entries 300000] [--repeat 1]

For each source tree (a kvcy checkout with its extensions built in place)
and each operation, valgrind's callgrind counts the instructions of a
child Python process twice: once doing the setup only (open a database,
load the keys the operation needs) and once doing the setup and then the
operation --num times (put, get) or one scan over --scan-entries entries
(scan).  The difference divided by the operations is the instructions per
operation, free of start-up and setup.  Instruction counts are close to
deterministic (PYTHONHASHSEED=0, fixed keys, a memtable large enough that
no flush or compaction runs), so one run per figure is enough; --repeat
takes the median of more.  Prints the instructions per operation of each
tree and the change of the first against each other tree, in %.

Needs valgrind on PATH.  Takes a few minutes: callgrind runs Python about
50 times slower.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import os, sys, tempfile
import kvcy
phase, op, num, scan_entries = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
path = os.path.join(tempfile.mkdtemp(), "db")
conn = kvcy.connect(path, memtable_max_bytes=256 << 20)
value = b"v" * 100
n_load = scan_entries if op == "scan" else (num if op == "get" else 0)
keys = [b"%016d" % (i * 7919 % max(num, 1)) for i in range(num)]
for i in range(0, n_load, 1000):
    conn.put_many([(b"%016d" % j, value) for j in range(i, min(i + 1000, n_load))])
if phase == "run":
    if op == "put":
        put = conn.put
        for k in keys:
            put(k, value)
    elif op == "get":
        get = conn.get
        for k in keys:
            get(k)
    else:
        for _ in conn.scan():
            pass
conn.close()
"""


def instructions(tree, phase, op, num, scan_entries):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        env = dict(os.environ, PYTHONPATH=tree, PYTHONHASHSEED="0")
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
             sys.executable, "-c", CHILD, phase, op, str(num), str(scan_entries)],
            cwd=tree, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit("callgrind run failed in %s:\n%s" % (tree, proc.stderr[-2000:]))
        match = re.search(r"Collected : (\d+)", proc.stderr)
        if match is None:
            raise SystemExit("no instruction count in callgrind's output:\n" + proc.stderr[-2000:])
        return int(match.group(1))


def per_op(tree, op, args):
    ops = args.scan_entries if op == "scan" else args.num
    runs = []
    for _ in range(args.repeat):
        setup = instructions(tree, "setup", op, args.num, args.scan_entries)
        total = instructions(tree, "run", op, args.num, args.scan_entries)
        runs.append((total - setup) / ops)
    return statistics.median(runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", required=True,
                        help="a kvcy source tree with built extensions (give two or more)")
    parser.add_argument("--num", type=int, default=100000)
    parser.add_argument("--scan-entries", type=int, default=300000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    ops = (("put", "put()"), ("get", "get()"), ("scan", "scan step"))
    table = {tree: {op: per_op(os.path.abspath(tree), op, args) for op, _ in ops}
             for tree in args.tree}
    first = args.tree[0]
    print("instructions per operation (callgrind; %d puts, %d gets, a %d-entry scan)"
          % (args.num, args.num, args.scan_entries))
    print("%-12s" % "operation" + "".join("%18s" % os.path.basename(os.path.normpath(t))
                                          for t in args.tree)
          + "".join("%20s" % ("vs " + os.path.basename(os.path.normpath(t)))
                    for t in args.tree[1:]))
    for op, label in ops:
        row = "%-12s" % label + "".join("%18.1f" % table[t][op] for t in args.tree)
        for other in args.tree[1:]:
            row += "%+19.2f%%" % ((table[first][op] / table[other][op] - 1) * 100)
        print(row)


if __name__ == "__main__":
    main()
