"""Channel-heavy layers: VGG-11's convolutional part at 224x224, then its kind of
layers one by one (issue 18).

Ours vs PyTorch CPU when installed (else the numpy im2col + matmul reference),
batch 1, float32, the same thread count. Interleaved single runs per round as
in the forward section; reported: best times, their ratio, the ratio per round
(median [q1-q3]), GFLOP/s of both and as a share of a large float32
numpy.matmul, and which convolution algorithm ran (the kernels' own choice).
"""

from __future__ import annotations

import numpy as np

from ..core import kernels  # noqa: F401  (sets NUMBA_CACHE_DIR before numba is imported)
from .forward import matmul_gflops, numpy_forward, paired_ms, torch_model
from ._common import torch_or_none

TITLE = "Channel-heavy layers: VGG-11 at 224x224, 3x3 and 1x1 convs (issue 18)"
ORDER = 20
ROUNDS = 8


def _conv(co, k=3, stride=1, dilation=1):
    return [{"type": "conv2d", "out_channels": co, "kernel_size": k, "stride": stride, "dilation": dilation,
             "padding": dilation * (k // 2)}, {"type": "relu"}]


_POOL = [{"type": "maxpool2d", "kernel_size": 2}]
VGG11 = {"input": [3, 224, 224], "layers": (
    _conv(64) + _POOL + _conv(128) + _POOL + _conv(256) + _conv(256) + _POOL
    + _conv(512) + _conv(512) + _POOL + _conv(512) + _conv(512) + _POOL)}

# (in channels, out channels, map size, kernel[, stride, dilation]): VGG's and ResNet's 3x3
# and 1x1 layers, then ResNet's downsampling layers (stride 2: the GEMM path, and on a
# large map Winograd's stride-2 scheme) and a dilated one
LAYERS = [(128, 256, 56, 3), (256, 256, 56, 3), (256, 512, 28, 3), (512, 512, 28, 3), (512, 512, 14, 3),
          (256, 256, 28, 1), (256, 512, 28, 1), (512, 512, 14, 1), (512, 256, 14, 1),
          (64, 128, 56, 3, 2), (128, 256, 28, 3, 2), (256, 512, 14, 3, 2), (128, 256, 56, 3, 2),
          (256, 512, 28, 1, 2),
          (128, 128, 28, 3, 1, 2)]


def algorithm(net, i) -> str:
    """The convolution algorithm the kernels choose for layer i ("direct" when they
    have no choice to make)."""
    from ..core.kernels import conv
    choose = getattr(conv, "choose", None)
    if choose is None:
        return "direct"
    try:
        cfg = net.configs[i]
        ci, h, w = net.input_shape_of(i)
        kh, kw = cfg["kernel_size"]
        plan = conv._plan(ci, h, w, kh, kw, cfg["stride"], cfg["padding"], cfg["dilation"])
        return str(choose(plan, cfg["out_channels"]))
    except Exception:
        return "?"


def _compare(net, x, torch):
    """(ours, theirs) callables for a network."""
    ours = lambda: net.forward(x)  # noqa: E731
    if torch is None:
        return ours, (lambda: numpy_forward(net, x))
    model = torch_model(net)
    xt = torch.from_numpy(x[None])

    def theirs():
        with torch.no_grad():
            return model(xt)
    return ours, theirs


def _row(label, ours, theirs, flops, peak, algo):
    a, b, ratios = paired_ms(ours, theirs, rounds=ROUNDS)
    q1, qm, q3 = np.percentile(ratios, [25, 50, 75])
    ta, tb = a.min(), b.min()
    gf, gt = flops / ta / 1e6, flops / tb / 1e6
    return (f"{label:<34}{ta:9.2f}{tb:9.2f}{ta / tb:7.2f}   {qm:.2f} [{q1:.2f}-{q3:.2f}]   "
            f"{gf:7.0f}{gt:7.0f}{100 * gf / peak:6.0f}  {algo}")


def run() -> list[str]:
    from ..core import Network
    from ..core.kernels import launch

    threads = launch.POLICY.threads  # all cores (numba.get_num_threads() is what the last launch on
    # this thread used: 1 after a serial kernel, which would give PyTorch one thread)
    torch = torch_or_none(threads)
    other = f"PyTorch {torch.__version__}" if torch is not None else "numpy im2col+matmul"
    peak = matmul_gflops()
    lines = [f"batch 1, float32, {threads} threads each; ours vs {other}; {ROUNDS} interleaved rounds; "
             f"float32 numpy.matmul 2048^3: {peak:.0f} GFLOP/s",
             "",
             f"{'':<34}{'ours ms':>9}{'ref ms':>9}{'ratio':>7}   {'per round [q1-q3]':<20}"
             f"{'GF/s':>7}{'ref':>7}{'% mm':>6}  algorithm"]
    rng = np.random.default_rng(0)
    net = Network.from_dict(VGG11, seed=0)
    x = rng.standard_normal(net.input_shape).astype(np.float32)
    flops = 2 * sum(net.macs)
    algos = sorted({algorithm(net, i) for i, t in enumerate(net.layer_types) if t.name == "conv2d"})
    ours, theirs = _compare(net, x, torch)
    lines.append(_row("VGG-11 conv part, 224x224", ours, theirs, flops, peak, "/".join(algos)))
    for ci, co, size, k, *more in LAYERS:
        stride, dilation = (more + [1, 1])[:2]
        net = Network.from_dict({"input": [ci, size, size], "layers": _conv(co, k, stride, dilation)[:1]}, seed=0)
        x = rng.standard_normal(net.input_shape).astype(np.float32)
        ours, theirs = _compare(net, x, torch)
        label = (f"conv {k}x{k} {ci}->{co} on {size}x{size}" + (f" s{stride}" if stride > 1 else "")
                 + (f" d{dilation}" if dilation > 1 else ""))
        lines.append(_row(label, ours, theirs, 2 * net.macs[0], peak, algorithm(net, 0)))
    lines.append("(best times; ratio = ours / reference, below 1 is faster; GF/s of ours and of the reference)")
    return lines

