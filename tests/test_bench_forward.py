"""The bench's plumbing (not its timings): sections, the numpy reference, the torch twin."""

import numpy as np
import pytest

from cnnplay import Network
from cnnplay.bench import forward, sections

SMALL = {"input": [3, 20, 22], "layers": [
    {"type": "conv2d", "out_channels": 5, "kernel_size": 3, "padding": 2, "dilation": 2}, {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "batchnorm"},
    {"type": "conv2d", "out_channels": 4, "kernel_size": [3, 2], "stride": 2}, {"type": "layernorm"},
    {"type": "leaky_relu"}, {"type": "avgpool2d", "kernel_size": 2}, {"type": "flatten"},
    {"type": "linear", "out_features": 3}]}
SMALL_1D = {"input": [2, 40], "layers": [
    {"type": "conv1d", "out_channels": 4, "kernel_size": 5, "padding": 2, "stride": 2}, {"type": "relu"},
    {"type": "maxpool1d", "kernel_size": 2}, {"type": "conv1d", "out_channels": 3, "kernel_size": 3, "dilation": 2}]}


def test_forward_is_a_section():
    names = sections()
    assert "forward" in names
    assert callable(forward.run)


@pytest.mark.parametrize("spec", [SMALL, SMALL_1D])
def test_numpy_reference_matches_network(spec):
    net = Network.from_dict(spec, seed=3)
    x = np.random.default_rng(0).standard_normal(net.input_shape).astype(np.float32)
    ref = forward.numpy_forward(net, x)
    got = net.forward(x)[-1]
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("spec", [SMALL, SMALL_1D])
def test_torch_twin_matches_network(spec):
    torch = pytest.importorskip("torch")
    net = Network.from_dict(spec, seed=3)
    x = np.random.default_rng(0).standard_normal(net.input_shape).astype(np.float32)
    with torch.no_grad():
        ref = forward.torch_model(net)(torch.from_numpy(x[None]))[0].numpy()
    got = net.forward(x)[-1]
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


def test_bench_networks_are_the_issue_7_networks():
    shapes = {name: Network.from_dict(spec).output_shapes for name, spec in forward.NETWORKS.items()}
    # default-256: 3x256x256 -> 16 -> pool -> 32 -> pool -> 64 (dilated, same size) -> avgpool -> linear 10
    assert [shapes["default-256"][i] for i in (0, 2, 6, 7, 9, 11)] == [
        (16, 256, 256), (16, 128, 128), (32, 64, 64), (64, 64, 64), (64, 32, 32), (10,)]
    assert shapes["wide-128"] == [(32, 128, 128)] * 2 + [(64, 64, 64)] * 3  # stride 2 halves
    assert shapes["big-kernel-512"] == [(8, 512, 512)] * 2 + [(8, 256, 256)]
    # signal-1d: k5 p2 keeps 16384, pool 4 -> 4096, k9 dilation 3 spans 25 -> 4072
    assert shapes["signal-1d"] == [(16, 16384)] * 2 + [(16, 4096), (32, 4072)]
