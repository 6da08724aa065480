# cython: language_level=3
# Snappy raw block format (the format of python-snappy's snappy.compress and
# snappy.uncompress, not the framed stream format), in C.
#
#   block   := uncompressed_length:varint32 element*
#   element := literal | copy1 | copy2 | copy4       (tag byte, low 2 bits)
#
# The full grammar is in kvcy/_snappy.pyx and docs/format.md ("Snappy
# blocks").  Table blocks with compression byte 1 hold exactly this format;
# it is fixed by snappy itself and must never change.
#
# All four functions are pure, never raise, never take the GIL and keep no
# state between calls, so any number of threads may call them at once.
# Other modules reach them through this module's C-API capsule, so
# cimporting them imports kvcy._snappy.

# Worst-case compressed size of n input bytes: 32 + n + n/6 (snappy's own
# bound).  REQUIRES: n < 2**32 for snappy_compress to succeed at all.
cdef size_t snappy_max_compressed_length(size_t n) noexcept nogil

# Read the varint32 length header of src[0:n] into out[0].  Returns 0, or -1
# if the header runs past n bytes or is longer than 5 bytes / 32 bits.
# The caller must compare out[0] against its own size limit before
# allocating: the header is untrusted.
cdef int snappy_uncompressed_length(const unsigned char* src, size_t n,
                                    size_t* out) noexcept nogil

# Decode src[0:n] into exactly dst[0:dst_len].  Returns 0, or -1 if src is
# corrupt: a bad header, a header that is not dst_len, a literal or copy
# running past src or dst, a copy offset of 0 or before the start of the
# output, or an output shorter than dst_len.  Safe for any bytes at all: it
# reads only src[0:n] and writes only dst[0:dst_len] (on failure dst holds
# garbage).  REQUIRES: n readable bytes at src, dst_len writable at dst.
cdef int snappy_uncompress(const unsigned char* src, size_t n,
                           unsigned char* dst, size_t dst_len) noexcept nogil

# Compress src[0:n] into dst and return the compressed length (at most
# snappy_max_compressed_length(n)).  Uses only the stack (a 32 KiB hash
# table), never allocates.  Returns 0 only if n >= 2**32 (the varint32
# header cannot hold it); callers then store the block uncompressed.  Any
# other result is >= 1.  REQUIRES: n readable bytes at src (src may be
# anything when n == 0), snappy_max_compressed_length(n) writable at dst.
cdef size_t snappy_compress(const unsigned char* src, size_t n,
                            unsigned char* dst) noexcept nogil
