"""glibc allocator settings for a process that runs a model batch after batch on the CPU.

By default glibc hands freed memory at the top of its heap back to the kernel once more than a
small threshold is free (M_TRIM_THRESHOLD, 128 KiB, raised adaptively to at most 64 MiB), and
serves large blocks by mmap, unmapping them on free. A model's per-batch temporaries (activations
of several MiB) are then given back after every batch and faulted in again in the next: the tiny
teacher at batch 16 took 4,600-7,700 minor page faults a clip that way, 200-850 with these
settings, and ran about 30% faster in the label pipeline (docs/PERFORMANCE.md). The cost is that
up to TRIM_THRESHOLD of freed memory stays with the process instead of going back to the system.
"""

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc malloc.h
TRIM_THRESHOLD = 1 << 30  # free memory kept at the heap's top before any is handed back
TOP_PAD = 256 << 20  # extra the heap grows by each time it must grow
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks below it come from the heap, not from mmap


def keep_freed_memory() -> bool:
    """Fix this process's trim, top-pad and mmap thresholds (idempotent). False, changing nothing,
    where the C library has no `mallopt` (not glibc) or refuses a value."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    return all(mallopt(option, value) == 1 for option, value in settings)
