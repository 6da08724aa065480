"""kvcy.dbm: the behaviours CPython's test_dbm, test_dbm_gnu and test_dbm_sqlite3
expect of a dbm module, the same checks run against dbm.dumb, and what kvcy
adds (dbm errors that are kvcy errors, locking, mode, flag 'n' safety).
The kept len() count has tests/test_dbm_len.py.
"""
import dbm.dumb
import os

import pytest

import kvcy
from kvcy import dbm as kdbm

DATA = {"a": b"Python:", "b": b"Programming", "c": b"the", "d": b"way", "f": b"Guido",
        "g": b"intended"}


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "db")


def fill(path):
    with kdbm.open(path, "n") as db:
        for key, value in DATA.items():
            db[key.encode("ascii")] = value


def check_contents(db, expected=DATA):
    assert sorted(k.decode("ascii") for k in db.keys()) == sorted(expected)
    for key, value in expected.items():
        assert db[key.encode("ascii")] == value


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path)
               if n.endswith((".log", ".sst")))


# -- CPython test_dbm (AnyDBMTestCase) -------------------------------------

def test_error_is_a_tuple_led_by_an_oserror_that_is_a_kvcy_error():
    assert isinstance(kdbm.error, tuple) and kdbm.error[0] is kdbm.DbmError
    assert issubclass(kdbm.error[0], OSError)
    assert issubclass(kdbm.error[0], kvcy.DatabaseError)


def test_missing_database_is_an_error_for_r_and_w(path):
    for flag in ("r", "w", "rs", "wu"):
        with pytest.raises(kdbm.error) as info:
            kdbm.open(path, flag)
        assert info.value.errno == 2 and info.value.filename == path
        assert path in str(info.value) and "'c' or 'n'" in str(info.value)
        assert isinstance(info.value, kvcy.OperationalError)
    assert not os.path.exists(path)
    with pytest.raises(kdbm.error):
        kdbm.open(path)                       # 'r' is the default flag


def test_creation(path):
    db = kdbm.open(path, "c")
    assert db.keys() == [] and len(db) == 0
    for key, value in DATA.items():
        db[key.encode("ascii")] = value
    check_contents(db)
    db.close()


def test_n_replaces_a_plain_file_at_the_path(path):
    open(path, "wb").close()
    with kdbm.open(path, "n") as db:
        assert len(db) == 0
        db[b"k"] = b"v"
    with kdbm.open(path, "r") as db:
        assert db[b"k"] == b"v"


def test_modification_and_setdefault(path):
    fill(path)
    db = kdbm.open(path, "c")
    expected = dict(DATA, g=b"indented")
    db[b"g"] = b"indented"
    check_contents(db, expected)
    assert db.setdefault(b"xxx", b"foo") == b"foo"
    assert db[b"xxx"] == b"foo"
    assert db.setdefault(b"xxx", b"bar") == b"foo"
    db.close()


def test_read_get_and_keyerror(path):
    fill(path)
    db = kdbm.open(path, "r")
    check_contents(db)
    assert db.get(b"a") == DATA["a"]
    assert db.get(b"xxx", b"foo") == b"foo"
    assert db.get(b"xxx") is None
    with pytest.raises(KeyError):
        db[b"xxx"]
    assert b"a" in db and "a" in db and b"xxx" not in db
    db.close()


def test_empty_value_is_not_absent(path):
    db = kdbm.open(path, "c")
    db[b"empty"] = b""
    assert db.keys() == [b"empty"]
    assert b"empty" in db
    assert db[b"empty"] == b"" and db.get(b"empty") == b""
    assert db.setdefault(b"empty") == b""
    db.close()


def test_open_with_bytes_and_path_like(path, as_path):
    kdbm.open(as_path(path), "c").close()
    with kdbm.open(as_path(path), "r") as db:
        assert db.path == path


def test_keys_and_clear(path):
    pairs = [(b"a", b"b"), (b"12345678910", b"019237410982340912840198242")]
    with kdbm.open(path, "c") as db:
        for key, value in pairs:
            db[key] = value
        assert db.keys() == sorted(k for k, _ in pairs)      # key order
        assert len(db) == 2
        db.clear()
        assert len(db) == 0 and db.keys() == []
        assert all(k not in db for k, _ in pairs)


# -- CPython test_dbm_gnu ----------------------------------------------------

def test_key_methods_and_firstkey_nextkey(path):
    db = kdbm.open(path, "c")
    db["a"] = "b"
    db["12345678910"] = "019237410982340912840198242"
    db[b"bytes"] = b"data"
    assert set(db.keys()) == {b"a", b"bytes", b"12345678910"}
    walked = []
    key = db.firstkey()
    while key is not None:
        walked.append(key)
        key = db.nextkey(key)
    assert walked == [b"12345678910", b"a", b"bytes"]     # key order, unlike gdbm's hash order
    assert db.nextkey("a") == b"bytes"                    # str keys too
    assert db.nextkey(b"b") == b"bytes"                   # a key that is not there
    assert db.nextkey(b"bytes") is None
    db.close()


def test_firstkey_on_empty_and_delete_while_walking(path):
    with kdbm.open(path, "c") as db:
        assert db.firstkey() is None
        db.update({b"k%d" % i: b"v" for i in range(10)})
        key = db.firstkey()
        while key is not None:
            following = db.nextkey(key)
            del db[key]
            key = following
        assert len(db) == 0 and db.firstkey() is None


def test_error_conditions_closed_and_bad_flag(path):
    db = kdbm.open(path, "c")
    db.close()
    with pytest.raises(kdbm.error):
        db["a"]
    with pytest.raises(kdbm.error):
        kdbm.open(path, "rx").close()


def test_all_flags_and_modifiers_open(path):
    assert kdbm.open_flags == "rwcnfsu"
    for flag in sorted(set("rwcn")):                   # 'c' first creates it
        kdbm.open(path, flag).close()
    for flag in "rwcn":
        for modifier in ("f", "s", "u", "fsu", "sf"):
            with kdbm.open(path, flag + modifier) as db:
                assert db._conn.options.readonly is (flag == "r")
                assert db._conn.options.sync is ("s" in modifier)


@pytest.mark.parametrize("flag, message", [
    ("", "First flag"), ("x", "First flag"), ("rx", "Flag 'x' is not supported"),
    ("cc", "Flag 'c' is not supported"), ("R", "First flag")])
def test_bad_flags_are_dbm_errors_and_value_errors(path, flag, message):
    for kind in (kdbm.error, ValueError, kvcy.ProgrammingError):
        with pytest.raises(kind, match=message):
            kdbm.open(path, flag)
    assert not os.path.exists(path)


def test_bad_flag_and_mode_types(path):
    with pytest.raises(TypeError, match="flag must be str"):
        kdbm.open(path, 1)
    with pytest.raises(TypeError, match="mode must be an int"):
        kdbm.open(path, "c", "x")


def stored_bytes(db, path):
    # Tables on disk plus the bytes in the live log: the log file itself is
    # longer while open, by the space reserved for its next appends.
    tables = sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path)
                 if n.endswith(".sst"))
    return tables + db._conn.stats()["log_bytes"]


def test_reorganize_gives_back_the_space_of_deleted_entries(path):
    db = kdbm.open(path, "c")
    size0 = stored_bytes(db, path)
    db["x"] = os.urandom(100_000)
    size1 = stored_bytes(db, path)
    assert size1 > size0
    del db["x"]
    assert stored_bytes(db, path) >= size1        # a delete only adds a tombstone
    db.reorganize()
    size2 = stored_bytes(db, path)
    assert size2 < size1 and size2 >= size0
    assert "x" not in db
    db.close()


def test_context_manager_closes(path):
    with kdbm.open(path, "c") as db:
        db["gdbm context manager"] = "context manager"
    with kdbm.open(path, "r") as db:
        assert db.keys() == [b"gdbm context manager"]
    with pytest.raises(kdbm.error) as info:
        db.keys()
    assert str(info.value) == "DBM object has already been closed"
    assert isinstance(info.value, kvcy.ProgrammingError)


def test_bool(path):
    with kdbm.open(path, "c") as db:
        assert not db
        db["a"] = "b"
        assert db
    with pytest.raises(kdbm.error):
        bool(db)


def test_bytes_and_unicode_keys_and_values(path):
    with kdbm.open(path, "c") as db:
        db[b"bytes key \xbd"] = b"bytes value \xbd"
        db["Unicode key \U0001f40d"] = "Unicode value \U0001f40d"
        db[bytearray(b"ba")] = memoryview(b"mv")
    with kdbm.open(path, "r") as db:
        assert db.keys() == [b"Unicode key \xf0\x9f\x90\x8d", b"ba", b"bytes key \xbd"]
        assert db[b"bytes key \xbd"] == b"bytes value \xbd"
        assert db["Unicode key \U0001f40d"] == "Unicode value \U0001f40d".encode()
        assert "Unicode key \U0001f40d".encode() in db and "Unicode key \U0001f40d" in db
        assert db[b"ba"] == b"mv"


def test_write_on_read_only_handle_is_refused(path):
    with kdbm.open(path, "c") as db:
        db[b"bytes key"] = b"bytes value"
    with kdbm.open(path, "r") as db:
        for write in (lambda: db.__delitem__(b"not exist key"), lambda: db.__delitem__(b"bytes key"),
                      lambda: db.__setitem__(b"new", b"v"), lambda: db.pop(b"bytes key"),
                      lambda: db.setdefault(b"new", b"v"), db.clear, db.reorganize,
                      lambda: db.update({b"new": b"v"}), db.popitem):
            with pytest.raises(kdbm.error, match="opened read-only") as info:
                write()
            assert isinstance(info.value, kvcy.OperationalError)
        db.sync()                                  # nothing to sync: allowed, as in gdbm
        assert db.keys() == [b"bytes key"]


def test_nonascii_filename(tmp_path):
    path = str(tmp_path / "d\xe9j\xe0-\u20ac")
    with kdbm.open(path, "c") as db:
        db[b"key"] = b"value"
    assert os.path.isdir(path)
    with kdbm.open(path, "r") as db:
        assert db.keys() == [b"key"] and db[b"key"] == b"value"


def test_clear_after_writes(path):
    with kdbm.open(path, "c") as db:
        for key, value in [("foo", "bar"), ("1234", "5678")]:
            db[key] = value
            assert key in db
        assert len(db) == 2
        db.clear()
        assert "foo" not in db and len(db) == 0


def test_clear_spans_several_batches(path, monkeypatch):
    monkeypatch.setattr(kdbm, "_CLEAR_BATCH_KEYS", 7)
    with kdbm.open(path, "c") as db:
        db.update((b"%03d" % i, b"v") for i in range(50))
        db.clear()
        assert db.keys() == [] and len(db) == 0
    with kdbm.open(path, "r") as db:
        assert len(db) == 0


# -- CPython test_dbm_sqlite3 (ReadOnly, Misuse, DataTypes) ----------------

def test_read_only_keys_and_iteration_in_key_order(path):
    with kdbm.open(path, "c") as db:
        db[b"key2"] = "value2"
        db[b"key1"] = "value1"
    with kdbm.open(path, "r") as db:
        assert db[b"key1"] == b"value1"
        assert db.keys() == [b"key1", b"key2"] == list(db)
        assert db.items() == [(b"key1", b"value1"), (b"key2", b"value2")]
        assert db.values() == [b"value1", b"value2"]


def test_overwrite_keeps_one_key(path):
    with kdbm.open(path, "c") as db:
        db["key"] = "value"
        db["key"] = "other"
        assert db.keys() == [b"key"] and db[b"key"] == b"other" and len(db) == 1


def test_double_close_and_double_delete(path):
    db = kdbm.open(path, "c")
    db["key"] = "value"
    del db[b"key"]
    with pytest.raises(KeyError):
        del db[b"key"]
    with pytest.raises(KeyError):
        db[b"key"]
    db.close()
    db.close()


def test_iterator_outliving_close_raises(path):
    db = kdbm.open(path, "c")
    db["1"] = "1"
    db["2"] = "2"
    it = iter(db)
    db.close()
    with pytest.raises(kdbm.error, match="already been closed"):
        next(it)
    db = kdbm.open(path, "c")
    it = iter(db)
    assert next(it) == b"1"
    db.close()
    with pytest.raises(kdbm.error, match="already been closed"):
        next(it)


def test_every_operation_on_a_closed_handle_raises(path):
    db = kdbm.open(path, "c")
    db["k"] = "v"
    db.close()
    operations = [
        lambda: db[b"k"], lambda: db.__setitem__(b"k", b"v"), lambda: db.__delitem__(b"k"),
        lambda: b"k" in db, lambda: len(db), lambda: bool(db), lambda: list(db), db.keys,
        db.items, db.values, lambda: db.get(b"k"), lambda: db.setdefault(b"k", b"v"),
        lambda: db.pop(b"k"), lambda: db.pop(b"k", None), db.popitem, db.clear,
        lambda: db.update({b"a": b"b"}), db.firstkey, lambda: db.nextkey(b"k"), db.sync,
        db.reorganize]
    for operation in operations:
        with pytest.raises(kdbm.error, match="DBM object has already been closed"):
            operation()
    assert "closed" in repr(db)


def test_keys_and_values_must_be_bytes_or_str(path):
    with kdbm.open(path, "c") as db:
        for bad in (None, 42, 3.14):
            with pytest.raises(TypeError, match="must be bytes or str"):
                db[bad] = "value"
            with pytest.raises(TypeError, match="must be bytes or str"):
                db[b"key"] = bad
            with pytest.raises(TypeError):
                db[bad]
        with pytest.raises(TypeError):
            db.setdefault(b"missing")          # no default: None is not a value
        assert len(db) == 0


# -- the same checks against dbm.dumb and kvcy.dbm ----------------------------

@pytest.mark.parametrize("module", [dbm.dumb, kdbm], ids=["dbm.dumb", "kvcy.dbm"])
def test_behaves_as_dbm_dumb(module, tmp_path):
    path = str(tmp_path / "db")
    with pytest.raises(module.error):
        module.open(path, "r")
    with pytest.raises(module.error):
        module.open(path, "w")
    with pytest.raises(ValueError):
        module.open(path, "x")
    db = module.open(path, "c")
    assert db.keys() == [] and len(db) == 0 and not db
    db["str"] = "value"
    db[b"bytes"] = b"\x00\xff"
    db[b"empty"] = b""
    db.update({b"u1": b"1", "u2": "2"})
    assert db["str"] == db[b"str"] == b"value" and db[b"empty"] == b""
    assert sorted(db.keys()) == [b"bytes", b"empty", b"str", b"u1", b"u2"] == sorted(db)
    assert sorted(db.items())[0] == (b"bytes", b"\x00\xff")
    assert sorted(db.values()) == [b"", b"\x00\xff", b"1", b"2", b"value"]
    assert len(db) == 5 and db and "str" in db and b"nope" not in db
    assert db.get(b"nope") is None and db.get(b"nope", b"d") == b"d" and db.get("u1") == b"1"
    with pytest.raises(KeyError):
        db[b"nope"]
    with pytest.raises(KeyError):
        del db[b"nope"]
    assert db.setdefault(b"sd", b"x") == b"x" and db.setdefault(b"sd", b"y") == b"x"
    assert db.pop(b"sd") == b"x" and db.pop(b"sd", None) is None
    with pytest.raises(KeyError):
        db.pop(b"sd")
    key, value = db.popitem()
    assert key not in db and len(db) == 4
    db[key] = value
    with pytest.raises(TypeError):
        db[b"k"] = 42
    del db["u2"]
    assert len(db) == 4 and dict(db.items()) == {b"bytes": b"\x00\xff", b"empty": b"",
                                                 b"str": b"value", b"u1": b"1"}
    db.sync()
    db.close()
    with pytest.raises(module.error):
        db[b"str"]
    with pytest.raises(module.error):
        len(db)
    with pytest.raises(module.error):
        db.keys()
    with pytest.raises(module.error):
        db[b"k"] = b"v"
    with module.open(path, "r") as db:
        assert len(db) == 4 and db[b"str"] == b"value"
        with pytest.raises(module.error):
            db[b"k"] = b"v"
        with pytest.raises(module.error):
            del db[b"str"]
    with module.open(path, "w") as db:
        db.clear()
        assert len(db) == 0
        db[b"again"] = b"1"
    with module.open(path, "n") as db:
        assert len(db) == 0 and db.keys() == []


# -- kvcy's own: errors of both worlds, locking, mode, flag 'n' -------------

def test_engine_errors_are_dbm_errors_of_the_same_kvcy_kind(path):
    with kdbm.open(path, "c") as db:
        with pytest.raises(kdbm.error) as info:
            kdbm.open(path, "w")                    # the LOCK: one writer at a time
        assert isinstance(info.value, kvcy.OperationalError)
        assert "locked by pid=%d" % os.getpid() in str(info.value)
        with pytest.raises(kvcy.DataError) as info:
            db[b"k" * (kvcy.MAX_KEY_BYTES + 1)] = b"v"
        assert isinstance(info.value, kdbm.DbmError) and isinstance(info.value, OSError)
        assert len(db) == 0
        with kdbm.open(path, "r") as reader:       # readers open beside the writer
            assert reader.keys() == []


def test_mode_sets_the_directory_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        private = kdbm.open(str(tmp_path / "private"), "c", 0o600)
        shared = kdbm.open(str(tmp_path / "shared"), "c")
    finally:
        os.umask(old)
    private.close()
    shared.close()
    assert os.stat(tmp_path / "private").st_mode & 0o777 == 0o700
    assert os.stat(tmp_path / "shared").st_mode & 0o777 == 0o755   # 0o666 less the umask
    kdbm.open(str(tmp_path / "private"), "c", 0o666).close()     # only a new one gets it
    assert os.stat(tmp_path / "private").st_mode & 0o777 == 0o700


def test_n_refuses_a_directory_that_is_not_a_kvcy_database(path):
    os.mkdir(path)
    with open(os.path.join(path, "thesis.tex"), "w") as f:
        f.write("years of work")
    with pytest.raises(kdbm.error, match="not a kvcy database: it holds 'thesis.tex'"):
        kdbm.open(path, "n")
    assert os.listdir(path) == ["thesis.tex"]


def test_n_deletes_what_a_crash_in_an_earlier_n_left_aside(path):
    fill(path)
    aside = os.path.join(os.path.dirname(path), ".db.deleting-x1")
    os.mkdir(aside)
    os.rename(path, os.path.join(aside, "db"))        # as a crash after the rename leaves it
    with kdbm.open(path, "n") as db:
        assert db.keys() == []
    assert os.listdir(os.path.dirname(path)) == ["db"]


def test_c_in_a_missing_directory_is_an_error(tmp_path):
    with pytest.raises(kdbm.error) as info:
        kdbm.open(str(tmp_path / "no" / "db"), "c")
    assert info.value.errno == 2


def test_c_and_w_on_a_plain_file_are_errors_that_leave_it(path):
    with open(path, "w") as f:
        f.write("not a database")
    for flag in ("c", "w", "r"):
        with pytest.raises(kdbm.error, match="not a directory"):
            kdbm.open(path, flag)
    with open(path) as f:
        assert f.read() == "not a database"


def test_n_on_a_locked_database_fails_and_leaves_it(path):
    with kdbm.open(path, "c") as db:
        db[b"k"] = b"v"
        with pytest.raises(kdbm.error, match="locked"):
            kdbm.open(path, "n")
        assert db[b"k"] == b"v"
    with kdbm.open(path, "r") as db:
        assert db[b"k"] == b"v"
    with kdbm.open(path, "n") as db:
        assert db.keys() == []
    assert not [n for n in os.listdir(os.path.dirname(path)) if "deleting" in n]


def test_sync_fsyncs_the_log_and_s_syncs_every_write(path):
    with kdbm.open(path, "c") as db:
        db[b"k"] = b"v"
        before = db._conn.stats()["wal_syncs"]
        db.sync()
        assert db._conn.stats()["wal_syncs"] == before + 1
    with kdbm.open(path, "cs") as db:
        before = db._conn.stats()["wal_syncs"]
        db[b"a"] = b"1"
        del db[b"a"]
        assert db._conn.stats()["wal_syncs"] == before + 2


def test_unclosed_handle_closes_quietly_when_collected(path, recwarn):
    db = kdbm.open(path, "c")
    db[b"k"] = b"v"
    del db
    with kdbm.open(path, "w") as db:              # the LOCK was given back
        assert db[b"k"] == b"v"
    assert not [w for w in recwarn if issubclass(w.category, ResourceWarning)]


def test_iteration_reads_one_point_in_time(path):
    with kdbm.open(path, "c") as db:
        db.update({b"a": b"1", b"b": b"2", b"c": b"3"})
        seen = []
        for key in db:
            seen.append(key)
            del db[key]
            db[key + b"-new"] = b"x"
        assert seen == [b"a", b"b", b"c"]
        assert db.keys() == [b"a-new", b"b-new", b"c-new"]
