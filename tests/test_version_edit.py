"""Tests for kvcy.version_edit (the MANIFEST record) and Version.apply.

After LevelDB's version_edit_test (encode/decode round trip) plus the
decoder's refusals: unknown tags, truncation anywhere inside a field,
lengths past the record, levels out of range, keys too short to hold the
8-byte tag.  Version.apply keeps L0 newest first (by file number) and
L1+ sorted by smallest internal key.
"""
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcy._coding import encode_varint32
from kvcy.dbformat import KIND_DELETE, KIND_VALUE, MAX_SEQUENCE, encode_internal_key
from kvcy.errors import CorruptionError
from kvcy.version_edit import (COMPACT_POINTER, DELETED_FILE, LAST_SEQUENCE, LOG_NUMBER,
                               MAX_LEVELS_ON_DISK, NEW_FILE, NEXT_FILE_NUMBER, FileMetaData,
                               VersionEdit)
from kvcy.version_set import NUM_LEVELS, Version

U64 = st.integers(min_value=0, max_value=2**64 - 1)
LEVELS = st.integers(min_value=0, max_value=MAX_LEVELS_ON_DISK - 1)
IKEYS = st.builds(encode_internal_key, st.binary(max_size=12),
                  st.integers(min_value=0, max_value=MAX_SEQUENCE),
                  st.sampled_from([KIND_DELETE, KIND_VALUE]))
METAS = st.builds(FileMetaData, U64, U64, IKEYS, IKEYS)


def ikey(user_key, seq=1, kind=KIND_VALUE):
    return encode_internal_key(user_key, seq, kind)


def meta(number, smallest=b"a", largest=b"z", size=1000, sseq=1, lseq=1):
    return FileMetaData(number, size, ikey(smallest, sseq), ikey(largest, lseq))


def lenbytes(data):
    return encode_varint32(len(data)) + data


@st.composite
def edits(draw):
    edit = VersionEdit(
        log_number=draw(st.none() | U64),
        next_file_number=draw(st.none() | U64),
        last_sequence=draw(st.none() | U64),
    )
    edit.compact_pointers = draw(st.lists(st.tuples(LEVELS, IKEYS), max_size=3))
    edit.deleted_files = draw(st.sets(st.tuples(LEVELS, U64), max_size=3))
    edit.new_files = draw(st.lists(st.tuples(LEVELS, METAS), max_size=3))
    return edit


# -- round trip -----------------------------------------------------------------------

def test_tag_values_never_change():
    assert (LOG_NUMBER, NEXT_FILE_NUMBER, LAST_SEQUENCE, COMPACT_POINTER, DELETED_FILE,
            NEW_FILE) == (2, 3, 4, 5, 6, 7)


def test_empty_edit():
    assert VersionEdit().encode() == b""
    assert VersionEdit.decode(b"") == VersionEdit()


def test_known_encoding():
    edit = VersionEdit(log_number=5, next_file_number=300, last_sequence=0)
    edit.compact_pointers.append((1, ikey(b"cp", 7)))
    edit.delete_file(2, 9)
    edit.add_file(3, FileMetaData(10, 4096, ikey(b"a", 1), ikey(b"b", 2)))
    expected = (b"\x02\x05" + b"\x03\xac\x02" + b"\x04\x00" +
                b"\x05\x01" + lenbytes(b"cp" + struct.pack("<Q", (7 << 8) | 1)) +
                b"\x06\x02\x09" +
                b"\x07\x03\x0a\x80\x20" +
                lenbytes(b"a" + struct.pack("<Q", (1 << 8) | 1)) +
                lenbytes(b"b" + struct.pack("<Q", (2 << 8) | 1)))
    assert edit.encode() == expected
    assert VersionEdit.decode(expected) == edit


def test_version_edit_test_round_trip():
    # version_edit_test's EncodeDecode: four rounds of adds, deletes, pointers.
    big = 1 << 50
    edit = VersionEdit()
    for i in range(4):
        edit.add_file(3, FileMetaData(big + 300 + i, big + 400 + i,
                                      encode_internal_key(b"foo", big + 500 + i, KIND_VALUE),
                                      encode_internal_key(b"zoo", big + 600 + i, KIND_DELETE)))
        edit.delete_file(4, big + 700 + i)
        edit.compact_pointers.append((i, encode_internal_key(b"x", big + 900 + i, KIND_VALUE)))
        assert VersionEdit.decode(edit.encode()) == edit
    edit.log_number = big + 100
    edit.next_file_number = big + 200
    edit.last_sequence = big + 1000
    assert VersionEdit.decode(edit.encode()) == edit


@settings(max_examples=40, deadline=None)
@given(edits())
def test_encode_decode_round_trip(edit):
    enc = edit.encode()
    dec = VersionEdit.decode(enc)
    assert dec == edit
    assert dec.encode() == enc
    assert VersionEdit.decode(memoryview(enc)) == edit
    assert VersionEdit.decode(bytearray(enc)) == edit


def test_decode_returns_bytes_keys():
    edit = VersionEdit()
    edit.add_file(1, meta(4))
    dec = VersionEdit.decode(bytearray(edit.encode()))
    _, m = dec.new_files[0]
    assert type(m.smallest) is bytes and type(m.largest) is bytes


def test_fields_may_repeat_last_one_wins():
    data = b"\x02\x05" + b"\x02\x07"
    assert VersionEdit.decode(data).log_number == 7


# -- refused input ----------------------------------------------------------------------

@pytest.mark.parametrize("tag", [0, 1, 8, 9, 10, 100, 2**32 - 1])
def test_unknown_tag_is_corruption(tag):
    with pytest.raises(CorruptionError, match="unknown tag %d" % tag):
        VersionEdit.decode(encode_varint32(tag) + b"\x00" * 8)
    # also after a good field
    with pytest.raises(CorruptionError, match="unknown tag"):
        VersionEdit.decode(b"\x02\x05" + encode_varint32(tag) + b"\x00" * 8)


def _one_field_edits():
    yield VersionEdit(log_number=2**40)
    yield VersionEdit(next_file_number=300)
    yield VersionEdit(last_sequence=MAX_SEQUENCE)
    e = VersionEdit()
    e.compact_pointers.append((2, ikey(b"pointer", 5)))
    yield e
    e = VersionEdit()
    e.delete_file(6, 2**33)
    yield e
    e = VersionEdit()
    e.add_file(1, FileMetaData(2**35, 2**20, ikey(b"small", 3), ikey(b"large", 4)))
    yield e


@pytest.mark.parametrize("edit", list(_one_field_edits()))
def test_every_truncation_of_a_field_is_corruption(edit):
    enc = edit.encode()
    for cut in range(1, len(enc)):
        with pytest.raises(CorruptionError):
            VersionEdit.decode(enc[:cut])


@settings(max_examples=50, deadline=None)
@given(edits(), st.data())
def test_truncation_is_corruption_or_a_field_prefix(edit, data):
    enc = edit.encode()
    if not enc:
        return
    cut = data.draw(st.integers(min_value=0, max_value=len(enc) - 1))
    try:
        dec = VersionEdit.decode(enc[:cut])
    except CorruptionError:
        return
    # Only a cut between fields decodes, and then to exactly what precedes it.
    assert dec.encode() == enc[:cut]


def test_length_past_the_record_is_corruption():
    good = lenbytes(ikey(b"k"))
    for data in (b"\x05\x01" + b"\x20" + ikey(b"k"),                  # compact pointer
                 b"\x07\x01\x02\x03" + b"\x20" + ikey(b"k") + good,   # smallest
                 b"\x07\x01\x02\x03" + good + b"\x7f" + ikey(b"k"),   # largest
                 b"\x07\x01\x02\x03" + good + b"\xff\xff\xff\xff\x0f"):
        with pytest.raises(CorruptionError, match="runs past"):
            VersionEdit.decode(data)


def test_overlong_varints_are_corruption():
    for data in (b"\x02" + b"\x80" * 10 + b"\x00",                 # number: 11-byte varint64
                 b"\x80\x80\x80\x80\x80\x00",                       # tag: 6-byte varint32
                 b"\x06" + b"\x80\x80\x80\x80\x10" + b"\x01"):      # level > 32 bits
        with pytest.raises(CorruptionError):
            VersionEdit.decode(data)


@pytest.mark.parametrize("tag_and_level", [b"\x05", b"\x06", b"\x07"])
def test_level_out_of_range_is_corruption(tag_and_level):
    rest = {b"\x05": lenbytes(ikey(b"k")), b"\x06": b"\x01",
            b"\x07": b"\x01\x02" + lenbytes(ikey(b"a")) + lenbytes(ikey(b"b"))}[tag_and_level]
    ok = tag_and_level + encode_varint32(MAX_LEVELS_ON_DISK - 1) + rest
    VersionEdit.decode(ok)
    for level in (MAX_LEVELS_ON_DISK, 1000, 2**32 - 1):
        with pytest.raises(CorruptionError, match="level"):
            VersionEdit.decode(tag_and_level + encode_varint32(level) + rest)


@pytest.mark.parametrize("short", range(8))
def test_file_keys_shorter_than_the_tag_are_corruption(short):
    key = b"k" * short
    for smallest, largest in ((key, ikey(b"z")), (ikey(b"a"), key)):
        data = b"\x07\x01\x05\x10" + lenbytes(smallest) + lenbytes(largest)
        with pytest.raises(CorruptionError, match="shorter than its tag"):
            VersionEdit.decode(data)
    # Exactly a tag (empty user key) is fine.
    data = b"\x07\x01\x05\x10" + lenbytes(ikey(b"")) + lenbytes(ikey(b""))
    assert VersionEdit.decode(data).new_files[0][1].smallest == ikey(b"")


@pytest.mark.parametrize("short", [0, 7])
def test_compact_pointer_shorter_than_the_tag_is_corruption(short):
    with pytest.raises(CorruptionError):
        VersionEdit.decode(b"\x05\x01" + lenbytes(b"p" * short))


@settings(max_examples=50, deadline=None)
@given(edits(), st.data())
def test_random_byte_edits_decode_or_raise_corruption(edit, data):
    enc = edit.encode()
    if not enc:
        return
    pos = data.draw(st.integers(min_value=0, max_value=len(enc) - 1))
    value = data.draw(st.integers(min_value=0, max_value=255))
    damaged = bytearray(enc)
    damaged[pos] = value
    try:
        dec = VersionEdit.decode(bytes(damaged))
    except CorruptionError:
        return
    for _, m in dec.new_files:
        assert len(m.smallest) >= 8 and len(m.largest) >= 8
    for level, _ in dec.compact_pointers:
        assert level < MAX_LEVELS_ON_DISK


# -- Version.apply ------------------------------------------------------------------------

def numbers(version, level):
    return [f.number for f in version.files[level]]


def test_level0_newest_first_by_number():
    v = Version()
    edit = VersionEdit()
    for n in (5, 12, 3, 40, 7):
        edit.add_file(0, meta(n))
    v = v.apply(edit)
    assert numbers(v, 0) == [40, 12, 7, 5, 3]
    edit = VersionEdit()
    edit.add_file(0, meta(8))
    edit.add_file(0, meta(41))
    v = v.apply(edit)
    assert numbers(v, 0) == [41, 40, 12, 8, 7, 5, 3]


def test_level1_by_smallest_internal_key():
    v = Version()
    edit = VersionEdit()
    # Raw bytes would put b"a\x00"+tag before b"a"+tag(seq 1) and seq 1 before seq 2;
    # internal order is user key ascending, then sequence descending.
    edit.add_file(1, meta(1, smallest=b"ab", largest=b"ac"))
    edit.add_file(1, meta(2, smallest=b"a", largest=b"a", sseq=1, lseq=1))
    edit.add_file(1, meta(3, smallest=b"a\x00", largest=b"a\x00"))
    edit.add_file(1, meta(4, smallest=b"a", largest=b"a", sseq=2, lseq=2))
    edit.add_file(1, meta(5, smallest=b"", largest=b""))
    edit.add_file(1, meta(6, smallest=b"\xff", largest=b"\xff"))
    edit.add_file(1, meta(7, smallest=b"a", largest=b"a", sseq=256, lseq=256))
    v = v.apply(edit)
    assert numbers(v, 1) == [5, 7, 4, 2, 3, 1, 6]


def test_every_level_above_zero_is_sorted():
    v = Version()
    edit = VersionEdit()
    for level in range(1, NUM_LEVELS):
        for n, key in enumerate((b"m", b"c", b"x", b"a"), start=10 * level):
            edit.add_file(level, meta(n, smallest=key, largest=key + b"z"))
    v = v.apply(edit)
    for level in range(1, NUM_LEVELS):
        smallest = [f.smallest[:-8] for f in v.files[level]]
        assert smallest == [b"a", b"c", b"m", b"x"]


def test_apply_does_not_change_the_base_version():
    base = Version().apply(_adds((0, 1), (1, 2)))
    before = [list(level) for level in base.files]
    edit = VersionEdit()
    edit.delete_file(0, 1)
    edit.add_file(2, meta(3))
    new = base.apply(edit)
    assert base.files == before
    assert numbers(new, 0) == [] and numbers(new, 1) == [2] and numbers(new, 2) == [3]
    assert new is not base
    assert new.files is not base.files


def _adds(*pairs):
    edit = VersionEdit()
    for level, n in pairs:
        edit.add_file(level, meta(n, smallest=b"%05d" % n, largest=b"%05d~" % n))
    return edit


def test_delete_only_matches_level_and_number():
    v = Version().apply(_adds((0, 1), (1, 2), (2, 3)))
    edit = VersionEdit()
    edit.delete_file(1, 1)          # file 1 is in L0, not L1: nothing happens
    edit.delete_file(2, 3)
    edit.delete_file(5, 99)         # unknown file: ignored
    v = v.apply(edit)
    assert numbers(v, 0) == [1] and numbers(v, 1) == [2] and numbers(v, 2) == []


def test_trivial_move_deletes_then_adds():
    # A compaction that moves a file down deletes (L, n) and adds (L+1, n).
    v = Version().apply(_adds((1, 7), (1, 8)))
    edit = VersionEdit()
    edit.delete_file(1, 7)
    edit.add_file(2, meta(7, smallest=b"00007", largest=b"00007~"))
    v = v.apply(edit)
    assert numbers(v, 1) == [8]
    assert numbers(v, 2) == [7]


def test_add_to_a_level_past_the_last_is_corruption():
    edit = VersionEdit()
    edit.add_file(NUM_LEVELS, meta(1))
    with pytest.raises(CorruptionError):
        Version().apply(edit)
    assert numbers(Version(num_levels=NUM_LEVELS + 1).apply(edit), NUM_LEVELS) == [1]


def test_live_numbers_and_sizes():
    v = Version().apply(_adds((0, 1), (0, 2), (3, 9)))
    assert v.live_numbers() == {1, 2, 9}
    assert v.num_files(0) == 2
    assert v.level_bytes(0) == 2000
    assert v.level_bytes(1) == 0


OPS = st.lists(st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(0, NUM_LEVELS - 1), st.binary(max_size=3),
              st.integers(0, 5)),
    st.tuples(st.just("del"), st.integers(0, NUM_LEVELS - 1), st.integers(1, 30)),
), max_size=8), max_size=6)


@settings(max_examples=50, deadline=None)
@given(OPS)
def test_apply_matches_a_model(script):
    """Edits add files (fresh numbers) and delete (level, number) pairs; compare to a dict."""
    model = {}                      # (level, number) -> FileMetaData
    v = Version()
    next_number = 1
    for ops in script:
        edit = VersionEdit()
        for op in ops:
            if op[0] == "add":
                _, level, key, seq = op
                m = FileMetaData(next_number, 10, ikey(key, seq), ikey(key + b"\xff", seq))
                next_number += 1
                edit.add_file(level, m)
            else:
                edit.delete_file(op[1], op[2])
        for pair in edit.deleted_files:
            model.pop(pair, None)
        for level, m in edit.new_files:
            model[(level, m.number)] = m
        v = v.apply(edit)
        for level in range(NUM_LEVELS):
            got = v.files[level]
            assert sorted(f.number for f in got) == sorted(
                n for (lv, n) in model if lv == level)
            assert all(model[(level, f.number)] is f for f in got)
            if level == 0:
                assert [f.number for f in got] == sorted((f.number for f in got), reverse=True)
            else:
                keys = [(f.smallest[:-8], -int.from_bytes(f.smallest[-8:], "little"))
                        for f in got]
                assert keys == sorted(keys)
