"""Fuzz target: the log reader (kvcy.log_reader.LogReader, with the C
checksum kernel kvcy._log_record.record_checksum_ok): physical records,
fragment chains, torn tails, damage.

Input: one mode byte, then the log's bytes.  Mode bits:
  0    checksums of every physical record re-fixed first, so mutations reach
       the fragment logic;
  1    a round trip: the bytes are cut into records, framed by LogFramer
       (the writer's C framer) and read back; bits 2-3 then damage the
       framed log (2: truncated, 3: one byte flipped).
Checks: reading yields bytes records or raises CorruptionError; a lenient
read that saw no damage agrees with a paranoid read; first_record_at(0) is
the first record iteration yields; an undamaged round trip gives back exactly the records
written, and a damaged one a prefix of them (never a record after damage).
"""
import struct

from kvcy._crc32c import crc32c, mask
from kvcy._log_record import LogFramer
from kvcy.errors import CorruptionError
from kvcy.log_format import LOG_BLOCK_BYTES, LOG_HEADER_BYTES
from kvcy.log_reader import LogReader

from .table_bytes import Consumer

SEEDS = "logs: one mode byte + the WAL files and MANIFESTs of a small workload"


def refix_log(data):
    """data with the checksum of every physical record whose length fits made valid."""
    buf = bytearray(data)
    offset = 0
    while len(buf) - offset >= LOG_HEADER_BYTES:
        left = LOG_BLOCK_BYTES - offset % LOG_BLOCK_BYTES
        if left < LOG_HEADER_BYTES:
            offset += left
            continue
        length, rtype = struct.unpack_from("<HB", buf, offset + 4)
        if LOG_HEADER_BYTES + length > min(left, len(buf) - offset):
            offset += left                  # cannot be a record here: next block
            continue
        payload = bytes(buf[offset + 6:offset + LOG_HEADER_BYTES + length])
        struct.pack_into("<I", buf, offset, mask(crc32c(payload)))
        offset += LOG_HEADER_BYTES + length
    return bytes(buf)


def read(data, paranoid):
    reader = LogReader(data, path="<fuzz log>", paranoid=paranoid)
    records = [payload for _, payload in reader]
    return reader, records


def records_from(data):
    """Records made from data: lengths from its bytes, some past a block."""
    c = Consumer(data)
    out = []
    while c.left() > 0 and len(out) < 64:
        n = c.byte()
        if n & 0x80:
            n = (n & 0x7F) * 700            # up to ~89 KiB: several fragments
        out.append(c.take(n) * (1 + (n > c.left()) * 3))
    return out


def round_trip(mode, body):
    written = records_from(body)
    framer = LogFramer(0)
    log = b"".join(framer.frame(r) for r in written)
    if mode & 4 and log:
        log = log[:body[0] * len(log) // 256 if body else 0]
    if mode & 8 and log:
        i = (body[-1] * 7919) % len(log)
        log = log[:i] + bytes((log[i] ^ (1 << (body[0] % 8)),)) + log[i + 1:]
    reader, got = read(log, paranoid=False)
    if mode & 12:
        if got != written[:len(got)]:
            raise AssertionError("a damaged log gave %d records that are not a prefix of "
                                 "the %d written" % (len(got), len(written)))
    elif got != written or reader.torn_tail_bytes or reader.damage:
        raise AssertionError("log round trip gave %d records of %d (torn %d, damage %r)"
                             % (len(got), len(written), reader.torn_tail_bytes, reader.damage))


def fuzz_one(data):
    if not data:
        return
    mode, body = data[0], data[1:]
    if mode & 2:
        round_trip(mode, body)
        return
    if mode & 1:
        body = refix_log(body)
    lenient, records = read(body, paranoid=False)
    for r in records:
        if type(r) is not bytes:
            raise AssertionError("the reader yielded %r" % type(r))
    if lenient.damage is None:
        try:
            _, strict = read(body, paranoid=True)
        except CorruptionError as exc:
            raise AssertionError("paranoid read raised %s where a lenient read saw no "
                                 "damage" % exc) from exc
        if strict != records:
            raise AssertionError("paranoid read gave %d records, lenient %d with no damage"
                                 % (len(strict), len(records)))
    first = LogReader(body).first_record_at(0)
    if records and first != records[0]:
        raise AssertionError("first_record_at(0) disagrees with iteration")
