"""Constants of the log format shared by the WAL and the MANIFEST.

A log is a sequence of 32 KiB blocks.  Each block holds physical records:

    record := checksum:fixed32 length:fixed16 type:u8 data[length]

checksum is the masked CRC32C of type followed by data.  A logical record
(one write batch, or one version edit) that does not fit the rest of a
block is split into FIRST, MIDDLE..., LAST fragments; one that fits is FULL.
A block tail shorter than a header is zero-filled and skipped.  Records
never straddle a block boundary, which is what lets a reader resynchronize
after damage.  These values are on disk and must never change; the byte
grammar is in docs/format.md ("Log files").
"""

LOG_BLOCK_BYTES = 32768
LOG_HEADER_BYTES = 7

ZERO_TYPE = 0      # reserved for preallocated (zero-filled) space
FULL_TYPE = 1
FIRST_TYPE = 2
MIDDLE_TYPE = 3
LAST_TYPE = 4
MAX_RECORD_TYPE = LAST_TYPE
