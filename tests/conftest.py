"""Shared fixtures and session checks for kvcy's tests.

Fixtures: ``db_path`` (a not yet existing database directory under
tmp_path) and ``fault_env`` (a fresh tests/fault_env.FaultEnv).

Session check: every kvcy/_*.pyx must be imported as a compiled extension
that is not older than its .pyx/.pxd, so a half-built or stale tree stops
the run instead of silently testing old code.  KVCY_ALLOW_STALE_BUILD=1
turns the staleness part into a warning (the extension check stays).

Slow tests (``@pytest.mark.slow``) are skipped unless ``-m`` names the
marker (``-m slow``) or KVCY_SLOW=1 is set.
"""
import glob
import importlib
import importlib.machinery
import os
import pathlib
import warnings

import pytest

from fault_env import FaultEnv

# Seconds of slack when comparing mtimes: setuptools copies the built
# extension into the tree with whole-second times.
_MTIME_SLACK = 2.0


def _truthy(name):
    return os.environ.get(name, "") not in ("", "0")


def _check_extensions():
    """Return (problems, stale) lists of human-readable findings."""
    import kvcy
    pkg_dir = os.path.dirname(os.path.abspath(kvcy.__file__))
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    problems, stale = [], []
    sources = sorted(glob.glob(os.path.join(pkg_dir, "_*.pyx")))
    if not sources:
        problems.append("no kvcy/_*.pyx found next to %s" % kvcy.__file__)
    for pyx in sources:
        name = os.path.splitext(os.path.basename(pyx))[0]
        try:
            mod = importlib.import_module("kvcy." + name)
        except ImportError as exc:
            problems.append("kvcy.%s does not import: %s" % (name, exc))
            continue
        path = getattr(mod, "__file__", None) or ""
        if not path.endswith(suffixes):
            problems.append("kvcy.%s was imported from %r, not a compiled extension"
                            % (name, path))
            continue
        built = os.path.getmtime(path)
        for src in (pyx, pyx[:-4] + ".pxd"):
            if os.path.exists(src) and os.path.getmtime(src) > built + _MTIME_SLACK:
                stale.append("%s is newer than %s" % (os.path.basename(src),
                                                      os.path.basename(path)))
    return problems, stale


def pytest_sessionstart(session):
    problems, stale = _check_extensions()
    rebuild = "rebuild with: .venv/bin/python setup.py build_ext --inplace -q"
    if problems:
        pytest.exit("kvcy's compiled extensions are missing or not in use:\n  %s\n%s"
                    % ("\n  ".join(problems), rebuild), returncode=4)
    if stale:
        msg = "kvcy's compiled extensions are stale:\n  %s\n%s" % ("\n  ".join(stale), rebuild)
        if _truthy("KVCY_ALLOW_STALE_BUILD"):
            warnings.warn(msg)
        else:
            pytest.exit(msg + "\n(or set KVCY_ALLOW_STALE_BUILD=1 to run anyway)",
                        returncode=4)


def pytest_collection_modifyitems(config, items):
    if _truthy("KVCY_SLOW") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: opt in with -m slow or KVCY_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def db_path(tmp_path):
    """A database directory that does not exist yet (connect creates it)."""
    return tmp_path / "db"


@pytest.fixture
def fault_env():
    """A fresh FaultEnv over the real file system."""
    return FaultEnv()


class FakePath:
    """An os.PathLike whose __fspath__ may return bytes (pathlib's cannot)."""

    def __init__(self, path):
        self.path = path

    def __fspath__(self):
        return self.path


@pytest.fixture(params=[pathlib.Path, os.fsencode, lambda p: FakePath(os.fsencode(p))],
                ids=["pathlib", "bytes", "pathlike-of-bytes"])
def as_path(request):
    """Each way of naming a file a dbm-style open() must accept."""
    return request.param
