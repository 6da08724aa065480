"""kvcy is typed: py.typed ships, mypy type-checks a program using the public
API against the stubs (and catches its mistakes), and mypy's stubtest finds
every stub in step with the compiled or Python module it describes."""
import os
import subprocess
import sys
import textwrap
import tomllib

import pytest

import kvcy

pytest.importorskip("mypy", reason="mypy is in the test extra: pip install -e '.[test]'")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(kvcy.__file__)))
PACKAGE = os.path.join(ROOT, "kvcy")

# Modules with a .pyi beside them; stubtest compares each with the runtime.
STUBBED = ["kvcy.connection", "kvcy.cursor", "kvcy.snapshot", "kvcy.transaction", "kvcy.dbm",
           "kvcy.shelve", "kvcy.aio",
           "kvcy._write_batch", "kvcy._read_path", "kvcy._write_path", "kvcy._latency",
           "kvcy._db_iter", "kvcy._db_iter_core", "kvcy._range_del", "kvcy._iterator", "kvcy._block", "kvcy._block_builder",
           "kvcy._bloom", "kvcy._merge", "kvcy._two_level", "kvcy._crc32c", "kvcy._snappy"]

GOOD = '''
import tempfile
from typing import Iterator

import kvcy
import kvcy.aio
import kvcy.dbm
import kvcy.shelve
from kvcy import WriteBatch


def pairs(conn: kvcy.Connection) -> Iterator[tuple[bytes, bytes]]:
    with conn.scan(prefix=b"a", reverse=True) as entries:
        yield from entries


def main() -> None:
    with kvcy.connect(tempfile.mkdtemp(), block_size="8KiB") as conn:
        conn.put(b"k", b"v", sync=True)
        value: bytes | None = conn.get(b"k")
        reveal_type(conn.get(b"k"))
        reveal_type(conn.get(b"k", "none"))
        batch = WriteBatch()
        batch.put(b"a", bytearray(b"1"))
        batch.delete(memoryview(b"b"))
        conn.write(batch)
        n: int = batch.count
        for key, val in pairs(conn):
            print(key.decode(), val.decode(), value, n)
        with conn.cursor() as cur:
            row = cur.scan(b"a").fetchone()
            if row is not None:
                print(row[0] + row[1])
        with conn.transaction() as txn:
            txn.put(b"c", b"3")
            print(txn.get(b"c", b"") + b"!")
        with conn.snapshot() as snap:
            print(snap.get_many([b"a", b"c"]))
        print(conn.stats()["puts"])
    with kvcy.dbm.open(tempfile.mkdtemp(), "c") as db:
        db[b"x"] = b"y"
        got: bytes = db[b"x"]
        print(len(db), got, db.get("x", b""))
    with kvcy.shelve.open(tempfile.mkdtemp()) as shelf:
        shelf["answer"] = 42


async def use_aio(path: str) -> bytes | None:
    async with kvcy.aio.connect(path) as db:
        await db.put(b"k", b"v")
        async for key, value in db.scan():
            print(key + value)
        return await db.get(b"k")
'''

BAD = '''
import kvcy
from kvcy import WriteBatch

conn = kvcy.connect("db")
conn.put(b"k", 5)
size: int = conn.get(b"k")
WriteBatch().put(b"a", None)
conn.scan(reverse="yes")
conn.cursor().fetchmany("2")
'''


def run_mypy(tmp_path, *args):
    env = dict(os.environ, MYPYPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir",
                             str(tmp_path / "cache"), *args], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    return result.returncode, result.stdout + result.stderr


def test_py_typed_and_stubs_are_shipped():
    assert os.path.isfile(os.path.join(PACKAGE, "py.typed"))
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        setuptools = tomllib.load(f)["tool"]["setuptools"]
    assert {"*.pyi", "py.typed"} <= set(setuptools["package-data"]["kvcy"])
    assert "kvcy.cli" in setuptools["packages"]
    for module in STUBBED:
        assert os.path.isfile(os.path.join(ROOT, *module.split(".")) + ".pyi"), module


def test_mypy_checks_a_program_against_the_stubs(tmp_path):
    (tmp_path / "good.py").write_text(textwrap.dedent(GOOD))
    (tmp_path / "bad.py").write_text(textwrap.dedent(BAD))
    # Only the two programs are checked; kvcy's own modules are read for their types.
    status, output = run_mypy(tmp_path, "--strict", "--follow-imports=silent",
                              "good.py", "bad.py")
    good = [line for line in output.splitlines() if line.startswith("good.py")]
    assert good == ['good.py:21: note: Revealed type is "bytes | None"',
                    'good.py:22: note: Revealed type is "bytes | str"'], output
    bad = [line.split(": error: ")[0] for line in output.splitlines()
                 if line.startswith("bad.py") and ": error: " in line]
    # one error on each line that misuses the API
    assert bad == ["bad.py:6", "bad.py:7", "bad.py:8", "bad.py:9", "bad.py:10"], output
    assert status == 1


def test_stubs_match_the_runtime_modules():
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--ignore-disjoint-bases",
         "--allowlist", os.path.join(ROOT, "tests", "data", "stubtest_allowlist.txt"),
         *STUBBED], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
