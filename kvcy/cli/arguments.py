"""Argument types and errors shared by the kvcy subcommands.

CommandError is a mistake or outcome the command reports in one line
("kvcy: message") with its exit status, such as a key that get did not find.
"""
import argparse


class CommandError(Exception):
    """Reported as "kvcy: <message>" on stderr; the command exits with exit_status."""

    def __init__(self, message, exit_status=1):
        super().__init__(message)
        self.exit_status = exit_status


def add_db_argument(parser):
    parser.add_argument("db", metavar="DB", help="the database directory")


def _integer(text, minimum, what):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer" % text) from None
    if value < minimum:
        raise argparse.ArgumentTypeError("must be %s, got %d" % (what, value))
    return value


def positive_int(text):
    """argparse type: an integer >= 1."""
    return _integer(text, 1, "at least 1")


def non_negative_int(text):
    """argparse type: an integer >= 0."""
    return _integer(text, 0, "0 or more")


def positive_seconds(text):
    """argparse type: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number of seconds" % text) from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a number of seconds above 0, got %r" % text)
    return value


class CommandParser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line naming the (sub)command,
    e.g. "kvcy bench: error: argument --num: must be at least 1, got -5"."""

    def error(self, message):
        self.exit(2, "%s: error: %s (see %s --help)\n" % (self.prog, message, self.prog))
