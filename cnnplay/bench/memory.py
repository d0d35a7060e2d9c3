"""Peak memory (issue 7): a forward pass and an incremental edit stay near the
size of the maps they show (no hidden copies per layer per update).

tracemalloc traces numpy's allocations (the kernels' wrappers allocate every
output and scratch array through numpy; small per-job buffers inside the
numba kernels are not seen), so the traced peak of a call is what it
allocated at its worst moment. Reported as ratios to the bytes of the maps:

- forward: peak of `net.forward(x)` / bytes of all layer outputs (the input
  exists before the call). 1.00 would mean no scratch at all; the largest
  temporary (a convolution's zero-padded, phase-split source) comes on top.
- incremental edit through `ForwardCache`: one layer's setting changed, the
  cache recomputes from that layer on; peak / bytes of the recomputed maps.
- effective field of a unit (cropped and whole-map) / bytes of all maps.
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np

TITLE = "Memory: peak traced allocations vs the maps (issue 7)"
ORDER = 45


def _peak(fn) -> tuple[int, object]:
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        base = tracemalloc.get_traced_memory()[0]
        out = fn()
        return tracemalloc.get_traced_memory()[1] - base, out
    finally:
        tracemalloc.stop()


def _mb(b: int) -> str:
    return f"{b / 2**20:7.2f} MB"


def run() -> list[str]:
    from cnnplay import Network
    from cnnplay.core.cache import ForwardCache

    from .forward import NETWORKS

    lines = []
    rng = np.random.default_rng(0)
    for name in ("default-256", "wide-128", "big-kernel-512"):
        spec = NETWORKS[name]
        net = Network.from_dict(spec)
        x = rng.standard_normal(net.input_shape).astype(np.float32)
        net.forward(x)  # compile / warm
        maps = sum(math.prod(s) for s in net.output_shapes) * 4
        peak, _ = _peak(lambda: net.forward(x))
        lines.append(f"{name}: maps {_mb(maps)}; forward peak {_mb(peak)} = {peak / maps:.2f}x the maps")

        cache = ForwardCache()
        cache.run(net, x, "img")
        # an edit of the middle conv layer's out_channels (its parameters are new)
        layers = [dict(d) for d in spec["layers"]]
        convs = [i for i, d in enumerate(layers) if d["type"].startswith("conv")]
        k = convs[len(convs) // 2]
        layers[k]["out_channels"] = layers[k]["out_channels"] + 8
        edited = Network.from_dict({"input": spec["input"], "layers": layers}, reuse=net)
        start = cache.reusable(edited, "img")
        recomputed = sum(math.prod(s) for s in edited.output_shapes[start:]) * 4
        peak, _ = _peak(lambda: cache.run(edited, x, "img"))
        lines.append(f"  edit of layer {k} ({edited.summaries[k]}), recomputed from layer {start}: "
                     f"peak {_mb(peak)} = {peak / recomputed:.2f}x the recomputed maps "
                     f"({_mb(recomputed)})")
        if name == "default-256":
            outs = net.forward(x)
            deep = max(i for i, s in enumerate(net.output_shapes) if len(s) == 3)
            centre = tuple(n // 2 for n in net.output_shapes[deep])
            peak, _ = _peak(lambda: net.effective_receptive_field(x, deep, centre, outputs=outs))
            lines.append(f"  effective field, unit {centre} of layer {deep} (cropped), outputs reused: "
                         f"peak {_mb(peak)} = {peak / maps:.3f}x the maps")
            last = len(net) - 1
            peak, _ = _peak(lambda: net.effective_receptive_field(x, last, (0,), outputs=outs))
            lines.append(f"  effective field, unit (0,) of layer {last} (whole map), outputs reused: "
                         f"peak {_mb(peak)} = {peak / maps:.2f}x the maps")
    return lines
