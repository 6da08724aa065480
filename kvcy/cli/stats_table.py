"""kvcy stats: a database's counters as a readable table, JSON or Prometheus text.

    kvcy stats DB                     a table of counters, levels and latencies
    kvcy stats DB --json              stats() as JSON
    kvcy stats DB --prometheus        Prometheus text exposition format
    kvcy stats DB --watch 2           redraw the table every 2 seconds
    kvcy stats DB --serve 9464        serve /metrics to Prometheus until Ctrl-C

The table is built from whatever stats() returns, so a new counter shows up
without a change here: flat numbers in one name/value list, levelN_files
and levelN_bytes as a per-level table, and nested mappings (latency) as a
table with one row per entry. With --watch the read-only connection is
refreshed before each redraw, so the figures follow a writer in another process.
"""
import json
import re
import time

import kvcy
from kvcy.cli.arguments import add_db_argument, positive_int, positive_seconds
from kvcy.cli.option_flags import add_option_flags, connect_args
from kvcy.stats import prometheus_text

_LEVEL_KEY = re.compile(r"level(\d+)_(\w+)")
_CLEAR_SCREEN = "\x1b[H\x1b[2J"


def register(sub):
    p = sub.add_parser("stats", usage="%(prog)s DB [--json | --prometheus] [--watch SECONDS [--count N]] [options]",
                       help="print the database's counters",
                       description="Print stats() as a table (default), JSON or "
                                   "Prometheus text. Opens the database read-only.")
    add_db_argument(p)
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print stats() as JSON")
    shape.add_argument("--prometheus", action="store_true",
                       help="print the Prometheus text exposition format")
    p.add_argument("--watch", metavar="SECONDS", type=positive_seconds, default=None,
                   help="print again every SECONDS until interrupted (Ctrl-C)")
    p.add_argument("--count", metavar="N", type=positive_int, default=None,
                   help="with --watch, stop after N prints")
    p.add_argument("--serve", metavar="PORT", type=int, default=None,
                   help="serve the metrics over HTTP on PORT for Prometheus to scrape, "
                        "refreshing every --watch seconds (default 5), until interrupted")
    p.add_argument("--addr", metavar="ADDRESS", default="127.0.0.1",
                   help="with --serve, the address to bind (default 127.0.0.1)")
    add_option_flags(p, readonly=True, create_if_missing=False)
    p.set_defaults(run=stats)


def stats(args, out):
    config, options = connect_args(args)
    with kvcy.connect(args.db, config, **options) as conn:
        if args.serve is not None:
            return _serve(args, conn, out)
        if args.watch is None:
            _print(args, conn.stats(), out)
            return 0
        clear = _CLEAR_SCREEN if getattr(out, "isatty", lambda: False)() else ""
        printed = 0
        while True:
            conn.refresh()
            text = _render(args, conn.stats())
            out.write(clear + text + ("" if clear else "\n"))
            out.flush()
            printed += 1
            if args.count is not None and printed >= args.count:
                return 0
            time.sleep(args.watch)


def _serve(args, conn, out):
    # Serve until interrupted (main() turns Ctrl-C into exit status 130);
    # the read-only connection follows the writer's files between scrapes.
    server = conn.serve_metrics(args.serve, addr=args.addr)
    out.write("serving metrics at %s\n" % server.url)
    out.flush()
    printed = 0
    while args.count is None or printed < args.count:
        time.sleep(args.watch or 5.0)
        conn.refresh()
        printed += 1
    return 0


def _print(args, values, out):
    out.write(_render(args, values))


def _render(args, values):
    if args.prometheus:
        return prometheus_text(values)
    if args.json:
        return json.dumps(values, indent=2, sort_keys=True, default=str) + "\n"
    return format_table(values)


def format_table(values):
    """stats() as aligned plain-text tables."""
    flat, levels, nested = [], {}, {}
    for name, value in values.items():
        m = _LEVEL_KEY.fullmatch(name)
        if m and isinstance(value, (int, float)):
            levels.setdefault(int(m.group(1)), {})[m.group(2)] = value
        elif isinstance(value, dict):
            nested[name] = value
        else:
            flat.append((name, _cell(value)))
    parts = [_table(("counter", "value"), flat, right=(1,))]
    if levels:
        columns = []
        for row in levels.values():
            columns.extend(c for c in row if c not in columns)
        rows = [(str(level),) + tuple(_cell(levels[level].get(c, "")) for c in columns)
                for level in sorted(levels)]
        parts.append(_table(("level",) + tuple(columns), rows,
                            right=range(len(columns) + 1)))
    for name, table in nested.items():
        parts.append(_nested_table(name, table))
    return "\n".join(parts)


def _nested_table(name, table):
    rows_are_dicts = all(isinstance(v, dict) for v in table.values())
    if not rows_are_dicts:
        return _table((name, "value"), [(k, _cell(v)) for k, v in table.items()], right=(1,))
    columns = []
    for row in table.values():
        columns.extend(c for c in row if c not in columns)
    title = name + (" (us)" if name == "latency" else "")
    rows = [(key,) + tuple(_cell(row.get(c, "")) for c in columns)
            for key, row in table.items()]
    return _table((title,) + tuple(columns), rows, right=range(1, len(columns) + 1))


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return format(value, ",")
    if isinstance(value, float):
        return format(value, ",.3f").rstrip("0").rstrip(".") if value else "0"
    return str(value)


def _table(header, rows, right=()):
    """Columns padded to their widest cell; columns in right are right-aligned."""
    right = set(right)
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells):
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    out.extend(line(row) for row in rows)
    return "\n".join(out) + "\n"
