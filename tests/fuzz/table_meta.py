"""Fuzz target: the table's cold readers, each on bytes of its own: the
footer (kvcy.table_format.Footer.decode), the block framing
(read_block: handle range check, trailer CRC, decompression), the bloom
filter reader (kvcy._bloom.BloomFilter) and the properties block
(kvcy.table_properties.TableProperties.decode).

Input: one selector byte, then bytes: 0 footer, 1 block framing (the bytes
are a file whose last 16 bytes before the footer space name the handle),
2 filter, 3 properties.  A footer or properties block that decodes must
encode again to an equal one (a round trip).  Each yields a value or
CorruptionError.
"""
import struct

from kvcy._bloom import BloomFilter
from kvcy.table_format import FOOTER_BYTES, BlockHandle, Footer, read_block
from kvcy.table_properties import TableProperties

from .table_bytes import MemoryFile

SEEDS = "table parts: footers, filter and properties blocks of the workload's tables"


def footer(body):
    f = Footer.decode(body[:FOOTER_BYTES] if len(body) >= FOOTER_BYTES else body)
    again = Footer.decode(f.encode())
    if (again.index, again.filter, again.properties) != (f.index, f.filter, f.properties):
        raise AssertionError("footer round trip changed %r" % f)


def framing(body):
    if len(body) < 16:
        return
    offset, size = struct.unpack_from("<QQ", body, 0)
    # Handles that land inside the file are what the range check lets through.
    if body[0] & 1 and len(body) > FOOTER_BYTES + 16:
        offset %= len(body) - FOOTER_BYTES
        size %= len(body) - FOOTER_BYTES - offset + 1
    data = body[16:]
    raw = read_block(MemoryFile(data), BlockHandle(offset, size), len(data), "<fuzz>", "data")
    if type(raw) is not bytes:
        raise AssertionError("read_block returned %r" % type(raw))


def bloom(body):
    f = BloomFilter(body)
    for i in range(0, min(len(body), 64), 4):
        f.may_contain(body[i:i + 8])


def properties(body):
    p = TableProperties.decode(body)
    again = TableProperties.decode(p.encode())
    if again.encode() != p.encode():
        raise AssertionError("properties round trip changed them")


_PARTS = (footer, framing, bloom, properties)


def fuzz_one(data):
    if not data:
        return
    _PARTS[data[0] % len(_PARTS)](data[1:])
