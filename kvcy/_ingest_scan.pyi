"""Ingest's per-entry key check and rewrite in C; see kvcy/_ingest_scan.pyx."""
from typing import Optional, Tuple

from kvcy._table import Table
from kvcy._table_builder import TableBuilder

SCAN_OK: int
SCAN_BAD_TAG: int
SCAN_NOT_VALUE: int
SCAN_OUT_OF_ORDER: int
SCAN_SHORT_KEY: int

ScanResult = Tuple[int, Optional[bytes], Optional[bytes], int, Optional[bytes]]

def check_keys(table: Table, tag: bytes) -> ScanResult:
    """(status, smallest, largest, entries, bad internal key) of every entry."""
def rewrite_keys(table: Table, builder: TableBuilder, tag: bytes) -> ScanResult:
    """Append every entry to builder as user key + tag; as check_keys."""
