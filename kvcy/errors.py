"""PEP 249 exception tree for kvcy.

    Error
     +-- InterfaceError
     +-- DatabaseError
          +-- OperationalError    locked, closed by the system, I/O, no space,
          |    |                  background failure
          |    +-- ConflictError  a transaction's commit lost to another write
          +-- CorruptionError     bytes on disk failed a check
          +-- ProgrammingError    use after close, bad arguments
          +-- DataError           a key or value over its documented limit
          +-- NotSupportedError

Kernels never raise these deep inside nogil loops; they return a sentinel and
one boundary function raises with the file name and offset.
"""


class Error(Exception):
    """Base class of every error kvcy raises on purpose."""


class InterfaceError(Error):
    """The interface was misused in a way unrelated to the data."""


class DatabaseError(Error):
    """An error related to the database."""


class OperationalError(DatabaseError):
    """The database cannot do what was asked: locked, I/O error, no space,
    a latched background error."""


class ConflictError(OperationalError):
    """A transaction could not commit: another write, committed after its
    snapshot, changed a key (or a scanned range) that it read or wrote.
    Nothing of the transaction was written; run it again."""


class CorruptionError(DatabaseError):
    """Bytes read from disk (or handed to a decoder) failed a check."""


class ProgrammingError(DatabaseError):
    """The caller made a mistake: use after close, bad arguments, bad options."""


class DataError(DatabaseError):
    """A key, value or batch exceeds a documented size limit (nothing was written)."""


class NotSupportedError(DatabaseError):
    """The operation is not supported by this database or build."""


def corruption(what, filename=None, offset=None):
    """Return a CorruptionError that names the file and offset when known."""
    where = ""
    if filename is not None:
        where = " in %s" % filename
        if offset is not None:
            where += " at offset %d" % offset
    return CorruptionError("%s%s" % (what, where))
