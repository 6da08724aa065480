"""Read-only processes beside a busy writer: the stress run of
tests/test_readonly.py, also a measuring tool:

    python tests/readers_beside_writer.py DIR --seconds 30 --readers 2

One writer process writes batches as fast as it can with a small memtable
and small tables, so it flushes and compacts (and deletes tables and logs)
all the time; reader processes open the database read-only, read it and
refresh now and then.  It prints one JSON object: the writer's batches per
second, flushes and compactions, and each reader's reads, reads per second,
failed reads (any exception) and wrong values.  `reads` counts every
value checked (scanned entries included), `point_reads_per_second` only the
keys of get and get_many.

Every value is checked exactly, not only for shape.  Batch v writes the
keys of group v % GROUPS (KEYS_PER_BATCH keys each) with values naming
(index, v), and the clock key CLOCK_KEY = v in the same atomic batch.  A
reader reads the clock from the state it serves; since its state does not
move until it refreshes, every key i must then hold the newest batch
v <= clock of its group: expected_version(i, clock).  The first full sweep
is written before the readers start, so every key exists.
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time

KEYS = 20000
KEYS_PER_BATCH = 50
GROUPS = KEYS // KEYS_PER_BATCH
CLOCK_KEY = b"~clock"
PAD = b"p" * 100
# Small memtable and tables so that the writer flushes and compacts often.
WRITER_OPTIONS = dict(memtable_max_bytes=256 * 1024, target_file_bytes=128 * 1024,
                      level1_max_bytes=1024 * 1024, level0_compaction_trigger=2)


def key_of(i):
    """The key of index i: a bijection on 32 bits scatters the groups."""
    return b"%08x" % ((i * 2654435761) & 0xFFFFFFFF)


def value_of(i, version):
    return b"%d|%d|" % (i, version) + PAD


def expected_version(i, clock):
    """The newest batch v <= clock that wrote index i."""
    group = i // KEYS_PER_BATCH
    return clock - ((clock - group) % GROUPS)


def batch(version):
    group = version % GROUPS
    first = group * KEYS_PER_BATCH
    items = [(key_of(i), value_of(i, version)) for i in range(first, first + KEYS_PER_BATCH)]
    items.append((CLOCK_KEY, b"%d" % version))
    return items


def run_writer(path, seconds, ready_file):
    import kvcy
    with kvcy.connect(path, **WRITER_OPTIONS) as conn:
        version = 0
        for version in range(GROUPS):
            conn.put_many(batch(version))
        open(ready_file, "w").close()
        started = time.monotonic()
        deadline = started + seconds
        first = version + 1
        version = first
        while time.monotonic() < deadline:
            conn.put_many(batch(version))
            version += 1
        elapsed = time.monotonic() - started
        stats = conn.stats()
    return {"batches": version - first, "batches_per_second": (version - first) / elapsed,
            "keys_per_second": (version - first) * (KEYS_PER_BATCH + 1) / elapsed,
            "flushes": stats["flushes"], "compactions": stats["compactions"],
            "last_version": version - 1}


class Checker:
    """Checks what a read-only connection returns against its clock."""

    def __init__(self):
        self.reads = 0            # values checked: point reads and scanned entries
        self.point_reads = 0      # keys read by get and get_many
        self.failures = 0
        self.wrong = 0
        self.errors = []

    def check(self, i, value, clock):
        self.reads += 1
        want = value_of(i, expected_version(i, clock))
        if value != want:
            self.wrong += 1
            if len(self.errors) < 10:
                self.errors.append("key %d: got %r, want %r (clock %d)"
                                   % (i, value[:24] if value else value, want[:24], clock))

    def check_scan(self, items, clock, start_index=None):
        previous = None
        for key, value in items:
            if key == CLOCK_KEY:
                continue
            i = int(value.split(b"|", 1)[0])
            if key != key_of(i) or (previous is not None and key <= previous):
                self.wrong += 1
                self.errors.append("scan: key %r holds index %d" % (key, i))
            previous = key
            self.check(i, value, clock)
        return previous


def clock_of(conn):
    return int(conn.get(CLOCK_KEY))


def run_reader(path, seconds, refresh_every, seed, stop_file, point_only=False, pause=0.0):
    """point_only: only get and get_many (for a reads/s figure); pause:
    seconds to sleep after each operation (a light reader)."""
    import kvcy
    rnd = random.Random(seed)
    check = Checker()
    refreshes = 0
    refresh_seconds = 0.0
    started = time.monotonic()
    deadline = started + seconds
    conn = kvcy.connect(path, readonly=True)
    clock = clock_of(conn)
    next_refresh = started + refresh_every
    held = None                   # (iterator, clock) opened before a refresh
    while time.monotonic() < deadline and not os.path.exists(stop_file):
        op = rnd.random() * (0.9 if point_only else 1.0)
        if pause:
            time.sleep(pause)
        try:
            if time.monotonic() >= next_refresh:
                if held is None and not point_only and rnd.random() < 0.5:
                    held = (conn.scan(start=key_of(rnd.randrange(KEYS))), clock)
                began = time.monotonic()
                conn.refresh()
                refresh_seconds += time.monotonic() - began
                refreshes += 1
                new_clock = clock_of(conn)
                if new_clock < clock:
                    check.wrong += 1
                    check.errors.append("refresh went back from %d to %d" % (clock, new_clock))
                clock = new_clock
                next_refresh = time.monotonic() + refresh_every
            elif held is not None:
                # An iterator outlives the refresh and still reads its state.
                it, held_clock = held
                check.check_scan([item for _, item in zip(range(200), it)], held_clock)
                it.close()
                held = None
            elif op < 0.6:
                i = rnd.randrange(KEYS)
                check.check(i, conn.get(key_of(i)), clock)
                check.point_reads += 1
            elif op < 0.9:
                indexes = [rnd.randrange(KEYS) for _ in range(20)]
                for i, value in zip(indexes, conn.get_many([key_of(i) for i in indexes])):
                    check.check(i, value, clock)
                check.point_reads += len(indexes)
            elif op < 0.99:
                it = conn.scan(start=key_of(rnd.randrange(KEYS)))
                check.check_scan([item for _, item in zip(range(100), it)], clock)
                it.close()
            else:
                items = list(conn.scan())
                check.check_scan(items, clock)
                if len(items) != KEYS + 1:
                    check.wrong += 1
                    check.errors.append("full scan saw %d keys" % len(items))
        except Exception as exc:       # every failure counts: that is the measurement
            check.failures += 1
            if len(check.errors) < 10:
                check.errors.append("%s: %s" % (type(exc).__name__, exc))
    elapsed = time.monotonic() - started
    conn.close()
    return {"reads": check.reads, "reads_per_second": check.reads / elapsed,
            "point_reads_per_second": check.point_reads / elapsed,
            "failures": check.failures, "wrong": check.wrong, "refreshes": refreshes,
            "refresh_ms_mean": 1000 * refresh_seconds / refreshes if refreshes else None,
            "refresh_every": refresh_every, "errors": check.errors}


def run(path, seconds, readers, seed=0, point_only=False, pause=0.0):
    """Start the writer, then the readers once the first sweep is in; return
    {"writer": {...}, "readers": [{...}, ...]}."""
    here = os.path.abspath(__file__)
    ready = os.path.join(os.path.dirname(os.path.abspath(path)), "writer-ready")
    stop = os.path.join(os.path.dirname(os.path.abspath(path)), "writer-done")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.path.dirname(os.path.dirname(here)),
                                                    env.get("PYTHONPATH")) if p)
    def child(*args):
        return subprocess.Popen([sys.executable, here] + [str(a) for a in args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    writer = child("--role", "writer", path, "--seconds", seconds, "--ready", ready)
    while not os.path.exists(ready):
        if writer.poll() is not None:
            raise RuntimeError("writer failed: %s" % writer.stderr.read().decode())
        time.sleep(0.05)
    # One long-lived reader that refreshes rarely, the others often.
    children = [child("--role", "reader", path, "--seconds", seconds + 5, "--stop", stop,
                      "--seed", seed + n, "--refresh-every", 10.0 if n == 0 else 0.2,
                      "--pause", pause, *(["--point-only"] if point_only else []))
                for n in range(readers)]
    result = {}
    out, err = writer.communicate(timeout=seconds + 120)
    open(stop, "w").close()
    if writer.returncode:
        raise RuntimeError("writer failed: %s" % err.decode())
    result["writer"] = json.loads(out)
    result["readers"] = []
    for proc in children:
        out, err = proc.communicate(timeout=120)
        if proc.returncode:
            raise RuntimeError("reader failed: %s" % err.decode())
        result["readers"].append(json.loads(out))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path")
    parser.add_argument("--role", choices=("run", "writer", "reader"), default="run")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--refresh-every", type=float, default=0.2)
    parser.add_argument("--point-only", action="store_true",
                        help="readers only get and get_many")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds each reader sleeps after each operation")
    parser.add_argument("--ready")
    parser.add_argument("--stop")
    args = parser.parse_args()
    if args.role == "writer":
        result = run_writer(args.path, args.seconds, args.ready)
    elif args.role == "reader":
        result = run_reader(args.path, args.seconds, args.refresh_every, args.seed, args.stop,
                            args.point_only, args.pause)
    else:
        result = run(args.path, args.seconds, args.readers, args.seed, args.point_only,
                     args.pause)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
