"""Fuzz target: the block decoder (kvcy._block.Block) and BlockIterator.

Input: the contents of one block, as a table stores them before its
trailer (no checksum guards this layer, so every byte reaches the decoder).
Checks: Block() accepts or raises CorruptionError; the forward scan, the
backward scan and seeks agree (tests/fuzz/iterator_check.py); when the
entries are sorted, Block.get() returns the newest visible entry the scan
shows, and Block.index_lookup() answers or raises CorruptionError.
"""
from kvcy._block import Block

from .iterator_check import expected_get, known_kind, lookups, walk

SEEDS = "blocks: data and index blocks of real tables"


def fuzz_one(data):
    block = Block(data)
    # Every entry takes at least 11 bytes (3 length bytes, an 8-byte tag).
    entries, ordered = walk(block.iterator, len(data) // 11 + 2, data[:-4])
    if not ordered:
        return
    probes = lookups(entries)
    if known_kind(entries):
        for user_key, sequence in probes:
            got = block.get(user_key, sequence)
            want = expected_get(entries, user_key, sequence)
            if got != want:
                raise AssertionError("Block.get(%r, %d) gave %r, the scan says %r"
                                     % (user_key, sequence, got, want))
    # A data block's values are not handles: CorruptionError ends the input.
    for user_key, sequence in probes:
        block.index_lookup(user_key, sequence)
