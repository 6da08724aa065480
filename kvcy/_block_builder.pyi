"""Builder of one table block (prefix-compressed entries + restart array)."""
from typing import final

from _typeshed import ReadableBuffer

@final
class BlockBuilder:
    """REQUIRES: keys added in strictly increasing internal-key order."""
    def __new__(cls, restart_interval: int = 16) -> BlockBuilder:
        """restart_interval >= 1 (ValueError otherwise)."""
    def add(self, key: ReadableBuffer, value: ReadableBuffer) -> None:
        """Append an entry; ProgrammingError after finish() until reset()."""
    def current_size_estimate(self) -> int:
        """Bytes finish() would return now."""
    def finish(self) -> bytes: ...
    def reset(self) -> None: ...
    def empty(self) -> bool: ...
    @property
    def count(self) -> int: ...
    @property
    def last_key(self) -> bytes: ...
    @property
    def restart_interval(self) -> int: ...
