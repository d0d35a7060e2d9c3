"""Network.forward on a batch: the same values as N single passes; the memory budget."""

from __future__ import annotations

import numpy as np
import pytest

from cnnplay import Network, NetworkError
from cnnplay.core import memory

SPECS = [
    {"input": [3, 12, 12], "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "batchnorm"},
        {"type": "leaky_relu"}, {"type": "avgpool2d", "kernel_size": 2}, {"type": "layernorm"},
        {"type": "flatten"}, {"type": "linear", "out_features": 5}]},
    {"input": [2, 32], "layers": [
        {"type": "conv1d", "out_channels": 3, "kernel_size": 5, "dilation": 2}, {"type": "relu"},
        {"type": "maxpool1d", "kernel_size": 2}, {"type": "flatten"}, {"type": "linear", "out_features": 3}]},
]


@pytest.mark.parametrize("spec", SPECS)
def test_batch_forward_equals_single_passes(spec):
    net = Network.from_dict(spec, seed=1)
    if any(layer["type"] == "batchnorm" for layer in spec["layers"]):
        net.set_params(1, running_mean=[0.1, -0.2, 0.3, 0.0], running_var=[0.5, 2.0, 1.0, 3.0])
    x = np.random.default_rng(0).normal(size=(5, *spec["input"])).astype(np.float32)
    batch = net.forward(x)
    assert len(batch) == len(net)
    for i, out in enumerate(batch):
        assert out.shape == (5,) + net.output_shapes[i]
    for n in range(5):
        single = net.forward(x[n])
        for a, b in zip(batch, single):
            np.testing.assert_allclose(a[n], b, rtol=1e-4, atol=1e-6)


def test_batch_forward_bad_shapes():
    net = Network.from_dict(SPECS[0])
    with pytest.raises(NetworkError, match=r"a batch must be \(N, 3, 12, 12\)"):
        net.forward(np.zeros((2, 3, 12, 11), np.float32))
    with pytest.raises(NetworkError, match="N >= 1"):
        net.forward(np.zeros((0, 3, 12, 12), np.float32))
    with pytest.raises(NetworkError, match="the input is"):
        net.forward(np.zeros((12, 12), np.float32))


def test_batch_above_the_memory_budget_is_refused_with_the_batch_that_fits():
    net = Network.from_dict(SPECS[0])
    memory.set_limit(net.params_bytes() + net.sample_bytes() * 7 + 10)
    try:
        assert net.max_batch() == 7
        with pytest.raises(NetworkError, match="a forward pass on a batch of 8 needs .* above the memory limit .*; "
                                               "a batch of at most 7 fits"):
            net.forward(np.zeros((8, 3, 12, 12), np.float32))
        assert len(net.forward(np.zeros((7, 3, 12, 12), np.float32))) == len(net)
    finally:
        memory.set_limit(None)
