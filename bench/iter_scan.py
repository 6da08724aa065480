"""Scan cost of the iterator stack: ns per entry of a full DBIterator scan.

    python bench/iter_scan.py [--num 1000000] [--repeat 5]

Entries have 16-byte user keys and 100-byte values.  Sources: one memtable,
a 3-way merge of memtables (keys dealt round-robin), one table and a 3-way
merge of tables (held in memory, compression none, no block cache: every
block is read, checked and parsed once per scan), each scanned forward and
backward through MergingIterator + DBIterator; the loop is
``for kv in it: pass``.  Baselines: dict.items() and a Python loop over a
MemTableIterator.  Medians of --repeat runs.  A measurement, not a test.
"""
import argparse
import statistics
import time


from kvcy._db_iter import DBIterator
from kvcy._memtable import MemTable
from kvcy._merge import MergingIterator
from kvcy._table_builder import TableBuilder
from kvcy.options import Options
from kvcy.table import Table

SEQ = 1 << 55


class MemFile:
    def __init__(self, path):
        self.path = path
        self.data = bytearray()

    def append(self, data):
        self.data += data

    def read(self, offset, n):
        return bytes(self.data[offset:offset + n])


def memtables(num, ways):
    mems = [MemTable() for _ in range(ways)]
    for i in range(num):
        mems[i % ways].add(i + 1, 1, b"key%013d" % i, b"v%099d" % i)
    return mems


def table_of(mem, number):
    file = MemFile("%06d.sst" % number)
    builder = TableBuilder(file, Options(compression="none"), file.path)
    builder.add_memtable(mem)
    size = builder.finish()
    file.data = bytes(file.data)
    return Table.open(file, size, number)


def scan(make, reverse):
    it = DBIterator(MergingIterator(make()), SEQ, reverse=reverse)
    n = 0
    t = time.perf_counter()
    for kv in it:
        n += 1
    return time.perf_counter() - t, n


def median_ns(make, num, repeat, reverse=False):
    times = []
    for _ in range(repeat):
        dt, n = scan(make, reverse)
        assert n == num, (n, num)
        times.append(dt)
    return statistics.median(times) / num * 1e9


def baseline_dict(num, repeat):
    d = {b"key%013d" % i: b"v%099d" % i for i in range(num)}
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for kv in d.items():
            pass
        times.append(time.perf_counter() - t)
    return statistics.median(times) / num * 1e9


def baseline_python_loop(mem, num, repeat):
    times = []
    for _ in range(repeat):
        it = mem.iterator()
        t = time.perf_counter()
        it.seek_to_first()
        while it.valid():
            (it.key(), it.value())
            it.next()
        times.append(time.perf_counter() - t)
    return statistics.median(times) / num * 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    num, repeat = args.num, args.repeat
    one = memtables(num, 1)
    three = memtables(num, 3)
    t_one = [table_of(one[0], 1)]
    t_three = [table_of(m, i + 2) for i, m in enumerate(three)]
    rows = [
        ("1 memtable", lambda: [one[0].iterator()]),
        ("3-way merge of memtables", lambda: [m.iterator() for m in three]),
        ("1 table", lambda: [t.iterator() for t in t_one]),
        ("3-way merge of tables", lambda: [t.iterator() for t in t_three]),
    ]
    print("%d entries, 16 B keys, 100 B values, median of %d" % (num, repeat))
    print("%-34s %12s %12s" % ("DBIterator scan over", "forward", "reverse"))
    for label, make in rows:
        print("%-34s %9.1f ns %9.1f ns" % (label, median_ns(make, num, repeat),
                                           median_ns(make, num, repeat, reverse=True)))
    print("%-34s %9.1f ns" % ("baseline: dict.items()", baseline_dict(num, repeat)))
    print("%-34s %9.1f ns" % ("baseline: Python loop, key()+value()",
                              baseline_python_loop(one[0], num, repeat)))


if __name__ == "__main__":
    main()
