"""Cached kernels load after the first maps, on a thread of their own (the app's start).

The first kernel numba loads from its disk cache sets up numba's CPU target: its
registries import numba's numpy support, which imports scipy.linalg (for BLAS),
which imports numpy.f2py, numpy.testing and more. On a 2-vCPU VM that took
0.9 s of a warm start (the first forward pass of the start-up network), most of
it Python holding the GIL while the window was being built; on the numpy path
the same maps take milliseconds.

So the app calls `defer()` before its first forward pass. From then on
`coldstart.ready` counts a kernel that is in the disk cache but not loaded in this
process as not ready (numpy computes; results agree to ~1e-6) and queues it here
(`wanted`). `release()` (the app: once the first maps are painted; at the latest
RELEASE_AFTER seconds after `defer()`) lets the loader thread load the queued
kernels, each ready for the wrappers as soon as it is in. When the queue is
empty, deferring ends: a kernel asked for later loads on its first call, as
without `defer()` (the target is set up by then: 10-30 ms per kernel).

Only entries the cache holds are loaded (never compiled here): a kernel whose
entry is missing or fails to load is left to its first call, as before.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)

RELEASE_AFTER = 10.0  # seconds: load even if release() never comes

_lock = threading.Lock()
_deferring = False
_queue: dict[str, object] = {}  # kernel name -> numba dispatcher, in the order asked for
_tried: set[str] = set()  # loaded or failed: never queued again
_go = threading.Event()
_thread: threading.Thread | None = None


def defer() -> None:
    """From now until the queued kernels are loaded, cached kernels wait for the loader
    (once per process; call it before the threads that compute start)."""
    global _deferring, _thread
    with _lock:
        if _thread is not None:
            return
        _deferring = True
        _thread = threading.Thread(target=_load_queued, name="cnnplay-kernel-load", daemon=True)
    _thread.start()


def release() -> None:
    """Load the queued kernels now (on the loader thread)."""
    _go.set()


def deferring() -> bool:
    """True while cached kernels wait for the loader (calls meanwhile may run on numpy)."""
    return _deferring


def wait(timeout: float | None = None) -> bool:
    """Block until the loader has finished (True) or `timeout` passed (False)."""
    t = _thread
    if t is None:
        return True
    t.join(timeout)
    return not t.is_alive()


def wanted(kernel, name: str) -> bool:
    """`kernel` (in the disk cache, not loaded here) is asked for: True when it waits
    for the loader (queued), False when it may load on its first call."""
    with _lock:
        if not _deferring or name in _tried:
            return False
        _queue.setdefault(name, kernel)
        return True


def _load_queued() -> None:
    global _deferring
    _go.wait(RELEASE_AFTER)
    while True:
        with _lock:
            todo = list(_queue.items())
            _queue.clear()
            _tried.update(name for name, _ in todo)
            if not todo:
                _deferring = False  # under the lock: nothing is queued after this
                return
        for name, kernel in todo:
            load(kernel, name)


def load(kernel, name: str = "") -> int:
    """Load every entry of `kernel` that the disk cache holds for this machine (never
    compiles); returns how many. Any failure: logged, the kernel loads on first call."""
    n = 0
    try:
        cache = kernel._cache
        index = cache._cache_file._load_index()
        codegen = kernel.targetctx.codegen()
        for key in list(index):
            if key[1] == codegen.magic_tuple() and cache._index_key(key[0], codegen) in index:
                kernel.compile(key[0])  # a cache hit: loads it (under numba's compiler lock)
                n += 1
    except Exception as e:  # noqa: BLE001 (the kernel then loads, or compiles, on its first call)
        log.warning("loading the cached kernel %s failed (%s: %s)", name or kernel, type(e).__name__, e)
    return n
