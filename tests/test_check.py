"""kvcy.check() and Connection.check(): every file kind damaged in turn is
reported, naming exactly that file and the offset of the damaged block or
record; damage is reported, never raised."""
import json
import os
import shutil

import pytest

import kvcy
from kvcy.check import check_table, CheckReport, Problem
from kvcy.env import default_env

import db_damage as D


@pytest.fixture(scope="module")
def base_db(tmp_path_factory):
    return D.build_db(str(tmp_path_factory.mktemp("check") / "db"))


@pytest.fixture
def db(base_db, tmp_path):
    path = str(tmp_path / "db")
    shutil.copytree(base_db, path)
    return path


def test_clean_database_is_ok(db):
    report = kvcy.check(db)
    assert report.ok and report.problems == []
    assert report.tables_checked == 2
    assert report.logs_checked == 1
    entries = sum(len(entries) for name in D.files(db, "sst")
                  for _, entries in D.table_blocks(os.path.join(db, name)))
    blocks = sum(len(D.table_blocks(os.path.join(db, name))) for name in D.files(db, "sst"))
    assert report.keys_checked == entries
    assert report.blocks_checked == blocks
    assert report.log_records_checked == 20
    assert str(report).startswith(db + ": ok")


@pytest.mark.parametrize("damage", D.DAMAGES, ids=lambda f: f.__name__)
def test_each_damage_is_reported_in_exactly_its_file(db, damage):
    name, offset, _ = damage(db)
    report = kvcy.check(db)
    assert not report.ok
    assert {p.file for p in report.problems} == {name}, report.problems
    assert report.problems[0].offset == offset
    assert name in str(report)


def test_data_block_problem_says_what_is_wrong(db):
    name, offset, _ = D.damage_data_block(db)
    (problem,) = kvcy.check(db).problems
    assert problem == Problem(name, offset, "data block: checksum mismatch")
    assert str(problem) == "%s at offset %d: data block: checksum mismatch" % (name, offset)


def test_every_other_block_is_still_read_after_a_damaged_one(db):
    clean = kvcy.check(db)
    name = D.level_tables(db)[1][0]
    blocks = dict(D.table_blocks(os.path.join(db, name)))
    name, offset, _ = D.damage_data_block(db)
    damaged = kvcy.check(db)
    assert damaged.blocks_checked == clean.blocks_checked
    assert damaged.keys_checked == clean.keys_checked - len(blocks[offset])


def test_truncated_table_is_reported(db):
    name = D.level_tables(db)[0][0]
    path = os.path.join(db, name)
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(30)
    problems = kvcy.check(db).problems
    assert {p.file for p in problems} == {name}
    assert [p.what for p in problems] == [
        "30 bytes is too short to be a table",
        "the MANIFEST records %d bytes, the file has 30" % size]


def test_missing_table_is_reported(db):
    name = D.level_tables(db)[0][0]
    os.remove(os.path.join(db, name))
    (problem,) = kvcy.check(db).problems
    assert problem.file == name and "missing" in problem.what


def test_key_range_differing_from_the_manifest_is_reported(db, tmp_path):
    # Swap the level-0 table for a valid table holding other keys.
    name = D.level_tables(db)[0][0]
    other = str(tmp_path / "other")
    with kvcy.connect(other) as conn:
        conn.put_many([(b"zz%03d" % i, b"v") for i in range(10)])
        conn.flush()
    shutil.copy(os.path.join(other, D.files(other, "sst")[0]), os.path.join(db, name))
    report = kvcy.check(db)
    whats = [p.what for p in report.problems if p.file == name]
    assert any("the MANIFEST records" in w for w in whats)
    assert any("key range" in w and "differs from the MANIFEST" in w for w in whats)


def _block(entries):
    """A block of entries written without prefix compression, one restart."""
    from kvcy._coding import encode_varint32
    body = b"".join(encode_varint32(0) + encode_varint32(len(k)) + encode_varint32(len(v)) + k + v
                    for k, v in entries)
    return body + (0).to_bytes(4, "little") + (1).to_bytes(4, "little")


def test_out_of_order_keys_in_a_block_are_refused():
    from kvcy.check import data_block_entries
    from kvcy.dbformat import KIND_VALUE, encode_internal_key
    ordered = [(encode_internal_key(b"a", 4, KIND_VALUE), b"1"),
               (encode_internal_key(b"b", 5, KIND_VALUE), b"2")]
    assert [k for k, _ in data_block_entries(_block(ordered))] == [k for k, _ in ordered]
    with pytest.raises(kvcy.CorruptionError, match="out of order"):
        data_block_entries(_block(ordered[::-1]))
    same_key_older_first = [(encode_internal_key(b"a", 4, KIND_VALUE), b"1"),
                            (encode_internal_key(b"a", 5, KIND_VALUE), b"2")]
    with pytest.raises(kvcy.CorruptionError, match="out of order"):
        data_block_entries(_block(same_key_older_first))
    bad_kind = [(b"a" + ((4 << 8) | 7).to_bytes(8, "little"), b"1")]
    with pytest.raises(kvcy.CorruptionError, match="unknown kind 7"):
        data_block_entries(_block(bad_kind))


def test_damaged_filter_keys_are_still_checked(db):
    clean = kvcy.check(db)
    D.damage_filter(db)
    report = kvcy.check(db)
    assert report.keys_checked == clean.keys_checked


def test_check_table_reports_its_parts(db):
    name = D.level_tables(db)[1][0]
    file = default_env().new_random_access_file(os.path.join(db, name))
    try:
        table = check_table(file, file.size, name)
    finally:
        file.close()
    assert table.ok and table.index_ok
    assert len(table.good_handles) == len(table.handles) == table.blocks
    blocks = D.table_blocks(os.path.join(db, name))
    assert [h.offset for h in table.good_handles] == [offset for offset, _ in blocks]
    assert table.smallest == blocks[0][1][0][0]
    assert table.largest == blocks[-1][1][-1][0]


def test_progress_runs_to_the_total(db):
    calls = []
    kvcy.check(db, progress=lambda done, total: calls.append((done, total)))
    totals = {total for _, total in calls}
    assert len(totals) == 1
    total = totals.pop()
    dones = [done for done, _ in calls]
    assert dones == sorted(dones) and dones[-1] == total
    assert total >= sum(os.path.getsize(os.path.join(db, n)) for n in D.files(db, "sst"))


def test_to_dict_is_json(db):
    D.damage_data_block(db)
    out = json.loads(json.dumps(kvcy.check(db).to_dict()))
    assert out["ok"] is False
    assert out["problems"][0]["what"] == "data block: checksum mismatch"
    assert set(out) >= {"tables_checked", "blocks_checked", "keys_checked", "problems"}


def test_not_a_database_raises(tmp_path):
    with pytest.raises(kvcy.OperationalError, match="no such directory"):
        kvcy.check(str(tmp_path / "nothing"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(kvcy.OperationalError, match="not a kvcy database"):
        kvcy.check(str(tmp_path))
    assert not (tmp_path / "LOCK").exists()


def test_open_database_is_refused_and_conn_check_works(db):
    with kvcy.connect(db) as conn:
        with pytest.raises(kvcy.OperationalError, match="open for writing.*conn|locked"):
            kvcy.check(db)
        report = conn.check()
        assert report.ok, report.problems
        assert report.tables_checked == 2


def test_conn_check_sees_damage_in_the_live_version(db):
    with kvcy.connect(db) as conn:
        conn.put_many([(b"new%04d" % i, b"v" * 50) for i in range(200)])
        conn.flush()
        name, offset, _ = D.damage_data_block(db)
        report = conn.check()
        assert [(p.file, p.offset) for p in report.problems] == [(name, offset)]
    with kvcy.connect(db) as conn:
        conn.close()
        with pytest.raises(kvcy.ProgrammingError):
            conn.check()


def test_report_counts_in_check_report():
    report = CheckReport("x")
    assert report.ok
    report.add("000001.sst", 7, "bad")
    assert not report.ok and str(report.problems[0]) == "000001.sst at offset 7: bad"


def test_manifest_torn_tail_is_named_when_the_state_before_it_does_not_check_out(db):
    name = D.files(db, "manifest")[-1]
    path = os.path.join(db, name)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 3)       # the last edit, cut short
    report = kvcy.check(db)
    assert not report.ok
    (torn,) = [p for p in report.problems if p.file == name]
    assert "incomplete record" in torn.what


def test_manifest_torn_tail_alone_is_not_a_problem(db):
    # A crash while appending an edit leaves a torn tail; the state before it is whole.
    name = D.files(db, "manifest")[-1]
    with open(os.path.join(db, name), "ab") as f:
        f.write(b"\x12\x34\x56\x78\x40\x00\x01garbage")
    assert kvcy.check(db).ok
