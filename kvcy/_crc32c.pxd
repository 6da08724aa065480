# cython: language_level=3
# CRC32C (Castagnoli, reflected polynomial 0x82f63b78), LevelDB conventions.
#
# crc32c_extend(crc, data, n) is the CRC of (the bytes whose CRC is `crc`)
# followed by data[0:n]; crc32c_extend(0, p, n) is the standard CRC32C of
# p[0:n] (the value zlib-style APIs and LevelDB's crc32c::Value return).  It
# is a plain cdef function exported through this .pxd (other modules reach it
# through the module's C-API capsule, so cimporting it imports kvcy._crc32c,
# which picks the hardware or software path once at import).  It never fails
# and never takes the GIL; REQUIRES: n readable bytes at data (data may be
# anything when n == 0).
#
# Masking (LevelDB crc32c::Mask): a CRC stored next to data that may itself
# contain CRCs is masked, because computing the CRC of a string that contains
# embedded CRCs is problematic.  mask/unmask are exact inverses.  The mask
# formula is part of the on-disk format (docs/format.md); never change it.
from libc.stdint cimport uint32_t


cdef uint32_t crc32c_extend(uint32_t crc, const unsigned char* data, size_t n) noexcept nogil

cdef inline uint32_t crc32c_mask(uint32_t crc) noexcept nogil:
    # Rotate right by 15 bits and add a constant.
    return <uint32_t>(((crc >> 15) | (crc << 17)) + <uint32_t>0xa282ead8)

cdef inline uint32_t crc32c_unmask(uint32_t masked) noexcept nogil:
    cdef uint32_t rot = <uint32_t>(masked - <uint32_t>0xa282ead8)
    return <uint32_t>((rot >> 17) | (rot << 15))
