# cython: language_level=3
"""Timing loop for bench/snappy_block.py: the C snappy functions called
directly, as a nogil reader would, without Python calls or bytes objects."""
import time

from libc.stdlib cimport free, malloc

from kvcy._snappy cimport snappy_compress, snappy_uncompress


def c_loop(list blocks, list packed, int rounds):
    """(ns per compress, ns per uncompress) averaged over rounds x blocks."""
    cdef Py_ssize_t i, r, nb = len(blocks)
    cdef bytes b
    cdef unsigned char* buf = <unsigned char*>malloc(1 << 20)
    if buf == NULL:
        raise MemoryError()
    try:
        t0 = time.perf_counter_ns()
        for r in range(rounds):
            for i in range(nb):
                b = blocks[i]
                snappy_compress(<const unsigned char*><char*>b, len(b), buf)
        t1 = time.perf_counter_ns()
        for r in range(rounds):
            for i in range(nb):
                b = packed[i]
                if snappy_uncompress(<const unsigned char*><char*>b, len(b), buf,
                                     len(<bytes>blocks[i])) != 0:
                    raise RuntimeError("bad block")
        t2 = time.perf_counter_ns()
    finally:
        free(buf)
    return (t1 - t0) / (rounds * nb), (t2 - t1) / (rounds * nb)
