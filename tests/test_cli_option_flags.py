"""The database option flags of the kvcy command: one per Options field,
generated from its metadata, overriding --config, with a usage error for a
bad value."""
import dataclasses

import pytest

import kvcy
from kvcy.cli import build_parser, main
from kvcy.cli.option_flags import flag_name
from kvcy.options import Options


def subparsers():
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


@pytest.mark.parametrize("command", sorted(subparsers()))
def test_every_option_has_a_flag_with_help(command):
    flags = {s: a for a in subparsers()[command]._actions for s in a.option_strings}
    assert "--config" in flags
    for field in dataclasses.fields(Options):
        action = flags[flag_name(field.name)]
        assert action.dest == field.name and action.default is None
        assert field.metadata["doc"] in action.help.replace("%%", "%")
        if field.metadata["kind"] == "bool":
            assert "--no-" + field.name.replace("_", "-") in flags


def test_help_shows_the_command_own_defaults(capsys):
    help_text = subparsers()["get"].format_help()
    assert "--readonly, --no-readonly" in help_text
    readonly_help = next(a.help for a in subparsers()["get"]._actions if a.dest == "readonly")
    assert readonly_help.endswith("(default: on)")


@pytest.fixture
def opened(monkeypatch):
    """The Options of each connection the command opens."""
    seen = []
    real_connect = kvcy.connect

    def recording_connect(*args, **kwargs):
        conn = real_connect(*args, **kwargs)
        seen.append(conn.options)
        return conn
    monkeypatch.setattr(kvcy, "connect", recording_connect)
    return seen


def test_flags_override_the_config_file(opened, tmp_path, capsys):
    conf = tmp_path / "kvcy.yaml"
    conf.write_text("block_size: 8KiB\nmemtable_max_bytes: 1MiB\ncompression: none\n")
    assert main(["put", str(tmp_path / "db"), "k", "v", "--config", str(conf),
                 "--block-size", "16KiB", "--sync", "--flush-interval", "250ms",
                 "--bloom-bits-per-key", "5"]) == 0
    options = opened[-1]
    assert (options.block_size, options.memtable_max_bytes, options.compression) \
        == (16384, 1 << 20, "none")
    assert (options.sync, options.flush_interval, options.bloom_bits_per_key) \
        == (True, 0.25, 5)
    assert options.create_if_missing is True      # put's own default
    assert main(["get", str(tmp_path / "db"), "k"]) == 0
    assert opened[-1].readonly is True and opened[-1].create_if_missing is False


def test_a_flag_overrides_the_command_default(opened, db_path, capsys):
    assert main(["get", str(db_path), "k", "--create-if-missing", "--no-readonly"]) == 1
    assert db_path.exists()                       # created, because the flag said so
    assert (opened[-1].readonly, opened[-1].create_if_missing) == (False, True)
    assert main(["put", str(db_path), "k", "v", "--readonly"]) == 1
    assert "cannot write: the database is open read-only" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["--block-size", "12"], "argument --block-size: option 'block_size' must be an integer >= 256, got 12"),
    (["--block-size", "4mega"], "argument --block-size: option 'block_size' must be a size"),
    (["--max-levels", "x"], "argument --max-levels: option 'max_levels' must be an integer in 2..20, got 'x'"),
    (["--flush-interval", "soon"], "argument --flush-interval: option 'flush_interval' must be a duration"),
    (["--compression", "zstd"], "argument --compression: invalid choice: 'zstd'"),
])
def test_bad_flag_value_is_a_usage_error(capsys, tmp_path, argv, message):
    assert main(["put", str(tmp_path / "db"), "k", "v", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kvcy put: error: " + message) and err.count("\n") == 1
    assert not (tmp_path / "db").exists()


def test_relations_between_flags_and_bad_config_are_one_line(capsys, tmp_path):
    assert main(["put", str(tmp_path / "db"), "k", "v", "--level0-compaction-trigger", "9"]) == 1
    assert capsys.readouterr().err == (
        "kvcy: ProgrammingError: option 'level0_compaction_trigger' must be <= "
        "level0_slowdown_trigger (8), got 9\n")
    conf = tmp_path / "bad.yaml"
    conf.write_text("blok_size: 4KiB\n")
    assert main(["put", str(tmp_path / "db"), "k", "v", "--config", str(conf)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kvcy: ProgrammingError: unknown option 'blok_size' in %s" % conf)
    assert err.count("\n") == 1
