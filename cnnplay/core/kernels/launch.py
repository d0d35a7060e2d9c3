"""How parallel kernels are launched: one at a time, on the thread count that runs fastest now.

One at a time in the whole process: numba's workqueue threading layer (the one
every platform has; OpenMP and TBB are used only where their runtimes are
installed) is not thread-safe. Two threads inside parallel kernels at once abort
the process ("Concurrent access has been detected") or, when the race goes
undetected, hang it. The app computes on one worker, but a second window, a
worker still finishing after its window closed, or a script calling the core
from several threads would each be enough. So every public wrapper that launches
a parallel kernel holds this lock: uncontended it costs well under a microsecond
per layer, and the kernels use all cores anyway.

Who goes first: a thread inside `priority()` (the app's compute worker, while
it computes what the user is waiting for: new maps, a clicked unit's field).
While one is inside, every other thread waits before its next outermost
kernel launch, so a training run pauses between two kernels instead of taking
turns with the worker kernel by kernel (Python's locks are not fair: the
training thread, which launches its next kernel microseconds after the last,
would win most turns, and a click would wait for many training kernels).
A `hold()` does the same across threads and event-loop turns: the GUI holds
one from a user's request until its result is painted, so that training does
not share the cores with the painting either. Holds expire after the seconds
they were given (a hold that is never released cannot stall training); the
thread that took a hold, and a thread marked with `exempt()` (the compute
worker, whose results the GUI waits for), never wait for it.

On the thread count that runs fastest now: see `ThreadPolicy` below. Serially
when starting a parallel loop is slow: see `sized`.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import weakref
from collections import OrderedDict

from . import blas, coldstart, loader

_LOCK = threading.RLock()  # re-entrant: a wrapper may call another wrapper
_depth = 0  # wrappers running inside the lock (only the outermost one chooses threads)
_turns = threading.Condition()
_urgent = 0  # threads inside priority() now
_priority_seconds = 0.0  # wall time spent inside outermost priority() blocks, all threads
_holds: dict = {}  # Hold -> its deadline (time.monotonic())
_local = threading.local()  # per thread: .urgent (priority() depth), .inside (wrapper depth), .exempt
_excused = weakref.WeakSet()  # threads asked to stop: they no longer wait (excuse())


class Hold:
    """Other threads' kernel launches wait while this is held and not past its deadline
    (the thread that took it never waits for it: it may compute, e.g. a synchronous worker)."""

    def __init__(self, seconds: float):
        self.owner = threading.get_ident()
        self.extend(seconds)

    def extend(self, seconds: float) -> None:
        """Held until `seconds` from now at the latest (again, if it was released)."""
        with _turns:
            _holds[self] = time.monotonic() + seconds

    def release(self) -> None:
        with _turns:
            if _holds.pop(self, None) is not None:
                _turns.notify_all()

    @property
    def held(self) -> bool:
        with _turns:
            return _holds.get(self, 0.0) > time.monotonic()


def hold(seconds: float) -> Hold:
    """Hold other threads' next kernel launches back for at most `seconds` (see the
    module doc); `release()` it as soon as possible."""
    return Hold(seconds)


def exempt() -> None:
    """This thread never waits for a hold (the compute worker: the holder waits for it)."""
    _local.exempt = True


def excuse(thread: threading.Thread) -> None:
    """`thread` (a training run asked to stop) no longer waits for holds or priority,
    and stops waiting now: it finishes the layer in progress, whose kernels it would
    otherwise launch only when the hold lets go (up to its deadline), and reaches its
    next cancellation point. (Kept as a weak reference: it goes with the thread.)"""
    with _turns:
        _excused.add(thread)
        _turns.notify_all()


@contextlib.contextmanager
def priority():
    """Kernels launched by this thread inside the block go before any other thread's:
    those wait before their next launch until no thread is inside a priority block."""
    global _urgent, _priority_seconds
    with _turns:
        _urgent += 1
    _local.urgent = getattr(_local, "urgent", 0) + 1
    t0 = time.perf_counter()
    try:
        yield
    finally:
        _local.urgent -= 1
        with _turns:
            _urgent -= 1
            if not _local.urgent:
                _priority_seconds += time.perf_counter() - t0
            if not _urgent:
                _turns.notify_all()


def priority_seconds() -> float:
    """Wall seconds spent inside priority() blocks so far (time other threads' kernels
    were held back): the training panel weighs what its live refresh costs with it."""
    with _turns:
        return _priority_seconds


def contended() -> bool:
    """Whether another thread waits to launch ahead of this one (it is inside
    priority(), or holds a hold): a long job inside one launch (tuning.py's
    trials, which run as nested calls under this lock) stops early for it."""
    if not _holds and not _urgent:  # the common case, without the lock
        return False
    me = threading.get_ident()
    now = time.monotonic()
    with _turns:
        others_urgent = _urgent - (1 if getattr(_local, "urgent", 0) else 0)
        return others_urgent > 0 or any(h.owner != me and d > now for h, d in _holds.items())


def _wait_for_turn() -> None:
    """Before a thread's outermost launch: wait while another thread has priority or
    a hold is on. (Never inside a wrapper: that thread holds the lock the priority
    thread needs.)"""
    if not _holds and not _urgent:  # the common case, without the lock (a stale read
        return                      # only lets one launch through as it would a moment earlier)
    if getattr(_local, "urgent", 0) or getattr(_local, "inside", 0):
        return
    exempt_ = getattr(_local, "exempt", False)
    me = threading.get_ident()
    current = threading.current_thread()
    with _turns:
        while True:
            if current in _excused:
                return
            now = time.monotonic()
            for h in [h for h, d in _holds.items() if d <= now]:
                del _holds[h]  # expired
            others = [] if exempt_ else [d for h, d in _holds.items() if h.owner != me]
            if not others:
                if not _urgent:
                    return
                _turns.wait()
            else:  # wake at the latest when the last hold expires
                _turns.wait(max(others) - now)


def one_at_a_time(fn):
    """Run `fn` (which launches parallel numba kernels) under the process-wide lock, on
    the thread count POLICY chooses for this call's kernel and shapes."""
    name = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def serialized(*args, **kwargs):
        _wait_for_turn()
        _local.inside = getattr(_local, "inside", 0) + 1
        try:
            return _locked(args, kwargs)
        finally:
            _local.inside -= 1

    def _locked(args, kwargs):
        global _depth
        with _LOCK:
            if _depth:  # inside another wrapper: its choice holds
                _depth += 1
                try:
                    return fn(*args, **kwargs)
                finally:
                    _depth -= 1
            key = (name, _shapes(args), _shapes(v for k, v in kwargs.items() if k != "version"))
            n = POLICY.choose(key)
            _use_threads(n)
            _depth += 1
            t0 = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
            finally:
                _depth -= 1
            if not numpy_meanwhile():
                POLICY.record(key, n, time.perf_counter() - t0)
            return out

    return serialized


def _shapes(args) -> tuple:
    """What a call's time depends on: array shapes and scalar settings (not the
    parameter version, which changes every training step)."""
    out = []
    for a in args:
        shape = getattr(a, "shape", None)
        if shape is not None:
            out.append(shape)
        elif a is None or isinstance(a, (int, float, str, tuple)):
            out.append(a)
        else:
            out.append(type(a).__name__)
    return tuple(out)


def _use_threads(n: int) -> None:
    """numba's threads and numpy's BLAS both on the chosen count (a Winograd or GEMM
    layer's time is mostly its matmuls: their count must follow the policy too)."""
    if getattr(_local, "threads", None) != n:  # per calling thread, like numba's (only we set it)
        import numba
        numba.set_num_threads(n)
        _local.threads = n
    blas.set_threads(n)  # process-wide; we are under _LOCK


def numpy_meanwhile() -> bool:
    """First start, or a start before the cached kernels are loaded: calls may run on
    the numpy path; their times say nothing."""
    return coldstart.compiling() or coldstart.mode() == "numpy" or loader.deferring()


# -- the thread count: measured, per kernel and shape ----------------------------------------
#
# On an idle machine a parallel kernel runs on all cores. When another program keeps
# a core busy, a parallel loop waits at its end for the thread that shares that core:
# 2 threads then ran default-256 8x slower than 1 (issue 18). Memory-bound kernels
# (a ReLU on a 64 MB map) gain nothing from a second thread here either. So every
# wrapper call is timed, per (wrapper, shapes) key, with all threads and with one:
# the first call warms up on all threads and is not counted (it packs the weights
# and touches new memory: 2-20x a later call, which made the serial probe after it
# win every time and a bench's pass run serially until the next probe), then all
# threads and one alternate until each was measured FIRST times, then the faster
# one wins (hysteresis 10 %). The other count is checked once more after
# CONFIRM_SECONDS (first estimates are made while the process warms up), then
# probed again every PROBE_SECONDS (two calls: the first wakes its idle threads
# and is not counted),
# doubling the wait each time such a periodic probe loses (up to 64x; back to the
# first wait whenever the count switches), and at once when two calls in
# a row take twice as long as that key's recent best (if they also take twice the
# other count's, the machine just got busy: the older times of that count are
# dropped and the count switches at once; otherwise the probe decides, with the
# older times aging out within SAMPLES calls). Two, not one: on a shared
# virtual machine single calls stall now and then, and acting on one made a conv
# that runs 2x faster on two threads run on one for seconds to minutes (wide-128:
# 1.5x its time in half the blocks of 100 passes). And the other way: a call much
# quicker than its count's recent best means the machine got quieter (such a VM
# runs everything 2-3x slower for seconds at a time), so the other count is
# probed at once instead of after the backed-off wait. Estimates are the best of
# the last few runs: noise only ever adds time.

class ThreadPolicy:
    """Chooses 1 or `threads` threads per key from the times recorded for it.

    `clock` returns seconds (injectable: the tests drive the policy with made-up
    timings, no real time)."""

    SAMPLES = 3
    FIRST = 2
    MARGIN = 1.1
    QUICKER = 0.6
    BEHIND = 2.0
    PROBE_SECONDS = 2.0
    CONFIRM_SECONDS = 0.25
    MAX_BACKOFF = 64
    MAX_KEYS = 512

    def __init__(self, threads: int | None = None, clock=time.perf_counter):
        self._threads = threads
        self.clock = clock
        self._keys: OrderedDict = OrderedDict()

    @property
    def threads(self) -> int:
        if self._threads is None:
            import numba
            self._threads = int(numba.config.NUMBA_NUM_THREADS)
        return self._threads

    def choose(self, key) -> int:
        """The thread count for the next call of `key` (sometimes a probe of the other one)."""
        top = self.threads
        s = self._keys.get(key)
        if top <= 1:
            return 1
        if s is None:
            return top
        if not s.decided:  # the first estimates: both counts FIRST times, alternately
            return top if len(s.times[top]) <= len(s.times[1]) else 1
        other = 1 if s.choice == top else top
        if self.clock() >= s.next_probe:
            s.probing = True
            return other
        return s.choice

    def record(self, key, threads: int, seconds: float) -> None:
        top = self.threads
        if threads not in (1, top):
            return
        s = self._keys.get(key)
        if s is None:  # the first call warms up: not a measurement (see the comment above)
            self._keys[key] = _KeyStats(top)
            if len(self._keys) > self.MAX_KEYS:
                self._keys.popitem(last=False)
            return
        self._keys.move_to_end(key)
        if s.probing and not s.probe_warmed:
            # a probe's first call wakes the other count's threads (idle since the last
            # probe; on a virtual machine waking an idle core costs up to a few hundred
            # microseconds): not a measurement, the next call probes again
            s.probe_warmed = True
            return
        now = self.clock()
        before = s.best(threads)
        times = s.times[threads]
        sudden = before is not None and seconds > 2 * before
        if sudden and not s.suspect[threads]:
            # one slow call is not yet a busy machine (a shared or virtual machine
            # stalls a call now and then): the next call of this count tells
            s.suspect[threads] = True
            return
        s.suspect[threads] = False
        # twice in a row, and far behind the other count's time (a parallel loop that
        # waits for a thread whose core is taken runs several times slower than a
        # serial one): the machine got busy, earlier runs no longer tell. Slower but
        # not that far behind is noise, or a change the older runs age out of within
        # SAMPLES calls: the other count is probed (below), but switching at once
        # compared one slow call with the other count's stale best (a stride-2 conv
        # then ran on one thread, 1.8x its time, for the rest of a bench section)
        other = s.best(1 if threads == top else top)
        busy = sudden and other is not None and seconds > self.BEHIND * other
        # much quicker than this count's recent best: the machine got quieter (noise
        # only adds time), so the other count's times are stale: probe it next
        quicker = before is not None and seconds < self.QUICKER * before
        if busy:
            times[:] = [seconds]
        else:
            times.append(seconds)
            del times[:-self.SAMPLES]
        t_top, t_one = s.best(top), s.best(1)
        if not s.decided:
            if min(len(s.times[top]), len(s.times[1])) < self.FIRST:
                return
            s.decided = True
        old = s.choice
        if s.choice == top and t_top > self.MARGIN * t_one:
            s.choice = 1
        elif s.choice == 1 and self.MARGIN * t_top < t_one:
            s.choice = top
        if s.probing:
            s.probing = s.probe_warmed = False
            if s.choice != old:
                s.backoff = 1
                s.next_probe = now + self.PROBE_SECONDS
            elif s.scheduled is not None:  # a probe brought forward (below) lost: the schedule stands
                s.next_probe = s.scheduled
            else:  # a periodic probe that lost waits twice as long before the next one
                s.backoff = min(self.MAX_BACKOFF, s.backoff * 2)
                s.next_probe = now + self.PROBE_SECONDS * s.backoff
            s.scheduled = None
        elif s.next_probe == 0.0:
            # the first estimates are in. They come from a key's first calls, while the
            # process is still warming up (new memory touched, other keys' first calls
            # and probes), so they are the least reliable: the other count is checked
            # again after CONFIRM_SECONDS, and the periodic probes follow as scheduled
            # (two 64-channel training calls on two threads took 25 ms there against
            # 15 later, and the layer ran on one thread, 1.1-1.5x its time, for 2 s)
            s.next_probe = now + self.CONFIRM_SECONDS
            s.scheduled = now + self.PROBE_SECONDS
        elif s.choice != old:
            # switched on this count's own times (the other count not measured just
            # now): the other one is probed after the first wait again. Only lost
            # periodic probes lengthen it: probes brought forward by slow calls lost
            # while a transient lasted and had doubled the wait to 8 s within 30 ms,
            # so a conv that runs 1.9x faster on two threads then ran on one for 8 s
            # after a 0.1 s stall of the other core (wide-128, 2-ms pauses between calls)
            s.backoff = 1
            s.next_probe = now + self.PROBE_SECONDS
            s.scheduled = None
        if (sudden or (quicker and threads == old)) and threads == s.choice:
            if s.scheduled is None:
                s.scheduled = s.next_probe
            s.next_probe = now  # try the other count next time

    def choice(self, key) -> int | None:
        """The count `key` runs on outside probes (None before its first estimates)."""
        s = self._keys.get(key)
        return None if s is None or not s.decided else s.choice


class _KeyStats:
    __slots__ = ("times", "choice", "next_probe", "scheduled", "backoff", "probing", "probe_warmed", "suspect",
                 "decided")

    def __init__(self, top: int):
        self.times = {1: [], top: []}
        self.decided = False  # both counts measured FIRST times
        self.probe_warmed = False
        self.suspect = {1: False, top: False}  # the last call of that count was suddenly slow
        self.choice = top
        self.next_probe = 0.0
        self.scheduled = None  # the periodic probe's time while one is brought forward
        self.backoff = 1
        self.probing = False

    def best(self, threads: int) -> float | None:
        t = self.times.get(threads)
        return min(t) if t else None


POLICY = ThreadPolicy()


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
