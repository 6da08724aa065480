"""The kvcy command as a real process (python -m kvcy): what only a process
shows — a closed output pipe, Ctrl-C, argv bytes that are not UTF-8 — ends
in one line on stderr and a non-zero exit status, never a traceback."""
import os
import signal
import subprocess
import sys
import time

import kvcy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(kvcy.__file__)))


def kvcy_process(*argv, **popen):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, "-m", "kvcy", *map(os.fsencode, argv)],
                            env=env, stderr=subprocess.PIPE, **popen)


def finish(proc, timeout=60):
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err.decode("utf-8", "replace")


def test_closed_output_pipe(db_path):
    with kvcy.connect(db_path) as conn:
        conn.put_many([(b"key%06d" % i, b"v" * 50) for i in range(20000)])
    # `kvcy stats DB | head -0`: the reader is gone before the first write.
    proc = kvcy_process("stats", db_path, stdout=subprocess.PIPE)
    proc.stdout.close()
    status, err = finish(proc)
    assert status == 141
    assert err == "kvcy: output closed before the command finished (broken pipe)\n"
    # `kvcy scan DB | head -5`: the reader leaves after a few lines.
    proc = kvcy_process("scan", db_path, stdout=subprocess.PIPE)
    lines = [proc.stdout.readline() for _ in range(5)]
    assert lines[0] == b"key000000\t" + b"v" * 50 + b"\n"
    proc.stdout.close()
    status, err = finish(proc)
    assert status == 141
    assert err == "kvcy: output closed before the command finished (broken pipe)\n"


def test_ctrl_c_during_bench(tmp_path):
    proc = kvcy_process("bench", "--num", "400000", "--path", tmp_path / "b",
                        stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    # Interrupt once the benchmark is writing (its database has a LOG).
    while not (tmp_path / "b" / "LOG").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    status, err = finish(proc)
    assert status == 130
    assert err == "kvcy: interrupted\n"


def test_non_utf8_argument_bytes(db_path):
    proc = kvcy_process("put", db_path, "k", b"\xff\xfe", stdout=subprocess.PIPE)
    status, err = finish(proc)
    assert status == 1
    assert err == ("kvcy: DataError: VALUE is not valid UTF-8 text (byte 0xff); give "
                   "binary data with --encoding hex or base64\n")


def test_exit_codes_of_the_process(db_path):
    proc = kvcy_process("put", db_path, "k", "v")
    assert finish(proc) == (0, "")
    proc = kvcy_process("get", db_path, "k", stdout=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, out) == (0, b"v\n")
    proc = kvcy_process("get", db_path, "missing")
    assert finish(proc) == (1, "kvcy: key missing not found\n")
    proc = kvcy_process("bench", "--num", "-5")
    status, err = finish(proc)
    assert status == 2 and err.startswith("kvcy bench: error: argument --num")
