/* Waiting for the GIL to look free before taking it back.
 *
 * A reader that ends its GIL-free search while another thread holds the
 * GIL would, in CPython's take_gil, sleep on a condition variable until
 * woken.  On a virtual machine that wake-up costs tens of microseconds, ten
 * times a get, and while the sleeper wakes the other thread often takes the
 * GIL again, so two reader threads fall into a convoy and run at the rate
 * of one.  The other thread usually holds the GIL for well under a
 * microsecond (a loop step and a call), so the reader first spins, for a
 * few microseconds at most, until the GIL's `locked` flag reads 0, and only
 * then takes it: mostly without sleeping.  (PostgreSQL's spinlocks and
 * RocksDB's WriteThread::AwaitState spin before blocking for the same
 * reason.)
 *
 * The flag is CPython's internal state: its place is read from the
 * internal headers of the Python being built against, for CPython 3.10 to
 * 3.13 with a GIL; elsewhere kvcy_wait_gil_free() returns at once and the
 * GIL is taken as before.  The flag is only read, never written.
 */
#ifndef KVCY_GIL_SPIN_H
#define KVCY_GIL_SPIN_H

#include <Python.h>

#if defined(__GNUC__) && defined(__has_include) && !defined(Py_GIL_DISABLED) \
    && !defined(PYPY_VERSION) && PY_VERSION_HEX >= 0x030A0000 && PY_VERSION_HEX < 0x030E0000
#  if __has_include("internal/pycore_runtime.h") && __has_include("internal/pycore_interp.h")
#    define KVCY_GIL_SPIN 1
#  endif
#endif

#ifndef KVCY_GIL_SPIN
#  define KVCY_GIL_SPIN 0
#endif

/* Spins of one pause each (25 ns on the 2-vCPU AMD EPYC machine of
 * docs/benchmarks.md, about 40 ns on recent Intel cores): a few
 * microseconds, after which the thread sleeps in take_gil as before. */
#define KVCY_GIL_SPINS 256

#if KVCY_GIL_SPIN
#  ifndef Py_BUILD_CORE
#    define Py_BUILD_CORE 1
#    define KVCY_UNDEF_BUILD_CORE
#  endif
#  undef _PyGC_FINALIZED            /* 3.11's public and internal headers both define it */
#  include "internal/pycore_runtime.h"
#  if PY_VERSION_HEX >= 0x030C0000
#    include "internal/pycore_interp.h"
#  endif
#  ifdef KVCY_UNDEF_BUILD_CORE
#    undef Py_BUILD_CORE
#    undef KVCY_UNDEF_BUILD_CORE
#  endif

static const int* kvcy_gil_flag = NULL;
static const unsigned long* kvcy_gil_switches = NULL;
static __thread unsigned long kvcy_seen_switches;
static __thread unsigned int kvcy_shared_calls;     /* calls still answered "shared" */

/* REQUIRES: the GIL held (3.12 and later read the interpreter's GIL). */
static void kvcy_gil_spin_init(void) {
#  if PY_VERSION_HEX >= 0x030C0000
    struct _gil_runtime_state* gil = PyInterpreterState_Get()->ceval.gil;
#  else
    struct _gil_runtime_state* gil = &_PyRuntime.ceval.gil;
#  endif
    kvcy_gil_flag = (const int*)&gil->locked;
    kvcy_gil_switches = &gil->switch_number;
}

/* Whether other threads have been taking the GIL lately: one has taken it
 * since this thread asked last (CPython counts the times the GIL passes
 * from one thread to another), or did so within this thread's last
 * KVCY_GIL_SHARED_CALLS calls.  The memory matters: a thread that waited
 * for the GIL is woken too slowly to take it between two short searches
 * of a thread that keeps releasing it, so the count can stand still
 * for a while with two threads as busy as ever.  REQUIRES: the GIL held. */
#define KVCY_GIL_SHARED_CALLS 16384

static inline int kvcy_gil_shared(void) {
    unsigned long n;
    if (kvcy_gil_switches == NULL)
        return 0;
    n = __atomic_load_n(kvcy_gil_switches, __ATOMIC_RELAXED);
    if (n != kvcy_seen_switches) {
        kvcy_seen_switches = n;
        kvcy_shared_calls = KVCY_GIL_SHARED_CALLS;
        return 1;
    }
    if (kvcy_shared_calls == 0)
        return 0;
    kvcy_shared_calls--;
    return 1;
}

static inline void kvcy_wait_gil_free(void) {
    int i;
    if (kvcy_gil_flag == NULL)
        return;
    for (i = 0; i < KVCY_GIL_SPINS && __atomic_load_n(kvcy_gil_flag, __ATOMIC_RELAXED); i++) {
#  if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#  elif defined(__aarch64__)
        __asm__ __volatile__("yield");
#  endif
    }
}

static inline int kvcy_gil_locked(void) {
    return kvcy_gil_flag != NULL && __atomic_load_n(kvcy_gil_flag, __ATOMIC_RELAXED);
}

#else
static inline int kvcy_gil_locked(void) { return 0; }
static void kvcy_gil_spin_init(void) {}
static inline void kvcy_wait_gil_free(void) {}
static inline int kvcy_gil_shared(void) { return 0; }
#endif

#endif
