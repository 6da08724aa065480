"""Two-level iterators: an index whose entries each lead to a child iterator;
see kvcy/_two_level.pyx."""
from typing import Any, Callable, Iterable, final

from kvcy._iterator import InternalIterator

class TwoLevelIterator(InternalIterator):
    """Base class of TableIterator and LevelIterator; TypeError if made directly."""

@final
class TableIterator(TwoLevelIterator):
    """A table's entries through its index block and data blocks."""
    def __new__(cls, table: Any) -> TableIterator:
        """table: has .index (a kvcy._block.Block) and
        block_from_index_value(handle: bytes) -> kvcy._block.Block."""

@final
class LevelIterator(TwoLevelIterator):
    """The sorted, disjoint files of one level L1+, each opened when reached."""
    def __new__(cls, files: Iterable[Any],
                 open_table_iterator: Callable[[Any], InternalIterator]) -> LevelIterator:
        """files: FileMetaData (.largest internal keys used for the binary search)."""
    @property
    def num_files(self) -> int: ...
