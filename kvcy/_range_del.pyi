"""Range tombstones fragmented for reads; see kvcy/_range_del.pyx."""
from typing import Any, Iterable, final

from _typeshed import ReadableBuffer

@final
class RangeTombstones:
    """Fragmented range tombstones (start, stop, sequence)."""
    def __new__(cls, tombstones: Iterable[tuple[bytes, bytes, int]]) -> RangeTombstones: ...
    @property
    def tombstones(self) -> tuple[tuple[bytes, bytes, int], ...]: ...
    def covering_sequence(self, key: ReadableBuffer, sequence: int = ...) -> int:
        """Sequence of the newest tombstone covering key visible at sequence, or 0."""
    def fragments(self) -> list[tuple[bytes, bytes, list[int]]]: ...
    def __len__(self) -> int: ...

def build_range_tombstones(mems: Iterable[Any], version: Any) -> RangeTombstones | None:
    """The RangeTombstones of memtables and a Version, or None when they hold none."""

def add_to_layers(layers: list[RangeTombstones],
                  tombstone: tuple[bytes, bytes, int]) -> list[RangeTombstones]:
    """A new list of layers (a binary counter) with one more tombstone."""
