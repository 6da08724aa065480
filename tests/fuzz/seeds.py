"""Build the seed corpora (tests/fuzz_corpus/<target>/) from real files.

A small workload (puts, deletes, batches, overwrites, flushes and a
compaction, with small memtables and blocks so that it leaves several
tables, a WAL and a MANIFEST) runs in a scratch directory; each target's
seeds are the files, blocks, records or parts of them that its decoder
reads, prefixed with the target's mode byte.  Deterministic: the same
kvcy writes the same seeds.  Run by ``python -m tests.fuzz seeds``.
"""
import os
import random
import shutil
import tempfile

import kvcy
from kvcy._block import Block
from kvcy.env import PosixEnv
from kvcy.log_reader import LogReader
from kvcy.table import Table
from kvcy.table_format import FOOTER_BYTES, BLOCK_TRAILER_BYTES, BlockHandle, Footer, read_block

from .harness import seed_dir

# Tables above this size are left out of the table seeds: every execution
# re-reads the whole input.
MAX_SEED_TABLE_BYTES = 24 * 1024


def run_workload(path, copy_to):
    """Run the workload in path and copy its files to copy_to while it is
    still open (close would flush the WAL's last records to a table)."""
    rng = random.Random(13)
    with kvcy.connect(path, memtable_max_bytes=16 * 1024, memtable_min_bytes=0, block_size=512,
                      bloom_bits_per_key=10, level0_compaction_trigger=20,
                      level0_slowdown_trigger=20, level0_stop_trigger=24) as conn:
        for round_ in range(8):
            for i in range(150):
                key = b"key:%05d" % rng.randrange(600)
                if rng.random() < 0.1:
                    conn.delete(key)
                else:
                    conn.put(key, b"v%d:" % round_ + bytes(rng.randrange(97, 123)
                                                          for _ in range(rng.randrange(60))))
            conn.put_many([(b"batch:%d:%d" % (round_, j), b"x" * j) for j in range(20)])
            if round_ == 3:
                conn.compact_range(b"key:00100", b"key:00300")
            elif round_ % 2:
                conn.flush()
        conn.flush()       # waits: no background work runs while the files are copied
        for i in range(40):
            conn.put(b"tail:%d" % i, b"in the log %d" % i)   # stays in the WAL
        os.makedirs(copy_to)
        for name in os.listdir(path):
            if name.endswith((".sst", ".log")) or name.startswith("MANIFEST"):
                try:
                    shutil.copyfile(os.path.join(path, name), os.path.join(copy_to, name))
                except FileNotFoundError:
                    pass           # an obsolete file, deleted in the background


def table_parts(path):
    """(raw table, footer, [(handle, stored block, raw contents)], filter, properties)."""
    env = PosixEnv()
    data = open(path, "rb").read()
    footer = Footer.decode(data[-FOOTER_BYTES:])
    file = env.new_random_access_file(path)
    try:
        table = Table.open(file, len(data), 1)
        index = read_block(file, footer.index, len(data), path, "index")
        blocks = [(footer.index, index)]
        it = Block(index).iterator()
        it.seek_to_first()
        while it.valid():
            handle, _ = BlockHandle.decode(it.value())
            blocks.append((handle, read_block(file, handle, len(data), path)))
            it.next()
        stored = [(h, data[h.offset:h.offset + h.size + BLOCK_TRAILER_BYTES], raw)
                  for h, raw in blocks]
        filt = read_block(file, footer.filter, len(data), path, "filter") if footer.filter.size else b""
        props = read_block(file, footer.properties, len(data), path, "properties")
        del table
    finally:
        file.close()
    return data, data[-FOOTER_BYTES:], stored, filt, props


def build_seeds():
    """{target: {name: bytes}} from one run of the workload."""
    scratch = tempfile.mkdtemp(prefix="kvcy-fuzz-seeds-")
    try:
        db = os.path.join(scratch, "copy")
        run_workload(os.path.join(scratch, "db"), db)
        seeds = {name: {} for name in ("block", "table", "table_meta", "log", "manifest",
                                       "write_batch", "coding", "snappy")}
        for name in sorted(os.listdir(db)):
            full = os.path.join(db, name)
            data = open(full, "rb").read()
            if name.endswith(".sst"):
                add_table_seeds(seeds, name, full, data)
            elif name.endswith(".log") or name.startswith("MANIFEST"):
                add_log_seeds(seeds, name, data)
        return seeds
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def add_table_seeds(seeds, name, full, data):
    _, footer, blocks, filt, props = table_parts(full)
    stem = name[:-4]
    if len(data) <= MAX_SEED_TABLE_BYTES:
        seeds["table"]["%s-raw" % stem] = b"\x00" + data
        seeds["table"]["%s-refix-file-cache" % stem] = b"\x0d" + data
    seeds["table_meta"]["%s-footer" % stem] = b"\x00" + footer
    h = blocks[1][0]
    seeds["table_meta"]["%s-framing" % stem] = (b"\x01" + h.offset.to_bytes(8, "little")
                                                + h.size.to_bytes(8, "little") + data)
    if filt:
        seeds["table_meta"]["%s-filter" % stem] = b"\x02" + filt
    seeds["table_meta"]["%s-properties" % stem] = b"\x03" + props
    for i, (handle, stored, raw) in enumerate(blocks[:4]):
        seeds["block"]["%s-%s" % (stem, "index" if i == 0 else "data%d" % i)] = raw
        if stored[handle.size] == 1:                  # snappy-compressed on disk
            seeds["snappy"]["%s-block%d" % (stem, i)] = b"\x00" + stored[:handle.size]
        seeds["snappy"]["%s-raw%d" % (stem, i)] = b"\x01" + raw
    seeds["coding"]["%s-index" % stem] = blocks[0][2]


def add_log_seeds(seeds, name, data):
    records = [payload for _, payload in LogReader(data, path=name, paranoid=False)]
    if name.endswith(".log"):
        seeds["log"]["%s-wal" % name] = b"\x00" + data[:48 * 1024]
        seeds["log"]["%s-wal-round-trip" % name] = b"\x02" + data[:2048]
        for i, rep in enumerate(records[:24]):
            seeds["write_batch"]["%s-%03d" % (name, i)] = b"\x00" + rep
        for i, rep in enumerate(records[:4]):
            # Round trips: records' bytes as entries, table options from the mode.
            seeds["write_batch"]["%s-%03d-round-trip" % (name, i)] = b"\x01" + rep
            seeds["table"]["%s-%03d-round-trip" % (name, i)] = bytes((0x02 | (i << 4) | ((i & 1) << 7),)) + rep
        return
    seeds["log"]["%s" % name] = b"\x00" + data
    seeds["log"]["%s-refix" % name] = b"\x01" + data
    seeds["manifest"]["%s-file" % name] = b"\x02" + data
    seeds["manifest"]["%s-file-refix" % name] = b"\x06" + data
    for i, edit in enumerate(records[:16]):
        seeds["manifest"]["%s-edit%03d" % (name, i)] = b"\x00" + edit
        seeds["coding"]["%s-edit%03d" % (name, i)] = edit


def write_seeds():
    """Replace the seed files of every target; returns {target: count}."""
    counts = {}
    for target, files in build_seeds().items():
        directory = seed_dir(target)
        if os.path.isdir(directory):
            for old in os.listdir(directory):
                os.remove(os.path.join(directory, old))
        os.makedirs(directory, exist_ok=True)
        for name, data in sorted(files.items()):
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
        counts[target] = len(files)
    return counts
