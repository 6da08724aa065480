# cython: language_level=3, embedsignature=True
"""WalWriter: a commit group's WAL records, framed in C and appended in one write.

The write path's leader reserves room for the group (the sum of
frame_bound() of its batches), adds each batch as its own logical record
(framed by the file's LogFramer into one reusable C buffer: no bytes object
and no allocation per record) and writes the buffer with one call.

A file with a descriptor (the env's own WritableFile) is written with
write(2) from C with the GIL released, as os.write does: holding it across
the syscall was measured to starve the background thread's Python steps
(it then gets the GIL only every switch interval), which stalled writers
behind flushes: 249k instead of 320-335k random puts/s.  Any other file
(the tests' fault-injecting ones, subclasses) sees every append(), so
faults injected there behave as before.

The bytes written through the descriptor are counted in C and added to the
file's ``size`` when someone asks (``size``, or settle_size() before the
file is retired): setting the Python attribute on every write cost about
450 of the ~4,000 instructions of a put.

Not thread-safe: the write path's lock holder owns it.
"""
from libc.errno cimport errno, EINTR, ENOSPC
from libc.stdlib cimport free, realloc
from posix.unistd cimport write
from cpython.bytes cimport PyBytes_FromStringAndSize

from kvcy._log_record cimport LogFramer

import os

from kvcy.env import WritableFile, io_error


cdef int write_all(int fd, const unsigned char* p, size_t n, size_t* done) noexcept nogil:
    # write(2) all n bytes: 0, or the errno that stopped it (*done bytes written).
    cdef ssize_t r
    while done[0] < n:
        r = write(fd, p + done[0], n - done[0])
        if r < 0:
            if errno == EINTR:
                continue
            return errno
        if r == 0:
            return ENOSPC
        done[0] += <size_t>r
    return 0


cdef class WalWriter:
    def __cinit__(self, file, Py_ssize_t block_offset):
        self.framer = LogFramer(block_offset)
        self.file = file
        self.append_file = file.append
        self.sync_file = file.sync
        self.fd = file.fileno() if type(file) is WritableFile else -1

    def __dealloc__(self):
        free(self.buf)

    @property
    def size(self):
        """Bytes in the file: its ``size``, with what C wrote added first."""
        self.settle_size()
        return self.file.size

    cdef int settle_size(self) except -1:
        cdef size_t n = self.unsized
        if n:
            self.unsized = 0
            self.file.size += n
        return 0

    cdef int reserve(self, size_t n) except -1:
        # Room for n more framed bytes (n: a sum of frame_bound()).
        cdef unsigned char* grown
        if self.used + n > self.cap:
            grown = <unsigned char*>realloc(self.buf, self.used + n)
            if grown == NULL:
                raise MemoryError()
            self.buf = grown
            self.cap = self.used + n
        return 0

    cdef void add(self, const unsigned char* rep, size_t n) noexcept:
        # Frame rep[:n] as one logical record.  REQUIRES: reserved.
        self.used += self.framer.frame_into(rep, n, self.buf + self.used)

    cdef size_t write(self) except? 0:
        # Append everything framed, as WritableFile.append does (the same
        # error); returns the bytes appended.  The buffer is emptied either way.
        cdef size_t n = self.used, done = 0
        cdef int err = 0
        if n == 0:
            return 0
        self.used = 0
        try:
            if self.fd < 0:
                self.append_file(PyBytes_FromStringAndSize(<const char*>self.buf, n))
                return n
            with nogil:
                err = write_all(self.fd, self.buf, n, &done)
            self.unsized += done
            if err:
                self.settle_size()
                exc = OSError(err, os.strerror(err))
                raise io_error("append to", self.file.path, exc) from exc
            return n
        finally:
            if self.cap > WAL_BUFFER_KEEP_BYTES:
                # A huge batch does not keep its buffer.
                free(self.buf)
                self.buf = NULL
                self.cap = 0

    cdef int sync(self) except -1:
        self.sync_file()
        return 0
