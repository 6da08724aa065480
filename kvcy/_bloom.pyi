"""LevelDB-format bloom filters over user keys; see kvcy/_bloom.pyx."""
from typing import final

from _typeshed import ReadableBuffer

def bloom_hash(key: ReadableBuffer) -> int:
    """LevelDB's Hash(key, len(key), 0xbc9f1d34)."""

@final
class BloomFilterBuilder:
    """Collects user keys (only their 32-bit hashes) and writes a filter."""
    def __new__(cls, bits_per_key: int) -> BloomFilterBuilder:
        """bits_per_key: 1..64 (ValueError otherwise); k = int(bits_per_key * 0.69) in 1..30."""
    def add_key(self, key: ReadableBuffer) -> None: ...
    def finish(self) -> bytes:
        """Filter of every key added since the last finish(); resets the builder."""
    @property
    def count(self) -> int:
        """Keys added since the last finish()."""
    @property
    def bits_per_key(self) -> int: ...
    @property
    def num_probes(self) -> int: ...

@final
class BloomFilter:
    """A filter from BloomFilterBuilder.finish(); CorruptionError if malformed."""
    def __new__(cls, data: ReadableBuffer) -> BloomFilter: ...
    def may_contain(self, key: ReadableBuffer) -> bool:
        """False iff key was certainly not added."""
    @property
    def size(self) -> int: ...
    @property
    def num_probes(self) -> int: ...
    @property
    def bits(self) -> int: ...
