"""kvcy check and kvcy repair against the real kvcy.check and kvcy.repair
(written on their own branch; these tests skip until both are present).
tests/test_cli.py covers the CLI side against a stand-in of their API."""
import glob
import json
import os

import pytest

import kvcy
from kvcy.cli import main

pytest.importorskip("kvcy.check", reason="kvcy.check is not in this tree yet (issue #12's "
                    "check and repair branch); the CLI side is tested in test_cli.py")
pytest.importorskip("kvcy.repair", reason="kvcy.repair is not in this tree yet (issue #12's "
                    "check and repair branch)")


@pytest.fixture
def damaged(db_path):
    """A database of one table whose first data block has a flipped byte."""
    with kvcy.connect(db_path) as conn:
        conn.put_many([(b"key%05d" % i, b"value%05d" % i) for i in range(2000)])
        conn.flush()
    [table] = glob.glob(os.path.join(db_path, "*.sst"))
    with open(table, "r+b") as f:
        f.seek(10)
        byte = f.read(1)
        f.seek(10)
        f.write(bytes([byte[0] ^ 0xFF]))
    return str(db_path), os.path.basename(table)


def test_check_clean_database(capsys, db_path):
    with kvcy.connect(db_path) as conn:
        conn.put(b"k", b"v")
        conn.flush()
    assert main(["check", str(db_path)]) == 0
    assert capsys.readouterr().out == "kvcy: %s: no problems found\n" % db_path
    assert main(["check", str(db_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) is not None


def test_check_finds_damage_and_repair_fixes_it(capsys, damaged):
    path, table = damaged
    assert main(["check", path]) == 1
    out = capsys.readouterr().out
    assert table in out and out.splitlines()[-1].endswith("1 problem found; see kvcy repair")
    assert main(["repair", path, "--json"]) == 0
    assert isinstance(json.loads(capsys.readouterr().out), dict)
    assert main(["check", path]) == 0
