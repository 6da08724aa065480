"""Coverage-guided fuzzing of every kvcy decoder that reads bytes from disk.

One module per target (TARGETS maps its name to it); each has
``fuzz_one(data)`` and a SEEDS line saying what its seed corpus holds.
harness.py holds the rule and the engines, seeds.py makes the seed corpora
from real files, __main__.py is ``python -m tests.fuzz``.  See
docs/fuzzing.md.
"""
import importlib

TARGET_NAMES = ("block", "table", "table_meta", "log", "manifest", "write_batch",
                "coding", "snappy")


def load_target(name):
    """The target module called name (KeyError for an unknown name)."""
    if name not in TARGET_NAMES:
        raise KeyError("unknown fuzz target %r; targets: %s" % (name, ", ".join(TARGET_NAMES)))
    return importlib.import_module("." + name, __name__)
