"""kvcy: an embedded, crash-safe LSM-tree key-value store with Cython hot paths.

    >>> import kvcy, tempfile
    >>> with kvcy.connect(tempfile.mkdtemp()) as conn:
    ...     conn.put(b"k", b"v")
    ...     conn.get(b"k")
    b'v'
"""
from kvcy._write_batch import WriteBatch
from kvcy.connection import Connection, connect
from kvcy.errors import (ConflictError, CorruptionError, DatabaseError, DataError, Error,
                         InterfaceError, NotSupportedError, OperationalError, ProgrammingError)
from kvcy.options import MAX_BATCH_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES, Options
from kvcy.table_writer import TableInfo, TableWriter
from kvcy.transaction import Transaction, retry_transaction
from kvcy import dbm, shelve     # the stdlib-compatible modules: kvcy.dbm.open(), kvcy.shelve.open()
# The functions shadow their modules' names on the package (kvcy.check is the
# function); the modules stay importable as kvcy.check / kvcy.repair.
from kvcy.check import CheckReport, check
from kvcy.repair import RepairReport, repair
from kvcy.checkpoint import destroy

__version__ = "0.1.0"


def __getattr__(name):
    # kvcy.aio imports asyncio: it loads on first use, so `import kvcy` stays light.
    if name == "aio":
        import importlib
        return importlib.import_module("kvcy.aio")
    raise AttributeError("module 'kvcy' has no attribute %r" % (name,))


# PEP 249: threads may share the module and connections.
threadsafety = 2
apilevel = "2.0"

__all__ = [
    "connect", "Connection", "WriteBatch", "Options", "Transaction", "retry_transaction",
    "TableWriter", "TableInfo",
    "dbm", "shelve", "aio", "check", "CheckReport", "repair", "RepairReport", "destroy",
    "Error", "InterfaceError", "DatabaseError", "OperationalError", "ConflictError",
    "CorruptionError", "ProgrammingError", "DataError", "NotSupportedError",
    "MAX_KEY_BYTES", "MAX_VALUE_BYTES", "MAX_BATCH_BYTES",
    "__version__", "threadsafety", "apilevel",
]
