"""Keep freed memory in the process for the next pass (glibc on Linux only).

A forward pass keeps every layer's output (the app shows them all), then the
next pass replaces them. With glibc's default settings those megabytes go back
to the system when they are freed (arrays above the adaptive mmap threshold
are unmapped; the heap is trimmed past twice that), and the next pass takes
them again page by page: every 4 KB page faults and is zeroed by the kernel.
On big-kernel-512 that was 1000 faults per pass and 28 % of its time; on
default-256, 2273 faults. Raising the two thresholds keeps the freed memory
for reuse; the peak (what the memory figures count) does not change, only
when memory is returned: what a pass used stays with the process, up to
TRIM_BYTES of free memory on top of the heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_BYTES = 32 << 20  # glibc's largest mmap threshold: bigger blocks are still mapped per use
TRIM_BYTES = 256 << 20  # free memory kept on top of the heap before it is returned


def keep_freed_memory() -> bool:
    """Set glibc's thresholds (see the module doc); False where there is no glibc."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_BYTES))
    except (OSError, AttributeError):
        return False
