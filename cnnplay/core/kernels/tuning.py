"""Which algorithm trains a conv layer shape fastest on this machine: measured once.

conv.choose_shape's rules come from measurements on AMD machines (Zen 3, Zen 4).
Elsewhere the crossovers lie elsewhere. On an Intel Xeon with AVX-512, OpenBLAS
multiplies 512 bits at a time while numba's kernels ran on 256-bit vectors
(LLVM's default there; vectors.py now widens the direct kernels), so the
BLAS-based algorithms gain on the direct kernel: a 64->128 stride-2 layer on
28 px at batch 4 trained (forward + backward) in 0.80-0.84x its time as GEMM,
where the rules keep it direct, and a 16->32 layer on 16 px at batch 64 in
0.86-0.95x as Winograd F(4x4) (three pairs of processes each; on Zen 3 such a
layer had taken 0.7-1.9x, so the rules keep it direct).

So the first training step of a layer shape (its first backward pass with
parameter gradients, once the kernels are compiled) times every candidate
(conv.candidates: the rules' choice first, then the other algorithms that the
geometry takes and that could win) on the step's own data: the forward pass and
the backward pass, as a training step runs them (the input rearranged once for
both, the weights packed once), in rounds after a first one that warms up: at
least ROUNDS, and more until they took MIN_SECONDS (up to MAX_ROUNDS; with 0.05 s
a 16->32 layer on 16 px at batch 64 went to Winograd in 3 of 6 processes and
stayed direct in the others, with 0.15 s direct in 6 of 6). The fastest (its
best round: noise only adds time) is kept for that shape (layer geometry,
output channels, batch), unless it is less than MARGIN faster than the rules'
choice. Costs: the first step of a shape takes (rounds + 1) x the candidates'
forward + backward passes more, once per process (3 candidates of a 5 ms layer:
about 0.2 s).

The trials run inside the backward pass's launch (launch.py), so other threads'
kernels wait for them: when another thread waits to compute (a click's field or
an edit's maps, inside launch.priority() or behind a hold) the measurement stops
after the trial in progress, without a decision, and the next step starts again
(after MAX_STOPS such stops the rules' choice is kept for the shape).

Only training asks (the first batch's backward with parameter gradients):
single passes (the maps, a click's effective field) keep the rules, whose
choice they would rarely amortize the timing of. Calls with a forced algorithm
(tests) never tune. Every candidate computes the same convolution (they agree
to about 1e-6 of the largest value); the memory rule (layers.py) bounds all of
them. While the trials run they hold one more copy of the layer's rearranged
input (their own, dropped after each trial) besides the step's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict

ROUNDS = 3  # timed rounds per candidate (after one that warms up), at least
MAX_ROUNDS = 10  # and more, up to this many, until the timed rounds took MIN_SECONDS
MIN_SECONDS = 0.15  # (small layers: single times on a shared machine are noisy)
MARGIN = 0.93  # another algorithm replaces the rules' choice from 7 % faster
MAX_KEYS = 512
MAX_STOPS = 3  # measurements of a shape stopped for other threads before the rules' choice is kept
ENABLED = os.environ.get("CNNPLAY_TUNE", "1") != "0"  # CNNPLAY_TUNE=0: the rules only (the bench compares)

log = logging.getLogger(__name__)
_decisions: OrderedDict = OrderedDict()  # (geometry, co, nb) -> algorithm
_stops: dict = {}  # (geometry, co, nb) -> measurements stopped so far
_lock = threading.Lock()
_local = threading.local()  # .pins: {key: algorithm} (pinned); .off: inside rules_only()


def key(plan, co: int, nb: int) -> tuple:
    """A layer shape: its geometry (conv._Plan.geometry), output channels and batch."""
    return plan.geometry, co, nb


def decision(k) -> str | None:
    """The algorithm measured fastest for shape `k` (or pinned to it on this thread:
    the candidate on trial), or None: the rules decide."""
    pins = getattr(_local, "pins", None)
    if pins and k in pins:
        return pins[k]
    return _decisions.get(k)


@contextlib.contextmanager
def pinned(k, algorithm: str):
    """Inside the block, shape `k` runs on `algorithm` on this thread and is not
    measured: a candidate on trial, or the undilated layer on a dilated one's
    sub-images (atrous.py), which runs on the dilated layer's algorithm."""
    pins = getattr(_local, "pins", None)
    if pins is None:
        pins = _local.pins = {}
    before = pins.get(k)
    pins[k] = algorithm
    try:
        yield
    finally:
        if before is None:
            del pins[k]
        else:
            pins[k] = before


def wanted(k, candidates) -> bool:
    """Whether shape `k` should be measured now: several candidates, not measured yet,
    not pinned, not inside rules_only() on this thread (a measurement's own passes,
    the warm-up), and the compiled kernels in use (on the numpy path of a first
    start the times would say nothing)."""
    from .launch import numpy_meanwhile
    return (ENABLED and len(candidates) > 1 and k not in _decisions and not getattr(_local, "off", 0)
            and k not in (getattr(_local, "pins", None) or ()) and not numpy_meanwhile())


@contextlib.contextmanager
def rules_only():
    """Nothing is measured on this thread inside the block: a measurement's own passes,
    and the warm-up's (warmup.py: it compiles, its times say nothing)."""
    _local.off = getattr(_local, "off", 0) + 1
    try:
        yield
    finally:
        _local.off -= 1


def tune(k, candidates, step, clock=time.perf_counter, stop=lambda: False) -> str | None:
    """Time step() (one forward + backward pass of shape `k`) with each candidate in
    turn, keep the fastest (decide) for `k` and return it. When stop() says so
    after a trial (another thread waits to compute: a click, an edit's maps), give
    up without a decision (None): the next step measures again."""
    times = {c: [] for c in candidates}
    spent = 0.0
    with rules_only():
        for r in range(MAX_ROUNDS + 1):
            if r > ROUNDS and spent >= MIN_SECONDS:
                break
            for c in candidates:
                with pinned(k, c):
                    t0 = clock()
                    step()
                    if r:  # the first round warms up (new buffers, packed weights, first calls)
                        times[c].append(clock() - t0)
                        spent += times[c][-1]
                if stop():
                    with _lock:
                        _stops[k] = stops = _stops.get(k, 0) + 1
                    log.debug("conv shape %s: measurement stopped (another thread waits)", k)
                    if stops >= MAX_STOPS:  # it never gets through: the rules' choice stays
                        keep(k, candidates[0])
                        return candidates[0]
                    return None
    choice = decide(times, candidates[0])
    log.debug("conv shape %s: best of %s ms -> %s", k, {c: round(min(t) * 1e3, 3) for c, t in times.items()},
              choice)
    keep(k, choice)
    return choice


def keep(k, algorithm: str) -> None:
    """From now on shape `k` runs on `algorithm` (tune's decision; tests force one)."""
    with _lock:
        _decisions[k] = algorithm
        while len(_decisions) > MAX_KEYS:
            _decisions.popitem(last=False)


def decide(times: dict, rules: str) -> str:
    """The candidate with the best time (noise only adds time), unless it beats the
    rules' choice by less than MARGIN."""
    best = {c: min(ts) for c, ts in times.items() if ts}
    fastest = min(best, key=best.get)
    return fastest if best[fastest] < MARGIN * best[rules] else rules


def decisions() -> dict:
    """Every shape measured so far and the algorithm it runs (for the bench and tests)."""
    with _lock:
        return dict(_decisions)


def reset() -> None:
    """Forget every measurement (tests)."""
    with _lock:
        _decisions.clear()
        _stops.clear()
