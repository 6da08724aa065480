"""Cursor: the DB-API flavoured reader (conn.cursor()).

fetchone / fetchmany (arraysize 1 by default, arraysize set, an explicit
size, size 0) / fetchall and iteration consume one result set; scan() (and
its alias execute()) replaces it, reading the database as of that call.
seek() positions so that the next fetch returns the first key >= key (the
last key <= key for a reverse scan).  next() and prev() move one row (in
scan order and against it) and return it, None past either end.  Fetching
before scan() and any use after cursor.close() or connection.close() raise
ProgrammingError.

Cursor navigation follows one model, checked here: the cursor sits on a row
(the one last returned) or before the first / after the last; fetchone and
next() step forward and return the row they land on, prev() steps back.
"""
import pytest

import kvcy
from kvcy import ProgrammingError
from kvcy.cursor import Cursor

ROWS = [(b"k%04d" % i, b"v%d" % i) for i in range(0, 2400, 2)]     # 1200 rows
KEYS = [k for k, _ in ROWS]
SMALL = [(b"a", b"A"), (b"b", b"B"), (b"c", b"C"), (b"d", b"D")]


@pytest.fixture
def conn(db_path):
    c = kvcy.connect(db_path)
    yield c
    c.close()


@pytest.fixture
def big(conn):
    """conn holding ROWS, half of them in a table, the rest (and overwrites) in
    the memtable."""
    conn.put_many((k, b"old") for k, _ in ROWS)
    conn.put_many(ROWS[:600])
    conn.flush()
    conn.put_many(ROWS[600:])
    conn.put_many([(b"k0001", b"gone"), (b"k2399", b"gone")])
    conn.delete_many([b"k0001", b"k2399"])
    return conn


@pytest.fixture
def small(conn):
    conn.put_many(SMALL)
    return conn


# -- fetching ------------------------------------------------------------------

def test_fetchone_returns_rows_in_order_then_none(small):
    cur = small.cursor().scan()
    assert [cur.fetchone() for _ in range(4)] == SMALL
    assert cur.fetchone() is None
    assert cur.fetchone() is None


def test_rows_are_key_value_tuples_of_bytes(big):
    row = big.cursor().scan().fetchone()
    assert type(row) is tuple and len(row) == 2
    assert type(row[0]) is bytes and type(row[1]) is bytes


def test_fetchmany_default_arraysize_is_one(big):
    cur = big.cursor()
    assert cur.arraysize == 1
    cur.scan()
    assert cur.fetchmany() == ROWS[:1]
    assert cur.fetchmany() == ROWS[1:2]


def test_fetchmany_uses_arraysize(big):
    cur = big.cursor().scan()
    cur.arraysize = 500
    assert cur.fetchmany() == ROWS[:500]
    assert cur.fetchmany() == ROWS[500:1000]
    assert cur.fetchmany() == ROWS[1000:]           # the 200 left
    assert cur.fetchmany() == []


def test_fetchmany_explicit_size_overrides_arraysize(big):
    cur = big.cursor().scan()
    cur.arraysize = 500
    assert cur.fetchmany(3) == ROWS[:3]
    assert cur.fetchmany(size=2) == ROWS[3:5]
    assert cur.fetchmany(5000) == ROWS[5:]
    assert cur.fetchmany(10) == []
    assert cur.arraysize == 500


def test_fetchmany_size_zero_returns_no_rows(small):
    cur = small.cursor().scan()
    assert cur.fetchmany(0) == []
    assert cur.fetchone() == SMALL[0]             # nothing was consumed


@pytest.mark.parametrize("size", [-1, 1.5, "2", b"2"])
def test_fetchmany_rejects_bad_sizes(small, size):
    cur = small.cursor().scan()
    with pytest.raises(ProgrammingError):
        cur.fetchmany(size)
    assert cur.fetchone() == SMALL[0]


def test_fetchall_returns_the_remaining_rows(big):
    cur = big.cursor().scan()
    assert cur.fetchone() == ROWS[0]
    assert cur.fetchmany(9) == ROWS[1:10]
    assert cur.fetchall() == ROWS[10:]
    assert cur.fetchall() == []
    assert cur.fetchone() is None


def test_iterating_over_the_cursor(big):
    cur = big.cursor().scan(KEYS[10], KEYS[20])
    assert list(cur) == ROWS[10:20]
    cur.scan(KEYS[10], KEYS[20])
    assert cur.fetchone() == ROWS[10]
    assert [row for row in cur] == ROWS[11:20]    # picks up after the fetch
    assert list(cur) == []


def test_scan_arguments_and_execute_alias(big):
    cur = big.cursor()
    assert cur.scan(KEYS[5], KEYS[8]) is cur
    assert cur.fetchall() == ROWS[5:8]
    assert cur.execute(KEYS[5], KEYS[8], reverse=True) is cur
    assert cur.fetchall() == ROWS[5:8][::-1]
    assert cur.execute(prefix=b"k001").fetchall() == [r for r in ROWS if r[0].startswith(b"k001")]
    assert cur.execute(start=KEYS[-2]).fetchall() == ROWS[-2:]
    assert cur.execute(stop=KEYS[2], reverse=True).fetchall() == ROWS[1::-1]
    assert cur.execute(KEYS[8], KEYS[5]).fetchall() == []


def test_scan_again_replaces_the_result_set(big):
    cur = big.cursor().scan(KEYS[0], KEYS[100])
    assert cur.fetchmany(3) == ROWS[:3]
    big.put(b"k0003", b"new")                      # visible to the next scan only
    cur.scan(KEYS[50], KEYS[60])
    assert cur.fetchone() == ROWS[50]
    assert list(cur) == ROWS[51:60]
    cur.scan(KEYS[0], KEYS[3])
    assert cur.fetchall() == [ROWS[0], ROWS[1], (b"k0003", b"new"), ROWS[2]]


def test_the_result_set_is_a_point_in_time(big):
    cur = big.cursor().scan()
    assert cur.fetchone() == ROWS[0]
    big.put(b"k0000x", b"new")
    big.put(KEYS[1], b"changed")
    big.delete(KEYS[2])
    big.flush()
    assert cur.fetchmany(2) == ROWS[1:3]
    cur.seek(b"k0000x")
    assert cur.fetchone() == ROWS[1]               # not the newer key
    cur.seek(KEYS[0])
    assert cur.fetchall() == ROWS


def test_several_cursors_are_independent(big):
    a = big.cursor().scan()
    b = big.cursor().scan(reverse=True)
    assert a.fetchone() == ROWS[0]
    assert b.fetchone() == ROWS[-1]
    a.close()
    assert b.fetchone() == ROWS[-2]
    assert big.get(KEYS[0]) == ROWS[0][1]


# -- seek ------------------------------------------------------------------------

@pytest.mark.parametrize("key,first", [
    (b"k0100", b"k0100"),          # an existing key
    (b"k0101", b"k0102"),          # between keys
    (b"k0100\x00", b"k0102"),
    (b"", b"k0000"), (b"a", b"k0000"),
    (b"k2398", b"k2398"),
    (b"k2398\x00", None), (b"\xff", None),
])
def test_seek_positions_at_the_first_key_at_or_after(big, key, first):
    cur = big.cursor().scan()
    cur.fetchmany(700)
    assert cur.seek(key) is cur
    row = cur.fetchone()
    assert (row[0] if row else None) == first
    if first is not None:
        i = KEYS.index(first)
        assert cur.fetchmany(3) == ROWS[i + 1:i + 4]


@pytest.mark.parametrize("key,first", [
    (b"k0100", b"k0100"),
    (b"k0101", b"k0100"),
    (b"k0100\x00", b"k0100"),
    (b"\xff", b"k2398"), (b"k2398\x00", b"k2398"),
    (b"k0000", b"k0000"),
    (b"k", None), (b"", None),
])
def test_seek_in_a_reverse_scan_positions_at_the_last_key_at_or_before(big, key, first):
    cur = big.cursor().scan(reverse=True)
    cur.fetchmany(5)
    cur.seek(key)
    row = cur.fetchone()
    assert (row[0] if row else None) == first
    if first is not None:
        i = KEYS.index(first)
        assert cur.fetchmany(3) == ROWS[max(i - 3, 0):i][::-1]


def test_seek_rewinds_and_then_fetchall_continues(big):
    cur = big.cursor().scan()
    assert cur.fetchall() == ROWS
    cur.seek(KEYS[1190])
    assert cur.fetchall() == ROWS[1190:]
    cur.seek(b"")
    assert len(cur.fetchall()) == len(ROWS)


@pytest.mark.parametrize("reverse", [False, True])
def test_seek_stays_within_the_scan_bounds(big, reverse):
    cur = big.cursor().scan(KEYS[10], KEYS[20], reverse=reverse)
    cur.seek(b"")
    assert cur.fetchone() == (ROWS[10] if not reverse else None)
    cur.seek(b"\xff")
    assert cur.fetchone() == (None if not reverse else ROWS[19])
    cur.seek(KEYS[20])                             # stop is excluded
    assert cur.fetchone() == (None if not reverse else ROWS[19])
    cur.seek(KEYS[15])
    assert cur.fetchall() == (ROWS[15:20] if not reverse else ROWS[10:16][::-1])


def test_seek_with_a_prefix_scan(big):
    cur = big.cursor().scan(prefix=b"k01")
    cur.seek(b"k0150")
    assert cur.fetchone() == (b"k0150", b"v150")
    cur.seek(b"k02")
    assert cur.fetchone() is None


def test_seek_rejects_str(small):
    cur = small.cursor().scan()
    with pytest.raises(TypeError):
        cur.seek("b")


# -- next / prev ---------------------------------------------------------------

def test_next_moves_forward_like_fetchone(small):
    cur = small.cursor().scan()
    assert [cur.next() for _ in range(4)] == SMALL
    assert cur.next() is None
    assert cur.fetchone() is None


def test_prev_moves_back_one_row(small):
    cur = small.cursor().scan()
    assert cur.fetchmany(3) == SMALL[:3]           # on c
    assert cur.prev() == SMALL[1]
    assert cur.prev() == SMALL[0]
    assert cur.prev() is None                       # nothing before the first row


def test_reverse_scan_next_descends_and_prev_ascends(small):
    cur = small.cursor().scan(reverse=True)
    assert cur.next() == SMALL[3]
    assert cur.next() == SMALL[2]
    assert cur.prev() == SMALL[3]
    assert cur.prev() is None


@pytest.mark.parametrize("reverse", [False, True])
def test_prev_at_the_end_returns_the_last_row(small, reverse):
    cur = small.cursor().scan(reverse=reverse)
    rows = SMALL[::-1] if reverse else SMALL
    assert cur.fetchall() == rows
    assert cur.next() is None
    assert cur.prev() == rows[-1]
    assert cur.prev() == rows[-2]


def test_prev_at_the_end_of_a_bounded_scan(big):
    cur = big.cursor().scan(KEYS[10], KEYS[20])
    cur.fetchall()
    assert cur.prev() == ROWS[19]


def test_prev_after_seek_returns_the_row_before_the_position(small):
    cur = small.cursor().scan()
    cur.seek(b"bb")                                 # the next fetch would be c
    assert cur.prev() == SMALL[1]
    cur = small.cursor().scan(reverse=True)
    cur.seek(b"bb")                                 # the next fetch would be b
    assert cur.prev() == SMALL[2]


@pytest.mark.parametrize("reverse", [False, True])
def test_next_after_prev_moves_forward(small, reverse):
    rows = SMALL[::-1] if reverse else SMALL
    cur = small.cursor().scan(reverse=reverse)
    assert cur.fetchmany(3) == rows[:3]
    assert cur.prev() == rows[1]
    assert cur.next() == rows[2]
    assert cur.fetchone() == rows[3]


def test_next_after_prev_at_the_end_is_the_end(small):
    cur = small.cursor().scan()
    cur.fetchall()
    assert cur.prev() == SMALL[-1]
    assert cur.next() is None


def test_prev_before_the_first_row_stays_at_the_start(small):
    cur = small.cursor().scan()
    assert cur.fetchone() == SMALL[0]
    assert cur.prev() is None
    assert cur.prev() is None                        # still before the first row
    assert cur.next() == SMALL[0]


@pytest.mark.parametrize("reverse", [False, True])
def test_prev_on_a_fresh_result_set_returns_none(small, reverse):
    cur = small.cursor().scan(reverse=reverse)
    assert cur.prev() is None
    assert cur.fetchone() == (SMALL[3] if reverse else SMALL[0])


# -- errors and lifecycle ----------------------------------------------------------

_FETCHES = {
    "fetchone": lambda cur: cur.fetchone(),
    "fetchmany": lambda cur: cur.fetchmany(),
    "fetchmany_size": lambda cur: cur.fetchmany(5),
    "fetchall": lambda cur: cur.fetchall(),
    "next": lambda cur: cur.next(),
    "prev": lambda cur: cur.prev(),
    "seek": lambda cur: cur.seek(b"a"),
    "iter": lambda cur: iter(cur),
}
_ALL_USES = dict(_FETCHES, scan=lambda cur: cur.scan(), execute=lambda cur: cur.execute(b"a"),
                 enter=lambda cur: cur.__enter__())


@pytest.mark.parametrize("use", sorted(_FETCHES))
def test_fetch_before_scan_raises_programming_error(small, use):
    cur = small.cursor()
    with pytest.raises(ProgrammingError):
        _FETCHES[use](cur)
    assert cur.scan().fetchone() == SMALL[0]         # the cursor is still usable


@pytest.mark.parametrize("scanned", [False, True])
@pytest.mark.parametrize("use", sorted(_ALL_USES))
def test_use_after_cursor_close_raises_programming_error(small, use, scanned):
    cur = small.cursor()
    if scanned:
        cur.scan().fetchone()
    cur.close()
    assert cur.closed
    with pytest.raises(ProgrammingError):
        _ALL_USES[use](cur)
    cur.close()                                      # idempotent
    assert small.get(b"a") == b"A"                   # the connection stays open


@pytest.mark.parametrize("scanned", [False, True])
@pytest.mark.parametrize("use", sorted(_ALL_USES))
def test_use_after_connection_close_raises_programming_error(db_path, use, scanned):
    conn = kvcy.connect(db_path)
    conn.put_many(SMALL)
    cur = conn.cursor()
    if scanned:
        cur.scan().fetchone()
    conn.close()
    with pytest.raises(ProgrammingError):
        _ALL_USES[use](cur)
    cur.close()


def test_iterator_taken_from_a_cursor_is_closed_with_the_connection(db_path):
    conn = kvcy.connect(db_path)
    conn.put_many(SMALL)
    cur = conn.cursor().scan()
    raw = iter(cur)
    next(raw)
    conn.close()
    assert cur.closed
    with pytest.raises(ProgrammingError):
        next(raw)


def test_cursor_on_a_closed_connection_raises(db_path):
    conn = kvcy.connect(db_path)
    conn.close()
    with pytest.raises(ProgrammingError):
        conn.cursor()


def test_context_manager_closes_the_cursor(small):
    with small.cursor() as cur:
        assert isinstance(cur, Cursor)
        assert cur.scan().fetchone() == SMALL[0]
    assert cur.closed
    with pytest.raises(ProgrammingError):
        cur.fetchone()
    with pytest.raises(ProgrammingError):
        with cur:
            pass


def test_context_manager_closes_on_error(small):
    with pytest.raises(KeyError):
        with small.cursor() as cur:
            cur.scan()
            raise KeyError("boom")
    assert cur.closed


def test_description_rowcount_and_arraysize(small):
    cur = small.cursor()
    assert cur.rowcount == -1
    assert cur.arraysize == 1
    desc = cur.description
    assert len(desc) == 2 and all(len(column) == 7 for column in desc)
    assert [column[0] for column in desc] == ["key", "value"]
    cur.arraysize = 7
    assert cur.scan().fetchmany() == SMALL
    assert cur.rowcount == -1


def test_str_bounds_raise_type_error(small):
    cur = small.cursor()
    for kwargs in (dict(start="a"), dict(stop="b"), dict(prefix="a")):
        with pytest.raises(TypeError):
            cur.scan(**kwargs)
    assert cur.scan().fetchone() == SMALL[0]


@pytest.mark.parametrize("bad", [dict(start="a"), dict(stop=1), dict(prefix="a")])
def test_a_failed_scan_keeps_the_previous_result_set(small, bad):
    cur = small.cursor()
    assert cur.execute(b"a").fetchmany(2) == SMALL[:2]
    old = cur._it
    with pytest.raises(TypeError):
        cur.execute(**bad)
    assert cur._it is old and not old.closed
    assert cur.fetchone() == SMALL[2]           # where it stood
    assert cur.prev() == SMALL[1]
    assert cur.fetchall() == SMALL[2:]
