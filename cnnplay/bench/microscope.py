"""The neuron microscope (issue 15): the preferred input of a unit of a
shapes-classifier-sized network (target: under 2 s), and top patches over a
data set of 1000 samples, each also as a ratio to the forward passes it
stands for (a forward pass of the same network on the same machine, timed
alternately).

The network is the trained shapes example when the repository has one
(resources/examples/*shapes*), else an untrained network of that size
(1x32x32: two conv blocks of 8 and 16 channels, a linear head of 4 classes):
the time does not depend on the weights.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

TITLE = "Neuron microscope: preferred input and top patches (issue 15)"
ORDER = 60

SHAPES_NET = {"input": [1, 32, 32], "layers": [
    {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"},
    {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"},
    {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
    {"type": "flatten"}, {"type": "linear", "out_features": 4}]}


def _network():
    """(network, where it came from): the trained shapes example if there is one."""
    from ..core.network import Network
    folder = Path(__file__).resolve().parents[2] / "resources" / "examples"
    for p in sorted(folder.glob("*shapes*")):
        try:
            if p.suffix == ".cnnplay":
                from ..core.fileformat import load_network
                return load_network(p), p.name
            if p.suffix == ".json":
                spec = json.loads(p.read_text())
                return Network.from_dict(spec.get("network", spec)), p.name + " (untrained weights)"
        except Exception:  # noqa: BLE001 (a bench falls back, it does not fail)
            continue
    return Network.from_dict(SHAPES_NET), "untrained 1x32x32 shapes-sized network"


def _data(net, n: int):
    try:
        from ..core.datasets import make_builtin
        c, h, w = net.input_shape
        return make_builtin("shapes", size=h, count=n, channels=c, seed=1).x, "built-in shapes"
    except Exception:  # noqa: BLE001
        return np.random.default_rng(1).random((n,) + tuple(net.input_shape), dtype=np.float32), "noise"


def _best(fn, runs: int) -> list[float]:
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return sorted(ts)


def run() -> list[str]:
    from ..core.microscope import preferred_input, top_patches
    net, origin = _network()
    x, what = _data(net, 1000)
    lines = [f"network: {origin}, input {tuple(net.input_shape)}, {len(net)} layers"]
    # a unit of the last conv block (centre of its map) and the class score of class 0
    conv = [i for i, t in enumerate(net.layer_types) if t.name.startswith("conv")][-1]
    units = [(conv + 2 if conv + 2 < len(net) else conv,), (len(net) - 1,)]
    fwd = _best(lambda: net.forward(x[0]), 30)[15]
    preferred_input(net, conv, (0,) + tuple(n // 2 for n in net.output_shapes[conv][1:]), steps=4)  # warm
    lines.append(f"{'preferred input (96 steps)':42s} {'median':>8s} {'slowest':>8s} {'/ forward':>10s}")
    for (layer,) in units:
        shape = net.output_shapes[layer]
        unit = (0,) + tuple(n // 2 for n in shape[1:]) if len(shape) > 1 else (0,)
        ts = _best(lambda: preferred_input(net, layer, unit, seed=0), 5)
        p = preferred_input(net, layer, unit, seed=0)
        name = f"layer {layer} {net.layer_types[layer].name} unit {unit}"
        lines.append(f"{name:42s} {ts[2]:7.2f}s {ts[-1]:7.2f}s {ts[2] / fwd:9.0f}x"
                     f"   (value {p.start_value:.3g} -> {p.value:.3g}; target < 2 s)")
    ts = _best(lambda: top_patches(net, x, conv, 0, k=9), 3)
    lines.append(f"{'top patches, 1000 samples (' + what + ')':42s} {ts[1]:7.2f}s {ts[-1]:7.2f}s "
                 f"{ts[1] / (1000 * fwd):9.2f}x of 1000 forward passes")
    lines.append(f"forward pass of the network: {fwd * 1e3:.2f} ms")
    return lines
