"""Random gets from one thread, alone and beside a thread busy in Python.

    python bench/read_busy_thread.py [--num 50000] [--seconds 1] [--repeat 3]

A thread running pure Python keeps the GIL until CPython's switch
interval (5 ms) makes it let go, so a get that releases the GIL for a
short search hands it to that thread and waits 5 ms to have it back: the
convoy of a GIL released around short calls (kvcy/_gil_spin.h).  This
script loads --num keys (16-byte keys, 100-byte values, compacted and
reopened, 8 MiB block cache: 50,000 keys fit in it, 1,000,000 do not),
then measures gets/s of one reader thread for --seconds, alone and with a
second thread spinning in `while not stop.is_set(): pass`, --repeat times
in turn, and prints the medians and the busy thread's loop count.
"""
import argparse
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time

import kvcy


def reader_rate(conn, keys, seconds, busy):
    stop = threading.Event()
    spins = [0]

    def spin():
        n = 0
        while not stop.is_set():
            n += 1
        spins[0] = n

    rate = []

    def read():
        get = conn.get
        n = 0
        started = time.perf_counter()
        for k in keys:
            if get(k) is None:
                raise SystemExit("read_busy_thread.py: lost key %r" % k)
            n += 1
            if n % 256 == 0 and time.perf_counter() - started >= seconds:
                break
        rate.append(n / (time.perf_counter() - started))

    other = threading.Thread(target=spin)
    if busy:
        other.start()
    try:
        reader = threading.Thread(target=read)
        reader.start()
        reader.join()
    finally:
        stop.set()
        if busy:
            other.join()
    return rate[0], spins[0]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num", type=int, default=50_000)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="kvcy-busy-")
    try:
        path = tmp + "/db"
        conn = kvcy.connect(path, block_cache_bytes=8 << 20)
        rng = random.Random(7)
        order = list(range(args.num))
        rng.shuffle(order)
        for i in range(0, args.num, 1000):
            conn.put_many([(b"%016d" % j, b"%-100d" % j) for j in order[i:i + 1000]])
        conn.compact_range()
        conn.close()
        conn = kvcy.connect(path, block_cache_bytes=8 << 20)
        keys = [b"%016d" % rng.randrange(args.num) for _ in range(2_000_000)]
        for k in keys[:100_000]:
            conn.get(k)                       # warm the cache
        rates = {False: [], True: []}
        spins = []
        for _ in range(args.repeat):
            for busy in (False, True):
                rate, n = reader_rate(conn, keys, args.seconds, busy)
                rates[busy].append(rate)
                if busy:
                    spins.append(n)
        conn.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    alone, beside = statistics.median(rates[False]), statistics.median(rates[True])
    print("%d keys, medians of %d rounds of %.1f s" % (args.num, args.repeat, args.seconds))
    print("reader alone        %10.0f gets/s" % alone)
    print("beside a busy thread %9.0f gets/s  (%.3fx; busy loop %d iterations)"
          % (beside, beside / alone, statistics.median(spins)))
    return alone, beside


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
