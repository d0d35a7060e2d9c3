"""Forward pass vs PyTorch CPU (or a numpy im2col + matmul reference without torch).

Batch 1, float32, the same thread count for both (numba's). Against PyTorch
each network is timed in PAIRS rounds of interleaved single runs (ours,
theirs, ours, ...; a short pause after each so one library's spinning worker
threads do not slow the other), so both see the same machine state. Against
numpy the rounds are blocks of runs with long pauses (OpenBLAS's threads spin
for a long time after a matmul and slow numba's). Reported: the best time of
each (noise only ever adds time, so the best is the steadiest estimate on a
shared machine), their ratio, and the median and quartiles of the ratio per
round (the noise).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from ..core import kernels  # noqa: F401  (sets NUMBA_CACHE_DIR before numba is imported)
from ._common import torch_or_none

TITLE = "Forward pass vs PyTorch CPU (issue 7, target 1)"
ORDER = 10

NETWORKS = {
    "default-256": {"input": [3, 256, 256], "layers": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"},
        {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "dilation": 2, "padding": 2}, {"type": "relu"},
        {"type": "avgpool2d", "kernel_size": 2}, {"type": "flatten"}, {"type": "linear", "out_features": 10}]},
    "wide-128": {"input": [16, 128, 128], "layers": [
        {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1}, {"type": "leaky_relu"},
        {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "stride": 2, "padding": 1},
        {"type": "layernorm"}, {"type": "relu"}]},
    "big-kernel-512": {"input": [3, 512, 512], "layers": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 7, "padding": 3}, {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1}]},
    "signal-1d": {"input": [8, 16384], "layers": [
        {"type": "conv1d", "out_channels": 16, "kernel_size": 5, "padding": 2}, {"type": "relu"},
        {"type": "maxpool1d", "kernel_size": 4},
        {"type": "conv1d", "out_channels": 32, "kernel_size": 9, "dilation": 3}]},
}

PAIRS = 40       # interleaved (ours, theirs) runs per network
RUNS = 15        # runs for a median of one function alone
PAUSE = 0.002    # seconds after each timed run: lets the other library's threads go idle


def paired_ms(f, g, rounds=PAIRS, block=1, pause=PAUSE):
    """Run f and g alternately, `block` timed runs each per round (after one
    untimed run when block > 1), pausing after each run or block. Returns the
    times (ms) of f and of g, and one ratio per round (of the block medians).

    First f (ours) runs until the launch policy has measured both thread counts
    of every kernel it calls (a first call, then FIRST calls of each count,
    alternating): the steady state of a session or a training loop. With two
    warm-up calls only, its probes on one thread fell into the first rounds (a
    1x1 layer's training at batch 4: 1.21 per round in the bench, 0.94-0.99
    settled)."""
    from ..core.kernels.launch import ThreadPolicy
    for i in range(2 * ThreadPolicy.FIRST + 2):
        f()
        if i < 2:
            g()
    a, b, ratios = [], [], []
    for _ in range(rounds):
        meds = []
        for fn, out in ((f, a), (g, b)):
            if block > 1:
                fn()
            ts = []
            for _ in range(block):
                t = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t)
                if block == 1:
                    time.sleep(pause)
            if block > 1:
                time.sleep(pause)
            out.extend(ts)
            meds.append(float(np.median(ts)))
        ratios.append(meds[0] / meds[1])
    return np.array(a) * 1e3, np.array(b) * 1e3, np.array(ratios)


def best_ms(fn, runs=RUNS, warmup=2) -> float:
    """Best time (ms) of `runs` runs, with a short pause after each."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        time.sleep(PAUSE)
    return best * 1e3



# -- the comparison: PyTorch when importable, else numpy ------------------------

def torch_model(net):
    """The same network (same parameters) as a torch module, or None without torch."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return None

    class ChannelsLastLayerNorm(nn.Module):
        def __init__(self, c, eps, dims):
            super().__init__()
            self.ln, self.dims = nn.LayerNorm(c, eps=eps), dims

        def forward(self, x):
            if self.dims == 2:
                return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            return self.ln(x.transpose(1, 2)).transpose(1, 2)

    mods = []
    for i, (t, cfg) in enumerate(zip(net.layer_types, net.configs)):
        shape = net.input_shape_of(i)
        dims = len(shape) - 1
        p = {k: torch.from_numpy(np.array(v)) for k, v in net.params(i).items()}
        if t.name.startswith("conv"):
            conv = (nn.Conv1d if dims == 1 else nn.Conv2d)(
                shape[0], cfg["out_channels"], cfg["kernel_size"], cfg["stride"], cfg["padding"],
                cfg["dilation"], bias=cfg["bias"])
            m = conv
        elif t.name.startswith("maxpool"):
            m = (nn.MaxPool1d if dims == 1 else nn.MaxPool2d)(cfg["kernel_size"], cfg["stride"], cfg["padding"])
        elif t.name.startswith("avgpool"):
            m = (nn.AvgPool1d if dims == 1 else nn.AvgPool2d)(cfg["kernel_size"], cfg["stride"], cfg["padding"],
                                                              count_include_pad=True)
        elif t.name == "batchnorm":
            m = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(shape[0], eps=cfg["eps"]).eval()
        elif t.name == "layernorm":
            m = ChannelsLastLayerNorm(shape[0], cfg["eps"], dims)
            p = {f"ln.{k}": v for k, v in p.items()}
        elif t.name == "relu":
            m = nn.ReLU()
        elif t.name == "leaky_relu":
            m = nn.LeakyReLU(cfg["negative_slope"])
        elif t.name == "flatten":
            m = nn.Flatten()
        elif t.name == "linear":
            m = nn.Linear(shape[0], cfg["out_features"], bias=cfg["bias"])
        else:
            raise ValueError(f"no torch equivalent for {t.name}")
        if p:
            m.load_state_dict(p, strict=False)
        mods.append(m)
    return nn.Sequential(*mods).eval()


def numpy_forward(net, x):
    """A plain numpy reference: im2col (strided views) + matmul, numpy pools and norms."""
    from numpy.lib.stride_tricks import sliding_window_view as windows

    h = x
    for i, (t, cfg) in enumerate(zip(net.layer_types, net.configs)):
        p = net.params(i)
        name = t.name
        if name.startswith(("conv", "maxpool", "avgpool")):
            one_d = h.ndim == 2
            m = h[:, None, :] if one_d else h
            lift = (lambda v: (1,) + tuple(v)) if one_d else tuple
            k, s = lift(cfg["kernel_size"]), lift(cfg["stride"])
            pad = lift(cfg["padding"]) if not one_d else (0,) + tuple(cfg["padding"])
            d = lift(cfg["dilation"]) if "dilation" in cfg else (1, 1)
            fill = -np.inf if name.startswith("max") else 0.0
            mp = np.pad(m, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1])), constant_values=fill)
            span = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
            win = windows(mp, span, axis=(1, 2))[:, ::s[0], ::s[1], ::d[0], ::d[1]]  # C, Ho, Wo, kh, kw
            if name.startswith("conv"):
                w = p["weight"] if not one_d else p["weight"][:, :, None, :]
                co, ho, wo = w.shape[0], win.shape[1], win.shape[2]
                cols = np.ascontiguousarray(win.transpose(0, 3, 4, 1, 2)).reshape(-1, ho * wo)
                out = (w.reshape(co, -1) @ cols).reshape(co, ho, wo)
                if "bias" in p:
                    out += p["bias"][:, None, None]
            elif name.startswith("max"):
                out = win.max(axis=(3, 4))
            else:
                out = win.mean(axis=(3, 4), dtype=np.float32)
            h = out[:, 0, :] if one_d else out
        elif name == "batchnorm":
            sh = (-1,) + (1,) * (h.ndim - 1)
            h = ((h - p["running_mean"].reshape(sh)) / np.sqrt(p["running_var"].reshape(sh) + cfg["eps"])
                 * p["weight"].reshape(sh) + p["bias"].reshape(sh))
        elif name == "layernorm":
            sh = (-1,) + (1,) * (h.ndim - 1)
            mu = h.mean(axis=0, keepdims=True)
            var = ((h - mu) ** 2).mean(axis=0, keepdims=True)
            h = (h - mu) / np.sqrt(var + cfg["eps"]) * p["weight"].reshape(sh) + p["bias"].reshape(sh)
        elif name in ("relu", "leaky_relu"):
            slope = cfg.get("negative_slope", 0.0)
            h = np.where(h > 0, h, h * np.float32(slope))
        elif name == "flatten":
            h = h.reshape(-1)
        elif name == "linear":
            h = p["weight"] @ h + (p["bias"] if "bias" in p else 0)
        h = h.astype(np.float32, copy=False)
    return h


# -- figures ---------------------------------------------------------------------

def matmul_gflops(n: int = 2048) -> float:
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    return 2 * n ** 3 / best_ms(lambda: a @ a, runs=7) / 1e6


def compile_all() -> None:
    """Run every forward kernel once on tiny inputs (compiles or loads them)."""
    from ..core.kernels import conv, dense, norm, pointwise, pool

    x = np.ones((2, 5, 5), np.float32)
    conv.conv2d(x, np.ones((3, 2, 3, 3), np.float32), np.ones(3, np.float32), (2, 2), (1, 1), (1, 1))
    pool.maxpool2d(x, (2, 2), (2, 2), (0, 0))
    pool.avgpool2d(x, (2, 2), (2, 2), (0, 0))
    c = np.ones(2, np.float32)
    norm.batchnorm(x.reshape(2, -1), c, c, c, c, 1e-5)
    norm.layernorm(x.reshape(2, -1), c, c, 1e-5)
    pointwise.leaky_relu(x, 0.01)
    dense.linear(x.reshape(-1), np.ones((3, 50), np.float32), np.ones(3, np.float32))


def compile_times() -> tuple[float, float]:
    """(cold, warm) seconds to get all kernels ready, each in a fresh process;
    cold with an empty NUMBA_CACHE_DIR, warm loading what cold stored."""
    code = ("import time; t = time.perf_counter(); from cnnplay.bench.forward import compile_all; "
            "compile_all(); print(time.perf_counter() - t)")
    out = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, CNNPLAY_KERNELS="numba")
        for _ in range(2):
            r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            out.append(float(r.stdout.strip().splitlines()[-1]))
    return out[0], out[1]


def run() -> list[str]:
    from ..core import Network
    from ..core.kernels import launch

    threads = launch.POLICY.threads  # all cores (numba.get_num_threads() is what the last launch on
    # this thread used: 1 after a serial kernel, which would give PyTorch one thread)
    torch = torch_or_none(threads)
    other = f"PyTorch {torch.__version__}" if torch is not None else "numpy im2col+matmul"
    compile_all()
    how = f"{PAIRS} interleaved runs each" if torch is not None else "6 alternating blocks of 6 runs each"
    lines = [f"batch 1, float32, {threads} threads each; ours vs {other}; {how}"]
    rows, conv_rows, tables = [], [], []
    for name, spec in NETWORKS.items():
        net = Network.from_dict(spec, seed=0)
        x = np.random.default_rng(1).standard_normal(net.input_shape).astype(np.float32)
        ours = lambda: net.forward(x)  # noqa: E731
        if torch is not None:
            model = torch_model(net)
            xt = torch.from_numpy(x[None])

            def theirs():
                with torch.no_grad():
                    return model(xt)
            ref = theirs()[0].numpy()
        else:
            theirs = lambda: numpy_forward(net, x)  # noqa: E731
            ref = theirs()
        got = ours()[-1]
        err = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))
        if torch is not None:  # single runs interleaved: both see the same machine state
            t_ours, t_theirs, ratios = paired_ms(ours, theirs)
        else:  # OpenBLAS's threads spin long after a numpy matmul and slow numba's: blocks
            t_ours, t_theirs, ratios = paired_ms(ours, theirs, rounds=6, block=6, pause=0.3)
        q1, qm, q3 = np.percentile(ratios, [25, 50, 75])
        rows.append((name, t_ours.min(), t_theirs.min(), t_ours.min() / t_theirs.min(), qm, q1, q3, err))
        tables.append((name, net, x, model if torch is not None else None))
    # per conv layer: GFLOP/s on the layer's real input, after every network's rounds. These
    # are single calls after pauses, and the launch policy learns thread counts per kernel and
    # shape: default-256's 16->32 layer timed alone went to one thread (the other core's
    # thread asleep after each pause), and wide-128's rounds, which call the same kernel on
    # the same shape, then ran it there for the whole section (1.2x PyTorch's time, 0.9 when
    # measured before the table)
    for name, net, x, model in tables:
        outs = net.forward(x)
        for i, t in enumerate(net.layer_types):
            if t.name.startswith("conv"):
                inp = x if i == 0 else outs[i - 1]
                ms = best_ms(lambda: net.layer_forward(i, inp))
                flops = 2 * net.macs[i]
                line = f"{name} #{i} {net.summaries[i]}"
                conv_rows.append((line, ms, flops / ms / 1e6, _torch_layer_gflops(torch, model, i, inp, flops)
                                  if model is not None else None))
    lines.append("")
    lines.append(f"{'network':<16}{'ours ms':>9}{'ref ms':>9}{'ratio':>7}   {'per round: median [q1-q3]':<28}{'max rel err':>11}")
    for name, a, b, r, qm, q1, q3, err in rows:
        lines.append(f"{name:<16}{a:9.2f}{b:9.2f}{r:7.2f}   {qm:.2f} [{q1:.2f}-{q3:.2f}]{'':14}{err:11.1e}")
    lines.append("(best times; ratio = ours / reference, below 1 is faster; the ratios per round show the noise)")
    peak = matmul_gflops()
    lines.append("")
    lines.append(f"conv layers (float32 numpy.matmul 2048^3 on this machine: {peak:.0f} GFLOP/s)")
    lines.append(f"{'layer (best of ' + str(RUNS) + ')':<44}{'ms':>7}{'GFLOP/s':>9}{'% mm':>6}{'torch GF/s':>11}")
    for line, ms, gf, tgf in conv_rows:
        tg = f"{tgf:11.0f}" if tgf is not None else f"{'-':>11}"
        lines.append(f"{line:<44}{ms:7.3f}{gf:9.0f}{100 * gf / peak:6.0f}{tg}")
    cold, warm = compile_times()
    lines.append("")
    lines.append(f"forward kernels ready: cold compile {cold:.1f} s (empty NUMBA_CACHE_DIR), "
                 f"from the cache {warm:.2f} s (fresh processes, including imports)")
    return lines


def _torch_layer_gflops(torch, model, i, inp, flops):
    layer = model[i]
    xt = torch.from_numpy(np.ascontiguousarray(inp)[None])

    def f():
        with torch.no_grad():
            return layer(xt)
    ms = best_ms(f)
    return flops / ms / 1e6
