"""Fuzz target: the write-batch decoder (kvcy._write_batch: batch_header,
iterate_batch, apply_batch into a MemTable), the path recovery replays WAL
records through.

Input: one mode byte, then bytes.  Mode bit 0: a round trip: entries made
from the bytes go into a WriteBatch, whose rep must decode to exactly those
entries.  Otherwise the bytes are a rep from disk.
Checks: the three decoders agree on accepting a rep (batch_header,
iterate_batch and apply_batch all answer or all raise CorruptionError);
an accepted rep lands in the memtable as iterate_batch lists it, entry i at
sequence + i (a range delete in the memtable's range_dels, the others in
its skiplist), and nothing is inserted from a rejected one.
"""
from kvcy._memtable import MemTable
from kvcy._write_batch import WriteBatch, apply_batch, batch_header, iterate_batch
from kvcy.dbformat import DELETED, KIND_DELETE, KIND_RANGE_DELETE, KIND_VALUE
from kvcy.errors import CorruptionError

from .table_bytes import Consumer

SEEDS = "batches: mode 0 + every write-batch record of the workload's WAL"


def round_trip(body):
    c = Consumer(body)
    batch = WriteBatch()
    written = []
    while c.left() > 0 and len(written) < 200:
        head = c.byte()
        key = c.take(head >> 3)
        if head & 1:
            batch.delete(key)
            written.append((KIND_DELETE, key, None))
        elif head & 6 == 6:
            batch.delete_range(key, key + b"\x00")
            written.append((KIND_RANGE_DELETE, key, key + b"\x00"))
        else:
            value = c.take(c.byte())
            batch.put(key, value)
            written.append((KIND_VALUE, key, value))
    batch.set_sequence(c.byte() << 16)
    rep = batch.data()
    if iterate_batch(rep) != written or batch_header(rep) != (batch.sequence, len(written)):
        raise AssertionError("write batch round trip changed %d entries" % len(written))


def fuzz_one(data):
    if not data:
        return
    mode, rep = data[0], data[1:]
    if mode & 1:
        round_trip(rep)
        return
    outcomes = []
    for decode in (batch_header, iterate_batch):
        try:
            outcomes.append(decode(rep))
        except CorruptionError as exc:
            outcomes.append(exc)
    mem = MemTable()
    try:
        last = apply_batch(rep, mem)
    except CorruptionError as exc:
        last = exc
    rejected = [isinstance(o, CorruptionError) for o in outcomes + [last]]
    if any(rejected) and not all(rejected):
        raise AssertionError("the batch decoders disagree: %r" % (outcomes + [last],))
    if all(rejected):
        if len(mem) or mem.range_dels:
            raise AssertionError("a rejected batch inserted %d entries"
                                 % (len(mem) + len(mem.range_dels)))
        raise outcomes[0]
    (sequence, count), entries = outcomes
    inserted = len(mem) + len(mem.range_dels)
    if len(entries) != count or last != sequence + count - 1 or inserted != count:
        raise AssertionError("batch of %d entries: %d listed, %d inserted, last %d"
                             % (count, len(entries), inserted, last))
    ranges = [(key, value, sequence + i) for i, (kind, key, value) in enumerate(entries)
              if kind == KIND_RANGE_DELETE]
    if mem.range_dels != ranges:
        raise AssertionError("range deletes %r, the batch listed %r" % (mem.range_dels, ranges))
    # The newest point entry of each key is what the memtable's skiplist answers.
    newest = {}
    for i, (kind, key, value) in enumerate(entries):
        if kind != KIND_RANGE_DELETE:
            newest[key] = (kind, value)
    for key, (kind, value) in list(newest.items())[:32]:
        got = mem.get(key)
        if got != (DELETED if kind == KIND_DELETE else value):   # kind 2: the stored bytes
            raise AssertionError("memtable has %r for %r, the batch put %r" % (got, key, value))
