"""Transactions (kvcy/transaction.py, kvcy/transaction_iterator.py).

Commit and rollback, read-your-writes through point reads, conflicts
(from another transaction, from plain writes in other threads, in tables
after a flush, in scanned ranges), retries, the anomalies the isolation
level prevents, use after the end, and autocommit=False.  Merged scans and
cursors: tests/test_transaction_iterator.py; kill -9 around commits:
tests/test_transaction_crash.py.
"""
import threading
import time

import pytest

import kvcy
from kvcy import ConflictError, OperationalError, ProgrammingError


@pytest.fixture
def conn(db_path):
    with kvcy.connect(db_path) as c:
        yield c


# -- commit and rollback ---------------------------------------------------------

def test_commit_writes_everything_as_one_batch(conn):
    conn.put_many([(b"a", b"1"), (b"c", b"3")])
    before = conn.stats()
    with conn.transaction() as txn:
        txn.put(b"a", b"10")
        txn.put(b"b", b"20")
        txn.delete(b"c")
        assert conn.get_many([b"a", b"b", b"c"]) == [b"1", None, b"3"]   # not before commit
    after = conn.stats()
    assert conn.get_many([b"a", b"b", b"c"]) == [b"10", b"20", None]
    assert after["wal_records"] - before["wal_records"] == 1
    assert after["batches"] - before["batches"] == 1
    assert after["last_sequence"] - before["last_sequence"] == 3
    assert txn.closed


def test_begin_commit_and_rollback(conn):
    txn = conn.begin()
    txn.put(b"k", b"v")
    txn.rollback()
    assert conn.get(b"k") is None
    txn = conn.begin()
    txn.put(b"k", b"w")
    txn.commit()
    assert conn.get(b"k") == b"w"


def test_exception_in_the_block_rolls_back_and_propagates(conn):
    with pytest.raises(KeyError):
        with conn.transaction() as txn:
            txn.put(b"k", b"v")
            raise KeyError("boom")
    assert conn.get(b"k") is None
    assert txn.closed


def test_explicit_end_inside_the_block_is_kept(conn):
    with conn.transaction() as txn:
        txn.put(b"a", b"1")
        txn.rollback()
    assert conn.get(b"a") is None
    with conn.transaction() as txn:
        txn.put(b"a", b"2")
        txn.commit()
    assert conn.get(b"a") == b"2"


def test_a_transaction_without_writes_writes_nothing(conn):
    conn.put(b"a", b"1")
    before = conn.stats()
    with conn.transaction() as txn:
        assert txn.get(b"a") == b"1"
    assert conn.stats()["wal_records"] == before["wal_records"]


def test_commit_sync_fsyncs(conn):
    before = conn.stats()["wal_syncs"]
    with conn.transaction(sync=True) as txn:
        txn.put(b"a", b"1")
    txn = conn.begin()
    txn.put(b"b", b"2")
    txn.commit(sync=True)
    assert conn.stats()["wal_syncs"] - before == 2
    with pytest.raises(TypeError, match="sync must be True, False or None"):
        conn.begin(sync="yes")


def test_the_snapshot_is_released_at_the_end(conn):
    engine = conn._engine
    txn = conn.begin()
    assert len(engine.snapshots) == 1
    txn.commit()
    assert len(engine.snapshots) == 0
    with conn.transaction():
        with pytest.raises(ValueError):
            with conn.transaction():
                raise ValueError
        assert len(engine.snapshots) == 1
    assert len(engine.snapshots) == 0


# -- reads: the snapshot with the transaction's writes over it -------------------

def test_reads_see_own_writes_over_the_snapshot(conn):
    conn.put_many([(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])
    with conn.transaction() as txn:
        conn.put(b"a", b"changed later")       # after the snapshot: invisible
        conn.put(b"z", b"new")
        txn.put(b"b", b"20")
        txn.delete(b"c")
        txn.put(b"d", b"40")
        assert txn.get(b"a") == b"1"
        assert txn.get(b"b") == b"20"
        assert txn.get(b"c") is None and txn.get(b"c", b"-") == b"-"
        assert txn.get(bytearray(b"d")) == b"40"
        assert txn.get(b"z") is None
        assert txn.get_many([b"a", b"b", b"c", b"d", b"z", b"b"], b"-") == [
            b"1", b"20", b"-", b"40", b"-", b"20"]
        assert b"d" in txn and b"c" not in txn
        assert list(txn.scan()) == [(b"a", b"1"), (b"b", b"20"), (b"d", b"40")]
        assert list(txn.scan(reverse=True)) == [(b"d", b"40"), (b"b", b"20"), (b"a", b"1")]
        assert list(txn.scan(b"b", b"d")) == [(b"b", b"20")]
        assert txn.cursor().scan(b"a").fetchall() == [(b"a", b"1"), (b"b", b"20"),
                                                      (b"d", b"40")]
        txn.rollback()


# -- writes ---------------------------------------------------------------------------

def test_bad_writes_fail_at_once_and_keep_nothing(conn):
    with conn.transaction() as txn:
        with pytest.raises(TypeError, match="key must be bytes-like, not str"):
            txn.put("k", b"v")
        with pytest.raises(TypeError, match="value must be bytes-like"):
            txn.put(b"k", None)
        with pytest.raises(kvcy.DataError, match="MAX_KEY_BYTES"):
            txn.put(b"k" * (kvcy.MAX_KEY_BYTES + 1), b"v")
        with pytest.raises(TypeError, match="expected \\(key, value\\) pairs"):
            txn.put_many([(b"a", b"1"), b"oops"])
        with pytest.raises(TypeError, match="key must be bytes-like"):
            txn.delete_many([b"a", 7])
        assert txn.get(b"a") is None
        txn.put_many({b"x": b"1", b"y": b"2"})
        batch = kvcy.WriteBatch()
        batch.put(b"z", b"3")
        batch.delete(b"x")
        txn.write(batch)
        with pytest.raises(TypeError, match="takes a WriteBatch"):
            txn.write([(b"a", b"1")])
    assert conn.get_many([b"x", b"y", b"z", b"a"]) == [None, b"2", b"3", None]


def test_read_only_connection_reads_in_a_transaction_but_refuses_writes(db_path):
    with kvcy.connect(db_path) as c:
        c.put(b"a", b"1")
    with kvcy.connect(db_path, readonly=True) as ro:
        with ro.transaction() as txn:
            assert txn.get(b"a") == b"1"
            with pytest.raises(OperationalError, match="read-only"):
                txn.put(b"a", b"2")


# -- conflicts -------------------------------------------------------------------------

def test_conflict_with_another_transaction_writes_nothing(conn):
    conn.put(b"n", b"0")
    t1, t2 = conn.begin(), conn.begin()
    t1.put(b"n", b"%d" % (int(t1.get(b"n")) + 1))
    t2.put(b"n", b"%d" % (int(t2.get(b"n")) + 1))
    t2.put(b"other", b"x")
    t1.commit()
    last = conn.stats()["last_sequence"]
    with pytest.raises(ConflictError, match="key b'n' was written after the transaction's "
                                            "snapshot") as info:
        t2.commit()
    assert isinstance(info.value, OperationalError)
    assert conn.get_many([b"n", b"other"]) == [b"1", None]
    assert conn.stats()["last_sequence"] == last
    assert t2.closed
    with pytest.raises(ProgrammingError, match="rolled-back transaction"):
        t2.get(b"n")


def test_what_conflicts_and_what_does_not(conn):
    conn.put_many([(b"r", b"0"), (b"w", b"0"), (b"x", b"0")])
    cases = [
        # (what the transaction does, what another write does after its snapshot, conflict?)
        (lambda t: t.get(b"r"), lambda: conn.put(b"r", b"1"), False),   # read-only: no check
        (lambda t: (t.get(b"r"), t.put(b"y", b"1")), lambda: conn.put(b"r", b"2"), True),
        (lambda t: (t.get(b"absent"), t.put(b"y", b"1")), lambda: conn.put(b"absent", b"1"),
         True),                                                          # a read of nothing
        (lambda t: t.put(b"w", b"1"), lambda: conn.put(b"w", b"2"), True),   # blind writes
        (lambda t: t.put(b"w", b"1"), lambda: conn.delete(b"w"), True),
        (lambda t: t.put(b"x", b"1"), lambda: conn.put(b"x", conn.get(b"x")), True),  # same value
        (lambda t: (t.get(b"x"), t.put(b"w", b"3")), lambda: conn.put(b"q", b"1"), False),
    ]
    for n, (body, interfere, conflict) in enumerate(cases):
        txn = conn.begin()
        body(txn)
        interfere()
        if conflict:
            with pytest.raises(ConflictError):
                txn.commit()
        else:
            txn.commit()
        assert txn.closed, n


def test_conflict_with_a_put_from_another_thread(conn):
    conn.put(b"n", b"0")
    with pytest.raises(ConflictError):
        with conn.transaction() as txn:
            value = int(txn.get(b"n"))
            writer = threading.Thread(target=conn.put, args=(b"n", b"100"))
            writer.start()
            writer.join()
            txn.put(b"n", b"%d" % (value + 1))
    assert conn.get(b"n") == b"100"


def test_conflicts_are_found_in_tables_after_a_flush(conn):
    # The transaction outlives the memtable of its snapshot: the check must
    # search the tables (ReadState.written_after, _tables_written_in).
    conn.put_many([(b"a", b"0"), (b"m1", b"0")])
    for interfere, conflict in [
            (lambda: conn.put(b"a", b"1"), True),
            (lambda: conn.put(b"m5", b"new"), True),       # into the scanned range
            (lambda: conn.delete(b"m1"), True),
            (lambda: conn.put(b"zz", b"1"), False)]:
        txn = conn.begin()
        txn.get(b"a")
        assert list(txn.scan(prefix=b"m")) != []
        txn.put(b"out", b"1")
        interfere()
        conn.flush()
        conn.put(b"filler", b"1")                      # the memtable holds something newer
        state = conn._engine.reader.state
        assert not state.covers_since(txn.sequence)
        if conflict:
            with pytest.raises(ConflictError):
                txn.commit()
        else:
            txn.commit()
            assert conn.get(b"out") == b"1"


def test_written_after_against_every_layer(conn):
    conn.put(b"old", b"1")
    conn.flush()
    since = conn.stats()["last_sequence"]
    conn.put(b"new", b"1")
    conn.flush()
    conn.put(b"mem", b"1")
    state = conn._engine.reader.state
    assert not state.covers_since(since)
    assert state.covers_since(since + 1)
    assert [state.written_after(k, since) for k in (b"old", b"new", b"mem", b"none")] == [
        False, True, True, False]
    assert state.memtables_written_in(None, None, since)
    assert not state.memtables_written_in(b"a", b"m", since)
    assert state.memtables_written_in(b"mem", b"mem\x00", since)


def test_phantoms_in_a_scanned_range_conflict(conn):
    conn.put_many([(b"item:1", b"x"), (b"item:5", b"x"), (b"zzz", b"x")])
    # An insert into a range the transaction scanned is a conflict ...
    with pytest.raises(ConflictError, match="scanned range"):
        with conn.transaction() as txn:
            count = len(list(txn.scan(prefix=b"item:")))
            conn.put(b"item:3", b"x")
            txn.put(b"item:count", b"%d" % count)
    # ... one past the part a scan read is not: it stopped after b"item:1".
    with conn.transaction() as txn:
        it = txn.scan(prefix=b"item:")
        assert next(it) == (b"item:1", b"x")
        conn.put(b"item:4", b"x")
        txn.put(b"first", b"item:1")
    assert conn.get(b"first") == b"item:1"
    # A reverse scan that stopped at b"item:5" read [item:5, stop) only.
    with conn.transaction() as txn:
        it = txn.scan(prefix=b"item:", reverse=True)
        assert next(it) == (b"item:5", b"x")
        conn.put(b"item:2", b"x")
        txn.put(b"last", b"item:5")
    with pytest.raises(ConflictError):
        with conn.transaction() as txn:
            it = txn.scan(prefix=b"item:", reverse=True)
            next(it)
            conn.put(b"item:6", b"x")
            txn.put(b"last", b"item:5")


def test_validation_and_write_exclude_every_other_writer(conn):
    # A put that arrives while a transaction validates waits for its batch,
    # so it cannot slip in between check and write (a lost update).
    batch = kvcy.WriteBatch()
    batch.put(b"x", b"txn")
    seen = []

    def check():
        writer = threading.Thread(target=conn.put, args=(b"x", b"plain"))
        writer.start()
        time.sleep(0.05)
        seen.append(writer.is_alive())
        seen.append(writer)

    conn._engine.writer.write_batch_checked(batch, check)
    seen[1].join()
    assert seen[0] is True                 # the put was waiting for the write lock
    assert conn.get(b"x") == b"plain"      # and came after the batch

    def refuse():
        raise ConflictError("no")
    last = conn.stats()["last_sequence"]
    with pytest.raises(ConflictError):
        conn._engine.writer.write_batch_checked(batch, refuse)
    assert conn.stats()["last_sequence"] == last
    conn.put(b"after", b"1")               # the lock was released


# -- anomalies prevented, with threads ---------------------------------------------------

def test_lost_update_is_prevented(conn):
    # Two threads read-modify-write the same counter at once: without a
    # retry one of them must fail, never both succeed with the same read.
    conn.put(b"n", b"0")
    barrier = threading.Barrier(2)
    outcomes = []

    def increment():
        try:
            with conn.transaction() as txn:
                value = int(txn.get(b"n"))
                barrier.wait()                 # both have read before either commits
                txn.put(b"n", b"%d" % (value + 1))
            outcomes.append("ok")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=increment) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "ok"]
    assert conn.get(b"n") == b"1"


def test_read_skew_is_prevented(conn):
    # Invariant x + y == 100; a transfer commits between the reader's two reads.
    conn.put_many([(b"x", b"50"), (b"y", b"50")])
    read_x, transferred = threading.Event(), threading.Event()
    sums = []

    def reader():
        with conn.transaction() as txn:
            x = int(txn.get(b"x"))
            read_x.set()
            transferred.wait(5)
            sums.append(x + int(txn.get(b"y")))

    def transfer():
        read_x.wait(5)
        with conn.transaction() as txn:
            txn.put(b"x", b"%d" % (int(txn.get(b"x")) - 30))
            txn.put(b"y", b"%d" % (int(txn.get(b"y")) + 30))
        transferred.set()

    threads = [threading.Thread(target=reader), threading.Thread(target=transfer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sums == [100]
    assert conn.get_many([b"x", b"y"]) == [b"20", b"80"]


def test_write_skew_is_prevented(conn):
    # Two on-call doctors; each transaction lets one go if the other stays.
    # Under plain snapshot isolation both commit and nobody is on call.
    conn.put_many([(b"alice", b"on"), (b"bob", b"on")])
    barrier = threading.Barrier(2)
    outcomes = []

    def go_off(me, other):
        try:
            with conn.transaction() as txn:
                others_on = txn.get(other) == b"on"
                barrier.wait()
                if others_on:
                    txn.put(me, b"off")
            outcomes.append("ok")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=go_off, args=(b"alice", b"bob")),
               threading.Thread(target=go_off, args=(b"bob", b"alice"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "ok"]
    assert b"on" in conn.get_many([b"alice", b"bob"])


# -- retries ---------------------------------------------------------------------------

def test_retry_transaction_counts_exactly_under_contention(conn):
    conn.put(b"n", b"0")
    attempts = []

    @kvcy.retry_transaction(conn, attempts=1000, backoff=0.0005)
    def increment(txn, by):
        attempts.append(1)
        value = int(txn.get(b"n"))
        time.sleep(0)                           # let the other threads in between
        txn.put(b"n", b"%d" % (value + by))
        return "done"

    def work():
        for _ in range(50):
            assert increment(1) == "done"
            conn.put(b"noise", b"x")            # plain writes interleave too

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert conn.get(b"n") == b"200"
    assert increment.__name__ == "increment"
    assert len(attempts) > 200                  # there were conflicts, and retries


def test_retry_transaction_gives_up_and_propagates_other_errors(conn):
    runs = []

    def always_conflicts(txn):
        runs.append(1)
        txn.put(b"k", b"mine")
        conn.put(b"k", b"theirs")

    with pytest.raises(ConflictError):
        kvcy.retry_transaction(conn, always_conflicts, attempts=3, backoff=0)()
    assert len(runs) == 3

    def fails(txn):
        runs.append(1)
        txn.put(b"j", b"1")
        raise LookupError("no")

    runs.clear()
    with pytest.raises(LookupError):
        kvcy.retry_transaction(conn, fails)()
    assert runs == [1] and conn.get(b"j") is None


def test_retry_transaction_checks_its_arguments(conn):
    with pytest.raises(ProgrammingError, match="attempts must be an int >= 1"):
        kvcy.retry_transaction(conn, attempts=0)
    with pytest.raises(ProgrammingError, match="backoff must be a number of seconds"):
        kvcy.retry_transaction(conn, backoff=-1)
    with pytest.raises(TypeError, match="sync must be"):
        kvcy.retry_transaction(conn, sync=1)
    with pytest.raises(TypeError, match="needs a callable"):
        kvcy.retry_transaction(conn, 42)


# -- use after the end -------------------------------------------------------------------

@pytest.mark.parametrize("end, word", [("commit", "committed"), ("rollback", "rolled-back"),
                                       ("close", "closed")])
def test_an_ended_transaction_refuses_use(conn, end, word):
    txn = conn.begin()
    txn.put(b"a", b"1")
    it = txn.scan()
    getattr(txn, end)()
    message = "cannot use a %s transaction" % word
    for call in (lambda: txn.get(b"a"), lambda: txn.get_many([b"a"]),
                 lambda: txn.put(b"a", b"1"), lambda: txn.delete(b"a"),
                 lambda: txn.scan(), lambda: txn.cursor(), txn.commit, txn.rollback,
                 lambda: txn.__enter__()):
        with pytest.raises(ProgrammingError, match=message):
            call()
    txn.close()                                 # idempotent
    assert it.closed
    with pytest.raises(ProgrammingError, match="the iterator is closed"):
        next(it)


def test_closing_the_connection_rolls_back_open_transactions(db_path):
    conn = kvcy.connect(db_path)
    txn = conn.begin()
    txn.put(b"a", b"1")
    with pytest.raises(ProgrammingError, match="connection was closed"):
        with conn.transaction() as inner:
            inner.put(b"b", b"2")
            conn.close()                         # the block cannot commit any more
    assert txn.closed
    with pytest.raises(ProgrammingError, match="connection was closed"):
        txn.commit()
    with kvcy.connect(db_path) as conn:
        assert conn.get_many([b"a", b"b"]) == [None, None]


# -- autocommit=False and PEP 249's commit/rollback ----------------------------------------

def test_autocommit_default_commit_and_rollback_do_nothing(conn):
    assert conn.autocommit is True
    conn.put(b"a", b"1")
    conn.rollback()
    conn.commit()
    assert conn.get(b"a") == b"1"


def test_autocommit_false_writes_wait_for_commit(db_path):
    with kvcy.connect(db_path, autocommit=False) as conn:
        assert conn.autocommit is False
        conn.put(b"a", b"1")
        conn.put_many([(b"b", b"2"), (b"c", b"3")])
        conn.delete(b"c")
        assert conn.get(b"a") == b"1"                       # reads see them
        assert conn.get_many([b"b", b"c"]) == [b"2", None]
        assert list(conn.scan()) == [(b"a", b"1"), (b"b", b"2")]
        assert conn.cursor().scan().fetchall() == [(b"a", b"1"), (b"b", b"2")]
        assert b"a" in conn
        with conn.snapshot() as snap:                       # the database does not
            assert snap.get(b"a") is None
        before = conn.stats()["wal_records"]
        conn.commit()
        assert conn.stats()["wal_records"] == before + 1    # one batch
        conn.put(b"a", b"10")
        conn.rollback()
        assert conn.get(b"a") == b"1"
        conn.put(b"d", b"4")
        conn.commit()
        conn.put(b"e", b"5")                                 # never committed
    with kvcy.connect(db_path) as conn:
        assert conn.get_many([b"a", b"b", b"d", b"e"]) == [b"1", b"2", b"4", None]


def test_autocommit_false_conflicts_and_repeatable_reads(db_path):
    with kvcy.connect(db_path, autocommit=False) as conn:
        conn.put(b"n", b"0")
        conn.commit()
        assert conn.get(b"n") == b"0"                        # begins the implicit transaction
        other = conn.begin()
        other.put(b"n", b"5")
        other.commit()
        assert conn.get(b"n") == b"0"                        # its snapshot
        conn.put(b"n", b"1")
        with pytest.raises(ConflictError):
            conn.commit()
        assert conn.get(b"n") == b"5"                        # a new implicit transaction


def test_autocommit_attribute(db_path):
    with kvcy.connect(db_path, autocommit=False) as conn:
        conn.put(b"a", b"1")
        conn.autocommit = True                               # commits, as sqlite3 does
        assert conn.get(b"a") == b"1"
        conn.put(b"b", b"2")                                 # at once again
        conn.autocommit = False
        conn.put(b"c", b"3", sync=True)                      # makes the commit sync
        syncs = conn.stats()["wal_syncs"]
        conn.commit()
        assert conn.stats()["wal_syncs"] == syncs + 1
        with pytest.raises(ProgrammingError, match="autocommit must be True or False"):
            conn.autocommit = 1
        conn.write(kvcy.WriteBatch())                        # an empty batch: nothing staged
        conn.rollback()
    with pytest.raises(ProgrammingError, match="autocommit must be True or False, got None"):
        kvcy.connect(db_path, autocommit=None)


def test_autocommit_false_shared_by_threads(db_path):
    with kvcy.connect(db_path, autocommit=False) as conn:
        def work(t):
            for i in range(100):
                conn.put(b"t%d-%03d" % (t, i), b"v")
        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        conn.commit()
        with conn.snapshot() as snap:
            assert len(list(snap.scan())) == 400
