/* Reading table files through a read-only shared mapping, as LevelDB does
 * on 64-bit hosts: a block read becomes a memcpy instead of a pread system
 * call.  A mapping has one hazard pread lacks: touching a page past the end
 * of a file that shrank after it was mapped raises SIGBUS.  Table files never
 * shrink while kvcy has them open, but another process could cut one, and
 * kvcy must then report corruption, not die.  So every read of a mapping
 * runs under kvcy_map_run, which arms a per-thread jump target that a SIGBUS
 * handler returns to; a SIGBUS anywhere else goes to the handler that was
 * installed before (or the default action), by re-raising once the old
 * handler is back in place.
 */
#ifndef KVCY_MAPPED_FILE_H
#define KVCY_MAPPED_FILE_H

#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

/* volatile: a store the compiler can prove nothing reads before the next
   store (memcpy and inlined code do not read it) would be dropped as dead. */
static __thread sigjmp_buf *volatile kvcy_map_jump = NULL;
static struct sigaction kvcy_map_previous;
static int kvcy_map_installed = 0;

static void kvcy_map_on_sigbus(int sig, siginfo_t *info, void *context)
{
    sigjmp_buf *jump = kvcy_map_jump;
    if (jump != NULL) {
        kvcy_map_jump = NULL;
        siglongjmp(*jump, 1);
    }
    /* Not a copy of ours: hand the fault to whoever had it before.  Returning
       re-runs the faulting instruction, which now meets that handler. */
    sigaction(SIGBUS, &kvcy_map_previous, NULL);
    (void)sig; (void)info; (void)context;
}

/* Install the handler once per process (called with the GIL held, so no
   race); 0 on success, -1 when the mapping should not be used. */
static int kvcy_map_install(void)
{
    struct sigaction action;
    if (kvcy_map_installed)
        return 0;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = kvcy_map_on_sigbus;
    /* SA_NODEFER: the handler leaves by siglongjmp without restoring the
       signal mask (sigsetjmp(.., 0) saves none, which keeps the copy cheap),
       so SIGBUS must not stay blocked after it. */
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGBUS, &action, &kvcy_map_previous) != 0)
        return -1;
    kvcy_map_installed = 1;
    return 0;
}

/* What kvcy_map_run returns when fn touched a page the file no longer has. */
#define KVCY_MAP_FAULT (-1000)

/* Run fn(arg), which reads from a mapping: fn's result, or KVCY_MAP_FAULT
   when the file behind the mapping no longer holds a page fn touched
   (SIGBUS).  fn must leave nothing half done that a jump out of it would
   lose: it holds no lock and is not inside malloc while it reads the
   mapping, and whatever it allocated it has already stored through arg. */
static int kvcy_map_run(int (*fn)(void *), void *arg)
{
    sigjmp_buf jump;
    int result;
    if (sigsetjmp(jump, 0) != 0)
        return KVCY_MAP_FAULT;
    kvcy_map_jump = &jump;
    __asm__ __volatile__("" ::: "memory");
    result = fn(arg);
    __asm__ __volatile__("" ::: "memory");
    kvcy_map_jump = NULL;
    return result;
}

/* Map the first size bytes of fd read-only: the address, or NULL. */
static const unsigned char *kvcy_map_open(int fd, uint64_t size)
{
    void *p;
    if (size == 0 || size > (uint64_t)SIZE_MAX)
        return NULL;
    p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return NULL;
    return (const unsigned char *)p;
}

static void kvcy_map_close(const unsigned char *p, uint64_t size)
{
    if (p != NULL)
        munmap((void *)p, (size_t)size);
}

#endif
