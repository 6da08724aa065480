# cython: language_level=3, embedsignature=True
"""Arena: bump allocation in 64 KiB blocks.

Small requests are carved from the current block; a request larger than a
quarter block gets a block of its own so the current block's tail is not
wasted.  memory_usage() is what the memtable reports and what triggers a
memtable switch.
"""
from libc.stdint cimport uintptr_t
from libc.stdlib cimport malloc, free, realloc

cdef enum:
    BLOCK_BYTES = 65536
    ALIGN = 8


cdef class Arena:
    def __cinit__(self):
        self._ptr = NULL
        self._remaining = 0
        self._blocks = NULL
        self._nblocks = 0
        self._capacity = 0
        self._usage = 0

    def __dealloc__(self):
        cdef size_t i
        for i in range(self._nblocks):
            free(self._blocks[i])
        free(self._blocks)

    cdef char* _new_block(self, size_t n) except NULL:
        cdef char** grown
        cdef char* block
        if self._nblocks == self._capacity:
            grown = <char**>realloc(self._blocks, (self._capacity * 2 + 16) * sizeof(char*))
            if grown == NULL:
                raise MemoryError()
            self._blocks = grown
            self._capacity = self._capacity * 2 + 16
        block = <char*>malloc(n)
        if block == NULL:
            raise MemoryError()
        self._blocks[self._nblocks] = block
        self._nblocks += 1
        self._usage += n + sizeof(char*)
        return block

    cdef char* _allocate_fallback(self, size_t n) except NULL:
        cdef char* block
        if n > BLOCK_BYTES // 4:
            return self._new_block(n)
        block = self._new_block(BLOCK_BYTES)
        self._ptr = block + n
        self._remaining = BLOCK_BYTES - n
        return block

    cdef char* allocate(self, size_t n) except NULL:
        cdef char* result
        if n <= self._remaining:
            result = self._ptr
            self._ptr += n
            self._remaining -= n
            return result
        return self._allocate_fallback(n)

    cdef char* allocate_aligned(self, size_t n) except NULL:
        cdef size_t slop = (<uintptr_t>self._ptr) & (ALIGN - 1)
        cdef size_t pad = (ALIGN - slop) if slop else 0
        cdef char* result
        if n + pad <= self._remaining:
            result = self._ptr + pad
            self._ptr += n + pad
            self._remaining -= n + pad
            return result
        # New blocks come from malloc and are suitably aligned.
        return self._allocate_fallback(n)

    def memory_usage(self):
        """Bytes handed out, plus what block ends wasted (not the unused rest
        of the current block): what the entries really cost."""
        return self._usage - self._remaining

    def allocate_bytes(self, size_t n):
        """Allocate n bytes and return their address (for tests)."""
        return <uintptr_t>self.allocate(n)
