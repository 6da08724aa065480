"""kvcy compact, check and repair: whole-database maintenance.

    kvcy compact DB [--start K] [--stop K]   compact a key range (default: all)
    kvcy check DB [--json]                   verify every file; exit 1 on damage
    kvcy repair DB [--json]                  rebuild a damaged database

check and repair come from kvcy.check and kvcy.repair, imported when the
command runs so the other commands start without them. They read the files
as they are, so the database option flags are refused there.
compact's bar follows the bytes compactions have read, polled from stats()
on a helper thread while compact_range() runs in the command's own thread
(so Ctrl-C interrupts the compaction, and closing the database stays on
the thread that opened it).
"""
import json
import threading

import kvcy
from kvcy.cli.arguments import CommandError, add_db_argument
from kvcy.cli.codec import add_encoding_flags, decode, key_encoding
from kvcy.cli.option_flags import add_option_flags, connect_args, refuse_option_flags
from kvcy.cli.progress import add_progress_flag, progress_bar, reporter

_POLL_SECONDS = 0.2


def register(sub):
    p = sub.add_parser("compact", usage="%(prog)s DB [--start KEY] [--stop KEY] [options]",
                       help="compact the database (or a key range)",
                       description="Compact every table holding keys in [--start, --stop] "
                                   "down through the levels, dropping overwritten values "
                                   "and deleted keys. The database must exist.")
    add_db_argument(p)
    p.add_argument("--start", metavar="KEY", help="first key (default: the smallest)")
    p.add_argument("--stop", metavar="KEY", help="last key, inclusive (default: the largest)")
    add_encoding_flags(p)
    add_progress_flag(p)
    add_option_flags(p, create_if_missing=False)
    p.set_defaults(run=compact)

    p = sub.add_parser("check", usage="%(prog)s DB [--json] [options]",
                       help="verify every table, the MANIFEST and the logs",
                       description="Read every live file and report each problem (file, "
                                   "offset, what is wrong). Exit status 0 when clean, 1 "
                                   "when damaged. See kvcy repair.")
    add_db_argument(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_progress_flag(p)
    add_option_flags(p)
    p.set_defaults(run=check)

    p = sub.add_parser("repair", usage="%(prog)s DB [--json] [options]",
                       help="rebuild a damaged database from what survives",
                       description="Recover the key ranges of the surviving tables, replay "
                                   "the logs and write a fresh MANIFEST; damaged files "
                                   "are kept in DB/lost/. Close every writer first.")
    add_db_argument(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_progress_flag(p)
    add_option_flags(p)
    p.set_defaults(run=repair)


def compact(args, out):
    kenc = key_encoding(args)
    start = None if args.start is None else decode(args.start, kenc, "--start")
    stop = None if args.stop is None else decode(args.stop, kenc, "--stop")
    config, options = connect_args(args)
    with kvcy.connect(args.db, config, **options) as conn:
        before = conn.stats()
        total = sum(v for k, v in before.items()
                    if k.startswith("level") and k.endswith("_bytes") and isinstance(v, int))
        total += before.get("memtable_bytes", 0)
        with progress_bar(args, total=total or None, unit="B", unit_scale=True,
                          desc="compact") as bar:
            done = threading.Event()
            watcher = threading.Thread(target=_follow_compaction,
                                       args=(conn, before, bar, done),
                                       name="kvcy-cli-progress", daemon=True)
            watcher.start()
            try:
                conn.compact_range(start, stop)
            finally:
                done.set()
                watcher.join()
            if bar.total:
                bar.update(bar.total - bar.n)
        after = conn.stats()
    print("kvcy: compacted %s: %d compactions, %s bytes read, %s bytes written"
          % (args.db, after["compactions"] - before["compactions"],
             format(after["compaction_bytes_read"] - before["compaction_bytes_read"], ","),
             format(after["compaction_bytes_written"] - before["compaction_bytes_written"],
                    ",")), file=out)
    return 0


def _follow_compaction(conn, before, bar, done):
    start = before["compaction_bytes_read"] + before["flush_bytes"]
    while not done.wait(_POLL_SECONDS):
        try:
            now = conn.stats()
        except kvcy.Error:
            return
        moved = now["compaction_bytes_read"] + now["flush_bytes"] - start
        if bar.total:
            moved = min(moved, bar.total)
        if moved > bar.n:
            bar.update(moved - bar.n)


def _import(name):
    """kvcy.check.check or kvcy.repair.repair; a clear error if not installed."""
    import importlib
    try:
        module = importlib.import_module("kvcy." + name)
    except ImportError as exc:
        raise CommandError("kvcy %s is not available: %s" % (name, exc)) from None
    return getattr(module, name)


def check(args, out):
    refuse_option_flags(args, "check")
    run_check = _import("check")
    with progress_bar(args, unit="B", unit_scale=True, desc="check") as bar:
        report = run_check(args.db, progress=reporter(bar))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True, default=str), file=out)
    elif report.ok:
        print("kvcy: %s: no problems found" % args.db, file=out)
    else:
        for problem in report.problems:
            print(problem, file=out)
        count = len(report.problems)
        print("kvcy: %s: %d problem%s found; see kvcy repair"
              % (args.db, count, "" if count == 1 else "s"), file=out)
    return 0 if report.ok else 1


def repair(args, out):
    refuse_option_flags(args, "repair")
    run_repair = _import("repair")
    with progress_bar(args, unit="B", unit_scale=True, desc="repair") as bar:
        report = run_repair(args.db, progress=reporter(bar))
    summary = report.to_dict()
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True, default=str), file=out)
    else:
        for name, value in summary.items():
            print("%s: %s" % (name, value if not isinstance(value, (list, dict))
                              else json.dumps(value, default=str)), file=out)
    return 0
