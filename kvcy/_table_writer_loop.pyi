"""TableWriter.add_many's per-pair loop in C; see kvcy/_table_writer_loop.pyx."""
from typing import Any, Iterator, Optional, Tuple

from kvcy._table_builder import TableBuilder

def add_pairs(builder: TableBuilder, iterator: Iterator[Any], tag: bytes,
              last: Optional[bytes], max_key_bytes: int, max_value_bytes: int
              ) -> Tuple[int, Optional[bytes], Optional[bytes], Any, Optional[BaseException]]:
    """(added, first, last, stopped, error): pairs added, first and last
    user key added, the pair that needs add() (None: the iterator ended),
    the builder's failure (None)."""
