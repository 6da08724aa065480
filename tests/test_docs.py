"""The documentation's examples run, and its links point somewhere.

Every ``>>>`` example in docs/*.md and README.md runs as a doctest (one test
per file; each file is one namespace, examples run top to bottom).
docs/configuration.md is doctested by tests/test_config.py and skipped
here.  ```python blocks without ``>>>`` must at least compile, and relative
Markdown links must name an existing file and, with ``#anchor``, an
existing heading of it.
"""
import doctest
import pathlib
import re
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DOCTESTED_ELSEWHERE = {"configuration.md"}      # tests/test_config.py

MARKDOWN = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]
DOCTEST_FILES = [p for p in MARKDOWN if p.name not in DOCTESTED_ELSEWHERE]

_FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*$", re.M)


def _ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


@pytest.mark.parametrize("path", DOCTEST_FILES, ids=_ids(DOCTEST_FILES))
def test_doctests(path, tmp_path, monkeypatch):
    # The examples use tempfile.mkdtemp(); keep what they create under tmp_path.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = doctest.testfile(
        str(path), module_relative=False, encoding="utf-8",
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, "%d of %d examples failed in %s" % (
        result.failed, result.attempted, path.name)


@pytest.mark.parametrize("path", MARKDOWN, ids=_ids(MARKDOWN))
def test_python_blocks_compile(path):
    text = path.read_text(encoding="utf-8")
    for n, block in enumerate(_FENCE.findall(text)):
        if ">>>" in block:
            continue                      # a doctest, run above
        compile(block, "%s block %d" % (path.name, n), "exec")


def _anchor(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped,
    spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _without_code_blocks(text):
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _anchors(path):
    text = _without_code_blocks(path.read_text(encoding="utf-8"))
    return {_anchor(h) for h in _HEADING.findall(text)}


@pytest.mark.parametrize("path", MARKDOWN, ids=_ids(MARKDOWN))
def test_relative_links_resolve(path):
    text = _without_code_blocks(path.read_text(encoding="utf-8"))   # no links in code
    for target in _LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue                      # http:, https:, mailto:
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        assert dest.exists(), "%s links to missing %s" % (path.name, target)
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), "%s links to missing anchor %s" % (
                path.name, target)
