"""kvcy bench: write and read N keys and print operations per second.

    kvcy bench [--num N] [--value-bytes B] [--path DIR] [--seed S] [option flags]

16-byte keys, values that compress about 2:1 (like db_bench's), in a
temporary directory unless --path is given; see docs/operations.md for the
phases. The database option flags (--sync, --block-size, ...) apply to the
benchmarked database.
"""
import argparse
import os
import random
import shutil
import sys
import tempfile
import time

import kvcy
from kvcy.cli.arguments import positive_int
from kvcy.cli.option_flags import add_option_flags, connect_args
from kvcy.config import parse_size
from kvcy.errors import ProgrammingError
from kvcy.options import MAX_VALUE_BYTES


def register(sub):
    p = sub.add_parser("bench", usage="%(prog)s [--num N] [--value-bytes SIZE] [--path DIR] [--seed S] [options]",
                       help="write and read N keys and print ops/s",
                       description="Write and read --num keys and print operations per "
                                   "second for each phase (docs/operations.md).")
    p.add_argument("--num", metavar="N", type=positive_int, default=100000,
                   help="number of keys (default: 100000)")
    p.add_argument("--value-bytes", metavar="SIZE", type=_value_size, default=100,
                   help="bytes per value, e.g. 100 or 4KiB (default: 100)")
    p.add_argument("--path", metavar="DIR", default=None,
                   help="database directory, kept afterwards (default: a temporary one)")
    p.add_argument("--seed", metavar="S", type=int, default=301,
                   help="seed of the key order and the values (default: 301)")
    add_option_flags(p)
    p.set_defaults(run=bench)


def _value_size(text):
    try:
        size = parse_size(text, "--value-bytes")
    except ProgrammingError as exc:
        raise argparse.ArgumentTypeError(
            str(exc).replace("option '--value-bytes' must", "must")) from None
    if size > MAX_VALUE_BYTES:
        raise argparse.ArgumentTypeError("at most %d bytes (the value size limit), got %d"
                                         % (MAX_VALUE_BYTES, size))
    return size


def _rate(n, seconds):
    return n / seconds if seconds > 0 else float("inf")


def bench(args, out):
    config, options = connect_args(args)
    num = args.num
    rng = random.Random(args.seed)
    # Values compress about 2:1, like db_bench's.
    pool = bytes(rng.getrandbits(8) for _ in range(args.value_bytes // 2 + 1)) * 2
    keys = [b"%016d" % i for i in range(num)]
    order = keys[:]
    rng.shuffle(order)
    value = pool[:args.value_bytes]
    tmp = None
    path = args.path
    if path is None:
        tmp = tempfile.mkdtemp(prefix="kvcy-bench-")
        path = os.path.join(tmp, "db")
    try:
        results = []
        with kvcy.connect(path, config, **options) as conn:
            put = conn.put
            t0 = time.perf_counter()
            for k in keys:
                put(k, value)
            results.append(("fillseq", _rate(num, time.perf_counter() - t0)))
            t0 = time.perf_counter()
            for k in order:
                put(k, value)
            results.append(("overwrite", _rate(num, time.perf_counter() - t0)))
            batch_size = 1000
            t0 = time.perf_counter()
            for i in range(0, num, batch_size):
                conn.put_many([(k, value) for k in keys[i:i + batch_size]])
            results.append(("fillbatch", _rate(num, time.perf_counter() - t0)))
            get = conn.get
            t0 = time.perf_counter()
            for k in order:
                get(k)
            results.append(("readrandom", _rate(num, time.perf_counter() - t0)))
            missing = 0
            for k in order[:1000]:
                missing += get(k) != value
            stats = conn.stats()
            sync = conn.options.sync
        with kvcy.connect(path, config, **options) as conn:
            get = conn.get
            t0 = time.perf_counter()
            for k in order:
                get(k)
            results.append(("readrandom (after reopen)", _rate(num, time.perf_counter() - t0)))
        print("kvcy %s bench: %d keys, 16-byte keys, %d-byte values, sync=%s, %s"
              % (kvcy.__version__, num, args.value_bytes, sync, path), file=out)
        for name, rate in results:
            print("  %-28s %12s ops/s" % (name, format(int(rate), ",")), file=out)
        print("  wal bytes %s, wal records %s" % (format(stats["wal_bytes"], ","),
                                                 format(stats["wal_records"], ",")), file=out)
        if missing:
            print("kvcy: %d keys read back wrong" % missing, file=sys.stderr)
            return 1
        return 0
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
