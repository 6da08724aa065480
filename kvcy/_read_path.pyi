"""Point reads in one C call; see kvcy/_read_path.pyx.  Connection.get of a
writable autocommit connection is ReadPath.lookup itself."""
from typing import Any, Callable, Iterable, TypeVar, final, overload

from _typeshed import ReadableBuffer

from kvcy._latency import LatencyHistogram
from kvcy._range_del import RangeTombstones
from kvcy._write_path import WritePath

_T = TypeVar("_T")

GIL_SPIN_COMPILED: bool

def gil_shared_now() -> bool:
    """What a get on this thread would ask next: have other threads been
    taking the GIL lately?  Asking counts as a get (tests)."""
def gil_long_holder_now() -> bool:
    """What a get on this thread would ask first: does another thread hold
    the GIL for long stretches, so that gets keep it?  Asking counts as a
    get (tests)."""

@final
class ReadState:
    """Memtables and one Version's files, laid out for the C search."""
    @property
    def mems(self) -> tuple[Any, ...]: ...
    @property
    def version(self) -> Any: ...
    @property
    def range_dels(self) -> RangeTombstones | None: ...
    def __new__(cls, mems: Iterable[Any], version: Any,
                 find_table: Callable[[Any], Any]) -> ReadState: ...
    @property
    def num_files(self) -> int: ...
    def covers_since(self, since: int) -> bool:
        """True iff every entry with a sequence after since is in the memtables."""
    def written_after(self, key: ReadableBuffer, since: int) -> bool:
        """True iff the newest entry of key has a sequence after since."""
    def memtables_written_in(self, start: ReadableBuffer | None, stop: ReadableBuffer | None,
                             since: int) -> bool:
        """True iff a memtable holds a key in [start, stop) written after since."""

@final
class ReadPath:
    """get/get_many over the published ReadState."""
    state: ReadState
    row_cache: bool
    gets: int
    usable: bool
    unusable_message: str
    clock: Callable[[], float] | None
    @property
    def get_latency(self) -> LatencyHistogram: ...
    def __new__(cls, writer: WritePath, state: ReadState) -> ReadPath: ...
    @overload
    def lookup(self, key: ReadableBuffer, default: None = None) -> bytes | None: ...
    @overload
    def lookup(self, key: ReadableBuffer, default: _T) -> bytes | _T: ...
    @overload
    def lookup_stored(self, key: bytes, default: None = None) -> bytes | None: ...
    @overload
    def lookup_stored(self, key: bytes, default: _T) -> bytes | _T: ...
    def get(self, key: ReadableBuffer, sequence: int | None = None) -> bytes | None:
        """The value of key visible at sequence (default: the latest), or None."""
    def get_many(self, keys: Iterable[ReadableBuffer],
                 sequence: int | None = None) -> list[bytes | None]: ...
