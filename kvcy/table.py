"""Opening an SSTable: the cold half of the table reader.

read_table_meta() reads and checks the footer, the index block, the bloom
filter and the properties of a table file; kvcy._table.Table.open() calls it
and keeps the results in C-level fields, where the hot half (point lookups
and block loading, kvcy/_table.pyx) reads them without the GIL.

Table is re-exported here: it is the table reader's public name.
"""
import contextlib

from kvcy._block import Block
from kvcy._bloom import BloomFilter
from kvcy._table import Table
from kvcy.errors import CorruptionError
from kvcy.table_format import FOOTER_BYTES, Footer, read_block
from kvcy.table_properties import TableProperties

__all__ = ["Table", "read_table_meta"]


@contextlib.contextmanager
def _naming(path, kind, offset):
    """Re-raise a decoder's CorruptionError with the table and block it came from."""
    try:
        yield
    except CorruptionError as exc:
        if path in str(exc):
            raise
        where = " at offset %d" % offset if offset is not None else ""
        raise CorruptionError("table %s: %s block%s: %s" % (path, kind, where, exc)) from exc


def read_table_meta(file, file_size):
    """(index Block, BloomFilter or None, TableProperties, partitioned) of the
    table in file.  A partitioned table's (format version 2) index Block is
    its top-level index, and its filter is in partitions (None here)."""
    path = file.path
    if file_size < FOOTER_BYTES:
        raise CorruptionError("table %s: %d bytes is too short to be a table" % (path, file_size))
    footer = Footer.decode(file.read(file_size - FOOTER_BYTES, FOOTER_BYTES), path)
    with _naming(path, "index", footer.index.offset):
        index = Block(read_block(file, footer.index, file_size, path, "index"))
    bloom = None
    if footer.filter.size:
        with _naming(path, "filter", footer.filter.offset):
            bloom = BloomFilter(read_block(file, footer.filter, file_size, path, "filter"))
    with _naming(path, "properties", footer.properties.offset):
        properties = TableProperties.decode(
            read_block(file, footer.properties, file_size, path, "properties"))
    return index, bloom, properties, footer.partitioned
