"""Checkpoint time and size: conn.checkpoint() of a database of --mb megabytes.

    python bench/checkpoint_time.py [--mb 1024] [--path DIR] [--cross-dir DIR]

Loads --mb MB of 16-byte keys and 100-byte random (incompressible) values
with put_many, then times three checkpoints: idle, while a thread keeps
writing, and (with --cross-dir on another file system) one that copies its
tables.  Reports each checkpoint's wall time, the bytes it holds, and the
new disk blocks it took (hard-linked tables take none).  A measurement, not
a test.
"""
import argparse
import os
import shutil
import tempfile
import threading
import time

import kvcy

VALUE_BYTES = 100
BATCH = 10_000


def directory_bytes(path):
    return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path))


def new_blocks_bytes(copy, original):
    """Bytes of the files in copy that do not share an inode with original's."""
    shared = {os.stat(os.path.join(original, n)).st_ino for n in os.listdir(original)}
    total = 0
    for n in os.listdir(copy):
        st = os.stat(os.path.join(copy, n))
        if st.st_ino not in shared:
            total += st.st_size
    return total


def timed_checkpoint(conn, dest):
    started = time.perf_counter()
    sequence = conn.checkpoint(dest)
    return time.perf_counter() - started, sequence


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024, help="data to load, in MB")
    parser.add_argument("--path", help="directory for the database (default: a temporary one)")
    parser.add_argument("--cross-dir", help="a directory on another file system (tables copied)")
    args = parser.parse_args()
    base = args.path or tempfile.mkdtemp(prefix="kvcy-checkpoint-bench-")
    db = os.path.join(base, "db")
    pairs = args.mb * 1_000_000 // (16 + VALUE_BYTES)
    with kvcy.connect(db) as conn:
        started = time.perf_counter()
        for first in range(0, pairs, BATCH):
            conn.put_many((b"%016d" % i, os.urandom(VALUE_BYTES))
                          for i in range(first, min(first + BATCH, pairs)))
        conn.flush()
        print("loaded %d pairs in %.1f s; database %.1f MB on disk"
              % (pairs, time.perf_counter() - started, directory_bytes(db) / 1e6))

        seconds, sequence = timed_checkpoint(conn, os.path.join(base, "idle"))
        print("idle checkpoint: %.3f s, sequence %d, %.1f MB held, %.2f MB new blocks"
              % (seconds, sequence, directory_bytes(os.path.join(base, "idle")) / 1e6,
                 new_blocks_bytes(os.path.join(base, "idle"), db) / 1e6))

        stop = threading.Event()
        written = [0]

        def write():
            i = 0
            while not stop.is_set():
                conn.put(b"w%015d" % i, os.urandom(VALUE_BYTES))
                i += 1
            written[0] = i
        thread = threading.Thread(target=write)
        thread.start()
        time.sleep(1.0)
        seconds, sequence = timed_checkpoint(conn, os.path.join(base, "busy"))
        stop.set()
        thread.join()
        print("checkpoint under writes: %.3f s, sequence %d, %.1f MB held, %.2f MB new "
              "blocks (%d writes during the run)"
              % (seconds, sequence, directory_bytes(os.path.join(base, "busy")) / 1e6,
                 new_blocks_bytes(os.path.join(base, "busy"), db) / 1e6, written[0]))

        if args.cross_dir:
            dest = os.path.join(args.cross_dir, "kvcy-checkpoint-cross")
            seconds, sequence = timed_checkpoint(conn, dest)
            print("checkpoint to another file system (copied): %.3f s, %.1f MB"
                  % (seconds, directory_bytes(dest) / 1e6))
            shutil.rmtree(dest)
    if not args.path:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
