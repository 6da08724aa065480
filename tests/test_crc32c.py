"""Tests for kvcy._crc32c: published vectors, extend/mask laws, input types,
and agreement of the hardware path, the software path and a pure-Python
reference."""
import json
import os
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcy import _crc32c
from kvcy._crc32c import crc32c, extend, hardware_accelerated, mask, unmask

POLY = 0x82F63B78


def _byte_table():
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _byte_table()


def ref_crc32c(data, crc=0):
    """Pure-Python CRC32C, byte at a time (extend semantics like crc32c)."""
    c = crc ^ 0xFFFFFFFF
    table = _TABLE
    for b in bytes(data):
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def ref_crc32c_bitwise(data):
    """Pure-Python CRC32C, bit at a time: checks the table builder too."""
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ POLY if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


# -- published vectors ------------------------------------------------------

def test_check_value():
    assert crc32c(b"123456789") == 0xE3069283
    assert ref_crc32c_bitwise(b"123456789") == 0xE3069283


@pytest.mark.parametrize("data, expected", [
    # RFC 3720 section B.4 (also LevelDB's crc32c_test StandardResults).
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    # LevelDB crc32c_test: an iSCSI SCSI Read (10) command PDU.
    (bytes([
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, 0x28, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ]), 0xD9963A56),
])
def test_standard_results(data, expected):
    assert crc32c(data) == expected
    assert extend(0, data) == expected
    assert ref_crc32c_bitwise(data) == expected


def test_leveldb_values_and_extend():
    assert crc32c(b"a") != crc32c(b"foo")
    assert crc32c(b"hello world") == extend(crc32c(b"hello "), b"world")
    assert crc32c(b"world", crc32c(b"hello ")) == crc32c(b"hello world")


def test_leveldb_mask():
    crc = crc32c(b"foo")
    assert crc != mask(crc)
    assert crc != mask(mask(crc))
    assert crc == unmask(mask(crc))
    assert crc == unmask(unmask(mask(mask(crc))))


# -- laws -------------------------------------------------------------------

@given(st.binary(max_size=3000), st.data())
def test_extend_splits(data, draw):
    i = draw.draw(st.integers(0, len(data)))
    j = draw.draw(st.integers(i, len(data)))
    whole = crc32c(data)
    assert extend(crc32c(data[:i]), data[i:]) == whole
    assert extend(extend(crc32c(data[:i]), data[i:j]), data[j:]) == whole


@given(st.binary(max_size=200))
def test_matches_reference(data):
    assert crc32c(data) == ref_crc32c(data)


@given(st.integers(0, 2**32 - 1))
def test_mask_round_trip(x):
    assert unmask(mask(x)) == x
    assert mask(unmask(x)) == x
    assert 0 <= mask(x) < 2**32
    assert mask(x) != x


def test_mask_formula():
    # On-disk format: rotate right 15 bits, add 0xa282ead8 (mod 2**32).
    for x in (0, 1, 0xFFFFFFFF, 0x12345678, crc32c(b"foo")):
        rot = ((x >> 15) | (x << 17)) & 0xFFFFFFFF
        assert mask(x) == (rot + 0xA282EAD8) & 0xFFFFFFFF


# -- inputs -----------------------------------------------------------------

def test_input_types():
    data = b"The quick brown fox jumps over the lazy dog"
    expected = ref_crc32c(data)
    assert crc32c(data) == expected
    assert crc32c(bytearray(data)) == expected
    assert crc32c(memoryview(data)) == expected
    assert crc32c(memoryview(bytearray(data))[3:], crc32c(data[:3])) == expected
    assert extend(0, bytearray(data)) == expected


def test_empty():
    assert crc32c(b"") == 0
    assert crc32c(bytearray()) == 0
    assert crc32c(memoryview(b"abc")[3:]) == 0
    assert crc32c(b"", 0xDEADBEEF) == 0xDEADBEEF
    assert extend(0x12345678, b"") == 0x12345678


def test_str_raises_type_error():
    with pytest.raises(TypeError):
        crc32c("123456789")
    with pytest.raises(TypeError):
        extend(0, "abc")


def test_crc_out_of_range():
    with pytest.raises(OverflowError):
        crc32c(b"x", -1)
    with pytest.raises(OverflowError):
        extend(2**32, b"x")
    with pytest.raises(OverflowError):
        mask(2**32)


def test_non_contiguous_rejected():
    # Cython's buffer check raises BufferError (ValueError in some versions).
    with pytest.raises((BufferError, ValueError)):
        crc32c(memoryview(b"abcdef")[::2])


# -- large buffers, both paths ----------------------------------------------

def test_large_buffer():
    rng = random.Random(1)
    data = rng.randbytes(1 << 20)            # over the 4 KiB nogil threshold
    whole = crc32c(data)
    assert whole == ref_crc32c(data)
    # Chunked extension agrees, with chunks on both sides of the thresholds.
    crc = 0
    pos = 0
    for size in (1, 7, 255, 769, 4095, 4096, 24577, 100003):
        crc = extend(crc, memoryview(data)[pos:pos + size])
        pos += size
    assert extend(crc, data[pos:]) == whole


def test_sizes_around_block_boundaries():
    # Lengths that end exactly on and just around the 8-byte word, the
    # 3 x 256 and 3 x 8192 hardware blocks, and the nogil threshold.
    rng = random.Random(2)
    base = rng.randbytes(3 * 8192 * 2 + 64)
    view = memoryview(base)
    for n in (0, 1, 7, 8, 9, 767, 768, 769, 4095, 4096, 4097,
              24575, 24576, 24577, 2 * 24576 + 17):
        for off in (0, 1, 3, 7):
            chunk = view[off:off + n]
            assert crc32c(chunk) == ref_crc32c(chunk), (n, off)


_CHILD = r"""
import json, random, sys
from kvcy import _crc32c
cases = json.loads(sys.stdin.read())
out = []
for seed, off, n in cases:
    data = random.Random(seed).randbytes(off + n)
    out.append(_crc32c.crc32c(memoryview(data)[off:]))
print(json.dumps({"hw": _crc32c.hardware_accelerated(), "crcs": out}))
"""


def _cases():
    rng = random.Random(3)
    cases = [(seed, rng.randrange(1, 16, 2), rng.randrange(1, 70000, 2))
             for seed in range(40)]
    cases += [(100 + n, 1, n) for n in (1, 3, 767, 769, 4097, 24577, 73729)]
    return cases


def _run_child(software):
    env = dict(os.environ)
    env.pop("KVCY_CRC32C_SOFTWARE", None)
    if software:
        env["KVCY_CRC32C_SOFTWARE"] = "1"
    proc = subprocess.run([sys.executable, "-c", _CHILD], env=env,
                          input=json.dumps(_cases()), capture_output=True,
                          text=True, check=True, timeout=120)
    return json.loads(proc.stdout)


def test_hardware_and_software_agree():
    sw = _run_child(software=True)
    default = _run_child(software=False)
    assert sw["hw"] is False
    assert default["crcs"] == sw["crcs"]
    # Spot-check one case against the pure-Python reference.
    seed, off, n = _cases()[-3]
    data = random.Random(seed).randbytes(off + n)
    assert sw["crcs"][-3] == ref_crc32c(data[off:])


def test_threads_agree():
    # Large buffers run without the GIL; concurrent calls must not interfere.
    from concurrent.futures import ThreadPoolExecutor
    rng = random.Random(4)
    bufs = [rng.randbytes(rng.randrange(4096, 200000)) for _ in range(16)]
    expected = [crc32c(b) for b in bufs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(5):
            assert list(pool.map(crc32c, bufs)) == expected


def test_hardware_flag_is_bool():
    assert isinstance(hardware_accelerated(), bool)


def test_module_docstrings():
    assert _crc32c.__doc__
    assert "crc32c(" in (crc32c.__doc__ or "")     # embedsignature
