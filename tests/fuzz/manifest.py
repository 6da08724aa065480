"""Fuzz target: the manifest: VersionEdit.decode and VersionSet.recover
(CURRENT -> MANIFEST -> log records -> edits -> Version).

Input: one mode byte, then bytes.  Mode bits:
  0    the bytes are one version-edit record: decode it; what decodes must
       encode again to bytes that decode to an equal edit (a round trip);
  1    the bytes are a whole MANIFEST file, recovered by a VersionSet over
       an in-memory env (bit 2: log checksums re-fixed first, as in log.py).
Checks: every decode and recovery yields a value or CorruptionError.
"""
from kvcy.version_edit import VersionEdit
from kvcy.version_set import VersionSet

from .log import refix_log

SEEDS = "manifests: mode 0 + each edit record, mode 2/6 + each MANIFEST of a small workload"

_MANIFEST = "MANIFEST-000001"


class ManifestEnv:
    """The two calls VersionSet.recover makes, over one in-memory MANIFEST."""

    def __init__(self, manifest):
        self.files = {"/fuzz/CURRENT": (_MANIFEST + "\n").encode(),
                      "/fuzz/" + _MANIFEST: manifest}

    def read_file(self, path):
        return self.files[path]

    def file_exists(self, path):
        return path in self.files


def check_edit(data):
    edit = VersionEdit.decode(data)
    again = VersionEdit.decode(edit.encode())
    if again != edit:
        raise AssertionError("version edit round trip changed %r into %r" % (edit, again))


def fuzz_one(data):
    if not data:
        return
    mode, body = data[0], data[1:]
    if not mode & 2:
        check_edit(body)
        return
    if mode & 4:
        body = refix_log(body)
    versions = VersionSet("/fuzz", ManifestEnv(body))
    versions.recover()
    versions.live_files()
    for level in range(len(versions.current.files)):
        versions.current.level_bytes(level)
