"""Tests for kvcy._snappy: round trips, interoperability with python-snappy
in both directions, hand-built streams for every element kind, and damaged
input.

Untrusted-input fuzzing (truncations at every position, byte flips, rewritten
length headers, hypothesis arbitrary bytes) runs in a child process with a
timeout and an address-space limit, so a segfault, abort() (the KVCY_DEBUG
build aborts on a broken invariant) or hang fails that test instead of
killing pytest; `-m slow` runs a larger batch.  The oracle for damaged
input: CorruptionError, or bytes that python-snappy decodes identically.
"""
import collections
import json
import os
import random
import subprocess
import sys

import pytest
import snappy
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from kvcy._snappy import compress, uncompress
from kvcy.errors import CorruptionError

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
FRAGMENT_BYTES = 65536


# -- data generators ------------------------------------------------------------------

def values_block(seed, n, value_bytes=100):
    """n bytes of 100-byte values, each half random, half one repeated byte
    (the benchmark's "typical" block)."""
    rng = random.Random(seed)
    out = bytearray()
    half = value_bytes // 2
    while len(out) < n:
        out += rng.randbytes(half)
        out += bytes([rng.randrange(256)]) * (value_bytes - half)
    return bytes(out[:n])


def generated(kind, seed, n):
    """Large inputs built from a seed (hypothesis draws stay small)."""
    rng = random.Random(seed)
    if kind == "random":
        return rng.randbytes(n)
    if kind == "zeros":
        return bytes(n)
    if kind == "pattern":
        return (rng.randbytes(rng.randrange(1, 40)) * (n // 2 + 1))[:n]
    if kind == "values":
        return values_block(seed, n)
    # "text": words from a small vocabulary, so matches at many distances.
    words = [rng.randbytes(rng.randrange(2, 9)) for _ in range(200)]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words) + b" "
    return bytes(out[:n])


KINDS = ["random", "zeros", "pattern", "values", "text"]

repetitive = st.builds(lambda chunk, reps: chunk * reps,
                       st.binary(min_size=1, max_size=24), st.integers(1, 3000))
mixed = st.lists(st.one_of(st.binary(max_size=200), repetitive), max_size=8).map(b"".join)
payloads = st.one_of(st.binary(max_size=2000), repetitive, mixed,
                     st.sampled_from([b"", b"\x00", b"a", b"\xff"]))
big = st.tuples(st.sampled_from(KINDS), st.integers(0, 2 ** 32 - 1),
                st.one_of(st.integers(FRAGMENT_BYTES - 70, FRAGMENT_BYTES + 70),
                          st.integers(2 * FRAGMENT_BYTES - 70, 2 * FRAGMENT_BYTES + 70),
                          st.integers(0, 3 * FRAGMENT_BYTES + 1000)))


def check_interop(data):
    packed = compress(data)
    assert uncompress(packed) == data
    assert snappy.uncompress(packed) == data
    assert uncompress(snappy.compress(data)) == data
    assert len(packed) <= 32 + len(data) + len(data) // 6


# -- round trips and interop ----------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"\x00", b"a", b"ab" * 7, b"a" * 15, b"a" * 16,
                                  b"a" * 17, bytes(range(256)) * 3])
def test_small_cases(data):
    check_interop(data)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [FRAGMENT_BYTES - 1, FRAGMENT_BYTES, FRAGMENT_BYTES + 1,
                               2 * FRAGMENT_BYTES + 17, 1 << 20])
def test_fragment_boundaries(kind, n):
    check_interop(generated(kind, n, n))


@settings(max_examples=300, deadline=None)
@given(payloads)
def test_interop_hypothesis(data):
    check_interop(data)


@settings(max_examples=60, deadline=None)
@given(big)
def test_interop_large_hypothesis(spec):
    check_interop(generated(*spec))


def test_empty_encoding():
    assert compress(b"") == b"\x00"
    assert uncompress(b"\x00") == b""


def test_ratio_close_to_python_snappy():
    # Same algorithm family: within 2% of python-snappy's size on typical
    # and on text-like data.
    for data in (values_block(7, 4096), values_block(8, 1 << 20), generated("text", 3, 200000)):
        ours, theirs = len(compress(data)), len(snappy.compress(data))
        assert ours <= theirs * 1.02 + 8, (ours, theirs)


def test_incompressible_expands_little():
    data = random.Random(5).randbytes(300000)
    # One literal per 64 KiB fragment: 3 tag bytes each, plus the header.
    assert len(compress(data)) <= len(data) + 3 * 5 + 5


def test_input_types():
    data = b"hello hello hello hello"
    packed = compress(data)
    for wrap in (bytes, bytearray, memoryview):
        assert compress(wrap(data)) == packed
        assert uncompress(wrap(packed)) == data
    with pytest.raises(TypeError):
        compress("text")
    with pytest.raises(TypeError):
        uncompress("text")
    with pytest.raises(TypeError):
        compress(None)
    with pytest.raises(TypeError):
        uncompress(12)


# -- hand-built streams -------------------------------------------------------------------

def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def literal(data, nbytes=None):
    """Literal element; nbytes forces the 1..4-byte long length form."""
    n = len(data) - 1
    if nbytes is None and n < 60:
        return bytes([n << 2]) + data
    nbytes = nbytes or max(1, (n.bit_length() + 7) // 8)
    return bytes([(59 + nbytes) << 2]) + n.to_bytes(nbytes, "little") + data


def copy1(offset, length):
    assert 4 <= length <= 11 and offset < 2048
    return bytes([1 | (length - 4) << 2 | (offset >> 8) << 5, offset & 0xFF])


def copy2(offset, length):
    return bytes([2 | (length - 1) << 2]) + offset.to_bytes(2, "little")


def copy4(offset, length):
    return bytes([3 | (length - 1) << 2]) + offset.to_bytes(4, "little")


def stream(length, *elements):
    return varint(length) + b"".join(elements)


@pytest.mark.parametrize("packed, expected", [
    (stream(3, literal(b"abc")), b"abc"),
    (stream(3, literal(b"abc", nbytes=1)), b"abc"),
    (stream(3, literal(b"abc", nbytes=4)), b"abc"),
    (stream(300, literal(b"x" * 300)), b"x" * 300),
    (stream(70000, literal(b"y" * 70000, nbytes=3)), b"y" * 70000),
    # Overlapping copies repeat a pattern byte by byte.
    (stream(12, literal(b"a"), copy1(1, 11)), b"a" * 12),
    (stream(66, literal(b"ab"), copy2(2, 64)), b"ab" * 33),
    (stream(20, literal(b"0123456789"), copy4(10, 10)), b"0123456789" * 2),
    (stream(37, literal(b"0123456789abcdefXYZ"), copy2(17, 18)),
     b"0123456789abcdefXYZ" + b"23456789abcdefXYZ2"),
    # Farthest legal offsets: exactly the bytes produced so far.
    (stream(2047 + 4, literal(bytes(range(256)) * 7 + b"z" * 255), copy1(2047, 4)),
     bytes(range(256)) * 7 + b"z" * 255 + bytes(range(4))),
    # Non-canonical (padded) varint header, as snappy's decoders accept.
    (b"\x83\x00" + literal(b"abc"), b"abc"),
])
def test_hand_built(packed, expected):
    assert uncompress(packed) == expected
    assert snappy.uncompress(packed) == expected


CORRUPT_CASES = [
    b"",                                      # no header
    b"\x80",                                  # header runs off the end
    b"\x80\x80\x80\x80\x80\x00",              # header longer than 5 bytes
    b"\xff\xff\xff\xff\x1f",                  # header over 32 bits
    stream(4, literal(b"abc")),               # header larger than the output
    stream(2, literal(b"abc")),               # header smaller than the output
    stream(3, literal(b"abc")) + b"\x00",     # element after the end (lit of 1, no byte)
    stream(3, literal(b"abc")[:-1]),          # literal runs past src
    stream(3, b"\xf0"),                       # long literal, missing length bytes
    stream(3, b"\xfc\xff\xff\xff\xff"),       # literal of 2**32 bytes
    stream(5, literal(b"a"), copy2(0, 4)),    # offset 0
    stream(5, literal(b"a"), copy2(2, 4)),    # offset before the output start
    stream(4, copy1(1, 4)),                   # copy with no output yet
    stream(64, literal(b"a"), copy2(1, 64)),  # copy runs past dst
    stream(5, literal(b"a"), copy4(1 << 31, 4)),
    stream(5, literal(b"a"), b"\x01"),        # copy1 missing its offset byte
    stream(5, literal(b"a"), b"\x02\x01"),    # copy2 truncated
    stream(5, literal(b"a"), b"\x03\x01\x00"),  # copy4 truncated
    varint(2 ** 32 - 1),                      # huge header, no body: refused
    varint(1000) + copy2(1, 64),              # more than 64/3 per input byte
]


def outcome(packed):
    """What uncompress does with packed: "corrupt", "ok", or the exception."""
    try:
        uncompress(packed)
    except CorruptionError:
        return "corrupt"
    except Exception as exc:             # reported, and fails the test
        return "raised %r" % exc
    return "ok"


@pytest.fixture(scope="module")
def corrupt_outcomes():
    # All CORRUPT_CASES in one child process: a crash fails these tests,
    # not the pytest run.
    return run_in_child("[test_snappy.outcome(p) for p in test_snappy.CORRUPT_CASES]",
                        timeout=120)


@pytest.mark.parametrize("index", range(len(CORRUPT_CASES)))
def test_corrupt(corrupt_outcomes, index):
    assert corrupt_outcomes[index] == "corrupt", CORRUPT_CASES[index]


def test_header_bound_is_exact_enough():
    # 64/3 expansion is reachable with copy2 elements of 64: the size check
    # must not refuse it.
    body = literal(b"a") + copy2(1, 64) * 300
    packed = stream(1 + 64 * 300, body)
    assert uncompress(packed) == b"a" * (1 + 64 * 300)


# -- damaged input in a child process ---------------------------------------------------

def judge(packed, counts):
    """Decode untrusted ``packed``: CorruptionError, or the bytes
    python-snappy decodes it to."""
    try:
        out = uncompress(packed)
    except CorruptionError:
        counts["corrupt"] += 1
        return
    counts["decoded"] += 1
    assert out == snappy.uncompress(packed)


def damage_samples(seed):
    rng = random.Random(seed)
    samples = [values_block(seed, 4096), generated("text", seed, 5000),
               generated("pattern", seed, 3000), rng.randbytes(300), b"q" * 700]
    samples += [snappy.compress(s) for s in samples[:2]]   # not ours only
    return [compress(s) for s in samples[:5]] + samples[5:]


def damage_loop(seed, rounds):
    """Truncations at every position, byte flips, rewritten headers."""
    rng = random.Random(seed)
    counts = collections.Counter()
    for packed in damage_samples(seed):
        for cut in range(len(packed)):
            # A cut stream always comes up short of its header: refused.
            judge(packed[:cut], counts)
            assert outcome(packed[:cut]) == "corrupt", (packed, cut)
        header = len(varint(len(uncompress(packed))))
        real = len(uncompress(packed))
        for fake in (0, 1, real - 1, real + 1, real * 2, 2 ** 32 - 1):
            if fake >= 0:
                judge(varint(fake) + packed[header:], counts)
        for _ in range(rounds):
            b = bytearray(packed)
            for _ in range(rng.choice((1, 1, 2, 5))):
                pos = rng.randrange(len(b))
                b[pos] = rng.randrange(256) if rng.random() < 0.5 else b[pos] ^ (1 << rng.randrange(8))
            judge(bytes(b), counts)
    return counts


def hypothesis_batch(seed, examples, counts):
    elements = st.one_of(
        st.binary(min_size=1, max_size=6),
        st.builds(copy2, st.integers(0, 300), st.integers(1, 64)),
        st.builds(copy1, st.integers(0, 2047), st.integers(4, 11)),
        st.builds(literal, st.binary(min_size=1, max_size=80)))
    structured = st.builds(lambda n, els: varint(n) + b"".join(els),
                           st.integers(0, 3000), st.lists(elements, max_size=30))

    @hypothesis_seed(seed)
    @settings(max_examples=examples, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=300), structured))
    def check(packed):
        judge(packed, counts)

    check()


def run_batch(seed, rounds, examples):
    """The child's work; returns outcome counts."""
    counts = damage_loop(seed, rounds)
    hypothesis_batch(seed, examples, counts)
    return dict(counts)


_CHILD = r"""
import json, resource, sys
# A runaway allocation must fail fast, not swap the machine.
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
sys.path.insert(0, {tests!r})
import test_snappy
print(json.dumps({expr}))
"""


def run_in_child(expr, timeout, note=""):
    """Evaluate expr (may use test_snappy) in a child Python; return its
    JSON value.  A crash, abort or hang fails the calling test."""
    script = _CHILD.format(tests=TESTS_DIR, expr=expr)
    try:
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail("%s: child hung (> %d s)\n%s" % (note or expr, timeout,
                                                     (exc.stderr or "")[-3000:]))
    assert proc.returncode == 0, ("%s: exit %d\n%s" % (note or expr, proc.returncode,
                                                      (proc.stdout + proc.stderr)[-6000:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_child(rounds, examples, timeout):
    seed = int(os.environ.get("KVCY_SNAPPY_SEED", random.randrange(2 ** 32)))
    counts = run_in_child("test_snappy.run_batch(%d, %d, %d)" % (seed, rounds, examples),
                          timeout, note="seed %d (rerun with KVCY_SNAPPY_SEED=%d)" % (seed, seed))
    return seed, counts


def test_damaged_input_in_child_process():
    seed, counts = run_child(rounds=2000, examples=2000, timeout=600)
    # Both outcomes must occur: flips in literal bytes decode (to what
    # python-snappy also decodes), most other damage is refused.
    assert counts.get("corrupt", 0) > 1000, (seed, counts)
    assert counts.get("decoded", 0) > 100, (seed, counts)


@pytest.mark.slow
def test_damaged_input_in_child_process_large():
    run_child(rounds=50000, examples=50000, timeout=3600)
