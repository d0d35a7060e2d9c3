"""One parallel kernel at a time in the whole process.

Numba's workqueue threading layer (the one every platform has; OpenMP and TBB
are used only where their runtimes are installed) is not thread-safe: two threads
inside parallel kernels at once abort the process ("Concurrent access has been
detected") or, when the race goes undetected, hang it. The app computes on one
worker, but a second window, a worker still finishing after its window closed,
or a script calling the core from several threads would each be enough. So every
public wrapper that launches a parallel kernel holds this lock: uncontended it
costs well under a microsecond per layer, and the kernels use all cores anyway.
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
