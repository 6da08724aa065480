"""kvcy.mapping.KvcyMapping: the MutableMapping zict (and Dask's workers) spill to.

Runs without zict or dask; the zict part is skipped when zict is missing.
The Dask LocalCluster test is in tests/test_dask_spill.py.
"""
import pickle

import pytest

import kvcy
from kvcy.mapping import KvcyMapping


@pytest.fixture
def mapping(db_path):
    with KvcyMapping(db_path) as m:
        yield m


def test_a_mutable_mapping_of_str_keys_and_bytes_values(mapping):
    assert len(mapping) == 0 and list(mapping) == []
    mapping["x"] = b"1"
    mapping["ünï"] = bytearray(b"2")
    mapping["frames"] = [b"ab", memoryview(b"cd"), bytearray(b"e")]   # joined, as zict.File
    assert mapping["x"] == b"1" and mapping["ünï"] == b"2" and mapping["frames"] == b"abcde"
    assert "x" in mapping and "y" not in mapping and b"x" not in mapping and 1 not in mapping
    assert sorted(mapping) == ["frames", "x", "ünï"] and len(mapping) == 3
    mapping["x"] = b"3"                       # an overwrite is not a new key
    assert len(mapping) == 3 and mapping["x"] == b"3"
    del mapping["x"]
    assert len(mapping) == 2 and "x" not in mapping
    with pytest.raises(KeyError):
        mapping["x"]
    with pytest.raises(KeyError):
        del mapping["x"]
    with pytest.raises(KeyError):
        mapping[b"frames"]                    # bytes is not a key of a str mapping
    with pytest.raises(TypeError, match="must be str, not bytes"):
        mapping[b"x"] = b"1"
    assert dict(mapping.items()) == {"frames": b"abcde", "ünï": b"2"}
    assert sorted(mapping.values()) == [b"2", b"abcde"]
    mapping.update({"a": b"1"}, b=b"2")
    assert mapping.pop("a") == b"1" and len(mapping) == 3
    mapping.clear()
    assert len(mapping) == 0 and list(mapping) == []


def test_bytes_and_literal_keys(db_path):
    with KvcyMapping(db_path, key_type="bytes") as m:
        m[b"\xff\xff"] = b"1"                 # any bytes, the reserved prefix included
        m[bytearray(b"k")] = b"2"
        assert m[b"\xff\xff"] == b"1" and sorted(m) == [b"k", b"\xff\xff"]
    with KvcyMapping(db_path, namespace="dask", key_type="literal") as m:
        keys = ["x", ("x-1f3a", 0), ("y", (1, 2.5)), 7, b"b"]
        for i, key in enumerate(keys):
            m[key] = b"%d" % i
        assert [m[key] for key in keys] == [b"%d" % i for i in range(len(keys))]
        assert sorted(map(repr, m)) == sorted(map(repr, keys))
        with pytest.raises(TypeError, match="literal key"):
            m[object()] = b"x"
        assert object() not in m


def test_it_keeps_to_its_namespace_and_survives_reopen(db_path):
    with kvcy.connect(db_path) as conn:
        conn.put(b"x", b"default")
        m = KvcyMapping(conn)                 # a connection it does not own: left open
        m["x"] = b"zict"
        other = KvcyMapping(conn, namespace="other")
        other["x"] = b"other"
        assert m["x"] == b"zict" and conn.get(b"x") == b"default"
        assert conn.namespaces() == ["other", "zict"]
        m.close()
        assert not conn.closed
        with pytest.raises(kvcy.ProgrammingError, match="options"):
            KvcyMapping(conn, sync=True)
    with KvcyMapping(db_path) as m:
        assert dict(m.items()) == {"x": b"zict"} and len(m) == 1
    with KvcyMapping(db_path, namespace=None) as m:
        assert dict(m.items()) == {"x": b"default"}


def test_bad_arguments(db_path):
    with pytest.raises(kvcy.ProgrammingError, match="key_type"):
        KvcyMapping(db_path, key_type="int")
    with pytest.raises(TypeError, match="path or a kvcy.Connection"):
        KvcyMapping(42)


def test_zict_buffer_and_func_spill_to_it(db_path):
    zict = pytest.importorskip("zict", reason="zict is in the dask extra: pip install kvcy[dask]")
    with KvcyMapping(db_path) as slow:
        buffer = zict.Buffer({}, zict.Func(pickle.dumps, pickle.loads, slow), n=10,
                             weight=lambda key, value: 1)
        for i in range(25):
            buffer["k%d" % i] = {"i": i, "pad": "x" * i}
        assert len(slow) >= 15                # spilled beyond the 10 kept in memory
        assert all(buffer["k%d" % i] == {"i": i, "pad": "x" * i} for i in range(25))
        del buffer["k3"]
        assert "k3" not in buffer and "k3" not in slow and len(buffer) == 24
