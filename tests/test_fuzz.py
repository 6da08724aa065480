"""The default-suite part of the fuzzing (tests/fuzz/, docs/fuzzing.md).

Each target runs in a child process (`python -m tests.fuzz TARGET`), so a
crash in a C reader is a failing exit status, not a dead test run, and a
hang is a timeout: the child replays the target's seeds and every
regression input (tests/fuzz_corpus/regressions/<target>/), then mutates
them for a bounded number of executions, with atheris when it is installed
(libFuzzer seeded with 13) and otherwise with the deterministic random
engine (seed 13), which is what CI runs.  The
in-process tests check the harness itself: that it flags what breaks the
rule and passes what keeps it, and that the mutation loop is reproducible.
The long runs are on demand: `python -m tests.fuzz TARGET --time 600`, and
the slow test below.
"""
import os
import re
import subprocess
import sys

import pytest

from fuzz import TARGET_NAMES, harness, load_target
from kvcy.errors import CorruptionError, ProgrammingError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Executions per target in the default run: about half a second each.
DEFAULT_RUNS = {"table": 300, "coding": 600}
DEFAULT_RUNS_OTHERS = 2000
_SUMMARY = re.compile(r"fuzz (\w+): (\d+) executions \((\d+) rejected as corrupt\).*,"
                      r" (\d+) seeds and (\d+) regressions replayed, 0 broke the rule")


def run_fuzz(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return subprocess.run([sys.executable, "-m", "tests.fuzz", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name", TARGET_NAMES)
def test_target_keeps_the_rule(name, tmp_path):
    runs = DEFAULT_RUNS.get(name, DEFAULT_RUNS_OTHERS)
    proc = run_fuzz(name, "--runs", str(runs), "--seed", "13", "--artifacts", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    match = _SUMMARY.search(proc.stdout)
    assert match, proc.stdout
    assert match.group(1) == name and int(match.group(2)) == runs
    seeds = harness.read_inputs(harness.seed_dir(name))
    regressions = harness.read_inputs(harness.regression_dir(name))
    assert seeds, "no seeds for %s: run python -m tests.fuzz seeds" % name
    assert (int(match.group(4)), int(match.group(5))) == (len(seeds), len(regressions))


def test_every_regression_directory_names_a_target():
    regressions = os.path.join(harness.CORPUS_DIR, "regressions")
    names = os.listdir(regressions) if os.path.isdir(regressions) else []
    assert set(names) <= set(TARGET_NAMES), names


def test_every_target_replays_its_seeds_in_process():
    # The seeds are valid files: each target accepts most of them as they are.
    for name in TARGET_NAMES:
        target = load_target(name)
        inputs = harness.read_inputs(harness.seed_dir(name))
        rejected = sum(harness.execute(name, target, data) for _, data in inputs)
        assert rejected < len(inputs), "%s rejected all %d seeds" % (name, len(inputs))


class _Target:
    def __init__(self, fn):
        self.fuzz_one = fn


def test_execute_passes_values_and_corruption():
    assert harness.execute("t", _Target(lambda d: d[:1]), b"xy") is False
    def corrupt(data):
        raise CorruptionError("bad")
    assert harness.execute("t", _Target(corrupt), b"xy") is True


@pytest.mark.parametrize("exc", [ValueError("v"), IndexError("i"), ProgrammingError("p"),
                                  AssertionError("round trip differs"), MemoryError()])
def test_execute_flags_everything_else(exc):
    def fails(data):
        raise exc
    with pytest.raises(harness.RuleBroken) as info:
        harness.execute("t", _Target(fails), b"input")
    assert info.value.data == b"input" and info.value.cause is exc


def test_random_engine_is_reproducible_and_finds_a_planted_bug():
    seen = []

    def planted(data):
        seen.append(data)
        if data.startswith(b"\xff\xff"):
            raise IndexError("planted")
    with pytest.raises(harness.RuleBroken) as info:
        harness.run_random("planted", _Target(planted), runs=50000, seed=3,
                           corpus=[b"\x00\x00abc"])
    assert info.value.data.startswith(b"\xff\xff")
    first = list(seen)
    seen.clear()
    with pytest.raises(harness.RuleBroken):
        harness.run_random("planted", _Target(planted), runs=50000, seed=3,
                           corpus=[b"\x00\x00abc"])
    assert seen == first


def test_random_engine_reports_a_hang(monkeypatch):
    import time
    monkeypatch.setattr(harness, "HANG_SECONDS", 0.05)

    def slow(data):
        time.sleep(1)
    with pytest.raises(harness.RuleBroken, match="Hang"):
        harness.run_random("slow", _Target(slow), runs=1, corpus=[b"x"])


def test_a_broken_rule_fails_the_command_and_saves_the_input(tmp_path, monkeypatch):
    # The block target, with Block replaced by something that crashes in Python.
    from fuzz import __main__ as cli
    block = load_target("block")

    class Exploding:
        def __init__(self, data):
            raise KeyError("exploded")
    monkeypatch.setattr(block, "Block", Exploding)
    monkeypatch.setattr(cli, "harness", harness)
    ok = cli.run_target("block", "random", None, 5, 0, str(tmp_path))
    assert ok is False
    saved = os.listdir(tmp_path / "block")
    assert len(saved) == 1 and saved[0].startswith("broke-")


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGET_NAMES)
def test_target_long_run(name):
    seconds = float(os.environ.get("KVCY_FUZZ_SECONDS", "60"))
    proc = run_fuzz(name, "--time", str(seconds), timeout=seconds + 300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def test_seed_builder_covers_every_target():
    # seeds.py (python -m tests.fuzz seeds) still runs its workload and cuts
    # every kind of file it needs: each target gets seeds its decoder accepts.
    from fuzz.seeds import build_seeds
    seeds = build_seeds()
    assert set(seeds) == set(TARGET_NAMES)
    for name, files in seeds.items():
        target = load_target(name)
        accepted = [n for n, data in sorted(files.items())
                    if not harness.execute(name, target, data)]
        assert accepted, "no seed of %s decodes" % name
