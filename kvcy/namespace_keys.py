"""The namespace key scheme: where namespaces live in the one key space.

Once a database has namespaces (its next-id key exists), every key that
starts with RESERVED_PREFIX (b"\\xff\\xff") belongs to kvcy: the default
namespace may not write one (ProgrammingError, raised before anything is
written), and its reads, scans, cursors and dbm views never show one (a
scan's stop is capped at RESERVED_PREFIX, so the region is never even
visited).  A database without namespaces, among them every database
written before they existed, keeps the whole key space for the default
namespace; its first namespace is created only if the region is empty
(kvcy/namespace_registry.py).  The flag is WritePath.reserve_namespaces.
Inside the region a marker byte says what a key is
(docs/format.md, "Namespaces"):

    data key      := RESERVED_PREFIX "n" id:varint64 user_key
    registry key  := RESERVED_PREFIX "r" name:utf-8
    registry value:= version:u8 (=1) id:varint64 options:json-utf-8
    next-id key   := RESERVED_PREFIX "i"            value: id:varint64

The varint is prefix-free, so the keys of one namespace id form exactly
the contiguous range [data_prefix(id), prefix_stop(data_prefix(id))), and
no other id's keys fall inside it.  Ids are never reused: the next-id key
only grows, so a dropped namespace's leftovers can never reappear under a
namespace created later with the same name.

Thread-safety: pure functions and constants.
"""
import json

from kvcy._coding import decode_varint64, encode_varint64

from kvcy._db_iter import prefix_stop
from kvcy.errors import CorruptionError, NotSupportedError, ProgrammingError

RESERVED_PREFIX = b"\xff\xff"
DATA_MARKER = b"n"
REGISTRY_PREFIX = RESERVED_PREFIX + b"r"
NEXT_ID_KEY = RESERVED_PREFIX + b"i"
DATA_REGION = RESERVED_PREFIX + DATA_MARKER

# The version of the registry record this code writes; a newer one (a
# later kvcy's options) is refused rather than misread.
REGISTRY_RECORD_VERSION = 1

# Names are stored as UTF-8 in a key; this keeps them well under MAX_KEY_BYTES.
MAX_NAME_BYTES = 255


class KeyRegion:
    """A key prefix for WriteBatch's namespace= argument: kvcy's own writes
    into the reserved region (the registry, a transaction's commit of keys
    already in stored form) go through it."""
    __slots__ = ("key_prefix",)

    def __init__(self, key_prefix):
        self.key_prefix = key_prefix


# Keys already in stored form (a namespace's prefix included where it has one).
STORED_KEYS = KeyRegion(b"")


def is_reserved(key):
    """True iff key (bytes) lies in the region the default namespace may not touch."""
    return key[:2] == RESERVED_PREFIX


def reserved_key_error(key):
    text = repr(bytes(key[:16])) + ("..." if len(key) > 16 else "")
    return ProgrammingError(
        "key %s starts with b'\\xff\\xff', the prefix kvcy reserves for namespaces; "
        "the default namespace cannot write it (use conn.namespace(name) for a "
        "separate key space)" % text)


def check_batch(batch, writer):
    """Refuse a default-namespace batch holding a key in the reserved region
    (WriteBatch.reserved_key) once the database has namespaces."""
    if batch.reserved_key is not None and writer.reserve_namespaces:
        raise reserved_key_error(batch.reserved_key)


def cap_stop(stop):
    """A default-namespace scan's exclusive stop, capped below the reserved region."""
    if stop is None or stop > RESERVED_PREFIX:
        return RESERVED_PREFIX
    return stop


# The varints of the key scheme are the format's varint64 (kvcy/_coding.pyx).
encode_varint = encode_varint64
decode_varint = decode_varint64


def data_prefix(namespace_id):
    """The prefix of every stored key of namespace namespace_id."""
    return DATA_REGION + encode_varint(namespace_id)


def data_range(namespace_id):
    """[start, stop) of the stored keys of namespace namespace_id."""
    prefix = data_prefix(namespace_id)
    return prefix, prefix_stop(prefix)


def check_name(name):
    """name as its UTF-8 bytes; TypeError/ProgrammingError naming the problem."""
    if not isinstance(name, str):
        raise TypeError("a namespace name must be a str, not %s" % type(name).__name__)
    if not name:
        raise ProgrammingError("a namespace name must not be empty")
    encoded = name.encode("utf-8", "strict")
    if len(encoded) > MAX_NAME_BYTES:
        raise ProgrammingError("namespace name of %d UTF-8 bytes exceeds the limit of %d"
                               % (len(encoded), MAX_NAME_BYTES))
    return encoded


def registry_key(name):
    return REGISTRY_PREFIX + check_name(name)


def encode_record(namespace_id, options):
    """The registry value: version, id, options (a JSON object, so that later
    options such as a default TTL can be added without a new version)."""
    body = json.dumps(options, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return bytes((REGISTRY_RECORD_VERSION,)) + encode_varint(namespace_id) + body


def decode_record(name, value):
    """(id, options dict) of a registry value; errors name the namespace."""
    if not value:
        raise CorruptionError("namespace %r: empty registry record" % (name,))
    if value[0] != REGISTRY_RECORD_VERSION:
        raise NotSupportedError("namespace %r: registry record version %d is not supported "
                                "by this kvcy (it reads version %d)"
                                % (name, value[0], REGISTRY_RECORD_VERSION))
    namespace_id, pos = decode_varint(value, 1)
    try:
        options = json.loads(value[pos:].decode("utf-8"))
    except ValueError as exc:
        raise CorruptionError("namespace %r: bad options in its registry record: %s"
                              % (name, exc)) from None
    if not isinstance(options, dict):
        raise CorruptionError("namespace %r: registry options are not an object" % (name,))
    return namespace_id, options
