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
#include <stdint.h>

#if defined(__GNUC__) && defined(__has_include) && !defined(Py_GIL_DISABLED) \
    && !defined(PYPY_VERSION) && PY_VERSION_HEX >= 0x030A0000 && PY_VERSION_HEX < 0x030E0000
#  if __has_include("internal/pycore_runtime.h") && __has_include("internal/pycore_interp.h")
#    define KVCY_GIL_SPIN 1
#  endif
#endif

#ifndef KVCY_GIL_SPIN
#  define KVCY_GIL_SPIN 0
#endif

/* How long a thread spins for the GIL before it takes it as CPython does
 * (sleeping until woken): a few microseconds, several times the time
 * another reader holds the GIL per get, measured by the clock so that it
 * is the same on every CPU (a pause lasts 25 ns on the AMD EPYC machine of
 * docs/benchmarks.md, 40 ns on recent Intel cores, next to nothing on
 * ARM). */
#define KVCY_GIL_SPIN_NS 5000
#define KVCY_GIL_SPINS_PER_CLOCK 16

/* A thread whose spin failed and that then waited this long for the GIL
 * (the holder kept it until CPython's 5 ms switch interval made it let go)
 * keeps the GIL through its gets on cached data for KVCY_GIL_LONG_NS,
 * doubling while it happens again each time, up to a second
 * (kvcy_gil_long_holder).  4 ms: above the waits that the scheduler's time
 * slices cause with more reader threads than cores. */
#define KVCY_GIL_LONG_WAIT_NS 4000000ull
#define KVCY_GIL_LONG_NS 20000000ull
#define KVCY_GIL_LONG_NS_MAX 1000000000ull

#if KVCY_GIL_SPIN
#  ifndef Py_BUILD_CORE
#    define Py_BUILD_CORE 1
#    define KVCY_UNDEF_BUILD_CORE
#  endif
#  undef _PyGC_FINALIZED            /* 3.11's public and internal headers both define it;
                                       the internal one stays */
#  include "internal/pycore_runtime.h"
#  if PY_VERSION_HEX >= 0x030C0000
#    include "internal/pycore_interp.h"
#  endif
#  ifdef KVCY_UNDEF_BUILD_CORE
#    undef Py_BUILD_CORE
#    undef KVCY_UNDEF_BUILD_CORE
#  endif
#  include <time.h>

/* Where the GIL's state lives (set by kvcy_gil_spin_init); only read. */
static const int* kvcy_gil_flag = NULL;                 /* locked */
static const unsigned long* kvcy_gil_switches = NULL;   /* switch_number */
static const uintptr_t* kvcy_gil_holder = NULL;         /* last_holder: a PyThreadState* */

/* kvcy_gil_shared's memory, per thread. */
static __thread unsigned long kvcy_seen_switches;
static __thread int kvcy_seen_known;                    /* kvcy_seen_switches was read */
static __thread unsigned int kvcy_shared_calls;         /* calls still answered "shared" */

/* kvcy_wait_gil_free's failures and kvcy_gil_long_holder's state, per thread. */
static __thread uint64_t kvcy_failed_at;        /* when the last spin failed (ns); 0: none since */
static __thread uintptr_t kvcy_failed_holder;   /* the GIL's holder then */
static __thread uint64_t kvcy_long_until;       /* keep the GIL until then (ns); 0: no */
static __thread uint64_t kvcy_long_next = KVCY_GIL_LONG_NS;

/* The thread that last began to keep the GIL because of a long holder.
 * Another reader's spin fails while it does, and must not make that reader
 * keep the GIL too: the readers would hand each other the long hold in
 * turn and never run at once again. */
static uintptr_t kvcy_long_thread;

/* REQUIRES: the GIL held (3.12 and later read the interpreter's GIL). */
static void kvcy_gil_spin_init(void) {
#  if PY_VERSION_HEX >= 0x030C0000
    struct _gil_runtime_state* gil = PyInterpreterState_Get()->ceval.gil;
#  else
    struct _gil_runtime_state* gil = &_PyRuntime.ceval.gil;
#  endif
    kvcy_gil_flag = (const int*)&gil->locked;
    kvcy_gil_switches = &gil->switch_number;
    kvcy_gil_holder = (const uintptr_t*)&gil->last_holder;
}

static inline uint64_t kvcy_spin_clock_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Whether other threads have been taking the GIL lately: one has taken it
 * since this thread asked last (CPython counts the times the GIL passes
 * from one thread to another), or did so within this thread's last
 * KVCY_GIL_SHARED_CALLS calls.  The memory matters: a thread that waited
 * for the GIL is woken too slowly to take it between two short searches
 * of a thread that keeps releasing it, so the count can stand still
 * for a while with two threads as busy as ever.  A thread's first call
 * answers 0.  REQUIRES: the GIL held. */
#define KVCY_GIL_SHARED_CALLS 16384

static inline int kvcy_gil_shared(void) {
    unsigned long n;
    if (kvcy_gil_switches == NULL)
        return 0;
    n = __atomic_load_n(kvcy_gil_switches, __ATOMIC_RELAXED);
    if (!kvcy_seen_known) {
        kvcy_seen_known = 1;
        kvcy_seen_switches = n;
        return 0;
    }
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

/* Spin, without the GIL, until the GIL looks free, for KVCY_GIL_SPIN_NS
 * at most; then the caller takes it as CPython does.  A spin that ends
 * with the GIL still held is noted (time and holder) for
 * kvcy_gil_long_holder.  Returns 1 iff it ended that way. */
static inline int kvcy_wait_gil_free(void) {
    int i;
    uint64_t deadline = 0;
    if (kvcy_gil_flag == NULL || !__atomic_load_n(kvcy_gil_flag, __ATOMIC_RELAXED))
        return 0;
    for (i = 1; __atomic_load_n(kvcy_gil_flag, __ATOMIC_RELAXED); i++) {
        if (i % KVCY_GIL_SPINS_PER_CLOCK == 0) {
            uint64_t now = kvcy_spin_clock_ns();
            if (deadline == 0) {
                deadline = now + KVCY_GIL_SPIN_NS;
            } else if (now >= deadline) {
                kvcy_failed_at = now;
                kvcy_failed_holder = __atomic_load_n(kvcy_gil_holder, __ATOMIC_RELAXED);
                return 1;
            }
        }
#  if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#  elif defined(__aarch64__)
        __asm__ __volatile__("isb");
#  endif
    }
    kvcy_long_next = KVCY_GIL_LONG_NS;
    return 0;
}

/* Whether another thread holds the GIL for long stretches, so that this
 * thread's gets on cached data should keep it for their search.
 *
 * Releasing the GIL around a short search is a loss when another thread
 * holds it for long stretches (pure Python work keeps it until CPython's
 * 5 ms switch interval): that thread takes it at each release and the get
 * waits 5 ms to have it back, the convoy of a GIL released around short
 * calls.  The sign is a spin that failed (kvcy_wait_gil_free) followed by
 * a wait of 4 ms or more for the GIL, while the holder was not a reader
 * that is itself keeping the GIL because of this (kvcy_long_thread).  Then
 * the answer is 1 for KVCY_GIL_LONG_NS, doubling while the sign returns
 * each time the thread tries again, up to a second; a spin that succeeds
 * starts the doubling over.  Reads the clock only after a failed spin or
 * while the answer is 1.  REQUIRES: the GIL held. */
static inline int kvcy_gil_long_holder(void) {
    uint64_t now;
    if (kvcy_failed_at != 0) {
        now = kvcy_spin_clock_ns();
        if (now - kvcy_failed_at >= KVCY_GIL_LONG_WAIT_NS
                && kvcy_failed_holder != __atomic_load_n(&kvcy_long_thread, __ATOMIC_RELAXED)) {
            kvcy_long_until = now + kvcy_long_next;
            if (kvcy_long_next < KVCY_GIL_LONG_NS_MAX)
                kvcy_long_next *= 2;
            __atomic_store_n(&kvcy_long_thread, (uintptr_t)PyThreadState_Get(), __ATOMIC_RELAXED);
        }
        kvcy_failed_at = 0;
    } else if (kvcy_long_until == 0) {
        return 0;
    } else {
        now = kvcy_spin_clock_ns();
    }
    if (kvcy_long_until == 0)
        return 0;
    if (now < kvcy_long_until)
        return 1;
    kvcy_long_until = 0;                 /* try releasing again; if the sign returns, longer */
    return 0;
}

static inline int kvcy_gil_locked(void) {
    return kvcy_gil_flag != NULL && __atomic_load_n(kvcy_gil_flag, __ATOMIC_RELAXED);
}

#else
static inline int kvcy_gil_locked(void) { return 0; }
static void kvcy_gil_spin_init(void) {}
static inline int kvcy_wait_gil_free(void) { return 0; }
static inline int kvcy_gil_shared(void) { return 0; }
static inline int kvcy_gil_long_holder(void) { return 0; }
#endif

#endif
