"""kvcy get, put, delete and scan: single keys and key ranges from the shell.

    kvcy put DB KEY VALUE      store VALUE under KEY (creates DB if missing)
    kvcy get DB KEY            print the value of KEY (exit 1 if absent)
    kvcy delete DB KEY         remove KEY
    kvcy scan DB [--start K] [--stop K] [--prefix P] [--reverse] [--limit N] [--json]

Keys and values are read and printed in the chosen encoding (kvcy/cli/codec.py).
get and scan open the database read-only, so they work beside a writer.
"""
import json

import kvcy
from kvcy.cli.arguments import CommandError, add_db_argument, non_negative_int
from kvcy.cli.codec import (add_encoding_flags, decode, encode, encode_field, key_encoding,
                            range_bounds, value_encoding)
from kvcy.cli.option_flags import add_option_flags, connect_args


def register(sub):
    p = sub.add_parser("get", usage="%(prog)s DB KEY [options]",
                       help="print the value of KEY (kvcy get DB KEY)",
                       description="Print the value stored under KEY; exit status 1 if "
                                   "there is none. Opens the database read-only.")
    add_db_argument(p)
    p.add_argument("key", metavar="KEY", help="the key, in --key-encoding")
    add_encoding_flags(p)
    add_option_flags(p, readonly=True, create_if_missing=False)
    p.set_defaults(run=get)

    p = sub.add_parser("put", usage="%(prog)s DB KEY VALUE [options]",
                       help="store VALUE under KEY (kvcy put DB KEY VALUE)",
                       description="Store VALUE under KEY, creating the database if it "
                                   "does not exist.")
    add_db_argument(p)
    p.add_argument("key", metavar="KEY", help="the key, in --key-encoding")
    p.add_argument("value", metavar="VALUE", help="the value, in --value-encoding")
    add_encoding_flags(p)
    add_option_flags(p, create_if_missing=True)
    p.set_defaults(run=put)

    p = sub.add_parser("delete", usage="%(prog)s DB KEY [options]",
                       help="remove KEY (kvcy delete DB KEY)",
                       description="Remove KEY (no error if it is absent). The database "
                                   "must exist.")
    add_db_argument(p)
    p.add_argument("key", metavar="KEY", help="the key, in --key-encoding")
    add_encoding_flags(p)
    add_option_flags(p, create_if_missing=False)
    p.set_defaults(run=delete)

    p = sub.add_parser("scan", usage="%(prog)s DB [--start KEY] [--stop KEY] [--prefix KEY] [--reverse] [--limit N] [--json] [options]",
                       help="print the keys and values of a key range",
                       description="Print key<TAB>value lines (or JSON lines with --json) "
                                   "in key order. Opens the database read-only.")
    add_db_argument(p)
    p.add_argument("--start", metavar="KEY", help="first key (inclusive)")
    p.add_argument("--stop", metavar="KEY", help="end key (exclusive)")
    p.add_argument("--prefix", metavar="KEY", help="only keys starting with this")
    p.add_argument("--reverse", action="store_true", help="descending key order")
    p.add_argument("--limit", metavar="N", type=non_negative_int, default=None,
                   help="print at most N entries")
    p.add_argument("--json", action="store_true",
                   help='one JSON object a line: {"key": ..., "value": ...}')
    add_encoding_flags(p)
    add_option_flags(p, readonly=True, create_if_missing=False)
    p.set_defaults(run=scan)


def get(args, out):
    key = decode(args.key, key_encoding(args), "KEY")
    config, options = connect_args(args)
    with kvcy.connect(args.db, config, **options) as conn:
        value = conn.get(key)
    if value is None:
        raise CommandError("key %s not found" % encode(key, key_encoding(args)))
    print(encode(value, value_encoding(args)), file=out)
    return 0


def put(args, out):
    key = decode(args.key, key_encoding(args), "KEY")
    value = decode(args.value, value_encoding(args), "VALUE")
    config, options = connect_args(args)
    with kvcy.connect(args.db, config, **options) as conn:
        conn.put(key, value)
    return 0


def delete(args, out):
    key = decode(args.key, key_encoding(args), "KEY")
    config, options = connect_args(args)
    with kvcy.connect(args.db, config, **options) as conn:
        conn.delete(key)
    return 0


def scan(args, out):
    kenc, venc = key_encoding(args), value_encoding(args)
    bounds = range_bounds(args, kenc)
    config, options = connect_args(args)
    with kvcy.connect(args.db, config, **options) as conn:
        with conn.scan(bounds["start"], bounds["stop"], prefix=bounds["prefix"],
                       reverse=args.reverse) as entries:
            for n, (key, value) in enumerate(entries):
                if args.limit is not None and n >= args.limit:
                    break
                if args.json:
                    line = json.dumps({"key": encode(key, kenc), "value": encode(value, venc)})
                else:
                    line = "%s\t%s" % (encode_field(key, kenc), encode_field(value, venc))
                print(line, file=out)
    return 0

