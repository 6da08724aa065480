"""Synced puts on one thread with the WAL appended through a mapping (the
default) and with write(2), alternately.

    python bench/wal_sync.py [--puts 2000] [--repeat 3]

Each round opens a new database in a temporary directory, makes --puts
puts with sync=True (16-byte keys, 100-byte values: one fdatasync each)
and reports puts/s; prints the medians and their ratio.  Where the log is
mapped, it is grown 1 MiB at a time with fallocate, so most syncs write a
data page only; a write(2) append also grows the file, whose new size the
fdatasync must then commit as well (kvcy/_wal_writer.pyx).
"""
import argparse
import shutil
import statistics
import sys
import tempfile
import time

import kvcy
from kvcy._wal_writer import set_mapped_appends


def synced_puts(mapped, puts):
    path = tempfile.mkdtemp(prefix="kvcy-wal-sync-")
    try:
        previous = set_mapped_appends(mapped)
        try:
            conn = kvcy.connect(path, sync=False)
        finally:
            set_mapped_appends(previous)
        value = b"v" * 100
        started = time.perf_counter()
        for i in range(puts):
            conn.put(b"%016d" % i, value, sync=True)
        elapsed = time.perf_counter() - started
        syncs = conn.stats()["wal_syncs"]
        conn.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return puts / elapsed, syncs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--puts", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    rates = {True: [], False: []}
    for _ in range(args.repeat):
        for mapped in (True, False):
            rate, syncs = synced_puts(mapped, args.puts)
            if syncs < args.puts:
                raise SystemExit("only %d fdatasyncs for %d synced puts" % (syncs, args.puts))
            rates[mapped].append(rate)
    medians = {m: statistics.median(r) for m, r in rates.items()}
    for mapped in (True, False):
        print("%-9s %8.0f synced puts/s  (rounds: %s)" % (
            "mapped" if mapped else "write(2)", medians[mapped],
            ", ".join("%.0f" % r for r in rates[mapped])))
    print("mapped / write(2): %.2fx" % (medians[True] / medians[False]))
    return medians


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
