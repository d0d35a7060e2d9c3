"""Receptive fields (issue 4): how long a click takes, and the effective field
as a ratio to the forward pass.

- box + mask: `net.receptive_field(layer, unit)` (and onto an earlier map) for
  units spread over every layer of a 10-layer network on a 256x256 input;
  target: a few milliseconds.
- effective field: `net.effective_receptive_field` for a centre unit of the
  last layer (cropped to its box) and for a linear unit whose field is the
  whole map (a full reverse pass), reusing the forward outputs (what the app
  does) and computing them itself, each as a ratio to `net.forward` of the
  whole network in the same run; target: about 3x.
"""

from __future__ import annotations

import time

import numpy as np

TITLE = "Receptive fields: click latency and effective field vs forward (issue 4)"
ORDER = 40

NET = {"input": [3, 256, 256], "layers": [
    {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1}, {"type": "relu"},
    {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "relu"},
    {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 2, "dilation": 2}, {"type": "batchnorm"},
    {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "out_channels": 32, "kernel_size": 5, "padding": 2}, {"type": "relu"}]}

HEAD = [{"type": "flatten"}, {"type": "linear", "out_features": 10}]


def _median_ms(fn, runs: int, warmup: int = 2) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2] * 1e3, ts[-1] * 1e3


def _interleaved(fn, ref, rounds: int = 21) -> tuple[float, float, float, float]:
    """fn and ref timed alternately, so both see the same machine (a shared machine's
    speed drifts by 2x within seconds). Returns fn's median ms and the median, first
    and third quartile of the per-round ratio fn / ref."""
    fn(), ref()  # warm
    ts, ratios = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        ref()
        t2 = time.perf_counter()
        ts.append(t1 - t0)
        ratios.append((t1 - t0) / (t2 - t1))
    q1, med, q3 = np.percentile(ratios, [25, 50, 75])
    return float(np.median(ts)) * 1e3, float(med), float(q1), float(q3)


def run() -> list[str]:
    from cnnplay import Network

    net = Network.from_dict(NET)
    headed = Network.from_dict({"input": NET["input"], "layers": NET["layers"] + HEAD})
    rng = np.random.default_rng(0)
    lines = [f"network: {len(net)} layers (conv, relu, strided conv, dilated conv, batchnorm, maxpool, 5x5 conv), "
             f"input {tuple(net.input_shape)}"]

    # -- box + mask ------------------------------------------------------------
    clicks = []
    for layer in range(len(net)):
        shape = net.output_shapes[layer]
        for _ in range(5):
            clicks.append((net, layer, tuple(int(rng.integers(n)) for n in shape), None))
    deepest = len(net) - 1
    clicks += [(net, deepest, (0, 0, 0), k) for k in range(deepest)]
    clicks += [(headed, len(headed) - 1, (3,), None), (headed, len(net), (12345,), None)]
    times = []
    for n, layer, unit, onto in clicks:
        times.append(_median_ms(lambda: n.receptive_field(layer, unit, onto=onto), runs=15)[0])
    times = np.array(times)
    centre = tuple(s // 2 for s in net.output_shapes[deepest])
    med, worst = _median_ms(lambda: net.receptive_field(deepest, centre), runs=50)
    rf = net.receptive_field(deepest, centre)
    lines += [
        "",
        f"box + mask, {len(clicks)} clicks over every layer (also onto earlier maps, flatten and linear units):",
        f"  median {np.median(times):.3f} ms, slowest click {times.max():.3f} ms",
        f"  centre unit of the last layer: median {med:.3f} ms (worst of 50: {worst:.3f} ms); "
        f"field {rf.box_size[0]}x{rf.box_size[1]} px, {rf.seen_count} input pixels",
    ]

    # -- effective field vs forward -----------------------------------------------
    from cnnplay.core import receptive

    x = rng.standard_normal(net.input_shape).astype(np.float32)
    outputs = net.forward(x)
    houts = headed.forward(x)
    lin = len(headed) - 1
    fwd, _ = _median_ms(lambda: net.forward(x), runs=15)
    rows = [
        ("centre unit of the last layer, outputs reused",
         lambda: net.effective_receptive_field(x, deepest, centre, outputs=outputs)),
        ("centre unit of the last layer, own forward", lambda: net.effective_receptive_field(x, deepest, centre)),
        ("  same, full reverse pass (crop=False), outputs reused",
         lambda: receptive.effective_receptive_field(net, x, deepest, centre, outputs, crop=False)),
        ("linear unit (field = whole map), outputs reused",
         lambda: headed.effective_receptive_field(x, lin, (3,), outputs=houts)),
        ("linear unit (field = whole map), own forward", lambda: headed.effective_receptive_field(x, lin, (3,))),
    ]
    lines += ["", "effective field (input gradients only; cropped to the unit's box per layer, exact);",
              "each timed alternately with the forward pass, ratio = median per round [q1-q3]:",
              f"  forward (all {len(net)} layers)  {fwd:8.2f} ms   1.00x"]
    for label, fn in rows:
        forward = (lambda: headed.forward(x)) if "linear" in label else (lambda: net.forward(x))
        t, ratio, q1, q3 = _interleaved(fn, forward)
        lines.append(f"  {label:<55} {t:8.2f} ms   {ratio:.2f}x forward [{q1:.2f}-{q3:.2f}]")
    return lines
