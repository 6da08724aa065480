"""Block reads of a table file (kvcy/_table_block.pyx): through the file's
mapping (kvcy/_mapped_file.h), a file cut short behind kvcy's back, and the
budget of mapped tables past which tables read with pread.  Damaged blocks
read through this path are covered by tests/test_corruption.py and
tests/test_table.py."""
import gc
import subprocess
import sys

import pytest

import kvcy
from kvcy import _table, _table_block


_SHRUNK_CHILD = r"""
import faulthandler, glob, os, sys
import kvcy
from kvcy.table_format import FOOTER_BYTES, Footer
faulthandler.enable()        # as pytest does: kvcy's SIGBUS handler must sit beside it
path, compression, partitioned = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
conn = kvcy.connect(path, block_cache_bytes=0, compression=compression,
                    partitioned_index=partitioned)
conn.put_many([(b"%08d" % i, b"v" * 200) for i in range(20000)])
conn.flush()
assert conn.get(b"%08d" % 0) == b"v" * 200          # the table is open, and mapped
(table,) = glob.glob(os.path.join(path, "*.sst"))
with open(table, "rb") as f:
    f.seek(-FOOTER_BYTES, 2)
    assert Footer.decode(f.read(), table).partitioned == partitioned
os.truncate(table, 4096)                              # cut behind kvcy's back
try:
    conn.get(b"%08d" % 19000)
except kvcy.CorruptionError as exc:
    print("CorruptionError:", exc)
else:
    print("no error")
conn.put(b"after", b"1")                              # the process goes on
print(conn.get(b"after"))
"""


@pytest.mark.parametrize("compression,partitioned",
                         [("none", False), ("snappy", False), ("snappy", True)])
def test_a_table_cut_short_while_mapped_reads_as_corruption_not_a_crash(tmp_path, compression,
                                                                         partitioned):
    # Blocks are checked and decompressed straight from the mapping, and a
    # partitioned table's filter and index partitions are probed there.
    proc = subprocess.run([sys.executable, "-c", _SHRUNK_CHILD, str(tmp_path / "db"),
                           compression, "1" if partitioned else "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("CorruptionError:") and "truncated" in lines[0], lines
    assert lines[1] == "b'1'"


def test_tables_beyond_the_mapping_budget_read_with_pread(tmp_path):
    path = str(tmp_path / "db")
    gc.collect()              # tables of earlier tests, held in cycles, unmapped now, not below
    previous = _table_block.set_max_mapped_tables(_table_block.mapped_table_count())   # no room left
    try:
        with kvcy.connect(path, block_cache_bytes=0) as conn:
            conn.put_many([(b"%06d" % i, b"x" * 50) for i in range(3000)])
            conn.flush()
            count = _table_block.mapped_table_count()
            assert conn.get(b"%06d" % 1234) == b"x" * 50          # read with pread
            assert _table_block.mapped_table_count() == count
        _table_block.set_max_mapped_tables(previous)
        with kvcy.connect(path, block_cache_bytes=0) as conn:
            assert conn.get(b"%06d" % 1234) == b"x" * 50          # read through a mapping
            assert _table_block.mapped_table_count() == count + 1
    finally:
        _table_block.set_max_mapped_tables(previous)


def test_the_table_module_re_exports_the_mapping_budget():
    assert _table.mapped_table_count is _table_block.mapped_table_count
    assert _table.set_max_mapped_tables is _table_block.set_max_mapped_tables
