"""Compile (or load) every kernel by running tiny networks through every layer type.

`python -m cnnplay.core.kernels.warmup GROUP` is what `coldstart` runs in the
background: GROUP "conv" compiles the convolution kernels, "other" everything
else, each forward first, then the input gradients (the effective receptive
field), then batches with parameter gradients (training). It reports on
stdout, one line each: `steps N`, then per step `step` and `ready NAME ...`
(every kernel compiled so far). The tests warm up with `warm_up()` too.

One warm-up per group and kernel cache at a time (`exclusive`): a process
whose app quit goes on filling the cache, so starting the app again (or
several at once) would otherwise compile the same kernels in several
processes side by side, each slowing the others and the app. A later one
reports `waiting`, waits for the lock and then loads what the first stored.

Running whole layers (not single kernels) keeps this in step with whatever
kernels the layers use.
"""

from __future__ import annotations

import contextlib
import os
import sys

import numpy as np

CONV = [
    {"input": [3, 20, 18], "layers": [
        {"type": "conv2d", "out_channels": 9, "kernel_size": 3, "padding": 1},
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},  # direct512 (AVX-512)
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2, "dilation": 2, "padding": 2},
        {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "stride": 2}]},
    {"input": [64, 6, 5], "layers": [  # channel-heavy: Winograd F(4x4), F(2x2), the GEMM path
        {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "padding": 1},  # (im2col, col2im), 1x1
        {"type": "conv2d", "out_channels": 129, "kernel_size": 3, "padding": 1},
        {"type": "conv2d", "out_channels": 128, "kernel_size": 3, "stride": 2, "padding": 1},
        {"type": "conv2d", "out_channels": 64, "kernel_size": 1}]},
    {"input": [64, 12, 12], "layers": [  # Winograd's products in registers (products512, AVX-512)
        {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "padding": 1}]},
    {"input": [64, 66, 66], "layers": [  # Winograd's stride-2 scheme (enough work per call)
        {"type": "conv2d", "out_channels": 128, "kernel_size": 3, "stride": 2, "padding": 1}]},
    {"input": [2, 160, 160], "layers": [  # a weight gradient over position ranges (grad.weight_grad_ranges)
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}]},
    {"input": [2, 40], "layers": [
        {"type": "conv1d", "out_channels": 4, "kernel_size": 5, "padding": 2},
        {"type": "conv1d", "out_channels": 3, "kernel_size": 3, "dilation": 2}]},
]
OTHER = [
    {"input": [3, 20, 18], "layers": [
        {"type": "batchnorm"}, {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
        {"type": "layernorm"}, {"type": "leaky_relu"}, {"type": "avgpool2d", "kernel_size": 2, "padding": 1},
        {"type": "flatten"}, {"type": "linear", "out_features": 3}]},
    {"input": [2, 40], "layers": [
        {"type": "maxpool1d", "kernel_size": 2}, {"type": "avgpool1d", "kernel_size": 2}]},
    {"input": [2, 9, 9], "layers": [  # overlapping windows (the others tile their maps)
        {"type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1},
        {"type": "avgpool2d", "kernel_size": 2, "stride": 1}]},
]
GROUPS = {"conv": CONV, "other": OTHER}
NICE = 5  # the background processes' scheduling priority, below the app's


def _forward(net, x):
    net.forward(x)


def _field(net, x):
    net.effective_receptive_field(x, len(net) - 1, (0,) * len(net.output_shapes[-1]))


def _batch(net, x):
    """Every layer's batched forward and backward with parameter gradients (training),
    on the rules' algorithms (nothing measured, tuning.py: these calls compile)."""
    from ..training.batchnorm import BatchNormTrain
    from .tuning import rules_only
    h = np.stack([x, x])
    for i in range(len(net)):
        y = net.layer_forward_batch(i, h)
        with rules_only():
            net.layer_backward_batch(i, h, y, np.ones_like(y), param_grads=True)
        if net.layer_types[i].name == "batchnorm":  # training mode: batch statistics
            BatchNormTrain(h, net.params(i), net.configs[i]["eps"]).backward(np.ones_like(y))
        h = y


STEPS = (_forward, _field, _batch)


def steps(group: str):
    """The warm-up steps of one group, in order: callables without arguments."""
    from .. import Network
    from . import launch
    nets = [Network.from_dict(spec) for spec in GROUPS[group]]
    xs = [np.random.default_rng(0).standard_normal(n.input_shape).astype(np.float32) for n in nets]
    slow = launch.slow_parallel_start()
    out = []
    for step in STEPS:
        # under workqueue small work runs in serial twins: compile the parallel kernels too
        for parallel_only in (False, True) if slow else (False,):
            def run(step=step, parallel_only=parallel_only):
                launch._slow_start = slow and not parallel_only
                try:
                    for net, x in zip(nets, xs):
                        step(net, x)
                finally:
                    launch._slow_start = slow
            out.append(run)
    return out


def warm_up(groups=tuple(GROUPS)) -> None:
    """Compile or load every kernel in this process."""
    for g in groups:
        for s in steps(g):
            s()


def compiled_kernels() -> list[str]:
    """Names of the kernels compiled (or loaded) in this process."""
    from numba.core.registry import CPUDispatcher

    from . import coldstart, launch
    found = []
    for name, mod in list(sys.modules.items()):
        if not name.startswith(__package__ + ".") or mod is None:
            continue
        for v in list(vars(mod).values()):
            if isinstance(v, CPUDispatcher) and v.overloads:
                found.append(v)
    found += [t for t in launch._twins.values() if t.overloads]
    return sorted({coldstart.kernel_name(k) for k in found})


def main(argv: list[str]) -> int:
    from . import coldstart
    if hasattr(os, "nice"):
        os.nice(NICE)  # the window (and the user's other programs) come first
    coldstart.set_mode("numba")
    todo = [s for g in argv for s in steps(g)]
    say = _Reporter()
    say("steps", len(todo))
    with exclusive(argv, on_wait=lambda: say("waiting")):
        for s in todo:
            s()
            say("step")
            say("ready", " ".join(compiled_kernels()))
    return 0


@contextlib.contextmanager
def exclusive(groups, on_wait=lambda: None):
    """Hold the warm-up lock of these groups in this kernel cache (a file lock, let
    go when the process ends however it ends); if another process holds it, call
    on_wait() and wait for it. No lock where the platform has no flock (Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    folder = os.environ.get("NUMBA_CACHE_DIR") or os.path.dirname(os.path.abspath(__file__))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"cnnplay-warmup-{'-'.join(groups)}.lock"), "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            on_wait()
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


class _Reporter:
    """Prints report lines until nobody listens: when the app quits first, the
    compile goes on (the cache still fills) instead of dying of a broken pipe."""

    def __init__(self):
        self.open = True

    def __call__(self, *words) -> None:
        if not self.open:
            return
        try:
            print(*words, flush=True)
        except OSError:  # BrokenPipeError: the parent is gone
            self.open = False
            try:
                sys.stdout = open(os.devnull, "w")  # nothing more to flush at exit
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
