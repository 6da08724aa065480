"""Merging and level-concatenating internal iterators; see kvcy/_merge.pyx."""
from typing import Any, Callable, Iterable

from kvcy._iterator import InternalIterator

class MergingIterator(InternalIterator):
    """The union of children in internal-key order; equal keys by child index
    (lower index, newer, first), so reverse is exactly forward reversed."""
    def __init__(self, children: Iterable[InternalIterator]) -> None:
        """TypeError for a child that is not an InternalIterator, ValueError for
        the same iterator twice."""
    @property
    def num_children(self) -> int: ...

class LevelIterator(InternalIterator):
    """The sorted, disjoint files of one level L1+, each opened when reached."""
    def __init__(self, files: Iterable[Any],
                 open_table_iterator: Callable[[Any], InternalIterator]) -> None:
        """files: FileMetaData (.largest internal keys used for the binary search)."""
    @property
    def num_files(self) -> int: ...
