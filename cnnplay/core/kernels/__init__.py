"""Numba kernels. Public wrappers validate and allocate; private @njit(cache=True)
functions compute. All arrays are float32 and C-contiguous; spatial kernels take
(C, H, W) maps (a 1D signal is a map of height 1) and per-axis (h, w) tuples.

Forward (one module each): conv.conv2d, pool.maxpool2d / pool.avgpool2d,
norm.batchnorm / norm.layernorm (on (C, N) views), pointwise.leaky_relu,
dense.linear. Backward (vector-Jacobian products): grad.*_backward.

BLAS and numba's pool: convolutions with many channels use numpy's matmul (see
conv.py), so two thread pools take turns on the cores: OpenBLAS's and numba's
(OpenMP). They never compute at once (the calls are sequential), but libgomp's
threads busy-wait for new work after every parallel loop (300000 spins, several
milliseconds), which took a core from the next matmul and doubled its time. Its
GOMP_SPINCOUNT is lowered here (before numba starts its threads; unless already
set) so that they spin ~0.1 ms: long enough that the kernels of one pass, which
follow each other within microseconds, still find them awake, short enough that
a matmul after them has the cores to itself. The other way round, OpenBLAS's idle
threads busy-wait 2^28 cycles (about 0.1 s) after every matmul, yielding but
runnable: a conv layer after a GEMM layer ran at half speed (the direct kernel at
46-56 GFLOP/s instead of 94-112 on 64-512 channels). OPENBLAS_THREAD_TIMEOUT=12
(2^12 cycles) is set in cnnplay/__init__.py, before numpy loads OpenBLAS (unless
already set; numpy imported before cnnplay keeps OpenBLAS's default).
Both pools run on the thread count the launch policy chose (launch.py, blas.py).

The compiled-kernel cache lives in the platform's cache folder (set here, before
numba is first imported, unless NUMBA_CACHE_DIR is already set), so caching
works when the package is installed read-only.

Freed memory stays in the process for the next pass (heap.py): glibc returned
each pass's maps to the system and the next pass faulted them back in page by
page (2273 faults, about 40 % of a default-256 forward on a virtual machine).
"""

import os
import sys


def platform_cache_dir() -> str:
    """The per-user cache folder of this platform (no Qt needed)."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData", "Local")
    elif sys.platform == "darwin":
        base = os.path.join(os.path.expanduser("~"), "Library", "Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return base


os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(platform_cache_dir(), "cnnplay", "numba"))
os.environ.setdefault("GOMP_SPINCOUNT", "5000")

from .heap import keep_freed_memory  # noqa: E402  (after the environment above)

keep_freed_memory()
