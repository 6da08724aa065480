"""kvcy.shelve: shelve.Shelf over kvcy.dbm, checked as CPython's test_shelve
checks shelves over the stdlib's dbm modules (its file-backed cases, and its
mapping-protocol suite run over kvcy shelves for every pickle protocol).
"""
import os
import pickle
import shelve
import shutil
import tempfile
import unittest

import pytest

import kvcy
from kvcy import dbm as kdbm
from kvcy import shelve as kshelve


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "shelf")


def test_open_returns_a_stdlib_shelf_over_kvcy_dbm(path):
    with kshelve.open(path) as shelf:
        assert isinstance(shelf, shelve.Shelf)
        assert isinstance(shelf.dict, kdbm.Database)
        assert shelf._protocol == pickle.DEFAULT_PROTOCOL
    assert kshelve.Shelf is shelve.Shelf


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickled_objects_round_trip_and_survive_reopen(path, protocol):
    value = {"list": [1, 2.5, "three"], "tuple": (None, True), "bytes": b"\x00",
             "set": {1, 2}, "nested": {"deep": [[]]}}
    with kshelve.open(path, protocol=protocol) as shelf:
        shelf["key1"] = (1, 2, 3, 4)
        shelf["obj"] = value
        assert shelf["key1"] == (1, 2, 3, 4)
    with kshelve.open(path, "r") as shelf:
        assert shelf["obj"] == value and sorted(shelf) == ["key1", "obj"]
    with kdbm.open(path, "r") as db:                      # what is stored: the pickle
        assert pickle.loads(db[b"key1"]) == (1, 2, 3, 4)


def test_path_like_and_bytes_file_names(path, as_path):
    with kshelve.open(as_path(path)) as shelf:
        shelf["key1"] = (1, 2, 3, 4)
    with kshelve.open(path, "r") as shelf:
        assert shelf["key1"] == (1, 2, 3, 4)


def test_stdlib_shelf_over_a_kvcy_dbm_handle(path):
    with shelve.Shelf(kdbm.open(path, "c"), protocol=2) as shelf:
        shelf["key1"] = [1, 2, 3, 4]
        assert shelf["key1"] == [1, 2, 3, 4] and len(shelf) == 1
    with shelve.Shelf(kdbm.open(path, "r")) as shelf:
        assert dict(shelf) == {"key1": [1, 2, 3, 4]}


def test_mutable_entry_without_and_with_writeback(path):
    with kshelve.open(path, writeback=False) as shelf:
        shelf["key1"] = [1, 2, 3, 4]
        shelf["key1"].append(5)                    # mutates a copy
        assert shelf["key1"] == [1, 2, 3, 4]
    with kshelve.open(path, writeback=True) as shelf:
        shelf["key1"].append(5)                    # mutates the cached entry
        assert shelf["key1"] == [1, 2, 3, 4, 5]
    with kshelve.open(path, "r") as shelf:
        assert shelf["key1"] == [1, 2, 3, 4, 5]   # written back at close


def test_writeback_also_writes_immediately_and_sync_writes_the_cache(path):
    with kshelve.open(path, writeback=True) as shelf:
        shelf["key"] = [1]
        first = shelf.dict[b"key"]                 # stored at once (CPython issue 5754)
        shelf["key"].append(2)
        assert shelf.dict[b"key"] == first         # only the cache has changed
        syncs = shelf.dict._conn.stats()["wal_syncs"]
        shelf.sync()
        assert pickle.loads(shelf.dict[b"key"]) == [1, 2]
        assert shelf.cache == {}
        assert shelf.dict._conn.stats()["wal_syncs"] == syncs + 1


def test_closed_shelf_raises_value_error(path):
    shelf = kshelve.open(path)
    shelf["key1"] = [1, 2, 3, 4]
    shelf.close()
    with pytest.raises(ValueError):
        len(shelf)
    with pytest.raises(ValueError):
        shelf["key1"]
    shelf.close()                                  # idempotent


def test_keyencoding(path):
    key = "P\xf6p"
    with shelve.Shelf(kdbm.open(path, "c")) as shelf:
        shelf[key] = [1]
        assert key.encode("utf-8") in shelf.dict
    with shelve.Shelf(kdbm.open(path, "c"), keyencoding="latin-1") as shelf:
        shelf[key] = [2]
        assert key.encode("latin-1") in shelf.dict
        assert len(shelf) == 2
    with shelve.Shelf(kdbm.open(path, "c"), keyencoding="ascii") as shelf:
        with pytest.raises(UnicodeEncodeError):
            shelf[key] = [3]


def test_clear_get_contains_and_delete(path):
    with kshelve.open(path) as shelf:
        shelf.update({"a": 1, "b": [2], "c": {"x": 3}})
        assert "b" in shelf and shelf.get("zz", "dflt") == "dflt" and shelf.get("a") == 1
        del shelf["a"]
        with pytest.raises(KeyError):
            del shelf["a"]
        assert sorted(shelf) == ["b", "c"] and len(shelf) == 2
        shelf.clear()
        assert len(shelf) == 0 and list(shelf) == []


def test_read_only_shelf_refuses_writes(path):
    with kshelve.open(path) as shelf:
        shelf["a"] = 1
    with kshelve.open(path, "r") as shelf:
        with pytest.raises(kdbm.error, match="read-only"):
            shelf["a"] = 2
        assert shelf["a"] == 1


def test_missing_shelf_with_r_is_a_dbm_error(path):
    with pytest.raises(kdbm.error):
        kshelve.open(path, "r")
    with pytest.raises(kvcy.OperationalError):
        kshelve.open(path, "w")


# CPython's test_shelve runs this mapping-protocol suite over a shelf in a
# file for each dbm module and pickle protocol; here, over kvcy.dbm.
try:
    from test import mapping_tests
except ImportError:                 # a Python installed without its test package
    mapping_tests = None


class _KvcyShelfMappingBase:
    type2test = shelve.Shelf

    def _reference(self):
        return {"key1": "value1", "key2": 2, "key3": (1, 2, 3)}

    def _empty_mapping(self):
        self.counter = getattr(self, "counter", 0) + 1
        shelf = kshelve.open(os.path.join(self.dirname, "shelf%d" % self.counter),
                             **self._args)
        self.addCleanup(shelf.close)
        return shelf

    def setUp(self):
        self.dirname = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dirname)


for _protocol in range(pickle.HIGHEST_PROTOCOL + 1 if mapping_tests else 0):
    _name = "TestProto%dKvcyShelfMapping" % _protocol
    globals()[_name] = type(_name, (_KvcyShelfMappingBase, mapping_tests.BasicTestMappingProtocol,
                                    unittest.TestCase), {"_args": {"protocol": _protocol}})
