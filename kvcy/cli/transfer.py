"""kvcy dump and kvcy load: a database to a text file and back.

    kvcy dump DB [FILE] [--format jsonl|csv] [--encoding base64|hex|text]
    kvcy load DB [FILE] [--format jsonl|csv] [--encoding ...] [--batch-size N]

Formats (FILE "-" or absent: stdout / stdin):

    jsonl   one object a line: {"key": "<encoded>", "value": "<encoded>"}
    csv     two fields a row: key,value (RFC 4180 quoting; no header)

The default encoding is base64, so any key and value survive; dump with
--encoding text refuses a key or value that is not UTF-8 instead of writing
something load would read back differently. load writes --batch-size
entries per atomic batch; a bad line stops it with an error naming the line,
after the batches before it were written.
"""
import csv
import json
import os
import sys

import kvcy
from kvcy.cli.arguments import add_db_argument, positive_int
from kvcy.cli.codec import (add_encoding_flags, range_bounds, decode, encode_exact, key_encoding,
                            value_encoding)
from kvcy.cli.option_flags import add_option_flags, connect_args
from kvcy.cli.progress import add_progress_flag, progress_bar
from kvcy.errors import DataError

FORMATS = ("jsonl", "csv")


def register(sub):
    p = sub.add_parser("dump", usage="%(prog)s DB [FILE] [--format jsonl|csv] [options]",
                       help="write every key and value to a file (or stdout)",
                       description="Write the entries of the database (or of a key range) "
                                   "in key order as JSON lines or CSV; kvcy load reads "
                                   "them back.")
    add_db_argument(p)
    p.add_argument("file", metavar="FILE", nargs="?", default="-",
                   help="output file (default: - for stdout)")
    p.add_argument("--format", choices=FORMATS, default="jsonl",
                   help="jsonl (default) or csv")
    p.add_argument("--start", metavar="KEY", help="first key (inclusive)")
    p.add_argument("--stop", metavar="KEY", help="end key (exclusive)")
    p.add_argument("--prefix", metavar="KEY", help="only keys starting with this")
    add_encoding_flags(p, default="base64")
    add_option_flags(p, readonly=True, create_if_missing=False)
    p.set_defaults(run=dump)

    p = sub.add_parser("load", usage="%(prog)s DB [FILE] [--format jsonl|csv] [--batch-size N] [options]",
                       help="store the entries of a dump file (or stdin)",
                       description="Read JSON lines or CSV as written by kvcy dump and "
                                   "store them in batches, creating the database if it "
                                   "does not exist.")
    add_db_argument(p)
    p.add_argument("file", metavar="FILE", nargs="?", default="-",
                   help="input file (default: - for stdin)")
    p.add_argument("--format", choices=FORMATS, default="jsonl",
                   help="jsonl (default) or csv")
    p.add_argument("--batch-size", metavar="N", type=positive_int, default=1000,
                   help="entries written per atomic batch (default: 1000)")
    add_encoding_flags(p, default="base64")
    add_progress_flag(p)
    add_option_flags(p, create_if_missing=True)
    p.set_defaults(run=load)


def dump(args, out):
    kenc, venc = key_encoding(args), value_encoding(args)
    bounds = range_bounds(args, kenc)
    config, options = connect_args(args)
    with kvcy.connect(args.db, config, **options) as conn:
        if args.file == "-":
            _dump_to(conn, bounds, out, args.format, kenc, venc)
        else:
            with open(args.file, "w", encoding="utf-8", newline="") as f:
                _dump_to(conn, bounds, f, args.format, kenc, venc)
    return 0


def _dump_to(conn, bounds, f, fmt, kenc, venc):
    writer = csv.writer(f, lineterminator="\n") if fmt == "csv" else None
    with conn.scan(bounds["start"], bounds["stop"], prefix=bounds["prefix"]) as entries:
        for key, value in entries:
            k = encode_exact(key, kenc, "key")
            v = encode_exact(value, venc, "value of key")
            if writer is not None:
                writer.writerow((k, v))
            else:
                f.write(json.dumps({"key": k, "value": v}) + "\n")


def load(args, out):
    if args.file == "-":
        f, size = sys.stdin, None
    else:
        f = open(args.file, encoding="utf-8", newline="")
        size = os.fstat(f.fileno()).st_size
    kenc, venc = key_encoding(args), value_encoding(args)
    records = _csv_records(f) if args.format == "csv" else _jsonl_records(f)
    loaded = 0
    try:
        config, options = connect_args(args)
        with kvcy.connect(args.db, config, **options) as conn, \
                progress_bar(args, total=size, unit="B" if size is not None else " entries",
                             unit_scale=size is not None, desc="load") as bar:
            batch = []
            try:
                for line, key_text, value_text in records:
                    where = "%s line %d" % (_name(args.file), line)
                    batch.append((decode(key_text, kenc, where + ": key"),
                                  decode(value_text, venc, where + ": value")))
                    if len(batch) >= args.batch_size:
                        conn.put_many(batch)
                        loaded += len(batch)
                        # A file's bar counts bytes read; stdin's, entries stored.
                        bar.update(len(batch) if size is None else f.buffer.tell() - bar.n)
                        batch = []
                conn.put_many(batch)
                loaded += len(batch)
                if size is None:
                    bar.update(len(batch))
            except (DataError, UnicodeDecodeError) as exc:
                raise DataError("%s (%d entries before it were loaded)"
                                % (exc, loaded)) from None
            if size is not None:
                bar.update(size - bar.n)
    finally:
        if f is not sys.stdin:
            f.close()
    print("kvcy: loaded %d entries into %s" % (loaded, args.db), file=sys.stderr)
    return 0


def _name(file):
    return "stdin" if file == "-" else file


def _jsonl_records(f):
    """(line number, key text, value text) of each non-blank JSON line."""
    for number, line in enumerate(f, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DataError("line %d is not JSON: %s" % (number, exc)) from None
        if (not isinstance(record, dict) or not isinstance(record.get("key"), str)
                or not isinstance(record.get("value"), str)):
            raise DataError('line %d is not {"key": "...", "value": "..."}' % number)
        yield number, record["key"], record["value"]


def _csv_records(f):
    """(line number, key text, value text) of each CSV row of two fields."""
    reader = csv.reader(f)
    try:
        for row in reader:
            if not row:
                continue
            if len(row) != 2:
                raise DataError("line %d has %d fields; a row is key,value"
                                % (reader.line_num, len(row)))
            yield reader.line_num, row[0], row[1]
    except csv.Error as exc:
        raise DataError("line %d is not valid CSV: %s" % (reader.line_num, exc)) from None
