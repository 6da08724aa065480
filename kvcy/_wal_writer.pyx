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

The bytes written through the descriptor move the C position ``pos``, which
becomes the file's ``size`` when someone asks (``size``, or settle_size()
before the file is retired): setting the Python attribute on every write cost about
450 of the ~4,000 instructions of a put.

A file with a descriptor is appended to through a shared mapping where
the file system allows (LevelDB's mmap writes, RocksDB's allow_mmap_writes):
a group's append is then a copy into the page cache, with no system call,
which took about a third of the time of a put.  Pages of a shared file
mapping belong to the kernel, so a kill -9 loses nothing that a write(2)
would have kept, and fdatasync() writes them back as it does written pages.
The file is grown WAL_MAP_BYTES at a time with fallocate(2), so a full disk
is an error from fallocate, not a SIGBUS on a page with no blocks behind it;
the copies run under the process's SIGBUS guard (kvcy/_mapped_file.pyx) for
a file cut behind kvcy's back.  retire() cuts the file back to its logical
size; after a crash the reserved space is zeros after the last record,
which the log reader takes for the end of the log (kvcy/log_reader.py).
Where fallocate or mmap fails (a file system without fallocate), the file
is appended to with write(2).

Not thread-safe: the write path's lock holder owns it.
"""
from libc.errno cimport errno, EINTR, EIO, ENOSPC
from libc.stdlib cimport free, realloc
from posix.mman cimport mmap, munmap, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_FAILED
from posix.types cimport off_t
from posix.unistd cimport write, ftruncate
from cpython.bytes cimport PyBytes_FromStringAndSize

from kvcy._log_record cimport LogFramer
from kvcy._mapped_file cimport map_install, map_copy

cdef extern from "<fcntl.h>" nogil:
    int fallocate(int fd, int mode, off_t offset, off_t length)

import os

from kvcy.env import WritableFile, io_error


cdef bint map_appends = True


def set_mapped_appends(bint on):
    """Append to WAL files opened from now on through a mapping (True, the
    default) or with write(2); returns the previous setting.  For tests."""
    global map_appends
    previous, map_appends = map_appends, on
    return previous


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
        if self.fd < 0:
            return
        self.pos = file.size
        if map_appends and map_install() == 0 and self.map_window() == 0:
            self.mapped = True
            return
        # No mapping here: append with write(2), without the space reserved.
        self.unmap_window()
        if ftruncate(self.fd, <off_t>self.pos) != 0:
            exc = OSError(errno, os.strerror(errno))
            raise io_error("truncate", file.path, exc) from exc

    def __dealloc__(self):
        free(self.buf)
        self.unmap_window()

    cpdef retire(self):
        """Stop appending: unmap the file and cut it to its logical size (the
        reserved space after the last record goes).  Call before the file is
        closed; a write() after it raises."""
        self.settle_size()
        self.unmap_window()
        if self.mapped:
            self.mapped = False
            # A failure leaves zeros after the last record, which readers take
            # for the end of the log: nothing to report.
            ftruncate(self.fd, <off_t>self.pos)
        self.fd = -1
        self.append_file = None

    cdef int map_window(self) noexcept nogil:
        # Map the WAL_MAP_BYTES window of the file that holds pos, reserving
        # its blocks first: 0, or the errno that stopped it.
        cdef size_t start = self.pos - self.pos % WAL_MAP_BYTES
        cdef void* p
        cdef int r
        self.unmap_window()
        while True:
            r = fallocate(self.fd, 0, <off_t>start, WAL_MAP_BYTES)
            if r == 0:
                break
            if errno != EINTR:
                return errno
        p = mmap(NULL, WAL_MAP_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, self.fd, <off_t>start)
        if p == MAP_FAILED:
            return errno
        self.map = <unsigned char*>p
        self.map_start = start
        return 0

    cdef void unmap_window(self) noexcept nogil:
        if self.map != NULL:
            munmap(self.map, WAL_MAP_BYTES)
            self.map = NULL

    cdef int map_append(self, const unsigned char* p, size_t n, size_t* done) noexcept nogil:
        # Copy p[:n] to the file at pos through the mapping: 0, or the errno
        # that stopped it (*done bytes appended).
        cdef size_t off, k
        cdef int err
        while done[0] < n:
            if self.map == NULL or self.pos >= self.map_start + WAL_MAP_BYTES:
                err = self.map_window()
                if err:
                    return err
            off = self.pos - self.map_start
            k = n - done[0]
            if k > WAL_MAP_BYTES - off:
                k = WAL_MAP_BYTES - off
            if map_copy(self.map + off, p + done[0], k) != 0:
                return EIO               # SIGBUS: the file was cut behind our back
            self.pos += k
            done[0] += k
        return 0

    @property
    def size(self):
        """Bytes in the file: its ``size``, with what C wrote added first."""
        self.settle_size()
        return self.file.size

    @property
    def mapped_appends(self):
        """True iff appends are copies into a mapping of the file."""
        return self.mapped

    cdef int settle_size(self) except -1:
        # pos runs ahead of file.size by the bytes C wrote since the last call.
        if self.fd >= 0 and self.file.size != self.pos:
            self.file.size = self.pos
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
                if self.append_file is None:
                    raise ValueError("append to a retired WAL writer")
                self.append_file(PyBytes_FromStringAndSize(<const char*>self.buf, n))
                return n
            with nogil:
                if self.mapped:
                    err = self.map_append(self.buf, n, &done)
                else:
                    err = write_all(self.fd, self.buf, n, &done)
                    self.pos += done
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
