"""The kvcy command run in-process through kvcy.cli.main(argv).

Process-level behaviour (exit codes of the real console entry, a closed
pipe, Ctrl-C, undecodable argv bytes) is in tests/test_cli_process.py;
the generated option flags in tests/test_cli_option_flags.py.
"""
import base64
import csv
import io
import json
import sys
import types

import pytest

import kvcy
from kvcy.cli import build_parser, main


@pytest.fixture
def db(db_path):
    """A database holding text keys, a binary key and a value with a newline."""
    with kvcy.connect(db_path) as conn:
        conn.put_many([(b"user:1", b"ada"), (b"user:2", b"grace"), (b"user:3", b"barbara"),
                       (b"zz\x00\xff", b"\x01\x02"), (b"note", b"line1\nline2")])
    return str(db_path)


def run(capsys, *argv):
    """(exit status, stdout, stderr) of main(argv)."""
    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_put_get_delete_round_trip(capsys, db_path):
    assert run(capsys, "put", db_path, "greeting", "hello") == (0, "", "")
    assert run(capsys, "get", db_path, "greeting") == (0, "hello\n", "")
    assert run(capsys, "delete", db_path, "greeting") == (0, "", "")
    status, out, err = run(capsys, "get", db_path, "greeting")
    assert (status, out) == (1, "")
    assert err == "kvcy: key greeting not found\n"


@pytest.mark.parametrize("encoding,key,value", [
    ("hex", "00ff", "0102"),
    ("base64", base64.b64encode(b"\x00\xff").decode(), base64.b64encode(b"\x01\x02").decode()),
])
def test_binary_keys_and_values_in_hex_and_base64(capsys, db_path, encoding, key, value):
    assert run(capsys, "put", "--encoding", encoding, db_path, key, value)[0] == 0
    with kvcy.connect(db_path) as conn:
        assert conn.get(b"\x00\xff") == b"\x01\x02"
    assert run(capsys, "get", "--encoding", encoding, db_path, key) == (0, value + "\n", "")


def test_hex_flag_and_separate_key_and_value_encodings(capsys, db_path):
    assert run(capsys, "put", "--hex", db_path, "6b", "76")[0] == 0
    assert run(capsys, "get", "--key-encoding", "text", "--value-encoding", "base64",
               db_path, "k") == (0, "dg==\n", "")


@pytest.mark.parametrize("encoding,bad", [("hex", "0g"), ("base64", "!!!"), ("hex", "abc")])
def test_bad_key_encoding_is_one_line(capsys, db_path, encoding, bad):
    status, out, err = run(capsys, "put", "--encoding", encoding, db_path, bad, "00")
    assert status == 1
    assert err.count("\n") == 1
    assert "KEY is not valid %s" % encoding in err
    assert not db_path.exists()   # refused before the database was opened


def test_non_utf8_argument_is_refused_with_the_byte(capsys, db_path):
    # What Python makes of `kvcy put DB k "$(printf '\xff\xfe')"` on Linux.
    value = b"\xff\xfe".decode("utf-8", "surrogateescape")
    status, out, err = run(capsys, "put", db_path, "k", value)
    assert status == 1
    assert err == ("kvcy: DataError: VALUE is not valid UTF-8 text (byte 0xff); give "
                   "binary data with --encoding hex or base64\n")


def test_get_shows_invalid_utf8_escaped_in_text_mode(capsys, db):
    assert run(capsys, "get", db, "zz\x00\udcff") == (1, "", "kvcy: DataError: KEY is not "
                                                     "valid UTF-8 text (byte 0xff); give "
                                                     "binary data with --encoding hex or "
                                                     "base64\n")
    assert run(capsys, "get", "--key-encoding", "hex", db, "7a7a00ff") == (0, "\x01\x02\n", "")


def test_scan_lines_escape_control_characters(capsys, db):
    status, out, err = run(capsys, "scan", db)
    assert status == 0
    assert out.splitlines() == ["note\tline1\\x0aline2", "user:1\tada", "user:2\tgrace",
                                "user:3\tbarbara", "zz\\x00\\xff\t\\x01\\x02"]


def test_scan_range_prefix_reverse_limit(capsys, db):
    assert run(capsys, "scan", db, "--prefix", "user:", "--reverse", "--limit", "2")[1] \
        == "user:3\tbarbara\nuser:2\tgrace\n"
    assert run(capsys, "scan", db, "--start", "user:2", "--stop", "user:3")[1] \
        == "user:2\tgrace\n"
    assert run(capsys, "scan", db, "--limit", "0")[1] == ""


def test_scan_json_lines_in_hex(capsys, db):
    out = run(capsys, "scan", db, "--json", "--encoding", "hex", "--prefix", "7a")[1]
    assert [json.loads(line) for line in out.splitlines()] == [
        {"key": "7a7a00ff", "value": "0102"}]


def test_dump_load_round_trip_exactly_jsonl_and_csv(capsys, db, tmp_path):
    with kvcy.connect(db, readonly=True) as conn:
        expected = list(conn.scan())
    for fmt in ("jsonl", "csv"):
        dump_file = tmp_path / ("dump." + fmt)
        assert run(capsys, "dump", db, dump_file, "--format", fmt)[0] == 0
        copy = tmp_path / ("copy-" + fmt)
        status, out, err = run(capsys, "load", copy, dump_file, "--format", fmt,
                               "--batch-size", "2")
        assert status == 0, err
        assert err == "kvcy: loaded 5 entries into %s\n" % copy
        with kvcy.connect(copy, readonly=True) as conn:
            assert list(conn.scan()) == expected
        # dump of the copy is byte-identical to the first dump
        assert run(capsys, "dump", copy, "--format", fmt)[1] == dump_file.read_text()


def test_dump_to_stdout_and_load_from_stdin(capsys, db, tmp_path, monkeypatch):
    # range bounds are in the key encoding, base64 by default for dump
    out = run(capsys, "dump", db, "--prefix", base64.b64encode(b"user:").decode())[1]
    first = json.loads(out.splitlines()[0])
    assert base64.b64decode(first["key"]) == b"user:1"
    monkeypatch.setattr(sys, "stdin", io.StringIO(out))
    status, _, err = run(capsys, "load", tmp_path / "copy", "--progress", "--batch-size", "2")
    assert status == 0
    assert "load: 3 entries" in err        # stdin has no size: the bar counts entries
    with kvcy.connect(tmp_path / "copy", readonly=True) as conn:
        assert conn.get(b"user:3") == b"barbara" and len(list(conn.scan())) == 3


def test_dump_text_refuses_what_would_not_round_trip(capsys, db):
    status, out, err = run(capsys, "dump", db, "--encoding", "text")
    assert status == 1
    assert "key 7a7a00ff is not UTF-8 text" in err


def test_load_text_csv_and_bad_lines(capsys, tmp_path):
    data = tmp_path / "in.csv"
    with open(data, "w", newline="") as f:
        csv.writer(f).writerows([("a", "1"), ("b,c", 'say "hi"\n')])
    assert run(capsys, "load", tmp_path / "db", data, "--format", "csv",
               "--encoding", "text")[0] == 0
    with kvcy.connect(tmp_path / "db", readonly=True) as conn:
        assert conn.get(b"b,c") == b'say "hi"\n'

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": "YQ==", "value": "Yg=="}\n{"key": 1}\n')
    status, out, err = run(capsys, "load", tmp_path / "db2", bad, "--batch-size", "1")
    assert status == 1
    assert err == ('kvcy: DataError: line 2 is not {"key": "...", "value": "..."} '
                   "(1 entries before it were loaded)\n")
    bad.write_text('{"key": "YQ==", "value": "not base64!"}\n')
    err = run(capsys, "load", tmp_path / "db2", bad)[2]
    assert "line 1: value is not valid base64" in err
    bad.write_text("a,b,c\n")
    err = run(capsys, "load", tmp_path / "db2", bad, "--format", "csv")[2]
    assert "line 1 has 3 fields" in err


def test_load_missing_file_is_one_line(capsys, tmp_path):
    status, out, err = run(capsys, "load", tmp_path / "db", tmp_path / "nope.jsonl")
    assert status == 1
    assert err == "kvcy: %s: No such file or directory\n" % (tmp_path / "nope.jsonl")


def test_load_progress_bar_when_asked(capsys, db, tmp_path):
    dump_file = tmp_path / "d.jsonl"
    run(capsys, "dump", db, dump_file)
    err = run(capsys, "load", tmp_path / "copy", dump_file, "--progress")[2]
    assert "load: 100%" in err
    err = run(capsys, "load", tmp_path / "copy2", dump_file)[2]
    assert "load:" not in err          # stderr is no terminal here


def test_missing_and_locked_database(capsys, db_path):
    status, out, err = run(capsys, "get", db_path, "k")
    assert status == 1
    assert err.startswith("kvcy: OperationalError: database %s does not exist" % db_path)
    assert not db_path.exists()        # get and scan never create one
    with kvcy.connect(db_path):
        status, out, err = run(capsys, "put", db_path, "k", "v")
        assert status == 1
        assert err.startswith("kvcy: OperationalError: database is locked")
        assert err.count("\n") == 1
        # readers work beside the writer
        assert run(capsys, "scan", db_path)[0] == 0


def test_stats_table_json_and_prometheus(capsys, db):
    status, out, err = run(capsys, "stats", db)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["counter", "value"]
    assert any(line.split()[:2] == ["last_sequence", "5"] for line in lines)
    assert any(line.split()[:3] == ["level", "files", "bytes"] for line in lines)
    assert any(line.startswith("latency (us)") for line in lines)
    as_json = json.loads(run(capsys, "stats", db, "--json")[1])
    assert as_json["last_sequence"] == 5
    prom = run(capsys, "stats", db, "--prometheus")[1]
    assert "kvcy_last_sequence 5.0" in prom.splitlines()     # prometheus-client's float text
    status, out, err = run(capsys, "stats", db, "--json", "--prometheus")
    assert status == 2 and "not allowed with argument" in err


def test_stats_watch_follows_a_writer(capsys, db, monkeypatch):
    with kvcy.connect(db) as writer:
        prints = []
        real_sleep = __import__("time").sleep

        def write_between_prints(seconds):
            prints.append(seconds)
            writer.put(b"new", b"x")
            writer.flush()
            real_sleep(0)
        monkeypatch.setattr("kvcy.cli.stats_table.time.sleep", write_between_prints)
        status, out, err = run(capsys, "stats", db, "--json", "--watch", "0.5", "--count", "2")
    assert status == 0 and prints == [0.5]
    first, second = [json.loads(chunk) for chunk in out.split("\n}\n") if chunk.strip()
                     for chunk in [chunk + "}"]]
    assert (first["last_sequence"], second["last_sequence"]) == (5, 6)


def test_stats_serve_answers_a_scrape_between_refreshes(capsys, db, monkeypatch):
    import urllib.request
    from prometheus_client.parser import text_string_to_metric_families
    scraped = []

    def scrape_instead_of_sleeping(seconds):
        url = capsys.readouterr().out.split()[-1]
        scraped.append((seconds, urllib.request.urlopen(url, timeout=10).read().decode()))
    monkeypatch.setattr("kvcy.cli.stats_table.time.sleep", scrape_instead_of_sleeping)
    status, out, err = run(capsys, "stats", db, "--serve", "0", "--count", "1")
    assert status == 0 and len(scraped) == 1 and scraped[0][0] == 5.0
    families = {f.name: f for f in text_string_to_metric_families(scraped[0][1])}
    assert families["kvcy_last_sequence"].samples[0].value == 5


def test_compact_reports_and_keeps_data(capsys, db):
    status, out, err = run(capsys, "compact", db, "--progress")
    assert status == 0
    assert out.startswith("kvcy: compacted %s: " % db)
    assert "compact: 100%" in err
    with kvcy.connect(db, readonly=True) as conn:
        assert conn.get(b"user:2") == b"grace"
        stats = conn.stats()
    assert stats["level0_files"] == 0
    status, out, err = run(capsys, "compact", db, "--readonly")
    assert (status, err) == (1, "kvcy: OperationalError: cannot compact: the database "
                                "is open read-only\n")


def test_bench_small_run_with_option_flags(capsys, tmp_path):
    status, out, err = run(capsys, "bench", "--num", "300", "--value-bytes", "1KiB",
                           "--path", tmp_path / "b", "--sync", "--block-size", "1KiB")
    assert status == 0, err
    assert "300 keys, 16-byte keys, 1024-byte values, sync=True" in out
    assert "readrandom (after reopen)" in out


@pytest.mark.parametrize("argv,needle", [
    (["bench", "--num", "-5"], "kvcy bench: error: argument --num: must be at least 1, got -5"),
    (["bench", "--value-bytes", "4mega"], "kvcy bench: error: argument --value-bytes: must be a size"),
    (["put", "x"], "kvcy put: error: the following arguments are required: KEY, VALUE"),
    (["scan", "x", "--limit", "-1"], "kvcy scan: error: argument --limit: must be 0 or more"),
    (["stats", "x", "--watch", "0"], "kvcy stats: error: argument --watch: must be a number"),
])
def test_usage_errors_are_one_line_naming_the_subcommand(capsys, argv, needle):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert err.startswith(needle) and err.count("\n") == 1


def test_help_of_every_subcommand_and_flag(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {"get", "put", "delete", "scan", "dump", "load", "stats",
                                "compact", "check", "repair", "backup", "restore", "bench"}
    for name, subparser in sub.choices.items():
        for action in subparser._actions:
            assert action.help, "kvcy %s: %s has no help" % (name, action.option_strings)
        assert run(capsys, name, "--help")[0] == 0
    top = run(capsys, "--help")[1]
    assert "store VALUE under KEY (kvcy put DB KEY VALUE)" in top
    assert run(capsys)[0] == 2            # no command: help and status 2


def _fake_module(monkeypatch, name, function):
    module = types.ModuleType("kvcy." + name)
    setattr(module, name, function)
    monkeypatch.setitem(sys.modules, "kvcy." + name, module)


class _Report:
    def __init__(self, problems):
        self.problems = problems
        self.ok = not problems

    def to_dict(self):
        return {"ok": self.ok, "problems": self.problems}


def test_check_wiring_exit_codes_json_and_progress(capsys, monkeypatch, db):
    """The CLI side of kvcy check against a stand-in of kvcy.check's API
    (check(path, *, progress) -> report with .ok, .problems, .to_dict())."""
    calls = []

    def fake_check(path, *, progress=None):
        calls.append(path)
        progress(50, 100)
        progress(100, 100)
        return _Report([] if path == db else ["000005.sst: block at offset 0: bad checksum"])
    _fake_module(monkeypatch, "check", fake_check)
    assert run(capsys, "check", db) == (0, "kvcy: %s: no problems found\n" % db, "")
    status, out, err = run(capsys, "check", "other", "--json", "--progress")
    assert status == 1
    assert json.loads(out) == {"ok": False,
                               "problems": ["000005.sst: block at offset 0: bad checksum"]}
    assert "check: 100%" in err
    status, out, err = run(capsys, "check", "other")
    assert out.splitlines() == ["000005.sst: block at offset 0: bad checksum",
                                "kvcy: other: 1 problem found; see kvcy repair"]
    assert calls == [db, "other", "other"]
    status, out, err = run(capsys, "check", db, "--block-size", "8KiB")
    assert status == 1 and "--block-size has no effect" in err


def test_repair_wiring(capsys, monkeypatch, db):
    class Report:
        def to_dict(self):
            return {"tables": 2, "dropped_blocks": [{"file": "000005.sst", "offset": 0}]}
    _fake_module(monkeypatch, "repair", lambda path, *, progress=None: Report())
    assert run(capsys, "repair", db) == (0, 'tables: 2\ndropped_blocks: [{"file": '
                                         '"000005.sst", "offset": 0}]\n', "")
    assert json.loads(run(capsys, "repair", db, "--json")[1])["tables"] == 2


def test_check_unavailable_is_one_line(capsys, monkeypatch, db):
    monkeypatch.setitem(sys.modules, "kvcy.check", None)   # import fails
    status, out, err = run(capsys, "check", db)
    assert status == 1 and err.startswith("kvcy: kvcy check is not available")


def test_interrupt_is_one_line(capsys, monkeypatch, db):
    def interrupted(self, *args):
        raise KeyboardInterrupt
    monkeypatch.setattr(kvcy.Connection, "stats", interrupted)
    assert run(capsys, "stats", db) == (130, "", "kvcy: interrupted\n")
