"""TransactionIterator: a transaction's scans and cursors (kvcy/transaction_iterator.py).

The transaction's writes merged over its snapshot in key order, deletes
hiding snapshot entries, with bounds, prefixes and reverse scans; random
cursor moves (seek, seek_for_prev, first, last, next, prev) and take()
against a sorted model; the ReadRange a scan reports for validation.
"""
import bisect
import random

import pytest

import kvcy
from kvcy import ProgrammingError
from kvcy.transaction_iterator import ReadRange


@pytest.fixture
def conn(db_path):
    with kvcy.connect(db_path) as c:
        yield c


def test_scan_with_prefix_and_bounds(conn):
    conn.put_many([(b"user:1", b"a"), (b"user:3", b"c"), (b"usex", b"x"), (b"use", b"u")])
    with conn.transaction() as txn:
        txn.put(b"user:2", b"b")
        txn.put(b"user:", b"empty")
        txn.delete(b"user:3")
        txn.put(b"usez", b"z")
        assert [k for k, _ in txn.scan(prefix=b"user:")] == [b"user:", b"user:1", b"user:2"]
        assert [k for k, _ in txn.scan(prefix=b"user:", reverse=True)] == [
            b"user:2", b"user:1", b"user:"]
        assert [k for k, _ in txn.scan(b"user:1", b"usez", prefix=b"use")] == [
            b"user:1", b"user:2", b"usex"]
        with pytest.raises(TypeError, match="prefix must be bytes-like"):
            txn.scan(prefix="user:")


def test_a_scan_sees_the_writes_made_before_it_was_opened(conn):
    with conn.transaction() as txn:
        txn.put(b"a", b"1")
        it = txn.scan()
        txn.put(b"b", b"2")
        assert list(it) == [(b"a", b"1")]
        assert list(txn.scan()) == [(b"a", b"1"), (b"b", b"2")]


def _model_scan(model, start, stop, reverse):
    keys = sorted(k for k in model if (start is None or k >= start)
                  and (stop is None or k < stop))
    return [(k, model[k]) for k in (reversed(keys) if reverse else keys)]


@pytest.mark.parametrize("seed", range(6))
def test_merged_scans_and_cursor_moves_match_a_model(db_path, seed):
    rng = random.Random(seed)
    keys = [b"k%02d" % i for i in range(40)]
    with kvcy.connect(db_path) as conn:
        committed = {}
        for _ in range(2):                      # some entries in tables, some in the memtable
            for k in rng.sample(keys, 15):
                committed[k] = b"c" + k
            conn.put_many([(k, committed[k]) for k in committed])
            for k in rng.sample(sorted(committed), 3):
                conn.delete(k)
                del committed[k]
            if seed % 2:
                conn.flush()
        txn = conn.begin()
        model = dict(committed)
        for k in rng.sample(keys, 20):
            if rng.random() < 0.4:
                txn.delete(k)
                model.pop(k, None)
            else:
                txn.put(k, b"t" + k)
                model[k] = b"t" + k
        for _ in range(20):
            start = rng.choice([None] + keys)
            stop = rng.choice([None] + keys)
            reverse = rng.random() < 0.5
            expected = _model_scan(model, start, stop, reverse)
            assert list(txn.scan(start, stop, reverse=reverse)) == expected
            it = txn.scan(start, stop, reverse=reverse)
            assert it.take(5, 2) + it.take(100, 1) == expected
            # Random cursor moves against the sorted model.
            visible = sorted(k for k, _ in _model_scan(model, start, stop, False))
            pos = None
            it = txn.scan(start, stop, reverse=reverse)
            for _ in range(30):
                op = rng.choice(["seek", "seek_for_prev", "first", "last", "next", "prev"])
                probe = rng.choice(keys) + rng.choice([b"", b"5"])
                if op == "seek":
                    it.seek(probe)
                    i = bisect.bisect_left(visible, probe)
                    pos = i if i < len(visible) else None
                elif op == "seek_for_prev":
                    it.seek_for_prev(probe)
                    i = bisect.bisect_right(visible, probe) - 1
                    pos = i if i >= 0 else None
                elif op == "first":
                    it.seek_to_first()
                    pos = 0 if visible else None
                elif op == "last":
                    it.seek_to_last()
                    pos = len(visible) - 1 if visible else None
                elif pos is None:
                    with pytest.raises(ValueError, match="on an invalid iterator"):
                        getattr(it, op)()
                    continue
                elif op == "next":
                    it.next()
                    pos = pos + 1 if pos + 1 < len(visible) else None
                else:
                    it.prev()
                    pos = pos - 1 if pos > 0 else None
                assert it.valid() == (pos is not None), (op, probe)
                if pos is not None:
                    assert it.item() == (visible[pos], model[visible[pos]]), (op, probe)
        txn.rollback()


def test_cursor_over_a_transaction(conn):
    conn.put_many([(b"k1", b"1"), (b"k3", b"3")])
    with conn.transaction() as txn:
        txn.put(b"k2", b"2")
        cur = txn.cursor()
        assert cur.scan(b"k1").fetchone() == (b"k1", b"1")
        assert cur.fetchmany(5) == [(b"k2", b"2"), (b"k3", b"3")]
        assert cur.seek(b"k2").fetchone() == (b"k2", b"2")
        assert cur.prev() == (b"k1", b"1")
        assert cur.execute(reverse=True).fetchall() == [(b"k3", b"3"), (b"k2", b"2"),
                                                        (b"k1", b"1")]
    assert cur.closed                           # ended with its transaction
    with pytest.raises(ProgrammingError, match="closed cursor"):
        cur.fetchone()


def test_read_range_keeps_the_hull_of_what_was_read():
    rr = ReadRange(b"b", b"p")
    assert rr.empty
    rr.add(b"d", b"f")
    rr.add(b"c", b"e")
    assert (rr.lo, rr.hi) == (b"c", b"f")
    assert rr.bounds() == (b"c", b"f\x00")
    rr.add(b"e", None)                        # ran off the end: up to stop
    assert rr.bounds() == (b"c", b"p")
    rr.add(None, b"d")                        # down to start
    assert rr.bounds() == (b"b", b"p")
    unbounded = ReadRange(None, None)
    unbounded.add(b"a", b"z")
    assert unbounded.bounds() == (b"a", b"z\x00")
    clamped = ReadRange(b"m", b"n")
    clamped.add(b"a", b"z")                   # a seek below the range reads from start
    assert clamped.bounds() == (b"m", b"n")


def test_what_a_scan_reports_as_read(conn):
    conn.put_many([(b"k%d" % i, b"v") for i in range(1, 8)])
    with conn.transaction() as txn:
        it = txn.scan(b"k2", b"k7")
        assert txn._ranges[-1].empty              # nothing read before the first move
        next(it), next(it)
        assert txn._ranges[-1].bounds() == (b"k2", b"k3\x00")
        it.seek(b"k5")
        assert txn._ranges[-1].bounds() == (b"k2", b"k5\x00")
        list(it)
        assert txn._ranges[-1].bounds() == (b"k2", b"k7")
        rit = txn.scan(b"k2", b"k7", reverse=True)
        assert next(rit) == (b"k6", b"v")
        assert txn._ranges[-1].bounds() == (b"k6", b"k7")
        rit.close()
        with pytest.raises(ProgrammingError, match="the iterator is closed"):
            next(rit)
        txn.rollback()
