"""Tests for kvcy.options: defaults, per-field validation, relations,
replace() with suggestions, immutability."""

import copy
import dataclasses
import pickle

import pytest

from kvcy.errors import ProgrammingError
from kvcy.options import (
    DURATION_OPTIONS, MAX_BATCH_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES,
    SIZE_OPTIONS, Options, check_option, describe_option, option_field)

KIB, MIB = 1024, 1024 * 1024

EXPECTED_DEFAULTS = {
    "create_if_missing": True, "error_if_exists": False, "readonly": False,
    "refresh_interval": 0.0,
    "paranoid_checks": True, "sync": False,
    "memtable_max_bytes": 4 * MIB, "memtable_min_bytes": 64 * KIB,
    "flush_interval": 0.0, "max_immutable_memtables": 2,
    "block_size": 4 * KIB, "restart_interval": 16, "compression": "snappy",
    "partitioned_index": False,
    "bloom_bits_per_key": 10,
    "block_cache_bytes": 32 * MIB, "row_cache_bytes": 0,
    "max_open_files": 1000,
    "level0_compaction_trigger": 4, "level0_slowdown_trigger": 8,
    "level0_stop_trigger": 12, "level1_max_bytes": 10 * MIB,
    "level_size_multiplier": 10, "max_levels": 7,
    "target_file_bytes": 2 * MIB,
    "read_threads": 0, "write_threads": 0, "background_threads": 1,
    "stats_interval": 0.0, "info_log_max_bytes": 4 * MIB,
}


def test_limits():
    assert MAX_KEY_BYTES == 65536
    assert MAX_VALUE_BYTES == 64 * MIB
    assert MAX_BATCH_BYTES == 1024 * MIB


def test_defaults():
    opts = Options()
    assert dataclasses.asdict(opts) == EXPECTED_DEFAULTS
    assert Options.names() == tuple(EXPECTED_DEFAULTS)
    opts.validate()  # defaults are valid
    assert isinstance(opts.flush_interval, float)


def test_every_field_documented():
    for f in dataclasses.fields(Options):
        assert f.metadata["doc"], f.name
        assert "\n" not in f.metadata["doc"]


def test_size_and_duration_sets():
    assert SIZE_OPTIONS == {n for n in Options.names()
                            if n.endswith("_bytes")} | {"block_size"}
    assert DURATION_OPTIONS == {"flush_interval", "stats_interval", "refresh_interval"}


def test_frozen():
    opts = Options()
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.block_size = 8192
    with pytest.raises((AttributeError, TypeError)):
        opts.not_an_option = 1  # slots: no __dict__


def test_hash_eq_copy_pickle():
    a, b = Options(), Options(block_size=8192)
    assert a == Options() and hash(a) == hash(Options())
    assert a != b
    assert pickle.loads(pickle.dumps(b)) == b
    assert copy.deepcopy(b) == b


def test_durations_normalised_to_float():
    opts = Options(flush_interval=5, stats_interval=1)
    assert opts.flush_interval == 5.0 and type(opts.flush_interval) is float
    assert opts == Options(flush_interval=5.0, stats_interval=1.0)


BAD_VALUES = [
    # bools must be real bools
    ("create_if_missing", 1), ("create_if_missing", "yes"),
    ("error_if_exists", None), ("readonly", 0), ("paranoid_checks", "true"),
    ("sync", 1.0),
    # sizes and counts: ints only, no bools, no floats, in range
    ("memtable_max_bytes", 4095), ("memtable_max_bytes", 4096.0),
    ("memtable_max_bytes", "4MiB"), ("memtable_max_bytes", True),
    ("memtable_min_bytes", -1),
    ("max_immutable_memtables", 0),
    ("block_size", -1), ("block_size", 255), ("block_size", None),
    ("restart_interval", 0), ("restart_interval", 1.5),
    ("compression", "zlib"), ("compression", "Snappy"), ("compression", None),
    ("compression", False),
    ("bloom_bits_per_key", -1), ("bloom_bits_per_key", 65),
    ("block_cache_bytes", -1), ("row_cache_bytes", -5),
    ("max_open_files", 15), ("max_open_files", "1000"),
    ("level0_compaction_trigger", 0), ("level0_slowdown_trigger", 0),
    ("level0_stop_trigger", 0),
    ("level1_max_bytes", 0), ("level_size_multiplier", 1),
    ("max_levels", 1), ("max_levels", 21),
    ("target_file_bytes", 0),
    ("read_threads", -1), ("write_threads", -1), ("background_threads", 0),
    # durations: finite numbers >= 0, not strings
    ("flush_interval", -0.5), ("flush_interval", "5s"),
    ("flush_interval", float("inf")), ("flush_interval", float("nan")),
    ("flush_interval", True),
    ("stats_interval", -1), ("refresh_interval", -1),
]


@pytest.mark.parametrize("name,value", BAD_VALUES)
def test_bad_value_names_field(name, value):
    # Keep relations satisfied so the field's own check is what fails.
    extra = {}
    if name == "memtable_max_bytes":
        extra["memtable_min_bytes"] = 0
    with pytest.raises(ProgrammingError) as e:
        Options(**{name: value}, **extra)
    msg = str(e.value)
    assert "option %r" % name in msg
    assert "got %r" % (value,) in msg
    with pytest.raises(ProgrammingError):
        Options().replace(**{name: value}, **extra)
    with pytest.raises(ProgrammingError):
        check_option(name, value)


def test_bad_value_message_exact():
    with pytest.raises(ProgrammingError) as e:
        Options(block_size=-1)
    assert str(e.value) == \
        "option 'block_size' must be an integer >= 256, got -1"
    with pytest.raises(ProgrammingError) as e:
        Options(bloom_bits_per_key=65)
    assert str(e.value) == \
        "option 'bloom_bits_per_key' must be an integer in 0..64, got 65"
    with pytest.raises(ProgrammingError) as e:
        Options(sync=1)
    assert str(e.value) == "option 'sync' must be a bool, got 1"
    with pytest.raises(ProgrammingError) as e:
        Options(compression="zlib")
    assert str(e.value) == \
        "option 'compression' must be one of 'snappy', 'none', got 'zlib'"


GOOD_VALUES = [
    ("compression", "none"), ("bloom_bits_per_key", 0),
    ("bloom_bits_per_key", 64), ("block_size", 256), ("restart_interval", 1),
    ("max_levels", 2), ("max_levels", 20), ("row_cache_bytes", 1 * MIB),
    ("read_threads", 4), ("write_threads", 2), ("background_threads", 3),
    ("flush_interval", 0.25), ("stats_interval", 60), ("sync", True),
    ("readonly", True), ("block_cache_bytes", 0), ("max_open_files", 16),
]


@pytest.mark.parametrize("name,value", GOOD_VALUES)
def test_good_values(name, value):
    assert getattr(Options(**{name: value}), name) == value


def test_describe_option():
    assert describe_option("block_size") == "an integer >= 256"
    assert describe_option("max_levels") == "an integer in 2..20"
    assert describe_option("sync") == "a bool"
    assert describe_option("flush_interval") == "a number of seconds >= 0"


def test_check_option_where():
    with pytest.raises(ProgrammingError,
                       match=r"option 'block_size' in a\.yaml must be"):
        check_option("block_size", 3, where="a.yaml")


class TestRelations:

    def test_level0_triggers_ordered(self):
        Options(level0_compaction_trigger=8, level0_slowdown_trigger=8,
                level0_stop_trigger=8)
        with pytest.raises(ProgrammingError) as e:
            Options(level0_compaction_trigger=9)
        assert str(e.value) == ("option 'level0_compaction_trigger' must be "
                                "<= level0_slowdown_trigger (8), got 9")
        with pytest.raises(ProgrammingError,
                           match="'level0_slowdown_trigger' must be <= "
                                 "level0_stop_trigger"):
            Options(level0_slowdown_trigger=13)
        with pytest.raises(ProgrammingError, match="level0_stop_trigger"):
            Options(level0_stop_trigger=7)

    def test_memtable_min_le_max(self):
        Options(memtable_min_bytes=4 * MIB)
        with pytest.raises(ProgrammingError) as e:
            Options(memtable_min_bytes=4 * MIB + 1)
        assert "'memtable_min_bytes' must be <= memtable_max_bytes" \
            in str(e.value)
        with pytest.raises(ProgrammingError, match="memtable_min_bytes"):
            Options(memtable_max_bytes=8192)
        Options(memtable_max_bytes=4096, memtable_min_bytes=0)

    def test_readonly_error_if_exists(self):
        with pytest.raises(ProgrammingError, match="error_if_exists"):
            Options(readonly=True, error_if_exists=True)
        Options(readonly=True, create_if_missing=False)
        Options(readonly=False, error_if_exists=True)

    def test_refresh_interval_needs_readonly(self):
        with pytest.raises(ProgrammingError, match="'refresh_interval' needs readonly=True"):
            Options(refresh_interval=5)
        assert Options(readonly=True, refresh_interval=0.25).refresh_interval == 0.25
        Options(refresh_interval=0)


class TestReplace:

    def test_returns_validated_copy(self):
        a = Options()
        b = a.replace(block_size=8192, compression="none")
        assert (b.block_size, b.compression) == (8192, "none")
        assert a.block_size == 4096  # original untouched
        assert a.replace() == a

    def test_rejects_bad_value(self):
        with pytest.raises(ProgrammingError, match="'block_size'"):
            Options().replace(block_size=1)

    def test_relation_checked_on_replace(self):
        with pytest.raises(ProgrammingError, match="level0_stop_trigger"):
            Options().replace(level0_stop_trigger=2)

    def test_unknown_with_suggestion(self):
        with pytest.raises(ProgrammingError) as e:
            Options().replace(blok_size=1)
        assert str(e.value) == \
            "unknown option 'blok_size'; did you mean 'block_size'?"

    def test_unknown_without_suggestion(self):
        with pytest.raises(ProgrammingError) as e:
            Options().replace(foo=1)
        assert str(e.value) == "unknown option 'foo'"

    def test_unknown_several_suggestions(self):
        with pytest.raises(ProgrammingError) as e:
            Options().replace(level0_trigger=1)
        assert "did you mean 'level0_" in str(e.value)
        assert " or " in str(e.value)

    def test_dataclasses_replace_validates_too(self):
        with pytest.raises(ProgrammingError):
            dataclasses.replace(Options(), max_levels=99)


def test_option_field_unknown():
    assert option_field("sync").metadata["kind"] == "bool"
    with pytest.raises(ProgrammingError, match="did you mean 'sync'"):
        option_field("synk")
