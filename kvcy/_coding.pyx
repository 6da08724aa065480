# cython: language_level=3, embedsignature=True
"""Python-facing wrappers of the integer codecs in _coding.pxd.

The engine cimports the inline helpers directly; these wrappers exist for
Python layers (manifest, properties) and tests.  Decoders take a bytes-like
buffer and an offset and return (value, next_offset); truncated or overlong
input raises CorruptionError and never reads past the buffer.
"""
from libc.stdint cimport uint32_t, uint64_t

from kvcy._coding cimport (put_fixed32, put_fixed64, put_varint32, put_varint64,
                           get_fixed32, get_fixed64, get_varint32, get_varint64)
from kvcy.errors import CorruptionError


cdef inline const unsigned char* _start(const unsigned char[::1] buf, Py_ssize_t offset) except NULL:
    if offset < 0 or offset > buf.shape[0]:
        raise ValueError("offset %d outside buffer of %d bytes" % (offset, buf.shape[0]))
    if buf.shape[0] == 0:
        return <const unsigned char*>""
    return &buf[0]


def encode_fixed32(uint32_t value):
    cdef unsigned char out[4]
    put_fixed32(out, value)
    return (<char*>out)[:4]


def encode_fixed64(uint64_t value):
    cdef unsigned char out[8]
    put_fixed64(out, value)
    return (<char*>out)[:8]


def encode_varint32(uint32_t value):
    cdef unsigned char out[5]
    cdef unsigned char* end = put_varint32(out, value)
    return (<char*>out)[:end - out]


def encode_varint64(uint64_t value):
    cdef unsigned char out[10]
    cdef unsigned char* end = put_varint64(out, value)
    return (<char*>out)[:end - out]


def decode_fixed32(const unsigned char[::1] buf, Py_ssize_t offset=0):
    cdef const unsigned char* base = _start(buf, offset)
    cdef uint32_t v
    cdef const unsigned char* q = get_fixed32(base + offset, base + buf.shape[0], &v)
    if q == NULL:
        raise CorruptionError("truncated fixed32 at offset %d" % offset)
    return v, q - base


def decode_fixed64(const unsigned char[::1] buf, Py_ssize_t offset=0):
    cdef const unsigned char* base = _start(buf, offset)
    cdef uint64_t v
    cdef const unsigned char* q = get_fixed64(base + offset, base + buf.shape[0], &v)
    if q == NULL:
        raise CorruptionError("truncated fixed64 at offset %d" % offset)
    return v, q - base


def decode_varint32(const unsigned char[::1] buf, Py_ssize_t offset=0):
    cdef const unsigned char* base = _start(buf, offset)
    cdef uint32_t v
    cdef const unsigned char* q = get_varint32(base + offset, base + buf.shape[0], &v)
    if q == NULL:
        raise CorruptionError("truncated or overlong varint32 at offset %d" % offset)
    return v, q - base


def decode_varint64(const unsigned char[::1] buf, Py_ssize_t offset=0):
    cdef const unsigned char* base = _start(buf, offset)
    cdef uint64_t v
    cdef const unsigned char* q = get_varint64(base + offset, base + buf.shape[0], &v)
    if q == NULL:
        raise CorruptionError("truncated or overlong varint64 at offset %d" % offset)
    return v, q - base
