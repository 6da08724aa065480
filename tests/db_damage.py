"""A small database with tables in two levels and a log, the places in it
where each kind of file can be damaged, and the expected contents after a
repair, computed by reading the files directly (kvcy.table's reader and
kvcy.log_reader), not through kvcy.check or kvcy.repair.

Used by tests/test_check.py and tests/test_repair.py.
"""
import os

import kvcy
from kvcy._write_batch import batch_header, iterate_batch
from kvcy.dbformat import KIND_DELETE
from kvcy.env import default_env
from kvcy.filename import parse_file_name
from kvcy.log_reader import LogReader
from kvcy.table import Table
from kvcy.table_format import FOOTER_BYTES, BlockHandle, Footer

OPTIONS = dict(block_size=256, memtable_max_bytes=1 << 20)
KEYS = 600


def key(i):
    return b"key%05d" % i


def build_db(path, compression="snappy"):
    """Level 1: KEYS keys; level 0: a third of them rewritten, a seventh
    deleted; the log: keys 300..399 rewritten again in batches of 5."""
    with kvcy.connect(path, compression=compression, **OPTIONS) as conn:
        for start in range(0, KEYS, 100):
            conn.put_many([(key(i), b"first-%05d-" % i + b"x" * 24)
                           for i in range(start, start + 100)])
        conn.compact_range()
        conn.put_many([(key(i), b"second-%05d" % i) for i in range(0, KEYS, 3)])
        conn.delete_many([key(i) for i in range(0, KEYS, 7)])
        conn.flush()
        for start in range(300, 400, 5):
            conn.put_many([(key(i), b"third-%05d" % i) for i in range(start, start + 5)])
    return path


def files(path, kind):
    """Names of the files of a kind ("sst", "log", "manifest") in path, sorted."""
    return sorted(n for n in os.listdir(path)
                  if (parse_file_name(n) or (None,))[0] == kind)


def footer(path):
    with open(path, "rb") as f:
        data = f.read()
    return Footer.decode(data[-FOOTER_BYTES:]), len(data)


def table_blocks(path):
    """[(offset, [(internal key, value)])] for each data block of a table."""
    file = default_env().new_random_access_file(path)
    try:
        table = Table.open(file, file.size)
        it = table.index.iterator()
        it.seek_to_first()
        out = []
        while it.valid():
            handle, _ = BlockHandle.decode(it.value())
            bit = table.block_from_index_value(it.value()).iterator()
            bit.seek_to_first()
            entries = []
            while bit.valid():
                entries.append((bit.key(), bit.value()))
                bit.next()
            out.append((handle.offset, entries))
            it.next()
        return out
    finally:
        file.close()


def log_records(path):
    """[(offset, [(sequence, kind, key, value)])] of a log's records."""
    with open(path, "rb") as f:
        data = f.read()
    out = []
    for offset, payload in LogReader(data, path=path, paranoid=False):
        seq, _ = batch_header(payload)
        out.append((offset, [(seq + i, kind, k, v)
                             for i, (kind, k, v) in enumerate(iterate_batch(payload))]))
    return out


def expected_contents(dbpath, skip_block=None, skip_record=None):
    """{user key: value} the newest surviving entries give, with the data
    block skip_block = (table name, offset) and the log record skip_record =
    (log name, offset) lost."""
    newest = {}

    def offer(seq, kind, user_key, value):
        if user_key not in newest or newest[user_key][0] < seq:
            newest[user_key] = (seq, kind, value)

    for name in files(dbpath, "sst"):
        for offset, entries in table_blocks(os.path.join(dbpath, name)):
            if (name, offset) == skip_block:
                continue
            for ikey, value in entries:
                tag = int.from_bytes(ikey[-8:], "little")
                offer(tag >> 8, tag & 0xFF, ikey[:-8], value)
    for name in files(dbpath, "log"):
        for offset, entries in log_records(os.path.join(dbpath, name)):
            if (name, offset) == skip_record:
                continue
            for seq, kind, user_key, value in entries:
                offer(seq, kind, user_key, value)
    return {k: v for k, (_, kind, v) in newest.items() if kind != KIND_DELETE}


def level_tables(dbpath):
    """{level: [table names]} of the live version."""
    with kvcy.connect(dbpath, readonly=True) as conn:
        version = conn._engine.versions.current
        return {level: ["%06d.sst" % f.number for f in level_files]
                for level, level_files in enumerate(version.files) if level_files}


def xor_byte(path, offset, bits=0x40):
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ bits]))


def contents(dbpath):
    with kvcy.connect(dbpath) as conn:
        return dict(conn.scan())


# -- one damage of each file kind: (file name, offset of the damaged block
#    or record, (skip_block, skip_record) for expected_contents) -----------

def damage_data_block(dbpath):
    name = level_tables(dbpath)[1][0]
    offset = table_blocks(os.path.join(dbpath, name))[5][0]
    xor_byte(os.path.join(dbpath, name), offset + 3)
    return name, offset, ((name, offset), None)


def _table_part(dbpath, part):
    name = level_tables(dbpath)[1][0]
    path = os.path.join(dbpath, name)
    foot, size = footer(path)
    offset = size - FOOTER_BYTES if part == "footer" else getattr(foot, part).offset
    xor_byte(path, offset + (20 if part == "footer" else 3))
    return name, offset, (None, None)


def damage_index(dbpath):
    return _table_part(dbpath, "index")


def damage_filter(dbpath):
    return _table_part(dbpath, "filter")


def damage_footer(dbpath):
    return _table_part(dbpath, "footer")


def damage_log_record(dbpath):
    name = files(dbpath, "log")[-1]
    records = log_records(os.path.join(dbpath, name))
    offset = records[len(records) // 2][0]
    xor_byte(os.path.join(dbpath, name), offset + 7 + 9)      # inside the record's data
    return name, offset, (None, (name, offset))


def damage_manifest(dbpath):
    name = files(dbpath, "manifest")[-1]
    path = os.path.join(dbpath, name)
    with open(path, "rb") as f:
        offsets = [offset for offset, _ in LogReader(f.read(), path=path)]
    offset = offsets[1]                           # an edit with intact edits after it
    xor_byte(path, offset + 7 + 2)
    return name, offset, (None, None)


def remove_current(dbpath):
    os.remove(os.path.join(dbpath, "CURRENT"))
    return "CURRENT", None, (None, None)


DAMAGES = [damage_data_block, damage_index, damage_filter, damage_footer,
           damage_log_record, damage_manifest, remove_current]
