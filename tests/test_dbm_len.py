"""kvcy.dbm's len(): exact through every kind of write, with threads, for a
read-only handle whose view moves, and after a kill -9 (see kvcy/dbm.py).
"""
import os
import random
import signal
import subprocess
import sys
import threading

import pytest

from kvcy import dbm as kdbm


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "db")


def test_len_matches_a_model_through_every_kind_of_write(path):
    rng = random.Random(11)
    model = {}
    with kdbm.open(path, "c") as db:
        for step in range(3000):
            key = b"%d" % rng.randrange(200)
            op = rng.random()
            if op < 0.45:
                db[key] = model[key] = b"v%d" % step
            elif op < 0.65:
                if key in model:
                    del db[key]
                    del model[key]
                else:
                    with pytest.raises(KeyError):
                        del db[key]
            elif op < 0.75:
                assert db.pop(key, None) == model.pop(key, None)
            elif op < 0.85:
                assert db.setdefault(key, b"sd") == model.setdefault(key, b"sd")
            elif op < 0.95:
                batch = {b"%d" % rng.randrange(200): b"u" for _ in range(5)}
                db.update(batch)
                model.update(batch)
            elif op < 0.97 and model:
                k, v = db.popitem()
                assert model.pop(k) == v
            elif op < 0.98:
                db.clear()
                model.clear()
            if step % 7 == 0 or step < 5:
                assert len(db) == len(model)
        assert len(db) == len(model) == len(db.keys())
    with kdbm.open(path, "r") as db:
        assert len(db) == len(model)


def test_len_is_exact_with_threads_writing_the_same_keys(path):
    with kdbm.open(path, "c") as db:
        assert len(db) == 0                        # counted from now on

        def worker(seed):
            rng = random.Random(seed)
            for _ in range(1500):
                key = b"%d" % rng.randrange(300)
                if rng.random() < 0.6:
                    db[key] = b"v"
                else:
                    db.pop(key, None)
        threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(db) == sum(1 for _ in db)


def test_read_only_len_follows_the_view_it_reads(path):
    with kdbm.open(path, "c") as writer:
        writer.update({b"a": b"1", b"b": b"2"})
        with kdbm.open(path, "r") as reader:
            assert len(reader) == 2
            writer[b"c"] = b"3"
            assert len(reader) == 2 and b"c" not in reader   # its view is fixed...
            writer.sync()
            reader._conn.refresh()                          # ...until it moves on
            assert len(reader) == 3 and b"c" in reader


_CRASH_CHILD = """
import os, signal, sys
from kvcy import dbm
db = dbm.open(sys.argv[1], "c")
assert len(db) == 0
for i in range(2000):
    db[b"%04d" % (i % 1500)] = b"v"
    if i % 3 == 0:
        db.pop(b"%04d" % (i // 2), None)
    if i % 100 == 0:
        len(db)
print(len(db), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_len_after_a_kill_9_counts_what_survived(path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.run([sys.executable, "-c", _CRASH_CHILD, path], env=env,
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    with kdbm.open(path, "w") as db:
        assert len(db) == int(child.stdout) == len(db.keys())
        db[b"new"] = b"v"
        assert len(db) == int(child.stdout) + 1


def test_count_is_dropped_after_more_writes_than_keys_and_counted_again(path, monkeypatch):
    monkeypatch.setattr(kdbm, "_KEEP_COUNT_SLACK_WRITES", 10)
    with kdbm.open(path, "c") as db:
        db.update((b"%d" % i, b"v") for i in range(20))
        assert len(db) == 20
        for i in range(40):                          # 40 > 25 keys + 10: stop keeping it
            db[b"%d" % (i % 25)] = b"w"
        assert db._count is None
        db[b"new"] = b"v"                            # no point read paid now
        assert len(db) == 26 and db._count == 26
        for i in range(20):                          # with len() between, it stays kept
            db.pop(b"%d" % i)
            assert len(db) == 25 - i
        assert db._count == 6
