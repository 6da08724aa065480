"""Command-line flags for every database option, generated from Options.

Each field of kvcy.options.Options becomes one flag named after it
(block_size -> --block-size), typed and described by the field's metadata
(doc, kind, min/max, choices), so a new option gets its flag, its parsing
and its --help line without touching the CLI. Bool options get a --NAME /
--no-NAME pair. Every flag defaults to None ("not given"): the value then
comes from --config, else from the command's own default, else from
Options' default (config.resolve_options' precedence).

Thread-safety: pure functions; argparse parsers are built per call.
"""
import argparse
import dataclasses

from kvcy.config import format_duration, format_size, parse_duration, parse_size
from kvcy.errors import NotSupportedError, ProgrammingError
from kvcy.options import (KIND_BOOL, KIND_CHOICE, KIND_DURATION, KIND_INT, KIND_SIZE,
                          Options, check_option, describe_option)


def flag_name(option):
    """The flag of an option name: block_size -> --block-size."""
    return "--" + option.replace("_", "-")


def _parser_for(name, kind):
    """An argparse type function turning the flag's text into the option's value
    and checking its range, so a bad value is a usage error naming the flag."""
    def parse(text):
        try:
            if kind == KIND_SIZE:
                value = parse_size(text, name)
            elif kind == KIND_DURATION:
                value = parse_duration(text, name)
            else:
                try:
                    value = int(text)
                except ValueError:
                    raise ProgrammingError("option %r must be %s, got %r"
                                           % (name, describe_option(name), text)) from None
            check_option(name, value)
        except ProgrammingError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return value
    parse.__name__ = kind   # argparse names the type in "invalid <type> value"
    return parse


def _default_text(field, value):
    kind = field.metadata["kind"]
    if kind == KIND_BOOL:
        return "on" if value else "off"
    if kind == KIND_SIZE:
        return format_size(value)
    if kind == KIND_DURATION:
        return format_duration(value)
    return str(value)


def add_option_flags(parser, **command_defaults):
    """Add --config and one flag per Options field to parser (in a group).

    command_defaults are the command's own option values (get opens with
    readonly=True); flags override them, and --help shows them as defaults."""
    parser.set_defaults(command_options=command_defaults)
    group = parser.add_argument_group(
        "database options",
        "each overrides the same option in --config (see docs/configuration.md)")
    group.add_argument("--config", metavar="FILE", default=None,
                       help="YAML file of options (conf/kvcy.yaml lists them all)")
    for field in dataclasses.fields(Options):
        meta = field.metadata
        kind = meta["kind"]
        flag = flag_name(field.name)
        default = command_defaults.get(field.name, field.default)
        helptext = "%s (default: %s)" % (meta["doc"], _default_text(field, default))
        # argparse expands "%" in help strings.
        helptext = helptext.replace("%", "%%")
        if kind == KIND_BOOL:
            group.add_argument(flag, dest=field.name, default=None,
                               action=argparse.BooleanOptionalAction, help=helptext)
        elif kind == KIND_CHOICE:
            group.add_argument(flag, dest=field.name, default=None,
                               choices=meta["choices"], help=helptext)
        elif kind in (KIND_SIZE, KIND_DURATION, KIND_INT):
            metavar = {KIND_SIZE: "SIZE", KIND_DURATION: "SECONDS"}.get(kind, "N")
            group.add_argument(flag, dest=field.name, default=None, metavar=metavar,
                               type=_parser_for(field.name, kind), help=helptext)
        else:
            raise AssertionError("option %r has kind %r, which has no flag"
                                 % (field.name, kind))


def given_options(args):
    """The {option: value} of the option flags given on the command line."""
    return {name: getattr(args, name) for name in Options.names()
            if getattr(args, name, None) is not None}


def connect_args(args):
    """(config, options) for kvcy.connect(): the command's own defaults
    (e.g. readonly=True for get), overridden by the flags that were given."""
    options = dict(args.command_options)
    options.update(given_options(args))
    return args.config, options


def refuse_option_flags(args, command):
    """Raise NotSupportedError naming the first option flag (or --config) given
    to a command that does not open the database through Options."""
    given = list(given_options(args))
    if args.config is not None:
        given.insert(0, "config")
    if given:
        raise NotSupportedError("kvcy %s reads the files as they are and takes no "
                                "database options; %s has no effect here"
                                % (command, flag_name(given[0])))
