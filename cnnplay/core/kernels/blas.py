"""The thread count of numpy's BLAS, set like numba's: the launch policy's choice.

Channel-heavy convolutions multiply through numpy's matmul (OpenBLAS). The launch
policy (launch.ThreadPolicy) measures each kernel on all threads and on one and
picks the faster; without this module only numba's count followed that choice,
and OpenBLAS went on running on every core. With the other core busy, a 64-channel
Winograd layer's 16 products then took 11-13 ms per call (single calls 100-130 ms:
a BLAS thread waiting for its core) against 7.7-8.0 ms on one thread.

OpenBLAS's thread count is process-wide, not per thread as numba's is; it is set
only under launch's lock, where one thread launches at a time. numpy's wheels ship
OpenBLAS with prefixed, 64-bit-integer symbols (scipy_openblas_*64_); older or
distribution builds export the plain names. The library is found among those the
process has loaded (after numpy), so no second copy is opened. Where none is found
(another BLAS, e.g. MKL or Accelerate), `set_threads` does nothing.
"""

from __future__ import annotations

import ctypes
import os
import threading

import numpy as np

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
            "openblas_get_num_threads64_", "openblas_get_num_threads")

_lock = threading.Lock()
_found = None  # (setter, getter) once looked up; (None, None) when there is no OpenBLAS
_current = None  # the count last set here


def _loaded_libraries() -> list[str]:
    """Paths of the shared libraries this process has mapped whose name says openblas."""
    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rstrip("\n").split(" ", 5)[-1].strip()
                if "openblas" in path.lower() and path not in paths:
                    paths.append(path)
    except OSError:  # not Linux: look beside numpy instead
        import glob
        import os

        import numpy
        root = os.path.dirname(os.path.dirname(numpy.__file__))
        for folder in ("numpy.libs", os.path.join("numpy", ".dylibs"), "numpy"):
            paths += glob.glob(os.path.join(root, folder, "*openblas*"))
    return paths


def _lookup():
    global _found
    if _found is None:
        import numpy  # noqa: F401  (loads OpenBLAS first)

        setter = getter = None
        for path in _loaded_libraries():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            setter = next((getattr(lib, n) for n in _SETTERS if hasattr(lib, n)), None)
            getter = next((getattr(lib, n) for n in _GETTERS if hasattr(lib, n)), None)
            if setter is not None and getter is not None:
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                break
            setter = getter = None
        _found = (setter, getter)
    return _found


def available() -> bool:
    """Whether numpy's BLAS is an OpenBLAS whose thread count can be set."""
    return _lookup()[0] is not None


def threads() -> int | None:
    """OpenBLAS's thread count now (None without OpenBLAS)."""
    getter = _lookup()[1]
    return None if getter is None else int(getter())


def set_threads(n: int) -> None:
    """Let numpy's matmul use `n` threads (a no-op if it already does, or without OpenBLAS)."""
    global _current
    if n == _current:
        return
    with _lock:
        setter = _lookup()[0]
        if setter is not None:
            setter(int(n))
        _current = n


SPLIT = True  # batched products split across threads (False: one threaded BLAS call; for measurements)
SPLIT_PER_THREAD = 4  # products per thread from which a batch is split
_pool = None  # helper threads for batched_matmul, started on first use


def batched_matmul(a, b, out):
    """out[i] = a[i] @ b[i] (a may be one matrix for all i): with n > 1 BLAS threads,
    the batch is split into n parts, each multiplied on its own thread by a
    single-threaded BLAS. OpenBLAS splits every product of a batch across its
    threads and meets them again after each one; split by product, the threads
    meet once per batch (Winograd's forward: 0.88-1.01x the time on a quiet
    machine, 0.72-0.97x with another program running, where a thread waiting
    for its core at every meeting costs most). The count stays the launch
    policy's choice; call under launch's lock. A batch of fewer than
    SPLIT_PER_THREAD products per thread goes to BLAS whole: with 2-4 products
    of 256 x 512 x 196 (a 1x1 layer's batch) the threaded BLAS took 0.72-0.97x
    the split's time (an odd count leaves a thread idle), with 8-36 products
    1.02-1.11x (one process, 2 threads)."""
    n = _current or 1
    parts = min(n, out.shape[0])
    if parts <= 1 or out.shape[0] < SPLIT_PER_THREAD * n or not SPLIT or not available():
        return np.matmul(a, b, out=out)
    bounds = np.linspace(0, out.shape[0], parts + 1).astype(int)

    def mul(s):
        np.matmul(a if a.ndim == 2 else a[s], b[s], out=out[s])
    _split([lambda s=slice(bounds[i], bounds[i + 1]): mul(s) for i in range(parts)], n)
    return out


def matmuls(products) -> None:
    """out = a @ b for each (a, b, out) of products (2D, of different shapes; row-strided
    views are fine): with n > 1 BLAS threads, shared between n threads by their
    multiply-adds (the largest first, each to the least loaded thread), each on a
    single-threaded BLAS, as batched_matmul splits its batch. Winograd's stride-2
    scheme multiplies 9 products with inner dimensions of Ci, 2 Ci and 4 Ci."""
    n = _current or 1
    if n <= 1 or len(products) < SPLIT_PER_THREAD * n or not SPLIT or not available():
        for a, b, out in products:
            np.matmul(a, b, out=out)
        return
    work = [a.shape[0] * a.shape[1] * b.shape[1] for a, b, _ in products]
    groups, load = [[] for _ in range(n)], [0] * n
    for i in sorted(range(len(products)), key=lambda i: -work[i]):
        least = load.index(min(load))
        groups[least].append(products[i])
        load[least] += work[i]

    def mul(group):
        for a, b, out in group:
            np.matmul(a, b, out=out)
    _split([lambda g=g: mul(g) for g in groups if g], n)


def _split(jobs, n: int) -> None:
    """Run jobs (callables), the first on this thread and each other on a helper
    thread, with OpenBLAS on one thread meanwhile (then back on n)."""
    global _pool
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor
        _pool = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 2) - 1),
                                   thread_name_prefix="cnnplay-blas")
    set_threads(1)
    try:
        futures = [_pool.submit(job) for job in jobs[1:]]
        jobs[0]()
        for f in futures:
            f.result()
    finally:
        set_threads(n)
