"""Unit tests of the pure compaction picker (kvcy/compaction_picker.py).

Versions are built by hand (Version().apply(VersionEdit) with FileMetaData
of chosen numbers, sizes and key ranges), so every rule of LevelDB's
leveled picking is checked without touching a file: level 0 scored by file
count, deeper levels by bytes against level1_max_bytes * multiplier **
(n - 1), the highest score >= 1 first, level-0 inputs grown to every
overlapping level-0 file, the level + 1 and grandparent overlaps, the
least-overlap choice of levels >= 1 and the trivial-move rule.
"""
import pytest

from kvcy.compaction_picker import (MAX_GRANDPARENT_OVERLAP_FILES, Compaction,
                                    level0_overlapping, level_scores, max_bytes_for_level,
                                    min_overlap_file, overlapping, pick_compaction, plan,
                                    user_range)
from kvcy.dbformat import KIND_DELETE, KIND_VALUE, encode_internal_key
from kvcy.options import Options
from kvcy.version_edit import FileMetaData, VersionEdit
from kvcy.version_set import NUM_LEVELS, Version

# Small round numbers: L1 holds 1000 bytes, L2 10,000, L3 100,000 ...
OPTS = Options(level0_compaction_trigger=4, level1_max_bytes=1000, level_size_multiplier=10,
               target_file_bytes=100)


def ikey(user_key, seq=100, kind=KIND_VALUE):
    return encode_internal_key(user_key, seq, kind)


def meta(number, smallest, largest, size=10, seq=100):
    """A file of user keys [smallest, largest]; the largest key's entry is a
    little older than the smallest's, as in a real table."""
    return FileMetaData(number, size, ikey(smallest, seq), ikey(largest, max(seq - 1, 0)))


def make_version(levels, num_levels=NUM_LEVELS):
    """A Version holding {level: [FileMetaData]}."""
    edit = VersionEdit()
    for level, files in levels.items():
        for f in files:
            edit.add_file(level, f)
    return Version(num_levels=num_levels).apply(edit)


def numbers(files):
    return sorted(f.number for f in files)


def l0_files(count, size=10):
    """count disjoint level-0 files, numbers 100.. (older first)."""
    return [meta(100 + i, b"l0-%03d-a" % i, b"l0-%03d-z" % i, size) for i in range(count)]


# --- scores -----------------------------------------------------------------------------------

def test_empty_version_needs_no_compaction():
    v = make_version({})
    assert level_scores(v, OPTS) == [(0.0, level) for level in range(NUM_LEVELS - 1)]
    assert pick_compaction(v, OPTS) is None


def test_max_bytes_for_level_grows_by_the_multiplier():
    assert [max_bytes_for_level(OPTS, n) for n in (1, 2, 3, 4)] == [1000, 10_000, 100_000,
                                                                   1_000_000]
    opts = Options(level1_max_bytes=3000, level_size_multiplier=3)
    assert [max_bytes_for_level(opts, n) for n in (1, 2, 3)] == [3000, 9000, 27000]


def test_level0_is_scored_by_file_count():
    assert level_scores(make_version({0: l0_files(3)}), OPTS)[0] == (0.75, 0)
    assert pick_compaction(make_version({0: l0_files(3)}), OPTS) is None
    c = pick_compaction(make_version({0: l0_files(4)}), OPTS)
    assert c is not None and c.level == 0 and c.output_level == 1
    assert c.score == 1.0


def test_level0_bytes_do_not_count():
    # One enormous level-0 file: a quarter of the trigger, no compaction.
    v = make_version({0: l0_files(1, size=10 ** 12)})
    assert level_scores(v, OPTS)[0] == (0.25, 0)
    assert pick_compaction(v, OPTS) is None


def test_level0_score_follows_the_trigger_option():
    v = make_version({0: l0_files(2)})
    assert pick_compaction(v, OPTS) is None
    opts = OPTS.replace(level0_compaction_trigger=2)
    assert level_scores(v, opts)[0] == (1.0, 0)
    assert pick_compaction(v, opts).level == 0


def test_level1_is_scored_by_bytes_against_level1_max_bytes():
    under = make_version({1: [meta(1, b"a", b"b", 500), meta(2, b"c", b"d", 499)]})
    assert level_scores(under, OPTS)[1] == (0.999, 1)
    assert pick_compaction(under, OPTS) is None
    at = make_version({1: [meta(1, b"a", b"b", 500), meta(2, b"c", b"d", 500)]})
    assert level_scores(at, OPTS)[1] == (1.0, 1)
    c = pick_compaction(at, OPTS)
    assert c.level == 1 and c.score == 1.0


@pytest.mark.parametrize("level", [2, 3, 4])
def test_deeper_levels_are_scored_against_multiplied_targets(level):
    target = 1000 * 10 ** (level - 1)
    # The size L1 may hold is far below these: only the per-level target decides.
    just_under = make_version({level: [meta(1, b"a", b"b", target - 1)]})
    assert level_scores(just_under, OPTS)[level] == ((target - 1) / target, level)
    assert pick_compaction(just_under, OPTS) is None
    double = make_version({level: [meta(1, b"a", b"b", target),
                                    meta(2, b"c", b"d", target)]})
    assert level_scores(double, OPTS)[level] == (2.0, level)
    c = pick_compaction(double, OPTS)
    assert (c.level, c.score) == (level, 2.0)


def test_the_last_level_is_never_compacted():
    v = make_version({NUM_LEVELS - 1: [meta(1, b"a", b"z", 10 ** 15)]})
    assert [level for _, level in level_scores(v, OPTS)] == list(range(NUM_LEVELS - 1))
    assert pick_compaction(v, OPTS) is None
    # With three levels, level 2 is the last one.
    v3 = make_version({2: [meta(1, b"a", b"z", 10 ** 15)]}, num_levels=3)
    assert [level for _, level in level_scores(v3, OPTS)] == [0, 1]
    assert pick_compaction(v3, OPTS) is None


def test_the_highest_score_is_compacted_first():
    l0 = l0_files(5)                                     # 1.25
    l1 = [meta(1, b"a", b"b", 3000)]                     # 3.0
    l2 = [meta(2, b"a", b"b", 20_000)]                   # 2.0
    c = pick_compaction(make_version({0: l0, 1: l1, 2: l2}), OPTS)
    assert (c.level, c.score) == (1, 3.0)
    l2 = [meta(2, b"a", b"b", 50_000)]                   # 5.0
    c = pick_compaction(make_version({0: l0, 1: l1, 2: l2}), OPTS)
    assert (c.level, c.score) == (2, 5.0)
    l0 = l0_files(40)                                    # 10.0
    c = pick_compaction(make_version({0: l0, 1: l1, 2: l2}), OPTS)
    assert (c.level, c.score) == (0, 10.0)


def test_equal_scores_pick_the_upper_level():
    v = make_version({1: [meta(1, b"a", b"b", 2000)], 2: [meta(2, b"x", b"y", 20_000)],
                      3: [meta(3, b"m", b"n", 200_000)]})
    assert pick_compaction(v, OPTS).level == 1


def test_a_level_below_one_is_ignored_even_if_others_are_close():
    # 0.99 everywhere: nothing reaches 1.0, nothing is compacted.
    v = make_version({0: l0_files(3), 1: [meta(1, b"a", b"b", 990)],
                      2: [meta(2, b"a", b"b", 9900)]})
    assert all(score < 1.0 for score, _ in level_scores(v, OPTS))
    assert pick_compaction(v, OPTS) is None


# --- level-0 inputs ---------------------------------------------------------------------------

def test_level0_starts_from_the_oldest_file():
    files = l0_files(4)                       # disjoint; 100 is the oldest (lowest number)
    c = pick_compaction(make_version({0: files}), OPTS)
    assert numbers(c.inputs[0]) == [100]


def test_level0_inputs_grow_to_every_overlapping_file():
    # The oldest file [b, c] overlaps [c, e] (a shared key), which overlaps
    # [d, g], which overlaps [a, d]... transitively; [x, z] stays behind.
    files = [meta(10, b"b", b"c"), meta(11, b"c", b"e"), meta(12, b"d", b"g"),
             meta(13, b"a", b"b0"), meta(14, b"x", b"z")]
    c = pick_compaction(make_version({0: files}), OPTS)
    assert numbers(c.inputs[0]) == [10, 11, 12, 13]
    assert c.inputs[1] == []


def test_level0_growth_reaches_files_only_connected_through_the_grown_range():
    # [m, n] alone overlaps only [k, m]; [k, m] brings [a, k]; [a, k] brings
    # nothing new; [n, q] touches n.  [r, s] is out of every range.
    files = [meta(20, b"m", b"n"), meta(21, b"k", b"m"), meta(22, b"a", b"k"),
             meta(23, b"n", b"q"), meta(24, b"r", b"s")]
    assert numbers(level0_overlapping(files, b"m", b"n")) == [20, 21, 22, 23]
    assert numbers(level0_overlapping(files, b"r", b"s")) == [24]
    assert numbers(level0_overlapping(files, b"q0", b"q1")) == []
    assert numbers(level0_overlapping(files, None, None)) == [20, 21, 22, 23, 24]


def test_plan_for_level0_grows_given_inputs():
    files = [meta(30, b"a", b"c"), meta(31, b"b", b"d"), meta(32, b"e", b"f")]
    v = make_version({0: files})
    c = plan(v, OPTS, 0, [files[0]], "manual")
    assert numbers(c.inputs[0]) == [30, 31]
    assert c.reason == "manual"


def test_level0_inputs_take_their_level1_overlaps():
    l0 = [meta(40, b"c", b"e"), meta(41, b"d", b"h"), meta(42, b"p", b"q"),
          meta(43, b"r", b"s")]
    l1 = [meta(1, b"a", b"b"), meta(2, b"b5", b"c"), meta(3, b"d0", b"f"),
          meta(4, b"g", b"i"), meta(5, b"j", b"k")]
    c = pick_compaction(make_version({0: l0, 1: l1}), OPTS)
    assert numbers(c.inputs[0]) == [40, 41]
    # [c, h]: [b5, c] touches c, [g, i] crosses h; [a, b] and [j, k] do not meet it.
    assert numbers(c.inputs[1]) == [2, 3, 4]
    assert c.output_level == 1


def test_a_newer_level0_file_beyond_the_level1_range_is_not_needed():
    # Level-1 inputs widen the range to [a, z], which also covers file 51;
    # leaving it is safe (its keys are newer than everything below) and is
    # what LevelDB does without its optional expansion.  What matters: every
    # L0 file overlapping the *L0 inputs'* range is in.
    l0 = [meta(50, b"c", b"d"), meta(51, b"x", b"y"), meta(52, b"c5", b"c6"),
          meta(53, b"m", b"n")]
    l1 = [meta(1, b"a", b"z")]
    c = pick_compaction(make_version({0: l0, 1: l1}), OPTS)
    assert set(numbers(c.inputs[0])) >= {50, 52}
    assert numbers(c.inputs[1]) == [1]


# --- level n + 1 and grandparents -------------------------------------------------------------

def test_level_n_inputs_take_overlaps_in_level_n_plus_1_and_grandparents():
    l1 = [meta(1, b"d", b"f", 2000)]
    l2 = [meta(2, b"a", b"c"), meta(3, b"c5", b"e"), meta(4, b"e5", b"g"),
          meta(5, b"h", b"i")]
    l3 = [meta(6, b"a", b"b"), meta(7, b"b5", b"c"), meta(8, b"c6", b"c7"),
          meta(9, b"f5", b"h"), meta(10, b"x", b"y")]
    c = pick_compaction(make_version({1: l1, 2: l2, 3: l3}), OPTS)
    assert c.level == 1
    assert numbers(c.inputs[0]) == [1]
    assert numbers(c.inputs[1]) == [3, 4]                  # [c5, g]
    # Grandparents meet the range of all inputs, [c5, g], not just [d, f].
    assert numbers(c.grandparents) == [8, 9]
    assert [(lvl, f.number) for lvl, f in c.all_inputs()] == [(1, 1), (2, 3), (2, 4)]
    assert c.input_bytes() == 2000 + 10 + 10


def test_overlap_is_by_user_key_and_inclusive():
    # Same user key at both ends, different sequence numbers and kinds.
    f = FileMetaData(1, 10, ikey(b"k", 5), ikey(b"m", 3, KIND_DELETE))
    assert overlapping([f], b"m", b"z") == [f]
    assert overlapping([f], b"a", b"k") == [f]
    assert overlapping([f], b"m\x00", b"z") == []
    assert overlapping([f], b"a", b"j\xff") == []
    assert overlapping([f], None, b"k") == [f]
    assert overlapping([f], b"m", None) == [f]
    assert overlapping([f], None, None) == [f]
    assert overlapping([f], None, b"j") == []
    assert user_range([f, meta(2, b"a", b"b")]) == (b"a", b"m")


def test_no_grandparents_below_the_last_level():
    v = make_version({1: [meta(1, b"a", b"b", 10 ** 6)], 2: [meta(2, b"a", b"c")]},
                     num_levels=3)
    c = pick_compaction(v, OPTS)
    assert (c.level, numbers(c.inputs[1]), c.grandparents) == (1, [2], [])


# --- levels >= 1: the file with the least overlap below, per byte -----------------------------

def _full_level1():
    return [meta(1, b"a", b"b", 600), meta(2, b"c", b"d", 600), meta(3, b"e", b"f", 600)]


def test_level1_compacts_the_file_overlapping_the_fewest_bytes_below():
    files = _full_level1()
    below = [meta(10, b"a", b"a5", 500), meta(11, b"b5", b"c", 300),   # 1: 800, 2: 300
             meta(12, b"e", b"e5", 200), meta(13, b"e6", b"f", 400)]   # 3: 600
    v = make_version({1: files, 2: below})
    c = pick_compaction(v, OPTS)
    assert numbers(c.inputs[0]) == [2] and numbers(c.inputs[1]) == [11]


def test_overlap_is_weighed_by_the_files_own_size():
    # File 1 overlaps more bytes, but fewer per byte of its own.
    files = [meta(1, b"a", b"b", 1000), meta(2, b"c", b"d", 100)]
    below = [meta(10, b"a", b"b", 500), meta(11, b"c", b"d", 100)]       # 0.5 vs 1.0
    assert numbers(pick_compaction(make_version({1: files, 2: below}), OPTS).inputs[0]) == [1]


def test_a_file_with_nothing_below_goes_first_and_ties_go_to_key_order():
    files = _full_level1()
    below = [meta(10, b"a", b"b", 50), meta(11, b"e", b"f", 50)]
    assert numbers(pick_compaction(make_version({1: files, 2: below}), OPTS).inputs[0]) == [2]
    assert numbers(pick_compaction(make_version({1: files}), OPTS).inputs[0]) == [1]


def test_min_overlap_agrees_with_a_brute_force_count():
    import random
    rng = random.Random(5)
    for _ in range(200):
        def level(count, first_number):
            bounds = sorted(rng.sample(range(1000), 2 * count))
            return [meta(first_number + i, b"%04d" % bounds[2 * i], b"%04d" % bounds[2 * i + 1],
                         rng.randrange(1, 500)) for i in range(count)]
        upper, lower = level(rng.randrange(1, 8), 1), level(rng.randrange(0, 12), 100)
        best = min(upper, key=lambda f: (
            sum(g.file_size for g in overlapping(lower, f.smallest_user, f.largest_user))
            / f.file_size, f.smallest_user))
        assert min_overlap_file(upper, lower) is best


def test_picking_changes_nothing():
    l1 = _full_level1()
    v = make_version({0: l0_files(5), 1: l1})
    before = [list(level) for level in v.files]
    pick_compaction(v, OPTS)
    plan(v, OPTS, 1, [l1[2]], "x")
    assert v.files == before


# --- trivial moves ----------------------------------------------------------------------------

def test_a_single_file_with_nothing_below_is_a_trivial_move():
    v = make_version({1: [meta(1, b"a", b"b", 1500)], 2: [meta(2, b"c", b"d")]})
    c = pick_compaction(v, OPTS)
    assert (numbers(c.inputs[0]), c.inputs[1]) == ([1], [])
    assert c.is_trivial_move(OPTS)


def test_overlap_in_the_next_level_is_not_a_trivial_move():
    v = make_version({1: [meta(1, b"a", b"c", 1500)], 2: [meta(2, b"c", b"d")]})
    c = pick_compaction(v, OPTS)
    assert numbers(c.inputs[1]) == [2]
    assert not c.is_trivial_move(OPTS)


def test_level0_file_is_moved_only_when_no_other_level0_file_overlaps():
    alone = make_version({0: [meta(1, b"a", b"b"), meta(2, b"c", b"d"), meta(3, b"e", b"f"),
                              meta(4, b"g", b"h")]})
    c = pick_compaction(alone, OPTS)
    assert numbers(c.inputs[0]) == [1] and c.is_trivial_move(OPTS)
    crowded = make_version({0: [meta(1, b"a", b"b"), meta(2, b"b", b"d"), meta(3, b"e", b"f"),
                                meta(4, b"g", b"h")]})
    c = pick_compaction(crowded, OPTS)
    assert numbers(c.inputs[0]) == [1, 2] and not c.is_trivial_move(OPTS)


def test_much_grandparent_overlap_prevents_a_trivial_move():
    limit = MAX_GRANDPARENT_OVERLAP_FILES * OPTS.target_file_bytes
    l1 = [meta(1, b"c", b"m", 1500)]

    def compaction(grandparent_sizes):
        l3 = [meta(10 + i, b"d%02d" % i, b"d%02d~" % i, size)
              for i, size in enumerate(grandparent_sizes)]
        l3.append(meta(99, b"x", b"y", 50 * limit))        # outside the range: not counted
        c = pick_compaction(make_version({1: l1, 3: l3}), OPTS)
        assert c.level == 1
        return c

    c = compaction([limit // 2, limit - limit // 2])
    assert sum(f.file_size for f in c.grandparents) == limit
    assert c.is_trivial_move(OPTS)
    c = compaction([limit // 2, limit - limit // 2 + 1])
    assert not c.is_trivial_move(OPTS)
    assert numbers(c.grandparents) == [10, 11]


def test_several_level0_inputs_are_not_a_trivial_move_even_with_nothing_below():
    v = make_version({0: [meta(1, b"a", b"c"), meta(2, b"b", b"d")]})
    c = plan(v, OPTS, 0, [v.files[0][0]], "manual")
    assert len(c.inputs[0]) == 2 and not c.is_trivial_move(OPTS)


def test_compaction_repr_names_levels_and_files():
    v = make_version({1: [meta(7, b"a", b"b", 2000)], 2: [meta(8, b"a", b"c")]})
    c = pick_compaction(v, OPTS)
    assert isinstance(c, Compaction)
    text = repr(c)
    assert "L1 [7]" in text and "L2 [8]" in text
