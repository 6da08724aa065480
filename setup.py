"""Build kvcy's Cython kernels.

Every kvcy/_*.pyx becomes an extension module kvcy._name.  Environment
switches:

  KVCY_DEBUG=1     checks on (boundscheck, wraparound, initializedcheck),
                   linetrace, and the KVCY_DEBUG C macro that turns on the
                   ``if KVCY_DEBUG:`` invariant checks (see kvcy/_debug.pxd).
  KVCY_ANNOTATE=1  write cython -a HTML next to each .pyx.

Bounds-check directives are switched off here, and only here, for the kernel
modules that read raw pointers with explicit (p, limit) checks, so that a
debug build really turns every check back on.
"""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("KVCY_DEBUG", "") not in ("", "0")
ANNOTATE = os.environ.get("KVCY_ANNOTATE", "") not in ("", "0")

# Kernels whose hot loops work on raw pointers with explicit limits: only
# these get bounds checks and Python division semantics switched off.  The
# other modules (the C read path included) take pointers from checked
# lengths too, but keep the directives on, where they cost one check per call.
UNCHECKED_KERNELS = {"_coding", "_crc32c", "_block", "_bloom", "_skiplist", "_merge",
                     "_snappy"}

# Never traced, even in debug builds: their functions run under a mutex that a
# thread holding the GIL may wait for, and CYTHON_TRACE_NOGIL makes a traced
# nogil function take the GIL, which would deadlock the two.
UNTRACED = {"_block_cache"}

BASE_DIRECTIVES = {
    "language_level": 3,
    "embedsignature": True,
}


def extension(pyx):
    name = os.path.splitext(os.path.basename(pyx))[0]
    macros = [("KVCY_DEBUG", "1" if DEBUG else "0")]
    if DEBUG and name not in UNTRACED:
        macros.append(("CYTHON_TRACE_NOGIL", "1"))
    return Extension(
        "kvcy." + name,
        [pyx],
        include_dirs=["kvcy"],
        define_macros=macros,
        extra_compile_args=["-O0", "-g"] if DEBUG else ["-O3"],
    )


def _flags_changed():
    """True iff the last build used other debug/annotate flags or module sets.

    cythonize only regenerates C for changed .pyx/.pxd files, so switching
    KVCY_DEBUG on an existing tree would silently keep the old directives;
    a stamp of the flags forces a full regeneration when they change.
    """
    stamp = os.path.join("build", "kvcy-cython-flags")
    flags = "debug=%d annotate=%d unchecked=%s untraced=%s" % (
        DEBUG, ANNOTATE, ",".join(sorted(UNCHECKED_KERNELS)), ",".join(sorted(UNTRACED)))
    try:
        with open(stamp) as f:
            old = f.read()
    except OSError:
        old = None
    if old != flags:
        os.makedirs("build", exist_ok=True)
        with open(stamp, "w") as f:
            f.write(flags)
    return old is not None and old != flags


def modules():
    sources = sorted(glob.glob(os.path.join("kvcy", "_*.pyx")))
    # Debug builds turn every check back on; Cython's defaults are on already
    # for the other modules.
    checks = dict(boundscheck=DEBUG, wraparound=DEBUG, initializedcheck=DEBUG)
    kernel_directives = dict(BASE_DIRECTIVES, cdivision=True, **checks)
    other_directives = dict(BASE_DIRECTIVES)
    groups = {}                  # (kernel, traced) -> extensions
    for pyx in sources:
        name = os.path.splitext(os.path.basename(pyx))[0]
        key = (name in UNCHECKED_KERNELS, DEBUG and name not in UNTRACED)
        groups.setdefault(key, []).append(extension(pyx))
    force = _flags_changed()
    out = []
    for (kernel, traced), extensions in sorted(groups.items()):
        directives = dict(kernel_directives if kernel else other_directives)
        if traced:
            directives["linetrace"] = True
        out += cythonize(extensions, compiler_directives=directives,
                         annotate=ANNOTATE, include_path=["."], force=force,
                         nthreads=CORES)
    return out


class ParallelBuildExt(build_ext):
    """build_ext compiling on every core unless -j says otherwise: pip
    install runs it without -j, and the C compile of 34 modules one at a
    time was half of a clean install (3m10s against 1m36s on 2 cores with
    the Cython step in parallel too)."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = CORES


CORES = os.cpu_count() or 1

setup(ext_modules=modules(), cmdclass={"build_ext": ParallelBuildExt})
