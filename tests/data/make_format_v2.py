"""Generate tests/data/format_v2/ and tests/data/format_v2.model.json.gz.

Format version 2 is version 1 with each table's index and bloom filter cut
into partitions (Options.partitioned_index; docs/format.md, "Partitioned
index and filters").  This writes the same database as make_format_v1.py
(the same seed, writes and model), with partitions small enough that every
table larger than a few blocks has several: block_size 256 (the smallest
allowed), so index and filter partitions of about 256 bytes.  Run ONCE,
with the format-2 writer; the same rules as make_format_v1.py apply:

    .venv/bin/python tests/data/make_format_v2.py        # from the repository root
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import make_format_v1                                           # noqa: E402

OUT_DIR = os.path.join(HERE, "format_v2")
MODEL_PATH = os.path.join(HERE, "format_v2.model.json.gz")
OPTIONS = dict(make_format_v1.OPTIONS, block_size=256, target_file_bytes=32 * 1024,
               level1_max_bytes=64 * 1024, partitioned_index=True)

if __name__ == "__main__":
    make_format_v1.main(OUT_DIR, MODEL_PATH, OPTIONS, format_version=2)
