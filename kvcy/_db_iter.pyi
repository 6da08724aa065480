"""User-visible entries at a sequence number; see kvcy/_db_iter.pyx."""
from typing import Any, Callable, Iterator, Optional, Tuple

from _typeshed import ReadableBuffer

from kvcy._iterator import InternalIterator
from kvcy._latency import LatencyHistogram
from kvcy._range_del import RangeTombstones

def prefix_stop(prefix: ReadableBuffer) -> Optional[bytes]:
    """Exclusive stop bound of the keys starting with prefix (None: unbounded)."""

class DBIterator(Iterator[Tuple[bytes, bytes]]):
    """For each user key in [start, stop), its newest entry with sequence <=
    ``sequence`` unless that is a tombstone; ascending, or descending if reverse.

    After close() every method raises ProgrammingError.  Errors are sticky.
    """
    def __init__(self, merging_iter: InternalIterator, sequence: int,
                 start: Optional[ReadableBuffer] = None, stop: Optional[ReadableBuffer] = None,
                 reverse: bool = False, pin: Any = None,
                 range_dels: RangeTombstones | None = None,
                 clock: Callable[[], float] | None = None) -> None: ...
    def __iter__(self) -> DBIterator: ...
    def __next__(self) -> Tuple[bytes, bytes]:
        """The entry under the cursor if a cursor move put it there and it was
        not yielded yet; otherwise step (next, or prev if reverse) first."""
    def valid(self) -> bool: ...
    def seek_to_first(self) -> None: ...
    def seek_to_last(self) -> None: ...
    def seek(self, user_key: ReadableBuffer) -> None:
        """First visible key >= user_key."""
    def seek_for_prev(self, user_key: ReadableBuffer) -> None:
        """Last visible key <= user_key."""
    def next(self) -> None: ...
    def prev(self) -> None: ...
    def key(self) -> bytes: ...
    def value(self) -> bytes: ...
    def item(self) -> Tuple[bytes, bytes]: ...
    def take(self, n: int, how: int = 0) -> list[Tuple[bytes, bytes]]:
        """Up to n pairs in iteration order in one call; how: 0 from the entry
        under the cursor, 1 after a step, 2 from the first entry of the scan."""
    latency: LatencyHistogram | None
    @property
    def expiring_met(self) -> int:
        """Expiring values (put with ttl=) it has judged, live or expired."""
    closed_message: str
    def status(self) -> Optional[BaseException]: ...
    def close(self) -> None:
        """Release the internal iterator and the pin; idempotent."""
    @property
    def closed(self) -> bool: ...
    @property
    def sequence(self) -> int: ...
    @property
    def reverse(self) -> bool: ...
    def __enter__(self) -> DBIterator: ...
    def __exit__(self, *exc_info: Any) -> None: ...
