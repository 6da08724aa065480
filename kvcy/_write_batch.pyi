"""Write batches and their rep (byte format); see kvcy/_write_batch.pyx and
docs/format.md#write-batch."""
from typing import Any, Callable, Iterable, Tuple

from _typeshed import ReadableBuffer

class WriteBatch:
    """An ordered set of puts and deletes applied atomically by
    Connection.write() / Transaction.write(); DataError past MAX_BATCH_BYTES."""
    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        """An empty batch; clock (like time.time; None: real time) fixes the
        expiry of put(..., ttl=)."""
    def put(self, key: ReadableBuffer, value: ReadableBuffer, ttl: float | None = None,
            namespace: Any = None) -> None:
        """Add a put of value under key (both bytes-like; str raises TypeError)
        in namespace (a conn.namespace() handle; None: the default namespace);
        ttl: seconds from now until it expires (None: never)."""
    def put_expiring(self, key: ReadableBuffer, value: ReadableBuffer, expiry: int,
                     namespace: Any = None) -> None:
        """Add a put of value under key that expires at `expiry` (µs since the epoch)."""
    def delete(self, key: ReadableBuffer, namespace: Any = None) -> None:
        """Add a delete of key in namespace."""
    def delete_range(self, start: ReadableBuffer, stop: ReadableBuffer,
                     namespace: Any = None) -> None:
        """Add a range tombstone deleting every key k with start <= k < stop
        in namespace; ProgrammingError unless start < stop."""
    def delete_range_stored(self, start: ReadableBuffer, stop: ReadableBuffer) -> None:
        """A range tombstone over stored keys, for dropping a namespace."""
    def put_pairs(self, pairs: Iterable[Tuple[ReadableBuffer, ReadableBuffer]],
                  ttl: float | None = None, namespace: Any = None) -> None:
        """Add a put for every (key, value) pair, in namespace; with ttl, all
        expire together."""
    def delete_keys(self, keys: Iterable[ReadableBuffer], namespace: Any = None) -> None:
        """Add a delete for every key, in namespace."""
    @property
    def reserved_key(self) -> bytes | None:
        """The first default-namespace key starting with b"\\xff\\xff", or None."""
    def clear(self) -> None: ...
    def set_sequence(self, sequence: int) -> None:
        """ValueError past the 56-bit maximum."""
    @property
    def sequence(self) -> int: ...
    @property
    def count(self) -> int: ...
    @property
    def byte_size(self) -> int:
        """Bytes of the rep, header included."""
    @property
    def data_bytes(self) -> int:
        """Sum of key and value lengths."""
    def data(self) -> bytes:
        """The rep (header with the current sequence, then the records)."""
    def __len__(self) -> int: ...

def check_range(start: bytes, stop: bytes) -> None:
    """ProgrammingError unless start < stop."""

def encode_single(sequence: int, kind: int, key: ReadableBuffer,
                  value: ReadableBuffer | None = None) -> bytes:
    """The rep of a one-entry batch."""

def batch_header(rep: ReadableBuffer) -> Tuple[int, int]:
    """(sequence, count) of a rep, validating the whole rep first."""

def apply_batch(rep: ReadableBuffer, mem: Any) -> None:
    """Insert every entry of rep into mem, a kvcy._memtable.MemTable (entry i
    at sequence + i)."""

def iterate_batch(rep: ReadableBuffer) -> list[Tuple[int, bytes, bytes | None]]:
    """(kind, key, value) of each entry (value None for deletes, the stop key
    for a range delete)."""
