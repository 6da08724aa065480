"""The fuzzing rule, the two engines that drive a target, and the corpora.

A target is a module with ``fuzz_one(data: bytes)``: it feeds data to one
decoder of kvcy and checks what comes back.  The rule every target keeps:
any input yields a value or ``kvcy.CorruptionError``; never a crash, a hang,
another exception type, or (on the round-trip paths, where a checksum
verified or the target encoded the data itself) a different value than the
encoder wrote.  ``execute()`` applies that rule to one input: a
CorruptionError is a pass, anything else escaping the target is a
``RuleBroken`` that carries the input.

Two engines run a target:

- atheris (libFuzzer, coverage-guided), when it is importable: the
  ``fuzz`` extra of pyproject.toml installs it;
- a deterministic mutation loop on ``random.Random(seed)`` otherwise, or on
  request: it mutates the seed corpus (bit flips, interesting bytes and
  integers, inserts, deletions, splices, truncation) without coverage
  feedback.  Same seed, same inputs.

Corpora live in tests/fuzz_corpus/: ``<target>/`` holds the seeds (made from
real files by ``python -m tests.fuzz seeds``), ``regressions/<target>/``
every input that ever broke the rule.  Both are replayed before a run.
Not thread-safe: one run per process.
"""
import os
import random
import signal
import time

from kvcy.errors import CorruptionError

CORPUS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "fuzz_corpus")
# Inputs longer than this are cut: the decoders' limits are far below it,
# and long inputs only slow a run down.
MAX_INPUT_BYTES = 1 << 17
# One input taking longer than this is a hang (seconds).
HANG_SECONDS = 10.0


class RuleBroken(AssertionError):
    """An input broke the rule; .data is the input, .cause what happened."""

    def __init__(self, target, data, cause, where=""):
        self.target = target
        self.data = data
        self.cause = cause
        super().__init__("fuzz target %s: %s: %s (input of %d bytes%s)"
                         % (target, type(cause).__name__, cause, len(data), where))


class Hang(BaseException):
    """Raised by the alarm when one input runs past HANG_SECONDS."""


def _alarm(signum, frame):
    raise Hang("one input ran longer than %.0f s" % HANG_SECONDS)


def execute(name, target, data):
    """Run target on data under the rule; returns True iff it was rejected
    with CorruptionError (False: it yielded a value).  RuleBroken otherwise."""
    try:
        target.fuzz_one(data)
        return False
    except CorruptionError:
        return True
    except (Exception, Hang) as exc:    # everything else breaks the rule
        raise RuleBroken(name, data, exc) from exc


# -- corpora ---------------------------------------------------------------------

def seed_dir(name):
    return os.path.join(CORPUS_DIR, name)


def regression_dir(name):
    return os.path.join(CORPUS_DIR, "regressions", name)


def read_inputs(directory):
    """[(file name, bytes)] of every file in directory, sorted by name."""
    if not os.path.isdir(directory):
        return []
    out = []
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        if os.path.isfile(path):
            with open(path, "rb") as f:
                out.append((entry, f.read()))
    return out


def save_input(directory, prefix, data):
    """Write data to directory/prefix-<crc>; returns the path."""
    import zlib
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "%s-%08x" % (prefix, zlib.crc32(data)))
    with open(path, "wb") as f:
        f.write(data)
    return path


# -- the fallback engine: mutation without coverage feedback ---------------------

_INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE)
_INTERESTING_INTS = (0, 1, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x8000,
                     0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 32, 1 << 56, (1 << 64) - 1)


def mutate(rng, data, corpus):
    """A mutant of data: one to four edits, sometimes a splice with corpus."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(10)
        n = len(buf)
        if op == 0 and n:                               # flip one bit
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:                             # an interesting byte
            buf[rng.randrange(n)] = rng.choice(_INTERESTING_BYTES)
        elif op == 2 and n:                             # a random byte
            buf[rng.randrange(n)] = rng.randrange(256)
        elif op == 3 and n >= 8:                        # an interesting integer, LE
            width = rng.choice((1, 2, 4, 8))
            i = rng.randrange(n - width + 1)
            value = rng.choice(_INTERESTING_INTS) & ((1 << (8 * width)) - 1)
            buf[i:i + width] = value.to_bytes(width, "little")
        elif op == 4:                                   # insert random bytes
            i = rng.randrange(n + 1)
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 5 and n:                             # delete a range
            i = rng.randrange(n)
            del buf[i:i + rng.randint(1, 16)]
        elif op == 6 and n:                             # duplicate a range
            i = rng.randrange(n)
            chunk = buf[i:i + rng.randint(1, 32)]
            j = rng.randrange(n + 1)
            buf[j:j] = chunk
        elif op == 7 and n:                             # truncate
            del buf[rng.randrange(n):]
        elif op == 8 and corpus:                        # splice with another input
            other = rng.choice(corpus)
            if other:
                cut = rng.randrange(len(other) + 1)
                buf = buf[:rng.randrange(n + 1)] + other[cut:]
        elif op == 9 and n:                             # a varint at a random place
            value = rng.choice(_INTERESTING_INTS)
            out = bytearray()
            while value >= 0x80:
                out.append((value & 0x7F) | 0x80)
                value >>= 7
            out.append(value)
            i = rng.randrange(n)
            buf[i:i + len(out)] = out
    return bytes(buf[:MAX_INPUT_BYTES])


def run_random(name, target, seconds=None, runs=None, seed=0, corpus=()):
    """Mutate corpus for `seconds` or `runs` executions; returns the counts
    {"executions", "rejected"}.  RuleBroken on the first input that breaks
    the rule (the caller saves it)."""
    rng = random.Random(seed)
    pool = [bytes(c) for c in corpus] or [b""]
    # Fresh random inputs too, so an empty corpus still reaches the decoder.
    pool.append(bytes(rng.randrange(256) for _ in range(64)))
    deadline = None if seconds is None else time.monotonic() + seconds
    counts = {"executions": 0, "rejected": 0}
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        while True:
            if runs is not None and counts["executions"] >= runs:
                break
            if deadline is not None and counts["executions"] % 16 == 0 \
                    and time.monotonic() >= deadline:
                break
            data = mutate(rng, rng.choice(pool), pool)
            signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
            try:
                counts["rejected"] += execute(name, target, data)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            counts["executions"] += 1
            # Keep some accepted mutants as parents, as a crude stand-in for
            # coverage feedback: inputs that decode lead deeper.
            if len(pool) < 4096 and rng.random() < 0.02:
                pool.append(data)
    finally:
        signal.signal(signal.SIGALRM, previous)
    return counts


def replay(name, target, inputs):
    """Run every (file name, data) under the rule; returns how many ran."""
    for entry, data in inputs:
        try:
            execute(name, target, data)
        except RuleBroken as exc:
            raise RuleBroken(name, data, exc.cause, ", replaying " + entry) from exc.cause
    return len(inputs)

