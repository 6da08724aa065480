"""Run a batch of damage cases in a child process.

A batch that feeds damaged bytes to kvcy's C readers runs in a child, so a
crash (a segfault, an abort) fails the test with the child's exit status
and output instead of killing the test run; a hang fails it on a timeout.
The child caps its address space, so a runaway allocation fails fast
instead of swapping the machine.  The seed comes from an environment
variable when set (to replay a failure), else at random, and is named in
every failure.
"""
import json
import os
import random
import subprocess
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

_CHILD = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
sys.path.insert(0, {tests!r})
import {module}
print(json.dumps({module}.{function}({count}, {seed})))
"""


def run_in_child(module, function, count, seed_env, timeout, what):
    """(seed, result) of module.function(count, seed) run in a child process,
    where result is what the function returned (JSON-serializable)."""
    seed = int(os.environ.get(seed_env, random.randrange(2 ** 32)))
    script = _CHILD.format(tests=TESTS_DIR, module=module, function=function, count=count,
                           seed=seed)
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail("seed %d: %s hung (> %d s)\n%s"
                    % (seed, what, timeout, (exc.stderr or b"")[-3000:]))
    assert proc.returncode == 0, ("seed %d (rerun with %s=%d): exit %d\n%s"
                                  % (seed, seed_env, seed, proc.returncode,
                                     (proc.stdout + proc.stderr)[-6000:]))
    return seed, json.loads(proc.stdout.strip().splitlines()[-1])


def run_script_ok(script, *args, timeout=120):
    """Run a Python script (source text) in a fresh interpreter with args;
    it must exit 0 and print "ok" (a check that needs a clean process)."""
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
