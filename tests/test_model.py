"""Model-based test: a Connection behaves like a dict, across reopens.

A hypothesis RuleBasedStateMachine drives puts, deletes, put_many (lists
and dicts), delete_many, WriteBatch writes, gets, get_many, read-only peeks
and close-and-reopen against a dict model.  Keys come from a small alphabet
(the empty key, a NUL, a long key) so operations collide; values include
the empty value and values larger than a 32 KiB log block.  After every
step every key of the alphabet is compared with the model, and the last
sequence number must equal the number of entries written.
"""
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import kvcy

KEYS = [b"", b"a", b"b", b"ab", b"\x00", b"\xff\xfe", b"k" * 300]
BIG_VALUES = [b"", b"x" * 40000, bytes(range(256)) * 300]


def _special_value(index):
    # Drawn by index so hypothesis does not repr 100 KB of value per example.
    return BIG_VALUES[index]


keys = st.sampled_from(KEYS)
values = st.binary(max_size=12) | st.integers(0, len(BIG_VALUES) - 1).map(_special_value)
pair_lists = st.lists(st.tuples(keys, values), max_size=6)


class KvModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="kvcy-model-")
        self.path = os.path.join(self.dir, "db")
        self.conn = kvcy.connect(self.path)
        self.model = {}
        self.sequence = 0      # entries written so far: the expected last sequence

    def teardown(self):
        try:
            self.conn.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- writes ------------------------------------------------------------

    @rule(key=keys, value=values, as_bytearray=st.booleans())
    def put(self, key, value, as_bytearray):
        if as_bytearray:
            self.conn.put(bytearray(key), bytearray(value))
        else:
            self.conn.put(key, value)
        self.model[key] = value
        self.sequence += 1

    @rule(key=keys)
    def delete(self, key):
        self.conn.delete(key)
        self.model.pop(key, None)
        self.sequence += 1

    @rule(pairs=pair_lists, as_dict=st.booleans())
    def put_many(self, pairs, as_dict):
        if as_dict:
            pairs = list(dict(pairs).items())
            self.conn.put_many(dict(pairs))
        else:
            self.conn.put_many(pairs)
        for key, value in pairs:
            self.model[key] = value
        self.sequence += len(pairs)

    @rule(ks=st.lists(keys, max_size=6))
    def delete_many(self, ks):
        self.conn.delete_many(ks)
        for key in ks:
            self.model.pop(key, None)
        self.sequence += len(ks)

    @rule(entries=st.lists(st.tuples(keys, st.none() | values), max_size=6))
    def write_batch(self, entries):
        batch = kvcy.WriteBatch()
        for key, value in entries:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self.conn.write(batch)
        for key, value in entries:
            if value is None:
                self.model.pop(key, None)
            else:
                self.model[key] = value
        self.sequence += len(entries)

    # -- reads -------------------------------------------------------------

    @rule(key=keys, default=st.none() | st.just(b"<default>"))
    def get(self, key, default):
        expected = self.model.get(key, default)
        if default is None:
            assert self.conn.get(key) == expected
        else:
            assert self.conn.get(key, default) == expected

    @rule(ks=st.lists(keys, max_size=8))
    def get_many(self, ks):
        assert self.conn.get_many(ks) == [self.model.get(k) for k in ks]
        assert self.conn.get_many(ks, b"<d>") == [self.model.get(k, b"<d>") for k in ks]

    @rule()
    def readonly_peek(self):
        with kvcy.connect(self.path, readonly=True) as ro:
            assert ro.get_many(KEYS) == [self.model.get(k) for k in KEYS]

    # -- lifecycle ---------------------------------------------------------

    @rule()
    def reopen(self):
        self.conn.close()
        self.conn = kvcy.connect(self.path)

    @invariant()
    def matches_model(self):
        assert self.conn.get_many(KEYS) == [self.model.get(k) for k in KEYS]
        for key in KEYS:
            assert (key in self.conn) == (key in self.model)
        assert self.conn.stats()["last_sequence"] == self.sequence


def _settings(max_examples, steps):
    return settings(max_examples=max_examples, stateful_step_count=steps, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_connection_matches_dict_model():
    run_state_machine_as_test(KvModel, settings=_settings(30, 40))


@pytest.mark.slow
def test_connection_matches_dict_model_long():
    run_state_machine_as_test(KvModel, settings=_settings(400, 100))
