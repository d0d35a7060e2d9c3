"""Peak memory of a forward pass and an incremental edit: near the maps (issue 7)."""

from __future__ import annotations

import math

import numpy as np

from cnnplay import Network
from cnnplay.bench import memory
from cnnplay.bench.forward import NETWORKS
from cnnplay.core.cache import ForwardCache


def test_forward_and_edit_allocate_about_the_maps():
    spec = NETWORKS["default-256"]
    net = Network.from_dict(spec)
    x = np.random.default_rng(0).standard_normal(net.input_shape).astype(np.float32)
    net.forward(x)
    maps = sum(math.prod(s) for s in net.output_shapes) * 4
    peak, outs = memory._peak(lambda: net.forward(x))
    # every map once, plus at most one layer's scratch (a padded input copy)
    assert maps * 0.9 <= peak <= maps + 2 * math.prod(net.input_shape) * 4
    cache = ForwardCache()
    cache.run(net, x, "img")
    layers = [dict(d) for d in spec["layers"]]
    layers[3]["out_channels"] = 40
    edited = Network.from_dict({"input": spec["input"], "layers": layers}, reuse=net)
    recomputed = sum(math.prod(s) for s in edited.output_shapes[3:]) * 4
    peak, (got, start) = memory._peak(lambda: cache.run(edited, x, "img"))
    assert start == 3
    assert peak <= recomputed * 1.25
    for a, b in zip(got, edited.forward(x)):
        np.testing.assert_array_equal(a, b)


def test_section_runs():
    lines = memory.run()
    assert any("forward peak" in line for line in lines)
