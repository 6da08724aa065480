# cython: language_level=3
# Waiting for the GIL to look free before taking it back: see _gil_spin.h.
cdef extern from "_gil_spin.h":
    int GIL_SPIN "KVCY_GIL_SPIN"         # 1 where the wait is compiled in
    void gil_spin_init "kvcy_gil_spin_init"() noexcept
    bint wait_gil_free "kvcy_wait_gil_free"() noexcept nogil
    bint gil_long_holder "kvcy_gil_long_holder"() noexcept
    bint gil_shared "kvcy_gil_shared"() noexcept
    bint gil_locked "kvcy_gil_locked"() noexcept nogil
