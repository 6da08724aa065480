"""python -m tests.fuzz: run a fuzz target, or make the seed corpora.

    python -m tests.fuzz TARGET [--time SECONDS | --runs N] [--engine E] [--seed S]
    python -m tests.fuzz all --time 60         every target in turn
    python -m tests.fuzz seeds                 rewrite tests/fuzz_corpus/<target>/
    python -m tests.fuzz --list

Each run first replays the target's seeds and its regressions
(tests/fuzz_corpus/regressions/<target>/), then fuzzes.  --engine atheris
(the default when atheris imports) is coverage-guided libFuzzer; --engine
random is the deterministic mutation loop of harness.py.  An input that
breaks the rule is saved under --artifacts (default
/tmp/kvcy-fuzz/artifacts/<target>/) and the exit status is 1; copy it into
the regressions directory once the bug is fixed.  The last line of a run
is a summary: "fuzz TARGET: N executions (R rejected as corrupt) in S s,
E engine, K regressions replayed, 0 broke the rule".
Run from the repository root, with the kvcy to test on PYTHONPATH.
"""
import argparse
import os
import sys
import tempfile
import time

from . import TARGET_NAMES, load_target

harness = None          # imported by main(), under atheris's instrumentation if used


def _atheris():
    try:
        import atheris
    except ImportError:
        return None
    return atheris


def run_atheris(atheris, name, target, seconds, runs, artifacts, summary, max_len, seed):
    """Hand the target to libFuzzer.  It saves an input that breaks the rule
    under artifacts and exits; otherwise this ends the process when the time
    or the runs are used up, after printing summary(counts): libFuzzer's own
    exit skips Python's atexit handlers."""
    counts = {"executions": 0, "rejected": 0}
    deadline = None

    def test_one_input(data):
        nonlocal deadline
        if deadline is None:
            deadline = time.monotonic() + (seconds if seconds is not None else 1e12)
        counts["rejected"] += harness.execute(name, target, data)
        counts["executions"] += 1
        if (runs is not None and counts["executions"] >= runs) or time.monotonic() >= deadline:
            summary(counts)
            os._exit(0)

    # libFuzzer writes new inputs to the first corpus directory: a scratch one,
    # so that the seeds in the repository stay as seeds.py made them.
    work = tempfile.mkdtemp(prefix="kvcy-fuzz-%s-" % name)
    os.makedirs(artifacts, exist_ok=True)
    argv = [sys.argv[0], work, harness.seed_dir(name)]
    if os.path.isdir(harness.regression_dir(name)):
        argv.append(harness.regression_dir(name))
    argv += ["-timeout=%d" % harness.HANG_SECONDS, "-rss_limit_mb=2048",
             "-max_len=%d" % max_len, "-print_final_stats=1",
             "-artifact_prefix=%s/" % artifacts.rstrip("/")]
    if seed:
        argv.append("-seed=%d" % seed)       # libFuzzer's 0 means "pick one"
    if seconds is not None:      # a backstop: test_one_input ends the run
        argv.append("-max_total_time=%d" % (int(seconds) + 60))
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


def run_target(name, engine, seconds, runs, seed, artifacts):
    target = load_target(name)
    artifacts = os.path.join(artifacts, name)
    seeds = harness.read_inputs(harness.seed_dir(name))
    regressions = harness.read_inputs(harness.regression_dir(name))
    started = time.monotonic()

    def summary(counts):
        print("fuzz %s: %d executions (%d rejected as corrupt) in %.1f s, %s engine, "
              "%d seeds and %d regressions replayed, 0 broke the rule"
              % (name, counts["executions"], counts["rejected"], time.monotonic() - started,
                 engine, len(seeds), len(regressions)), flush=True)

    try:
        harness.replay(name, target, seeds + regressions)
        if engine == "atheris":
            # Inputs may grow to twice the largest seed: bigger ones only run slower.
            max_len = min(harness.MAX_INPUT_BYTES,
                          max([4096] + [2 * len(d) for _, d in seeds + regressions]))
            run_atheris(_atheris(), name, target, seconds, runs, artifacts, summary, max_len,
                        seed)
        else:
            counts = harness.run_random(name, target, seconds=seconds, runs=runs, seed=seed,
                                        corpus=[d for _, d in seeds + regressions])
    except harness.RuleBroken as exc:
        path = harness.save_input(artifacts, "broke", exc.data)
        print("fuzz %s: BROKE THE RULE: %s\n  input saved to %s" % (name, exc, path))
        import traceback
        traceback.print_exception(exc.cause)
        return False
    summary(counts)
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", nargs="?", help="a target, 'all' or 'seeds'")
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument("--time", type=float, help="seconds to fuzz (per target)")
    parser.add_argument("--runs", type=int, help="executions (per target)")
    parser.add_argument("--engine", choices=("atheris", "random"),
                        help="default: atheris if it imports, else random")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random engine")
    parser.add_argument("--artifacts", default="/tmp/kvcy-fuzz/artifacts",
                        help="where inputs that break the rule are saved")
    args = parser.parse_args(argv)
    global harness
    engine = args.engine or ("atheris" if _atheris() else "random")
    if engine == "atheris" and _atheris() is None:
        parser.error("atheris is not installed (pip install -e '.[fuzz]')")
    if engine == "atheris" and "kvcy" not in sys.modules:
        # Coverage of kvcy's Python layers; the Cython kernels are not
        # instrumented (see docs/fuzzing.md), nor are the targets' checks,
        # whose loops instrumented ran a table target ten times slower.
        with _atheris().instrument_imports(include=["kvcy"]):
            from . import harness
            for name in TARGET_NAMES:
                load_target(name)
    else:
        from . import harness
    if args.list or not args.target:
        for name in TARGET_NAMES:
            print("%-12s %s" % (name, load_target(name).SEEDS))
        return 0
    if args.target == "seeds":
        from .seeds import write_seeds
        for name, count in write_seeds().items():
            print("%-12s %d seeds" % (name, count))
        return 0
    if args.time is None and args.runs is None:
        args.time = 60.0
    if args.target == "all":
        if engine == "atheris":
            parser.error("libFuzzer runs one target per process: run each target on its own")
        names = TARGET_NAMES
    else:
        names = [args.target]
    try:
        ok = all([run_target(name, engine, args.time, args.runs, args.seed, args.artifacts)
                  for name in names])
    except KeyError as exc:
        parser.error(exc.args[0])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
