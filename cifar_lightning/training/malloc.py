"""glibc's allocator, told to keep the memory a training step frees for the next step.

By default glibc hands large freed blocks back to the kernel (``munmap``, heap trimming) and a
CPU training step then faults the same pages in again, zeroed, at every step, spending much of its time in
the kernel (measured in BENCHMARKS.md). Raising the mmap and trim thresholds keeps that memory in the
process, as jemalloc or tcmalloc would. Only the process's owner should do this: ``python -m cifar_lightning`` calls it.
"""

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest: blocks above it are still mapped and unmapped
TRIM_THRESHOLD = 2**30  # free heap kept before trimming


def keep_freed_memory() -> bool:
    """Set the thresholds where the C library is glibc (Linux); returns whether it did."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
