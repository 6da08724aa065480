"""The merging internal iterator; see kvcy/_merge.pyx."""
from typing import Iterable, final

from kvcy._iterator import InternalIterator

@final
class MergingIterator(InternalIterator):
    """The union of children in internal-key order; equal keys by child index
    (lower index, newer, first), so reverse is exactly forward reversed."""
    def __new__(cls, children: Iterable[InternalIterator]) -> MergingIterator:
        """TypeError for a child that is not an InternalIterator, ValueError for
        the same iterator twice."""
    @property
    def num_children(self) -> int: ...
