"""A table's entries through its index block and data blocks; see kvcy/_two_level.pyx."""
from typing import Any

from kvcy._iterator import InternalIterator

class TwoLevelIterator(InternalIterator):
    def __init__(self, table: Any) -> None:
        """table: has .index (a kvcy._block.Block) and
        block_from_index_value(handle: bytes) -> kvcy._block.Block."""
