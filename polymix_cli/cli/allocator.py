"""glibc's malloc tunables, set in this process at start-up.

glibc hands every allocation above ~32 MiB back to the OS when freed, so a large tensor
made at every step (a mini-batch's basis matrix, an evaluation chunk) is page-faulted in
again each time. :func:`tune_malloc` raises the mmap and trim thresholds with ``mallopt``
so that freed memory stays in the heap for reuse (measured by ``bench/run.py
--allocator``: the mini-batch step at N = 1e5). Linux with glibc only; a no-op elsewhere
and with ``POLYMIX_MALLOC=system``.
"""

from __future__ import annotations

import ctypes
import os
import sys

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

# mallopt takes an int: 2 GiB - 1 is the largest threshold it accepts
THRESHOLD = 2**31 - 1
TUNABLES = {M_MMAP_THRESHOLD: THRESHOLD, M_TRIM_THRESHOLD: THRESHOLD}

# The same tunables as glibc reads them from the environment at a process's start: exported
# once this process is tuned, so that the processes it starts (launcher workers) are too.
ENV_TUNABLES = {"MALLOC_MMAP_THRESHOLD_": str(THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(THRESHOLD)}

ENV = "POLYMIX_MALLOC"  # "system": leave the allocator alone; set to "tuned" once tuned


def glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        return ctypes.CDLL(None)  # the symbols already loaded: glibc's mallopt
    except (ValueError, OSError):
        return None


def set_thresholds(libc: ctypes.CDLL) -> bool:
    """Apply :data:`TUNABLES` with ``mallopt``; True when glibc accepted every one."""
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    accepted = [mallopt(param, value) == 1 for param, value in TUNABLES.items()]  # every one
    return all(accepted)


def tune_malloc() -> str:
    """Tune glibc's malloc for this process (and, through the environment, its children)
    unless ``POLYMIX_MALLOC`` says otherwise; return the allocator in use, ``tuned`` or
    ``system`` (or the value of ``POLYMIX_MALLOC`` when it opts out), which the run's log
    reports from ``POLYMIX_MALLOC``."""
    requested = os.environ.get(ENV, "")
    if requested not in ("", "tuned"):
        return requested
    libc = glibc()
    if libc is None or not set_thresholds(libc):
        os.environ.pop(ENV, None)  # not tuned: the log says "system"
        return "system"
    os.environ.update(ENV_TUNABLES)
    os.environ[ENV] = "tuned"
    return "tuned"
