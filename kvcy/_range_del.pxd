# cython: language_level=3
# RangeTombstones: the range deletions of one published read state,
# fragmented for lookups in C.  See kvcy/_range_del.pyx.
from libc.stdint cimport uint64_t

# One fragment: a key range [start, stop) that the same set of tombstones
# covers; the fragments of a layer do not overlap and are sorted by start.
cdef struct Fragment:
    const unsigned char* start       # bytes kept alive by the layer's RangeTombstones.keys
    size_t start_len
    const unsigned char* stop
    size_t stop_len
    Py_ssize_t seqs_begin            # sequences of the covering tombstones:
    Py_ssize_t seqs_end              #   seqs[seqs_begin:seqs_end], newest first

# One fragmented set of tombstones (its owner keeps the memory alive).
cdef struct Layer:
    Fragment* frags
    Py_ssize_t num_frags
    uint64_t* seqs

cdef class RangeTombstones:
    cdef tuple own                   # the (start, stop, sequence) fragmented here, by sequence
    cdef list keys                   # the fragment bounds' bytes
    cdef Fragment* frags             # sorted, non-overlapping
    cdef Py_ssize_t num_frags
    cdef uint64_t* seqs              # every fragment's sequences, one run per fragment
    cdef tuple layers                # further RangeTombstones whose fragments count too
    cdef Layer* c_layers             # this one's fragments, then each layer's own
    cdef Py_ssize_t num_layers
    cdef Py_ssize_t count            # tombstones in all layers

    # The sequence of the newest tombstone covering key with sequence <=
    # `sequence`, or 0 when none does (sequence 0 is never a write's).  An
    # entry of key with a smaller sequence is deleted at `sequence`.
    cdef uint64_t covering(self, const unsigned char* key, size_t klen,
                           uint64_t sequence) noexcept nogil
    # covering(), and the end of the fragment it was found in: every key in
    # [key, stop) is covered by a tombstone at least that new.  stop is
    # left alone when the result is 0.
    cdef uint64_t covering_until(self, const unsigned char* key, size_t klen,
                                 uint64_t sequence, const unsigned char** stop,
                                 size_t* stop_len) noexcept nogil
