"""Group commit, sequence numbers, WAL records and memtable inserts in C; see
kvcy/_write_path.pyx.  Connection.put and .delete of a writable autocommit
connection are WritePath.put and .delete themselves."""
from typing import Any, Callable

from _typeshed import ReadableBuffer

from kvcy._latency import LatencyHistogram
from kvcy._write_batch import WriteBatch

class WritePath:
    mem: Any
    last_sequence: int
    error: BaseException | None
    closed: bool
    blocked: bool
    sync_default: bool
    memtable_limit: int
    slowdown: bool
    make_room: Callable[..., Any] | None
    check_state: Callable[..., Any] | None
    publish_range_dels: Callable[..., Any] | None
    usable: bool
    unusable_message: str
    reserve_namespaces: bool
    clock: Callable[[], float] | None
    puts: int
    deletes: int
    batches: int
    batch_entries: int
    wal_records: int
    wal_bytes: int
    wal_syncs: int
    bytes_written: int
    group_commits: int
    grouped_writes: int
    @property
    def sync_micros(self) -> int:
        """Recent WAL fdatasync time (moving average), microseconds."""
    def __init__(self) -> None: ...
    @property
    def put_latency(self) -> LatencyHistogram: ...
    @property
    def batch_latency(self) -> LatencyHistogram: ...
    def acquire(self) -> None:
        """Take the write lock, waiting for it."""
    def try_acquire(self) -> bool:
        """Take the write lock if it is free; True iff taken."""
    def release(self) -> None: ...
    def queue_length(self) -> int:
        """Writers queued now, the leader included."""
    def set_log(self, file: Any, block_offset: int) -> None:
        """Direct WAL appends to file (an env WritableFile), retiring the
        previous file's writer.  REQUIRES: lock held."""
    def retire_log(self) -> None:
        """Stop appending to the current WAL file and cut it to the bytes written."""
    @property
    def wal(self) -> Any:
        """The current WAL file's WalWriter (kvcy/_wal_writer.pyx), or None."""
    @property
    def log_size(self) -> int:
        """Bytes in the current WAL file."""
    def put(self, key: ReadableBuffer, value: ReadableBuffer, *, sync: bool | None = None,
            ttl: float | None = None) -> None:
        """Connection.put itself."""
    def delete(self, key: ReadableBuffer, *, sync: bool | None = None) -> None:
        """Connection.delete itself."""
    def put_stored(self, key: bytes, value: ReadableBuffer, sync: bool | None = None,
                   ttl: float | None = None) -> None:
        """put() of a stored key, which may lie in the namespaces' reserved region."""
    def delete_stored(self, key: bytes, sync: bool | None = None) -> None:
        """delete() of a stored key, which may lie in the namespaces' reserved region."""
    def write_one(self, kind: int, key: bytes, value: bytes | None, sync: bool | None = None) -> None:
        """Put (KIND_VALUE) or delete (KIND_DELETE) one key as a one-entry batch."""
    def write_batch(self, batch: WriteBatch, sync: bool | None = None) -> None:
        """Apply batch atomically: one WAL record, then every entry in the memtable."""
    def write_batch_checked(self, batch: WriteBatch, check: Callable[[], Any],
                            sync: bool | None = None) -> None:
        """write_batch(batch, sync) after check() returned, under the write lock."""
