"""Validating reader of one table block; see kvcy/_block.pyx."""
from typing import Optional, Tuple, final

from _typeshed import ReadableBuffer

from kvcy._iterator import InternalIterator

@final
class Block:
    """A block's bytes, checked at construction (CorruptionError "block: ...")."""
    def __new__(cls, data: ReadableBuffer) -> Block: ...
    def __init__(self, data: ReadableBuffer) -> None: ...
    @property
    def size(self) -> int:
        """Bytes of the block, restart array included."""
    @property
    def num_restarts(self) -> int: ...
    def iterator(self) -> BlockIterator: ...
    def index_lookup(self, user_key: ReadableBuffer, sequence: int) -> Optional[Tuple[int, int]]:
        """For an index block: (offset, size) of the data block that would hold
        user_key at sequence, or None past the last block."""
    def get(self, user_key: ReadableBuffer, sequence: int) -> Optional[Tuple[int, bytes, int]]:
        """(kind, value, sequence) of the newest entry of user_key with sequence
        <= ``sequence`` (kind 1 value, 0 tombstone with value b""), or None."""

@final
class BlockIterator(InternalIterator):
    """Internal-iterator protocol over one block's entries; corruption is
    sticky (status() returns the CorruptionError, every move raises it)."""
    def __new__(cls, block: Block) -> BlockIterator: ...
