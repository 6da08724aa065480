"""kvcy/info_log.py: the LOG file, its rotation by size (info_log_max_bytes)."""
import os
import time

import kvcy
from kvcy.env import PosixEnv, io_error
from kvcy.errors import ProgrammingError
from kvcy.info_log import InfoLog

import pytest


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def messages(lines):
    return [line.split("] ", 1)[1] for line in lines]


def test_log_rotates_to_log_old_at_max_bytes(tmp_path):
    path, old = str(tmp_path / "LOG"), str(tmp_path / "LOG.old")
    log = InfoLog(PosixEnv(), path, old, max_bytes=600)
    for i in range(40):
        log.log("line %02d %s", i, "x" * 20)
    log.close()
    assert log.rotations >= 2
    # Every file stays under max_bytes plus one line.
    assert os.path.getsize(path) < 600 + 100 and os.path.getsize(old) < 600 + 100
    new_lines, old_lines = messages(read(path)), messages(read(old))
    assert new_lines[0] == "LOG rotated at 600 bytes; earlier lines are in LOG.old"
    # The two files hold the latest lines, in order, none lost between them.
    kept = [m for m in old_lines + new_lines if m.startswith("line ")]
    assert kept == ["line %02d %s" % (i, "x" * 20) for i in range(40 - len(kept), 40)]


def test_no_rotation_without_max_bytes(tmp_path):
    path = str(tmp_path / "LOG")
    log = InfoLog(PosixEnv(), path, str(tmp_path / "LOG.old"))
    for i in range(200):
        log.log("line %d", i)
    log.close()
    assert len(read(path)) == 200 and not os.path.exists(tmp_path / "LOG.old")


class RenameFailsEnv(PosixEnv):
    def rename_file(self, src, dst):
        raise io_error("rename %s to" % src, dst, OSError(13, "Permission denied"))


def test_failed_rotation_keeps_appending_to_the_log(tmp_path):
    path = str(tmp_path / "LOG")
    log = InfoLog(RenameFailsEnv(), path, str(tmp_path / "LOG.old"), max_bytes=200)
    for i in range(20):
        log.log("line %d", i)
    log.close()
    assert messages(read(path)) == ["line %d" % i for i in range(20)]
    assert log.rotations == 0


def test_database_log_rotates_by_info_log_max_bytes(db_path):
    with kvcy.connect(db_path, info_log_max_bytes=4096, stats_interval=0.01) as conn:
        conn.put(b"k", b"v")
        deadline = time.monotonic() + 10
        while (conn._engine.info_log.rotations < 2 and time.monotonic() < deadline):
            time.sleep(0.02)
    log, old = os.path.join(db_path, "LOG"), os.path.join(db_path, "LOG.old")
    assert "LOG rotated at 4096 bytes" in read(log)[0]
    stats_line_bytes = max(len(line) for line in read(old)) + 1
    assert os.path.getsize(old) < 4096 + stats_line_bytes
    assert os.path.getsize(log) < 4096 + stats_line_bytes


def test_info_log_max_bytes_is_validated():
    with pytest.raises(ProgrammingError, match="info_log_max_bytes"):
        kvcy.connect("unused", info_log_max_bytes=-1)
