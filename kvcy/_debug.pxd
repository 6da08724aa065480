# cython: language_level=3
# KVCY_DEBUG is a C macro set by setup.py: 1 in debug builds (KVCY_DEBUG=1),
# 0 otherwise.  Guard invariant checks with ``if KVCY_DEBUG:``; the C compiler
# drops the dead branch in release builds.
cdef extern from *:
    """
    #ifndef KVCY_DEBUG
    #define KVCY_DEBUG 0
    #endif
    """
    const bint KVCY_DEBUG
