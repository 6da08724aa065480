"""Tests for kvcy.table_format: block handles, the footer, block trailers and
read_block's checks, and the properties block codec (kvcy.table_properties).

docs/format.md ("Table files") lists the checks a reader makes before it
uses anything: the file is at least 64 bytes, the magic, the footer
checksum, the format version, every handle inside the data part of the file
and at most MAX_BLOCK_BYTES, the block checksum, and for snappy the claimed
uncompressed length.  Each check is tested here on hand-made bytes, and the
handle checks with a fake file that records every read, so a handle that
would make the reader allocate or read gigabytes is shown to be refused
before any read happens (google/leveldb #1310, #1318).
"""
import os
import struct

import pytest
import snappy
from hypothesis import given, settings
from hypothesis import strategies as st

import kvcy.table_format as table_format
from kvcy._block_builder import BlockBuilder
from kvcy._coding import encode_varint32, encode_varint64
from kvcy._crc32c import crc32c, mask, unmask
from kvcy._table_builder import TableBuilder
from kvcy.dbformat import KIND_VALUE, encode_internal_key
from kvcy.env import PosixEnv
from kvcy.errors import CorruptionError
from kvcy.options import Options
from kvcy.table import Table
from kvcy.table_format import (BLOCK_TRAILER_BYTES, FOOTER_BYTES, MAX_BLOCK_BYTES,
                               NO_COMPRESSION, SNAPPY_COMPRESSION, TABLE_FORMAT_VERSION,
                               TABLE_MAGIC, BlockHandle, Footer, block_trailer, check_handle,
                               compress_block, read_block)
from kvcy.table_properties import TableProperties

ENV = PosixEnv()
PATH = "/db/000042.sst"
U64 = 2 ** 64


# -- helpers -------------------------------------------------------------------

class RecordingFile:
    """A random-access file over bytes that records reads.

    size may claim more bytes than data holds (a huge file, cheaply); reads
    past data return what exists, as pread does at EOF.  max_read makes any
    larger read fail the test at once.
    """

    def __init__(self, data, path=PATH, max_read=None):
        self.data = bytes(data)
        self.path = path
        self.reads = []
        self.max_read = max_read

    def read(self, offset, n):
        self.reads.append((offset, n))
        if self.max_read is not None:
            assert n <= self.max_read, "read of %d bytes at %d" % (n, offset)
        return self.data[offset:offset + n]


def stored(contents, compression=NO_COMPRESSION):
    """contents + its trailer, as a table holds a block."""
    return contents + block_trailer(contents, compression)


def fix_crc(block_with_trailer):
    """Recompute the trailer CRC of contents+trailer after an edit."""
    contents, ctype = block_with_trailer[:-5], block_with_trailer[-5]
    return contents + block_trailer(contents, ctype)


def footer_bytes(index=(0, 0), filter=(0, 0), properties=(0, 0), version=TABLE_FORMAT_VERSION,
                 magic=TABLE_MAGIC, fix=True):
    head = struct.pack("<QQQQQQI", *index, *filter, *properties, version)
    crc = mask(crc32c(head)) if fix else 0
    return head + struct.pack("<IQ", crc, magic)


def refix_footer(footer):
    head = footer[:52]
    return head + struct.pack("<I", mask(crc32c(head))) + footer[56:]


def one_entry_block(key=b"k", value=b"v"):
    b = BlockBuilder(1)
    b.add(encode_internal_key(key, 1, KIND_VALUE), value)
    return b.finish()


def assemble(blocks, index_raw=None, properties_raw=None, filter_raw=None):
    """A table put together by hand: data blocks (stored bytes), then filter,
    properties and index, and the footer.  Returns (bytes, handles)."""
    out = bytearray()
    handles = []
    for block in blocks:
        handles.append((len(out), len(block) - 5))
        out += block
    fh = (0, 0)
    if filter_raw is not None:
        fh = (len(out), len(filter_raw))
        out += stored(filter_raw)
    if properties_raw is None:
        properties_raw = TableProperties().encode()
    ph = (len(out), len(properties_raw))
    out += stored(properties_raw)
    if index_raw is None:
        b = BlockBuilder(1)
        for i, (off, size) in enumerate(handles):
            b.add(encode_internal_key(b"\xff" * (i + 1), 0, 0xFF),
                  encode_varint64(off) + encode_varint64(size))
        index_raw = b.finish()
    ih = (len(out), len(index_raw))
    out += stored(index_raw)
    out += footer_bytes(ih, fh, ph)
    return bytes(out), handles


def corruption_names(exc, *words):
    text = str(exc.value)
    for w in words:
        assert w in text, (w, text)


# -- BlockHandle -----------------------------------------------------------------

@settings(max_examples=300)
@given(st.integers(0, U64 - 1), st.integers(0, U64 - 1))
def test_block_handle_round_trip(offset, size):
    h = BlockHandle(offset, size)
    data = h.encode()
    assert data == encode_varint64(offset) + encode_varint64(size)
    decoded, end = BlockHandle.decode(data + b"tail")
    assert decoded == h and end == len(data)
    assert (decoded.offset, decoded.size) == (offset, size)
    assert decoded != BlockHandle(offset, size ^ 1)


@pytest.mark.parametrize("data", [b"", b"\x05", b"\x80", b"\x05\x80",
                                  b"\xff" * 10 + b"\x01\x00", b"\x00" + b"\xff" * 11])
def test_block_handle_decode_refuses_truncated_or_overlong(data):
    with pytest.raises(CorruptionError):
        BlockHandle.decode(data)


# -- Footer ------------------------------------------------------------------------

HANDLES = st.tuples(st.integers(0, U64 - 1), st.integers(0, U64 - 1))


@settings(max_examples=200)
@given(HANDLES, HANDLES, HANDLES)
def test_footer_round_trip(index, filter, properties):
    footer = Footer(BlockHandle(*index), BlockHandle(*filter), BlockHandle(*properties))
    data = footer.encode()
    assert len(data) == FOOTER_BYTES == 64
    assert data == footer_bytes(index, filter, properties)
    assert data[-8:] == b"kvcy_sst"
    assert struct.unpack_from("<I", data, 48)[0] == TABLE_FORMAT_VERSION == 1
    assert unmask(struct.unpack_from("<I", data, 52)[0]) == crc32c(data[:52])
    decoded = Footer.decode(data, PATH)
    assert (decoded.index, decoded.filter, decoded.properties) == (
        footer.index, footer.filter, footer.properties)


def test_magic_spells_kvcy_sst():
    assert struct.pack("<Q", TABLE_MAGIC) == b"kvcy_sst"


@pytest.mark.parametrize("n", [0, 1, 56, 63, 65, 128])
def test_footer_of_wrong_length(n):
    with pytest.raises(CorruptionError) as exc:
        Footer.decode(bytes(n), PATH)
    corruption_names(exc, PATH)


@pytest.mark.parametrize("pos", range(56, 64))
def test_bad_magic(pos):
    data = bytearray(footer_bytes((10, 20), (30, 40), (50, 60)))
    data[pos] ^= 0x01
    with pytest.raises(CorruptionError) as exc:
        Footer.decode(bytes(data), PATH)
    corruption_names(exc, PATH, "magic")


def test_bad_magic_is_reported_before_the_checksum():
    # A file that is not a kvcy table at all says so, not "checksum mismatch".
    data = footer_bytes(magic=0x1234, fix=False)
    with pytest.raises(CorruptionError) as exc:
        Footer.decode(data, PATH)
    corruption_names(exc, PATH, "magic")


@pytest.mark.parametrize("pos", range(0, 56))
def test_bad_footer_checksum(pos):
    data = bytearray(footer_bytes((10, 20), (30, 40), (50, 60)))
    data[pos] ^= 0x10
    with pytest.raises(CorruptionError) as exc:
        Footer.decode(bytes(data), PATH)
    corruption_names(exc, PATH, "checksum")


@pytest.mark.parametrize("version", [0, 3, 0x100, 0xFFFFFFFF])
def test_bad_format_version(version):
    data = footer_bytes((10, 20), (30, 40), (50, 60), version=version)
    with pytest.raises(CorruptionError) as exc:
        Footer.decode(data, PATH)
    corruption_names(exc, PATH, "version", str(version))


def test_a_partitioned_footer_naming_a_filter_block_is_corruption():
    # Version 2 keeps its filter in partitions: a filter handle means damage.
    data = footer_bytes((10, 20), (30, 40), (50, 60), version=2)
    with pytest.raises(CorruptionError) as exc:
        Footer.decode(data, PATH)
    corruption_names(exc, PATH, "partitioned", "filter")
    footer = Footer.decode(footer_bytes((10, 20), (0, 0), (50, 60), version=2), PATH)
    assert footer.partitioned and footer.version == 2


def real_table(tmp_path, n=100, **knobs):
    path = str(tmp_path / "000001.sst")
    file = ENV.new_writable_file(path)
    builder = TableBuilder(file, Options(**knobs), path)
    for i in range(n):
        builder.add(encode_internal_key(b"key%05d" % i, 9, KIND_VALUE), b"value %d" % i * 3)
    builder.finish()
    file.close()
    with open(path, "rb") as f:
        return path, f.read()


@pytest.mark.parametrize("what,edit", [
    ("magic", lambda d: d[:-1] + bytes([d[-1] ^ 0x80])),
    ("checksum", lambda d: d[:-64] + bytes([d[-64] ^ 1]) + d[-63:]),
    ("version", lambda d: d[:-64] + refix_footer(d[-64:-16] + struct.pack("<I", 9) + d[-12:])),
])
def test_footer_errors_name_the_table_file(tmp_path, what, edit):
    path, data = real_table(tmp_path)
    with open(path, "wb") as f:
        f.write(edit(data))
    with pytest.raises(CorruptionError) as exc:
        Table.open(ENV.new_random_access_file(path), len(data), 1)
    corruption_names(exc, path, what)


# -- files too short, sizes that lie -----------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 8, 63])
def test_file_shorter_than_a_footer(tmp_path, n):
    path, data = real_table(tmp_path)
    with open(path, "wb") as f:
        f.write(data[-n:] if n else b"")
    file = RecordingFile(data[-n:] if n else b"", path)
    with pytest.raises(CorruptionError) as exc:
        Table.open(file, n, 1)
    corruption_names(exc, path)
    assert file.reads == []
    with pytest.raises(CorruptionError) as exc:
        Table.open(ENV.new_random_access_file(path), n, 1)
    corruption_names(exc, path)


def test_exactly_a_footer_and_nothing_else():
    # 64 bytes: a valid footer whose handles cannot fit (no room for a block).
    data = footer_bytes((0, 0), (0, 0), (0, 0))
    file = RecordingFile(data, max_read=64)
    with pytest.raises(CorruptionError) as exc:
        Table.open(file, 64, 1)
    corruption_names(exc, PATH, "index")


@pytest.mark.parametrize("delta", [-1, 1, 7, 64, 10 ** 6])
def test_file_size_that_lies(tmp_path, delta):
    # The MANIFEST says one size, the file has another (a torn or swapped file).
    path, data = real_table(tmp_path)
    with pytest.raises(CorruptionError) as exc:
        Table.open(ENV.new_random_access_file(path), len(data) + delta, 1)
    corruption_names(exc, path)


# -- handles outside the file: refused before any read ---------------------------------

DATA_END = 1000                      # data part of the fake 1064-byte file
FILE_SIZE = DATA_END + FOOTER_BYTES


@pytest.mark.parametrize("offset,size", [
    (FILE_SIZE + 1, 0),                     # offset past the end of the file
    (FILE_SIZE, 0),
    (DATA_END + 1, 0),                      # offset inside the footer
    (DATA_END, 0),                          # no room for the trailer
    (DATA_END - 4, 0),
    (U64 - 1, 0),
    (0, DATA_END - 4),                      # size past the data part
    (0, DATA_END),
    (0, FILE_SIZE),
    (500, DATA_END - 500 - 4),
    (10, U64 - 10),                         # offset + size wraps to 0
    (10, U64 - 15),                         # offset + size + trailer wraps to 0
    (10, U64 - 16),
    (1, U64 - 1),
    (U64 - 1, U64 - 1),
    (0, 2 ** 63),
    (2 ** 63, 2 ** 63),
])
def test_handle_outside_the_file_is_refused_before_reading(offset, size):
    file = RecordingFile(bytes(FILE_SIZE))
    with pytest.raises(CorruptionError) as exc:
        read_block(file, BlockHandle(offset, size), FILE_SIZE, PATH, "data")
    assert file.reads == []
    corruption_names(exc, PATH, "data")
    with pytest.raises(CorruptionError):
        check_handle(BlockHandle(offset, size), FILE_SIZE, PATH, "data")


@pytest.mark.parametrize("offset,size", [(0, DATA_END - 5), (DATA_END - 5, 0), (400, 595),
                                         (0, 0), (17, 100)])
def test_handle_inside_the_file_is_read(offset, size):
    contents = bytes(range(256)) * 4
    data = bytearray(FILE_SIZE)
    data[offset:offset + size + 5] = stored(contents[:size])
    file = RecordingFile(bytes(data))
    check_handle(BlockHandle(offset, size), FILE_SIZE, PATH, "data")
    assert read_block(file, BlockHandle(offset, size), FILE_SIZE, PATH) == contents[:size]
    assert file.reads == [(offset, size + BLOCK_TRAILER_BYTES)]


def test_handle_over_max_block_bytes_is_refused_in_a_huge_file():
    # The file is big enough for the block, but no block kvcy writes is.
    huge = 1 << 40
    file = RecordingFile(b"", max_read=0)
    for size in (MAX_BLOCK_BYTES + 1, MAX_BLOCK_BYTES + 4096, 1 << 36):
        with pytest.raises(CorruptionError):
            read_block(file, BlockHandle(1000, size), huge, PATH, "data")
    assert file.reads == []
    # At exactly MAX_BLOCK_BYTES the handle is accepted and the (short) read
    # is what fails.
    file = RecordingFile(b"")
    with pytest.raises(CorruptionError) as exc:
        read_block(file, BlockHandle(1000, MAX_BLOCK_BYTES), huge, PATH, "data")
    assert file.reads == [(1000, MAX_BLOCK_BYTES + 5)]
    corruption_names(exc, "truncated")


@pytest.mark.parametrize("which", ["index", "filter", "properties"])
@pytest.mark.parametrize("handle", [(0, 1 << 40), (1 << 40, 5), (7, U64 - 12),
                                    (0, MAX_BLOCK_BYTES + 1)])
def test_table_open_refuses_footer_handles_before_reading(which, handle):
    block = stored(one_entry_block())
    data, _ = assemble([block], filter_raw=b"\x00" * 8 + b"\x06")
    footer = Footer.decode(data[-64:])
    handles = {"index": footer.index, "filter": footer.filter,
               "properties": footer.properties}
    handles[which] = BlockHandle(*handle)
    data = data[:-64] + Footer(handles["index"], handles["filter"],
                               handles["properties"]).encode()
    # Only the footer and the (valid) blocks before the bad one may be read.
    file = RecordingFile(data, max_read=len(data))
    with pytest.raises(CorruptionError) as exc:
        Table.open(file, len(data), 1)
    corruption_names(exc, PATH, which)
    assert all(off + n <= len(data) for off, n in file.reads)


@pytest.mark.parametrize("handle", [(0, 1 << 40), (1 << 40, 5), (7, U64 - 12), (U64 - 1, 1),
                                    (0, MAX_BLOCK_BYTES + 1)])
def test_data_handle_in_the_index_refused_before_reading(handle):
    b = BlockBuilder(1)
    b.add(encode_internal_key(b"k", 0, 0xFF), encode_varint64(handle[0]) + encode_varint64(handle[1]))
    data, _ = assemble([stored(one_entry_block())], index_raw=b.finish())
    file = RecordingFile(data, max_read=len(data))
    table = Table.open(file, len(data), 1)
    reads = len(file.reads)
    with pytest.raises(CorruptionError) as exc:
        table.get(b"k", 5)
    corruption_names(exc, PATH)
    it = table.iterator()
    with pytest.raises(CorruptionError):
        it.seek_to_first()
    assert not it.valid() and isinstance(it.status(), CorruptionError)
    assert len(file.reads) == reads


@pytest.mark.parametrize("value", [b"", b"\x05", b"\x00\x05\x00", b"\x80\x80",
                                   b"\xff" * 11, b"\x00\x00\x00"])
def test_malformed_handle_in_the_index(value):
    b = BlockBuilder(1)
    b.add(encode_internal_key(b"k", 0, 0xFF), value)
    data, _ = assemble([stored(one_entry_block())], index_raw=b.finish())
    table = Table.open(RecordingFile(data), len(data), 1)
    with pytest.raises(CorruptionError):
        table.get(b"k", 5)
    it = table.iterator()
    with pytest.raises(CorruptionError):
        it.seek_to_last()


# -- block trailers and checksums ------------------------------------------------------

def test_block_trailer_bytes():
    contents = b"hello block"
    for ctype in (NO_COMPRESSION, SNAPPY_COMPRESSION, 7):
        t = block_trailer(contents, ctype)
        assert len(t) == BLOCK_TRAILER_BYTES
        assert t[0] == ctype
        (crc,) = struct.unpack("<I", t[1:])
        assert unmask(crc) == crc32c(contents + bytes([ctype]))


def test_read_block_round_trip_raw_and_snappy():
    raw = b"abcdefgh" * 500
    for compression in ("none", "snappy"):
        contents, ctype = compress_block(raw, compression)
        assert ctype == (SNAPPY_COMPRESSION if compression == "snappy" else NO_COMPRESSION)
        data = b"xx" + stored(contents, ctype) + bytes(FOOTER_BYTES)
        file = RecordingFile(data)
        assert read_block(file, BlockHandle(2, len(contents)), len(data), PATH) == raw


def test_read_block_checksum_mismatch_every_byte():
    contents = b"some block contents"
    block = stored(contents)
    for pos in range(len(block)):
        for bit in (0x01, 0x80):
            bad = bytearray(block)
            bad[pos] ^= bit
            data = bytes(bad) + bytes(FOOTER_BYTES)
            with pytest.raises(CorruptionError) as exc:
                read_block(RecordingFile(data), BlockHandle(0, len(contents)), len(data), PATH,
                           "index")
            # A flipped compression byte also fails the CRC: it is covered.
            corruption_names(exc, PATH, "index", "checksum", "offset 0")


def test_read_block_truncated_read():
    contents = b"0123456789"
    data = stored(contents) + bytes(FOOTER_BYTES)
    # The file says 1000 bytes more than it holds: the handle passes, the read is short.
    file = RecordingFile(data[:8])
    with pytest.raises(CorruptionError) as exc:
        read_block(file, BlockHandle(0, len(contents)), len(data), PATH)
    corruption_names(exc, PATH, "truncated")


@pytest.mark.parametrize("ctype", [2, 3, 7, 0x80, 0xFF])
def test_unknown_compression_byte(ctype):
    contents = b"perfectly fine bytes"
    data = stored(contents, ctype) + bytes(FOOTER_BYTES)
    with pytest.raises(CorruptionError) as exc:
        read_block(RecordingFile(data), BlockHandle(0, len(contents)), len(data), PATH)
    corruption_names(exc, PATH, "compression", str(ctype))


# -- snappy blocks --------------------------------------------------------------------------

@pytest.fixture
def snappy_calls(monkeypatch):
    calls = []
    real = snappy.uncompress

    def recording(data, *args, **kwargs):
        calls.append(len(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(table_format.snappy, "uncompress", recording)
    return calls


@pytest.mark.parametrize("contents", [
    encode_varint32(MAX_BLOCK_BYTES + 1) + bytes(10),
    encode_varint32(0xFFFFFFFF) + bytes(10),
    encode_varint32(1 << 31) + bytes(10),
    b"\xff\xff\xff\xff\x7f" + bytes(10),    # varint32 with a 5th byte over 0x0f
    b"\xff\xff\xff\xff\xff\xff\xff\x01",   # overlong
    b"\x80\x80",                           # truncated by the end of the block
    b"",                                   # no header at all
])
def test_snappy_header_claiming_a_huge_length_is_refused_before_decompressing(contents,
                                                                             snappy_calls):
    data = stored(contents, SNAPPY_COMPRESSION) + bytes(FOOTER_BYTES)
    with pytest.raises(CorruptionError) as exc:
        read_block(RecordingFile(data), BlockHandle(0, len(contents)), len(data), PATH, "data")
    corruption_names(exc, PATH)
    assert snappy_calls == []


def test_snappy_header_disagreeing_with_the_stream(snappy_calls):
    raw = b"hello world! " * 40
    packed = snappy.compress(raw)
    n, pos = len(raw), len(encode_varint32(len(raw)))
    for claim in (n - 1, n + 1, 0, n * 2, 1):
        contents = encode_varint32(claim) + packed[pos:]
        data = stored(contents, SNAPPY_COMPRESSION) + bytes(FOOTER_BYTES)
        with pytest.raises(CorruptionError):
            read_block(RecordingFile(data), BlockHandle(0, len(contents)), len(data), PATH)
    assert len(snappy_calls) == 5


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 200))
def test_snappy_garbage_with_a_good_crc(garbage, claim):
    # Random bytes after a plausible header, with the CRC fixed: the snappy
    # decoder itself must catch them; the result is the true decompression
    # of those bytes or CorruptionError, never another exception.
    contents = encode_varint32(claim) + garbage
    data = stored(contents, SNAPPY_COMPRESSION) + bytes(FOOTER_BYTES)
    try:
        expected = snappy.uncompress(contents)
    except Exception:
        expected = None
    try:
        got = read_block(RecordingFile(data), BlockHandle(0, len(contents)), len(data), PATH)
    except CorruptionError as exc:
        assert PATH in str(exc)
        got = None
    assert got == expected
    if got is not None:
        assert len(got) == claim


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_damaged_snappy_stream_with_a_good_crc(data):
    raw = b"".join(b"entry-%d;" % i * (i % 5 + 1) for i in range(100))
    packed, ctype = compress_block(raw, "snappy")
    assert ctype == SNAPPY_COMPRESSION
    bad = bytearray(packed)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(bad) - 1))
        bad[pos] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        del bad[data.draw(st.integers(0, len(bad))):]
    contents = bytes(bad)
    file_data = stored(contents, SNAPPY_COMPRESSION) + bytes(FOOTER_BYTES)
    try:
        got = read_block(RecordingFile(file_data), BlockHandle(0, len(contents)),
                         len(file_data), PATH)
    except CorruptionError:
        return
    assert got == snappy.uncompress(contents)


# -- compression choice ----------------------------------------------------------------

def test_compress_block_choices():
    text = b"abcdefgh" * 100
    assert compress_block(text, "none") == (text, NO_COMPRESSION)
    packed, ctype = compress_block(text, "snappy")
    assert ctype == SNAPPY_COMPRESSION and snappy.uncompress(packed) == text
    assert len(packed) <= len(text) - len(text) // 8
    # Tiny blocks are never compressed.
    small = b"a" * 64
    assert compress_block(small, "snappy") == (small, NO_COMPRESSION)
    # Incompressible bytes stay raw.
    noise = os.urandom(4096)
    assert compress_block(noise, "snappy") == (noise, NO_COMPRESSION)


@settings(max_examples=200)
@given(st.binary(min_size=65, max_size=2000) | st.builds(lambda b, n: b * n,
                                                         st.binary(min_size=1, max_size=9),
                                                         st.integers(8, 300)))
def test_compressed_only_when_it_saves_an_eighth(raw):
    contents, ctype = compress_block(raw, "snappy")
    packed = snappy.compress(raw)
    if len(raw) > 64 and len(packed) <= len(raw) - len(raw) // 8:
        assert (contents, ctype) == (packed, SNAPPY_COMPRESSION)
    else:
        assert (contents, ctype) == (raw, NO_COMPRESSION)


# -- the properties block codec ------------------------------------------------------------

def test_properties_round_trip():
    p = TableProperties()
    for i, name in enumerate(("num_entries", "num_deletions", "raw_key_bytes",
                              "raw_value_bytes", "raw_data_bytes", "stored_data_bytes",
                              "data_blocks", "smallest_sequence", "largest_sequence")):
        setattr(p, name, (1 << (7 * i)) + i)
    p.largest_sequence = 2 ** 56 - 1
    p.smallest = b"\x00" * 9
    p.largest = b"\xff" * 300
    assert TableProperties.decode(p.encode()).as_dict() == p.as_dict()


@pytest.mark.parametrize("data", [
    b"",                                        # no count
    b"\x01",                                    # count 1, nothing follows
    b"\x01\x0bnum_entries",                     # name without value
    b"\x01\x0bnum_entries\x05\x01",             # value runs past the block
    b"\x01\x0bnum_entries\x00",                 # empty integer
    b"\x01\x0bnum_entries\x02\x01\x01",         # integer with trailing bytes
    b"\x01\x0bnum_entries\x02\x80\x80",         # truncated varint
    b"\x01\x0bnum_entries\x01\x01junk",         # bytes after the last field
    b"\x02\x0bnum_entries\x01\x01",             # count larger than the fields
    b"\xff\xff\xff\xff\x0f",                    # a huge count
    b"\x01\xff\xff\xff\xff\x0f",                # a huge name length
])
def test_properties_decode_refuses_damage(data):
    with pytest.raises(CorruptionError):
        TableProperties.decode(data)


def test_table_open_refuses_bad_properties_with_a_good_crc():
    data, _ = assemble([stored(one_entry_block())], properties_raw=b"\x03\x01a")
    with pytest.raises(CorruptionError):
        Table.open(RecordingFile(data), len(data), 1)


# -- a hand-assembled table reads back ------------------------------------------------------

def test_hand_assembled_table_reads():
    # The helpers above build what TableBuilder builds; a sanity check that
    # the crafted-table tests start from a table that works.
    blocks = [stored(one_entry_block(b"k%d" % i, b"v%d" % i)) for i in range(3)]
    b = BlockBuilder(1)
    offset = 0
    for i, block in enumerate(blocks):
        b.add(encode_internal_key(b"k%d" % i, 1, KIND_VALUE),
              encode_varint64(offset) + encode_varint64(len(block) - 5))
        offset += len(block)
    data, _ = assemble(blocks, index_raw=b.finish())
    table = Table.open(RecordingFile(data), len(data), 1)
    assert [table.get(b"k%d" % i, 1) for i in range(3)] == [b"v0", b"v1", b"v2"]
    assert table.get(b"k1", 0) is None
