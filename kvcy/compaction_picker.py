"""Compaction picking: a pure function from a Version to a compaction plan.

Leveled compaction as LevelDB does it:
  * level 0 is scored by file count (files / level0_compaction_trigger),
    because its files overlap and every read may have to probe each one;
  * level n >= 1 is scored by size against its target, level1_max_bytes *
    level_size_multiplier ** (n - 1);
  * the level with the highest score >= 1 is compacted first.
For level 0 the plan takes every L0 file overlapping the range it picks;
for deeper levels it takes the file that overlaps the fewest bytes of
level n + 1 per byte of its own (RocksDB's kMinOverlappingRatio, its
default since 6.x): each compaction then rewrites the least data of the
level below, which lowers write amplification against LevelDB's round
robin over the key space.  The inputs of level n + 1 are the files
overlapping the chosen range.  A single input file that overlaps
nothing in level n + 1 (and little in n + 2) moves down without being
rewritten.

Nothing here touches files or locks: the caller gives a Version (pinned)
and the compaction pointers, and runs the plan (compaction.py).
"""
from bisect import bisect_left, bisect_right
from itertools import accumulate

# A trivial move is refused when the moved file would overlap more than
# this many target files' worth of the grandparent level (LevelDB's rule).
MAX_GRANDPARENT_OVERLAP_FILES = 10


class Compaction:
    """A plan: inputs[0] from `level`, inputs[1] from `level + 1`; the
    outputs go to level + 1, or back to `level` for an in-place rewrite
    (in_place: no inputs[1]; kvcy/expiry_compaction.py)."""

    def __init__(self, level, inputs0, inputs1, grandparents, reason, score=0.0,
                 in_place=False):
        self.level = level
        self.inputs = (inputs0, inputs1)
        self.grandparents = grandparents
        self.reason = reason
        self.score = score
        self.in_place = in_place

    @property
    def output_level(self):
        return self.level if self.in_place else self.level + 1

    def all_inputs(self):
        return [(self.level, f) for f in self.inputs[0]] + \
               [(self.level + 1, f) for f in self.inputs[1]]

    def input_bytes(self):
        return sum(f.file_size for _, f in self.all_inputs())

    def is_trivial_move(self, options):
        # An in-place rewrite exists to drop entries: never a move.
        return (not self.in_place and len(self.inputs[0]) == 1 and not self.inputs[1]
                and sum(f.file_size for f in self.grandparents)
                <= MAX_GRANDPARENT_OVERLAP_FILES * options.target_file_bytes)

    def __repr__(self):
        return "Compaction(L%d %s + L%d %s, %s)" % (
            self.level, [f.number for f in self.inputs[0]], self.level + 1,
            [f.number for f in self.inputs[1]], self.reason)


def max_bytes_for_level(options, level):
    """Target size of level >= 1."""
    return options.level1_max_bytes * options.level_size_multiplier ** (level - 1)


def level_scores(version, options):
    """[(score, level)] for every level that can be compacted (not the last)."""
    scores = []
    for level in range(len(version.files) - 1):
        if level == 0:
            score = len(version.files[0]) / options.level0_compaction_trigger
        else:
            score = version.level_bytes(level) / max_bytes_for_level(options, level)
        scores.append((score, level))
    return scores


def user_range(files):
    """(smallest user key, largest user key) of a non-empty list of files."""
    return (min(f.smallest_user for f in files), max(f.largest_user for f in files))


def overlapping(files, begin, end):
    """Files whose user-key range meets [begin, end] (None is unbounded)."""
    return [f for f in files
            if not (end is not None and f.smallest_user > end)
            and not (begin is not None and f.largest_user < begin)]


def level0_overlapping(files, begin, end):
    """L0 inputs for [begin, end]: grows the range until it covers every
    overlapping L0 file, because L0 files overlap each other and a newer
    version of a key must never stay behind while an older one moves down."""
    while True:
        chosen = overlapping(files, begin, end)
        if not chosen:
            return chosen
        lo, hi = user_range(chosen)
        new_begin = lo if begin is None or lo < begin else begin
        new_end = hi if end is None or hi > end else end
        if new_begin == begin and new_end == end:
            return chosen
        begin, end = new_begin, new_end


def plan(version, options, level, inputs0, reason, score=0.0):
    """The full plan for inputs0 of `level`: add level+1 and grandparent overlaps."""
    if level == 0:
        begin, end = user_range(inputs0)
        inputs0 = level0_overlapping(version.files[0], begin, end)
    begin, end = user_range(inputs0)
    inputs1 = overlapping(version.files[level + 1], begin, end)
    if inputs1:
        begin, end = user_range(inputs0 + inputs1)
    grandparents = (overlapping(version.files[level + 2], begin, end)
                    if level + 2 < len(version.files) else [])
    return Compaction(level, inputs0, inputs1, grandparents, reason, score)


def pick_compaction(version, options):
    """The compaction the Version needs most, or None when no level scores >= 1."""
    scores = level_scores(version, options)
    if not scores:
        return None
    score, level = max(scores, key=lambda s: (s[0], -s[1]))
    if score < 1.0:
        return None
    files = version.files[level]
    if level == 0:
        first = [files[-1]]        # the oldest L0 file; the range grows to its overlaps
    else:
        first = [min_overlap_file(files, version.files[level + 1])]
    return plan(version, options, level, first, "L%d score %.2f" % (level, score), score)


def min_overlap_file(files, below):
    """The file of `files` (one level >= 1) whose overlap with `below` (the
    next level: sorted, disjoint) is the fewest bytes per byte of its own;
    ties go to the first in key order."""
    smallest = [f.smallest_user for f in below]
    largest = [f.largest_user for f in below]
    prefix = [0] + list(accumulate(f.file_size for f in below))
    best, best_ratio = None, None
    for f in files:
        lo = bisect_left(largest, f.smallest_user)     # first below-file ending at or after f
        hi = bisect_right(smallest, f.largest_user)    # past the last starting at or before f's end
        ratio = (prefix[hi] - prefix[lo]) / max(f.file_size, 1) if hi > lo else 0.0
        if best_ratio is None or ratio < best_ratio:
            best, best_ratio = f, ratio
    return best
