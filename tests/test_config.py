"""Tests for kvcy.config: size/duration parsing, YAML files, precedence,
and that conf/kvcy.yaml and docs/configuration.md mirror Options."""

import doctest
import re
from pathlib import Path

import pytest
import yaml

from kvcy.config import (
    format_duration, format_size, load_config_file, options_to_yaml,
    parse_duration, parse_size, resolve_options)
from kvcy.errors import ProgrammingError
from kvcy.options import Options

ROOT = Path(__file__).parent.parent
CONF = ROOT / "conf" / "kvcy.yaml"
DOC = ROOT / "docs" / "configuration.md"

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


# -- parse_size ---------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    (0, 0), (4096, 4096), ("0", 0), ("512", 512), ("4096B", 4096),
    ("4b", 4),
    ("4K", 4 * KIB), ("4KiB", 4 * KIB), ("4 KiB", 4 * KIB),
    ("4kib", 4 * KIB), ("4KIB", 4 * KIB), (" 4 k ", 4 * KIB),
    ("4KB", 4000), ("4kb", 4000),
    ("64MiB", 64 * MIB), ("64M", 64 * MIB), ("10MB", 10_000_000),
    ("1.5GiB", 3 * GIB // 2), ("1.5G", 3 * GIB // 2), ("1GB", 10**9),
    ("2TiB", 2 << 40), ("1TB", 10**12), ("1T", 1 << 40),
    (".5KiB", 512), ("2.KiB", 2048), ("0.5MB", 500_000),
    (2**40, 2**40),
])
def test_parse_size(text, expected):
    got = parse_size(text, "block_cache_bytes")
    assert got == expected and type(got) is int


@pytest.mark.parametrize("bad", [
    -1, "-1", "-4KiB", "abc", "", " ", "4 XB", "4KiBs", "KiB", "4 K iB",
    "1.5", "0.1KiB", "1.0000001KB", "4,096", "1e6", "0x10", "4 096",
    4096.0, 1.5, True, False, None, b"4KiB", [4096], "½K", "٤K",
])
def test_parse_size_bad(bad):
    with pytest.raises(ProgrammingError) as e:
        parse_size(bad, "block_cache_bytes")
    assert "option 'block_cache_bytes'" in str(e.value)
    assert "got %r" % (bad,) in str(e.value)


def test_parse_size_where():
    with pytest.raises(ProgrammingError,
                       match=r"^option 'block_size' in f\.yaml must be a "
                             r"size"):
        parse_size("x", "block_size", "f.yaml")


# -- parse_duration -----------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    (0, 0.0), (5, 5.0), (0.25, 0.25), ("0", 0.0), ("5", 5.0),
    ("5s", 5.0), ("5 s", 5.0), ("5S", 5.0), ("5sec", 5.0), ("1.5s", 1.5),
    ("250ms", 0.25), ("250MS", 0.25), ("1ms", 0.001), ("100us", 1e-4),
    ("2m", 120.0), ("2min", 120.0), ("1h", 3600.0), ("1.5h", 5400.0),
    (".5s", 0.5),
])
def test_parse_duration(text, expected):
    got = parse_duration(text, "flush_interval")
    assert got == pytest.approx(expected) and type(got) is float


@pytest.mark.parametrize("bad", [
    -1, -0.5, "-5s", "5 minutes", "5d", "s", "", "abc", "1e3s",
    float("inf"), float("nan"), True, None, b"5s", [5],
])
def test_parse_duration_bad(bad):
    with pytest.raises(ProgrammingError) as e:
        parse_duration(bad, "flush_interval")
    assert "option 'flush_interval'" in str(e.value)


@pytest.mark.parametrize("n,text", [
    (0, "0"), (1000, "1000"), (4096, "4KiB"), (4 * MIB, "4MiB"),
    (64 * KIB, "64KiB"), (GIB, "1GiB"), (1536, "1536"), (3 * MIB // 2,
                                                         "1536KiB"),
])
def test_format_size(n, text):
    assert format_size(n) == text
    assert parse_size(text) == n


@pytest.mark.parametrize("seconds,text", [
    (0.0, "0s"), (5.0, "5s"), (1.5, "1.5s"), (0.25, "250ms"),
    (3600.0, "3600s"), (1e-7, "0.0000001s"), (0.0015, "0.0015s"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


# -- load_config_file ---------------------------------------------------

def write(tmp_path, text, name="x.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_load_mapping(tmp_path):
    p = write(tmp_path, "block_size: 8KiB\nsync: true\nflush_interval: 5s\n")
    assert load_config_file(p) == {
        "block_size": "8KiB", "sync": True, "flush_interval": "5s"}
    assert load_config_file(str(p)) == load_config_file(p)


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n"])
def test_load_empty(tmp_path, text):
    assert load_config_file(write(tmp_path, text)) == {}


@pytest.mark.parametrize("text,kind", [
    ("- a\n- b\n", "list"), ("42\n", "int"), ("just a string\n", "str"),
])
def test_load_non_mapping(tmp_path, text, kind):
    p = write(tmp_path, text)
    with pytest.raises(ProgrammingError) as e:
        load_config_file(p)
    assert str(p) in str(e.value)
    assert "mapping" in str(e.value) and kind in str(e.value)


@pytest.mark.parametrize("text,line", [
    ("block_size: 4096\nsync true\nfoo\n", 3),
    ("block_size: 4096\nsync: [true\n", 3),
    ("block_size: 4096\n  sync: true\n", 2),
    ("a: 'unterminated\n", 2),
])
def test_load_yaml_error_names_file_and_line(tmp_path, text, line):
    p = write(tmp_path, text)
    with pytest.raises(ProgrammingError) as e:
        load_config_file(p)
    msg = str(e.value)
    assert msg.startswith("cannot parse config file %r" % str(p))
    assert " line %d " % line in msg
    assert isinstance(e.value.__cause__, yaml.YAMLError)


def test_load_duplicate_key(tmp_path):
    p = write(tmp_path, "block_size: 4096\nsync: true\nblock_size: 8192\n")
    with pytest.raises(ProgrammingError) as e:
        load_config_file(p)
    assert "line 3" in str(e.value) and "duplicate key 'block_size'" \
        in str(e.value) and str(p) in str(e.value)


def test_load_nested_section_rejected(tmp_path):
    p = write(tmp_path, "memtable:\n  max_bytes: 4MiB\n")
    with pytest.raises(ProgrammingError,
                       match="option 'memtable' in .*flat"):
        load_config_file(p)
    p = write(tmp_path, "block_size: [1, 2]\n")
    with pytest.raises(ProgrammingError, match="'block_size'"):
        load_config_file(p)


def test_load_non_string_key(tmp_path):
    p = write(tmp_path, "1: 2\n")
    with pytest.raises(ProgrammingError, match="option names must be "
                                               "strings, got 1"):
        load_config_file(p)


def test_load_missing_file(tmp_path):
    p = tmp_path / "nope.yaml"
    with pytest.raises(ProgrammingError, match="cannot read config file") \
            as e:
        load_config_file(p)
    assert str(p) in str(e.value)


def test_load_not_utf8(tmp_path):
    p = tmp_path / "bin.yaml"
    p.write_bytes(b"block_size: \xff\xfe\n")
    with pytest.raises(ProgrammingError, match="cannot read config file"):
        load_config_file(p)


def test_load_no_python_tags(tmp_path):
    p = write(tmp_path, "sync: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ProgrammingError, match="cannot parse config file"):
        load_config_file(p)


# -- resolve_options ----------------------------------------------------

def test_resolve_defaults():
    assert resolve_options() == Options()
    assert resolve_options(None) == Options()
    assert resolve_options({}) == Options()


def test_resolve_from_dict_parses_units():
    opts = resolve_options({"memtable_max_bytes": "16MiB",
                            "block_size": "8 KiB", "flush_interval": "250ms",
                            "stats_interval": 60, "sync": True})
    assert opts.memtable_max_bytes == 16 * MIB
    assert opts.block_size == 8 * KIB
    assert opts.flush_interval == 0.25
    assert opts.stats_interval == 60.0
    assert opts.sync is True


def test_resolve_kwargs_parse_units():
    opts = resolve_options(block_cache_bytes="1GiB", flush_interval="2m",
                           row_cache_bytes=4096)
    assert opts.block_cache_bytes == GIB
    assert opts.flush_interval == 120.0
    assert opts.row_cache_bytes == 4096


def test_precedence_file_then_kwargs(tmp_path):
    p = write(tmp_path, "block_size: 8KiB\ncompression: none\n"
                        "flush_interval: 5s\n")
    opts = resolve_options(config=p, block_size="16KiB")
    assert opts.block_size == 16 * KIB          # kwargs beat the file
    assert opts.compression == "none"           # file beats defaults
    assert opts.flush_interval == 5.0
    assert opts.bloom_bits_per_key == 10        # default
    assert resolve_options(config=str(p)) == resolve_options(config=p)


def test_none_overrides_ignored(tmp_path):
    p = write(tmp_path, "block_size: 8KiB\nsync: true\n")
    opts = resolve_options(config=p, block_size=None, sync=None,
                           compression=None)
    assert (opts.block_size, opts.sync, opts.compression) == \
        (8 * KIB, True, "snappy")


def test_options_as_base():
    base = Options(block_size=8192)
    assert resolve_options(base) == base
    assert resolve_options(base, sync=True) == base.replace(sync=True)


def test_relations_across_sources(tmp_path):
    # A file may raise the slowdown trigger past the default stop trigger
    # when the keywords raise the stop trigger: relations are checked on
    # the merged result only.
    p = write(tmp_path, "level0_slowdown_trigger: 20\n")
    opts = resolve_options(config=p, level0_stop_trigger=30)
    assert (opts.level0_slowdown_trigger, opts.level0_stop_trigger) == \
        (20, 30)
    with pytest.raises(ProgrammingError, match="level0_slowdown_trigger"):
        resolve_options(config=p)


def test_unknown_in_file(tmp_path, monkeypatch):
    conf = tmp_path / "conf"
    conf.mkdir()
    p = write(conf, "blok_size: 4096\n")
    with pytest.raises(ProgrammingError) as e:
        resolve_options(config=p)
    assert str(e.value) == ("unknown option 'blok_size' in %s; did you mean "
                            "'block_size'?" % p)
    # Relative paths are shown as given.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProgrammingError) as e:
        resolve_options(config="conf/x.yaml")
    assert str(e.value) == ("unknown option 'blok_size' in conf/x.yaml; "
                            "did you mean 'block_size'?")


def test_unknown_in_kwargs_and_dict():
    with pytest.raises(ProgrammingError) as e:
        resolve_options(blok_size=4096)
    assert str(e.value) == ("unknown option 'blok_size' in keyword "
                            "arguments; did you mean 'block_size'?")
    with pytest.raises(ProgrammingError,
                       match="unknown option 'foo' in keyword arguments$"):
        resolve_options(foo=None)  # unknown even when None
    with pytest.raises(ProgrammingError,
                       match="unknown option 'synk' in config dict; did you "
                             "mean 'sync'"):
        resolve_options({"synk": True})
    with pytest.raises(ProgrammingError, match="unknown option 3"):
        resolve_options({3: True})


def test_bad_value_in_file_names_file_and_option(tmp_path):
    p = write(tmp_path, "memtable_max_bytes: 4 mega\n")
    with pytest.raises(ProgrammingError) as e:
        resolve_options(config=p)
    assert str(e.value).startswith(
        "option 'memtable_max_bytes' in %s must be a size" % p)
    p = write(tmp_path, "block_size: 100\n")
    with pytest.raises(ProgrammingError) as e:
        resolve_options(config=p)
    assert str(e.value) == ("option 'block_size' in %s must be an integer "
                            ">= 256, got 100" % p)
    p = write(tmp_path, "compression: off\n")  # YAML 1.1 reads off as False
    with pytest.raises(ProgrammingError,
                       match="option 'compression' in .* got False"):
        resolve_options(config=p)


def test_bad_value_in_kwargs():
    with pytest.raises(ProgrammingError) as e:
        resolve_options(sync="yes")
    assert str(e.value) == "option 'sync' must be a bool, got 'yes'"
    with pytest.raises(ProgrammingError, match="'flush_interval'"):
        resolve_options(flush_interval="soon")
    with pytest.raises(ProgrammingError, match="'block_size'"):
        resolve_options(block_size=-1)


def test_null_value_in_file(tmp_path):
    p = write(tmp_path, "block_size:\n")
    with pytest.raises(ProgrammingError,
                       match="option 'block_size' in .* has no value"):
        resolve_options(config=p)


def test_bad_config_type():
    with pytest.raises(ProgrammingError, match="config must be"):
        resolve_options(42)
    with pytest.raises(ProgrammingError, match="config must be"):
        resolve_options(b"conf/kvcy.yaml")


# -- conf/kvcy.yaml and docs/configuration.md ---------------------------

def test_conf_file_equals_defaults():
    assert resolve_options(config=CONF) == Options()
    assert resolve_options(config=str(CONF)) == Options()


def test_conf_file_is_generated():
    # Regenerate with:
    #   python -c "from kvcy.config import options_to_yaml; \
    #              print(options_to_yaml(), end='')" > conf/kvcy.yaml
    assert CONF.read_text(encoding="utf-8") == options_to_yaml()


def test_every_option_in_conf_file():
    data = load_config_file(CONF)
    assert list(data) == list(Options.names())
    text = CONF.read_text(encoding="utf-8")
    for name in Options.names():
        # Each option is preceded by a comment.
        assert re.search(r"^# .*\n(# .*\n)*%s: " % name, text, re.M), name


def test_every_option_in_docs():
    text = DOC.read_text(encoding="utf-8")
    conf_text = options_to_yaml()
    for name in Options.names():
        row = re.search(r"^\| `%s` \| `([^`]*)` \| ([^|]*) \| (.+) \|$"
                        % name, text, re.M)
        assert row, "docs/configuration.md has no table row for %s" % name
        default, accepts = row.group(1), row.group(2).strip()
        # Default and "accepts" columns read exactly as in conf/kvcy.yaml.
        assert "# (%s)\n%s: %s\n" % (accepts, name, default) in conf_text, \
            name


def test_docs_mention_limits():
    text = DOC.read_text(encoding="utf-8")
    for const in ("MAX_KEY_BYTES", "MAX_VALUE_BYTES", "MAX_BATCH_BYTES"):
        assert "`%s`" % const in text


def test_docs_examples():
    failed, attempted = doctest.testfile(
        str(DOC), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failed == 0


@pytest.mark.parametrize("opts", [
    Options(),
    Options(create_if_missing=False, sync=True, memtable_max_bytes=5000,
            memtable_min_bytes=1000, flush_interval=0.25,
            max_immutable_memtables=5, block_size=16 * KIB,
            restart_interval=1, compression="none", bloom_bits_per_key=0,
            block_cache_bytes=10**9, row_cache_bytes=3 * MIB // 2,
            max_open_files=16, level0_compaction_trigger=2,
            level0_slowdown_trigger=2, level0_stop_trigger=3,
            level1_max_bytes=1, level_size_multiplier=2, max_levels=20,
            target_file_bytes=12345, read_threads=4, write_threads=2,
            background_threads=3, stats_interval=1e-7),
    Options(readonly=True, flush_interval=3600, stats_interval=1.5),
])
def test_options_to_yaml_round_trip(tmp_path, opts):
    text = options_to_yaml(opts)
    p = write(tmp_path, text)
    assert resolve_options(config=p) == opts
    assert text.splitlines()[0].startswith("# ")
