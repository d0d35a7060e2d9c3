"""How parallel kernels are launched: one at a time, and serially when that is faster.

One at a time in the whole process: numba's workqueue threading layer (the one
every platform has; OpenMP and TBB are used only where their runtimes are
installed) is not thread-safe. Two threads inside parallel kernels at once abort
the process ("Concurrent access has been detected") or, when the race goes
undetected, hang it. The app computes on one worker, but a second window, a
worker still finishing after its window closed, or a script calling the core
from several threads would each be enough. So every public wrapper that launches
a parallel kernel holds this lock: uncontended it costs well under a microsecond
per layer, and the kernels use all cores anyway.

Serially when that is faster: see `sized` below.
"""

from __future__ import annotations

import functools
import threading

_LOCK = threading.RLock()  # re-entrant: a wrapper may call another wrapper


def one_at_a_time(fn):
    """Run `fn` (which launches parallel numba kernels) under the process-wide lock."""

    @functools.wraps(fn)
    def serialized(*args, **kwargs):
        with _LOCK:
            return fn(*args, **kwargs)

    return serialized


# -- small work runs serially where starting a parallel loop is slow -----------------------
#
# OpenMP starts a parallel loop in ~3 us. Numba's workqueue layer (macOS without
# libomp, Linux without libgomp) wakes sleeping threads for 60-150 us a loop: more
# than a ReLU on a 256x256 map costs. There, work below a kernel's break-even size
# runs in a serial twin: the same Python function compiled without parallel=True
# (prange runs as range), so it computes exactly the same numbers.

_twins: dict = {}
_slow_start: bool | None = None


def slow_parallel_start() -> bool:
    """True under numba's workqueue threading layer (decided once, at first use)."""
    global _slow_start
    if _slow_start is None:
        import numba
        from numba.np.ufunc import parallel
        parallel._launch_threads()  # picks the layer: TBB, OpenMP, else workqueue
        _slow_start = numba.threading_layer() == "workqueue"
    return _slow_start


def serial_twin(kernel):
    """`kernel` (an @njit(parallel=True) dispatcher) compiled serially, under a name of
    its own so that the two never share an entry of the on-disk cache."""
    twin = _twins.get(kernel)
    if twin is None:
        import types

        from numba import njit
        fn = kernel.py_func
        copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__,
                                  fn.__closure__)
        copy.__qualname__ = fn.__qualname__ + "_serial"
        copy.__doc__ = fn.__doc__
        options = {k: v for k, v in kernel.targetoptions.items() if k not in ("parallel", "nopython")}
        cached = type(kernel._cache).__name__ != "NullCache"  # njit(cache=True) is not a target option
        twin = _twins[kernel] = njit(cache=cached, **options)(copy)
    return twin


def sized(kernel, work: int, serial_below: int):
    """`kernel`, or its serial twin when `work` is below the size where a parallel loop
    pays for its start (only where starting one is slow)."""
    if work >= serial_below or not slow_parallel_start():
        return kernel
    return serial_twin(kernel)
