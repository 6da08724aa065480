"""Generate tests/data/format_v1/ and tests/data/format_v1.model.json.gz.

Run ONCE, with the writer of on-disk format_version 1 (kvcy 0.1.0); do not
regenerate casually.  The point of the fixture is that it was written by an
old writer: tests/test_format_freeze.py checks that today's readers still
read it.  Regenerating it with a newer writer silently turns that test into
a round trip of the new code and freezes nothing.  Regenerate only when the
fixture itself is wrong, and only with a checkout of the format-1 writer:

    .venv/bin/python tests/data/make_format_v1.py        # from the repository root

A new format version gets a new generator and fixture (make_format_v2.py,
format_v2/) beside this one; this one stays.

What it writes (one writable session, small options so that a few hundred
kilobytes reach several levels):

* phase 1, base data: compressible values, random (incompressible) values,
  binary and odd-length keys (the empty key, NULs, 0xff runs, a 2,000-byte
  key) and a ~100 KB compressible value; flushed and compacted into L1,
  from where size-triggered compaction moves files on to L2;
* phase 2: overwrites, deletions (tombstones over L2 values) and new keys
  in four flushes, which trigger an automatic L0 -> L1 compaction;
* phase 3: more overwrites and deletions in two flushes that stay in L0 as
  two overlapping files;
* phase 4: sync=True writes left in the live write-ahead log (close() syncs
  the log but does not flush the memtable): single puts and deletes, a
  put_many batch, a WriteBatch mixing puts and deletes, and a ~70 KB value
  whose record is fragmented FIRST/MIDDLE/LAST across 32 KiB log blocks.

Background compactions run on their own thread, so a rerun may place files
slightly differently (the contents are the same); the test checks the
properties it relies on, not file numbers.

Every write also goes to a dict model; the model (not a read-back of the
database) is saved as JSON (keys and values hex-encoded), gzip-compressed:

    {"format_version": 1,
     "live":    {hex key: hex value, ...},   # exactly the live keys
     "deleted": [hex key, ...],              # written, then deleted at the end
     "absent":  [hex key, ...]}              # never written

LOG, LOG.old and LOCK are removed from the fixture: LOG is not part of the
format (and holds local paths); LOCK holds this machine's pid and host.
"""
import gzip
import json
import os
import random
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import kvcy                                                     # noqa: E402
from kvcy.compaction_picker import pick_compaction              # noqa: E402

OUT_DIR = os.path.join(HERE, "format_v1")
MODEL_PATH = os.path.join(HERE, "format_v1.model.json.gz")
SEED = 20261206

OPTIONS = dict(
    memtable_max_bytes=1 << 20,        # only explicit flushes switch memtables
    block_size=1024,
    target_file_bytes=8 * 1024,
    level0_compaction_trigger=4,
    level1_max_bytes=16 * 1024,
    compression="snappy",
    bloom_bits_per_key=10,
    sync=True,
)

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima "
         "mike november oscar papa quebec romeo sierra tango uniform victor").split()


def text_value(rng, n):
    """A compressible value of about n bytes (English-like words, numbers)."""
    out = []
    size = 0
    while size < n:
        w = "%s-%d " % (rng.choice(WORDS), rng.randrange(100))
        out.append(w)
        size += len(w)
    return "".join(out).encode()[:n]


def random_value(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def wait_idle(conn, timeout=60.0):
    """Until the background thread is idle and nothing is left to compact."""
    engine = conn._engine
    deadline = time.monotonic() + timeout
    while True:
        assert engine.background_error is None, engine.background_error
        with engine.background.cv:
            busy = engine.background.busy or engine.background.pending
        if (not busy and not engine.imm
                and pick_compaction(engine.versions.current, engine.options) is None):
            return
        assert time.monotonic() < deadline, "compaction did not settle"
        time.sleep(0.01)


class Writer:
    """Applies every write to the connection and to the dict model."""

    def __init__(self, conn):
        self.conn = conn
        self.model = {}
        self.ever = set()

    def put(self, k, v):
        self.conn.put(k, v)
        self.model[k] = v
        self.ever.add(k)

    def delete(self, k):
        self.conn.delete(k)
        self.model.pop(k, None)
        self.ever.add(k)

    def put_many(self, pairs):
        self.conn.put_many(pairs)
        for k, v in pairs:
            self.model[k] = v
            self.ever.add(k)

    def write(self, ops):
        batch = kvcy.WriteBatch()
        for op in ops:
            if op[0] == "put":
                batch.put(op[1], op[2])
            else:
                batch.delete(op[1])
        self.conn.write(batch)
        for op in ops:                      # in order: a later op of a key wins
            if op[0] == "put":
                self.model[op[1]] = op[2]
            else:
                self.model.pop(op[1], None)
            self.ever.add(op[1])


def levels(conn):
    s = conn.stats()
    return [s["level%d_files" % i] for i in range(7)]


def main(out_dir=OUT_DIR, model_path=MODEL_PATH, options=OPTIONS, format_version=1):
    # make_format_v2.py calls this with its own directory and options.
    rng = random.Random(SEED)
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    conn = kvcy.connect(out_dir, **options)
    w = Writer(conn)

    cmp_keys = [b"cmp:%05d" % i for i in range(0, 1200, 3)]          # 400 keys
    rnd_keys = [b"rnd:%04d" % i for i in range(120)]
    odd_keys = [b"", b"\x00", b"\x00\x00", b"\x00\x01\x02", b"\x01", b"\x7f", b"\x80",
                b"\xfe\xff", b"\xff", b"\xff" * 12, b"a", b"z" * 255,
                b"long:" + bytes(range(256)) * 8,
                b"key with spaces and \n newline", "unicodé-ключ".encode()]

    # -- phase 1: base data, pushed to L1 and (by size) on to L2 ------------
    for k in cmp_keys:
        w.put(k, text_value(rng, rng.randrange(60, 300)))
    for k in rnd_keys:
        w.put(k, random_value(rng, rng.randrange(80, 320)))
    for i, k in enumerate(odd_keys):
        w.put(k, b"odd value %d " % i + random_value(rng, i * 7))
    w.put(b"big:table", text_value(rng, 100 * 1024))
    w.put(b"empty:value", b"")
    conn.flush()
    conn.compact_range()
    wait_idle(conn)
    print("after phase 1:", levels(conn))

    # -- phase 2: overwrites, tombstones, new keys; auto L0 -> L1 -----------
    for part in range(3):
        for k in cmp_keys[part::7][:25]:
            w.put(k, text_value(rng, rng.randrange(40, 200)))
        for k in rnd_keys[part::9]:
            w.delete(k)
        for k in cmp_keys[3 + part::11][:15]:
            w.delete(k)
        for i in range(20):
            w.put(b"new2:%d:%03d" % (part, i), random_value(rng, rng.randrange(50, 150)))
        conn.flush()
    w.delete(b"\x00\x01\x02")
    w.delete(b"")
    conn.flush()
    wait_idle(conn)
    print("after phase 2:", levels(conn))

    # -- phase 3: two L0 files over L1/L2 ----------------------------------
    for part in range(2):
        for k in cmp_keys[5 + part::13][:20]:
            w.put(k, b"phase3 %d " % part + text_value(rng, 100))
        for k in rnd_keys[4 + part::10]:
            w.delete(k)
        w.put(b"", b"empty key again, phase 3 part %d" % part)
        w.put(b"\xff", random_value(rng, 40))
        w.delete(b"a")
        conn.flush()
        wait_idle(conn)
    print("after phase 3:", levels(conn))

    # -- phase 4: writes left in the live WAL -------------------------------
    w.put(b"wal:single", b"only in the log")
    w.put(cmp_keys[1], b"overwritten in the log")
    w.delete(cmp_keys[2])
    w.delete(rnd_keys[1])
    w.put_many([(b"wal:batch:%02d" % i, random_value(rng, 30)) for i in range(30)])
    w.write([("put", b"wal:wb:a", b"1"), ("delete", cmp_keys[10]),
             ("put", b"wal:wb:b", b"2"), ("put", b"wal:wb:a", b"3"),
             ("delete", b"wal:wb:b"), ("put", b"\x00", b"NUL key, from the log")])
    w.put(b"big:wal", text_value(rng, 70 * 1024))
    w.delete(b"\x7f")
    w.put(b"", b"")                        # empty key, empty value
    final_levels = levels(conn)
    stats = conn.stats()
    assert stats["memtable_entries"] > 0
    conn.close()                           # syncs the log, does not flush the memtable
    for name in ("LOG", "LOG.old", "LOCK"):
        path = os.path.join(out_dir, name)
        if os.path.exists(path):
            os.remove(path)

    absent = [b"cmp:00001", b"cmp:99999", b"rnd:", b"\x00\x00\x00", b"zz", b"\xff\xff",
              b"wal:", b"big", b"new2:9:000"]
    deleted = sorted(k for k in w.ever if k not in w.model)
    assert not set(absent) & w.ever
    model = {
        "format_version": format_version,
        "live": {k.hex(): v.hex() for k, v in sorted(w.model.items())},
        "deleted": [k.hex() for k in deleted],
        "absent": [k.hex() for k in absent],
    }
    with gzip.GzipFile(model_path, "wb", mtime=0) as f:
        f.write(json.dumps(model, indent=0, sort_keys=True).encode() + b"\n")

    print("final levels:", final_levels)
    print("live keys %d, deleted keys %d" % (len(w.model), len(deleted)))
    total = 0
    for name in sorted(os.listdir(out_dir)):
        size = os.path.getsize(os.path.join(out_dir, name))
        total += size
        print("  %-20s %8d" % (name, size))
    print("  %-20s %8d" % ("total", total))
    print("model:", os.path.getsize(model_path))


if __name__ == "__main__":
    main()
