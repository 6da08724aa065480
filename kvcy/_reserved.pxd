# cython: language_level=3
# The region of the key space kvcy reserves for namespaces (keys starting
# with b"\xff\xff"; kvcy/namespace_keys.py and docs/format.md, "Namespaces").
# The default namespace's write paths refuse such keys with this one test,
# which costs a compare only for keys whose first byte is 0xff.

cdef inline bint is_reserved_key(const unsigned char* p, size_t n) noexcept nogil:
    return n >= 2 and p[0] == 0xFF and p[1] == 0xFF
