"""The kvcy command (also `python -m kvcy`).

    kvcy bench [--num N] [--value-bytes B] [--path DIR] [--sync]
    kvcy put DB KEY VALUE        kvcy get DB KEY        kvcy delete DB KEY
    kvcy stats DB [--prometheus]

Keys and values on the command line are UTF-8 text, or hex with --hex.
`bench` writes and reads N keys (16-byte keys, random values) in a
temporary directory unless --path is given, and prints operations per
second for each phase.
"""
import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time

import kvcy
from kvcy.config import parse_size
from kvcy.stats import prometheus_text


def _arg_bytes(text, hex_mode):
    if hex_mode:
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise SystemExit("kvcy: %r is not valid hex" % text)
    return text.encode("utf-8")


def _show_bytes(data, hex_mode):
    if hex_mode:
        return data.hex()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.hex()


def _rate(n, seconds):
    return n / seconds if seconds > 0 else float("inf")


def bench(args, out):
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
        with kvcy.connect(path, sync=args.sync) as conn:
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
        with kvcy.connect(path) as conn:
            get = conn.get
            t0 = time.perf_counter()
            for k in order:
                get(k)
            results.append(("readrandom (after reopen)", _rate(num, time.perf_counter() - t0)))
        print("kvcy %s bench: %d keys, 16-byte keys, %d-byte values, sync=%s, %s"
              % (kvcy.__version__, num, args.value_bytes, args.sync, path), file=out)
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


def _open(args, **extra):
    return kvcy.connect(args.db, create_if_missing=extra.pop("create", False), **extra)


def main(argv=None, out=None):
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog="kvcy", description="kvcy: an embedded LSM-tree "
                                     "key-value store (see docs/operations.md)")
    parser.add_argument("--version", action="version", version="kvcy " + kvcy.__version__)
    sub = parser.add_subparsers(dest="command", metavar="command")

    p = sub.add_parser("bench", help="write and read N keys and print ops/s")
    p.add_argument("--num", type=int, default=100000, help="number of keys (default 100000)")
    p.add_argument("--value-bytes", type=lambda s: parse_size(s, "--value-bytes"), default=100)
    p.add_argument("--path", default=None, help="database directory (default: a temporary one)")
    p.add_argument("--sync", action="store_true", help="fsync every write")
    p.add_argument("--seed", type=int, default=301)

    for name, helptext in (("put", "store KEY=VALUE"), ("get", "print the value of KEY"),
                           ("delete", "remove KEY")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("db")
        p.add_argument("key")
        if name == "put":
            p.add_argument("value")
        p.add_argument("--hex", action="store_true", help="keys and values are hex")
        p.add_argument("--sync", action="store_true")

    p = sub.add_parser("stats", help="print the database's counters")
    p.add_argument("db")
    p.add_argument("--prometheus", action="store_true", help="Prometheus text format")

    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(out)
        return 2
    try:
        if args.command == "bench":
            if args.num <= 0:
                parser.error("--num must be positive")
            return bench(args, out)
        if args.command == "put":
            with _open(args, create=True) as conn:
                conn.put(_arg_bytes(args.key, args.hex), _arg_bytes(args.value, args.hex),
                         sync=args.sync)
            return 0
        if args.command == "get":
            with _open(args, readonly=True) as conn:
                value = conn.get(_arg_bytes(args.key, args.hex))
            if value is None:
                print("kvcy: key not found", file=sys.stderr)
                return 1
            print(_show_bytes(value, args.hex), file=out)
            return 0
        if args.command == "delete":
            with _open(args) as conn:
                conn.delete(_arg_bytes(args.key, args.hex), sync=args.sync)
            return 0
        if args.command == "stats":
            with _open(args, readonly=True) as conn:
                stats = conn.stats()
            if args.prometheus:
                out.write(prometheus_text(stats))
            else:
                print(json.dumps(stats, indent=2, sort_keys=True, default=str), file=out)
            return 0
    except kvcy.Error as exc:
        print("kvcy: %s: %s" % (type(exc).__name__, exc), file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
