# cython: language_level=3, embedsignature=True
"""The internal-key constants of kvcy/_dbformat.pxd, for Python layers.

The values are defined once, in the .pxd; kvcy.dbformat takes them from
FORMAT_CONSTANTS, so the Python and C layers cannot disagree.
"""
from kvcy._dbformat cimport (KIND_DELETE, KIND_VALUE, KIND_EXPIRING_VALUE, KIND_RANGE_DELETE,
                             KIND_FOR_SEEK, MAX_SEQUENCE, TAG_BYTES)

FORMAT_CONSTANTS = {
    "KIND_DELETE": KIND_DELETE,
    "KIND_VALUE": KIND_VALUE,
    "KIND_EXPIRING_VALUE": KIND_EXPIRING_VALUE,
    "KIND_RANGE_DELETE": KIND_RANGE_DELETE,
    "KIND_FOR_SEEK": KIND_FOR_SEEK,
    "MAX_SEQUENCE": MAX_SEQUENCE,
    "TAG_BYTES": TAG_BYTES,
}
