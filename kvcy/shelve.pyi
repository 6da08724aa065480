"""Types of kvcy/shelve.py: the stdlib shelve interface over kvcy.dbm."""
import os
import shelve as _shelve
from typing import Any

__all__ = ["open", "Shelf", "DbfilenameShelf"]

Shelf = _shelve.Shelf

class DbfilenameShelf(_shelve.Shelf[Any]):
    def __init__(self, filename: str | bytes | os.PathLike[Any], flag: str = "c",
                 protocol: int | None = None, writeback: bool = False) -> None: ...
    def clear(self) -> None: ...

def open(filename: str | bytes | os.PathLike[Any], flag: str = "c", protocol: int | None = None,
         writeback: bool = False) -> DbfilenameShelf:
    """A shelf of pickled objects in the kvcy database filename."""
