"""The kvcy command (console script `kvcy`, also `python -m kvcy`).

    kvcy get|put|delete|scan ...     keys and values (kvcy/cli/key_value.py)
    kvcy load|dump ...               JSON lines or CSV (kvcy/cli/transfer.py)
    kvcy stats ...                   table, JSON, Prometheus (kvcy/cli/stats_table.py)
    kvcy compact|check|repair ...    maintenance (kvcy/cli/maintenance.py)
    kvcy backup|restore ...          whole-database copies (kvcy/cli/backup.py)
    kvcy bench ...                   ops/s (kvcy/cli/bench.py)

main(argv) runs one command and returns its exit status, so tests and
doctests call it in-process. Every user mistake ends in one line on stderr,
never a traceback:

    2    usage error (argparse prints the subcommand's usage and the problem)
    1    a kvcy error ("kvcy: OperationalError: database is locked ..."), bad
         input data, a missing file, a key get did not find, damage found by check
    130  interrupted (Ctrl-C)
    141  the output pipe was closed early (as in `kvcy scan DB | head`)
"""
import os
import sys

import kvcy
from kvcy.cli import backup, bench, key_value, maintenance, stats_table, transfer
from kvcy.cli.arguments import CommandError, CommandParser

EXIT_INTERRUPTED = 130      # 128 + SIGINT, what a shell reports for Ctrl-C
EXIT_BROKEN_PIPE = 141      # 128 + SIGPIPE


def build_parser():
    """The argparse parser of the kvcy command and all its subcommands."""
    parser = CommandParser(
        prog="kvcy",
        description="kvcy: an embedded LSM-tree key-value store. Each command takes "
                    "--help; see docs/operations.md.")
    parser.add_argument("--version", action="version", version="kvcy " + kvcy.__version__)
    sub = parser.add_subparsers(dest="command", metavar="command")
    for module in (key_value, transfer, stats_table, maintenance, backup, bench):
        module.register(sub)
    return parser


def main(argv=None, out=None):
    """Run the kvcy command with argv (default: sys.argv[1:]); return the exit status."""
    out = out or sys.stdout
    try:
        return _run(argv, out)
    except KeyboardInterrupt:
        _report("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence(out)
        _report("output closed before the command finished (broken pipe)")
        return EXIT_BROKEN_PIPE


def _run(argv, out):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:       # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_help(out)
        return 2
    try:
        status = args.run(args, out)
        out.flush()
        return status
    except CommandError as exc:
        _report(str(exc))
        return exc.exit_status
    except kvcy.Error as exc:
        _report("%s: %s" % (type(exc).__name__, exc))
        return 1
    except BrokenPipeError:
        raise
    except OSError as exc:
        if exc.filename is not None:
            _report("%s: %s" % (exc.filename, exc.strerror or exc))
        else:
            _report(str(exc))
        return 1


def _report(message):
    try:
        print("kvcy: " + message, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass   # stderr is gone too; the exit status still tells


def _silence(out):
    """Point the closed stdout at /dev/null so the interpreter's final flush of
    what is still buffered does not fail again (the Python docs' recipe for SIGPIPE)."""
    try:
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
