"""Networks with every layer type and non-trivial weights, for the export/import tests."""

import numpy as np

from cnnplay import Network

IMAGE = {"input": [3, 20, 18], "layers": [
    {"type": "conv2d", "out_channels": 5, "kernel_size": 3, "padding": 1},
    {"type": "batchnorm"},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "out_channels": 4, "kernel_size": [3, 2], "stride": [2, 1], "dilation": 2, "padding": [2, 1],
     "bias": False},
    {"type": "layernorm", "eps": 1e-3},
    {"type": "leaky_relu", "negative_slope": 0.2},
    {"type": "avgpool2d", "kernel_size": 3, "stride": 2, "padding": 1},
    {"type": "maxpool2d", "kernel_size": [2, 3], "stride": 1, "padding": [1, 1]},
    {"type": "flatten"},
    {"type": "batchnorm"},
    {"type": "layernorm"},
    {"type": "linear", "out_features": 7},
    {"type": "relu"},
    {"type": "linear", "out_features": 3, "bias": False},
]}

SIGNAL = {"input": [2, 40], "layers": [
    {"type": "conv1d", "out_channels": 4, "kernel_size": 5, "padding": 2},
    {"type": "batchnorm", "eps": 1e-4},
    {"type": "leaky_relu"},
    {"type": "maxpool1d", "kernel_size": 2},
    {"type": "conv1d", "out_channels": 3, "kernel_size": 3, "dilation": 3, "stride": 2, "bias": False},
    {"type": "layernorm"},
    {"type": "avgpool1d", "kernel_size": 2, "padding": 1},
    {"type": "flatten"},
    {"type": "linear", "out_features": 4},
]}

SPECS = {"image": IMAGE, "signal": SIGNAL}


def randomized(spec, seed=0) -> Network:
    """The network with random weights and batch-norm statistics (not the identity
    that a fresh batch norm or layer norm is), so every parameter matters."""
    net = Network.from_dict(spec, seed=seed)
    rng = np.random.default_rng(seed + 100)
    for i in range(len(net)):
        new = {}
        for name, a in net.params(i).items():
            if name == "running_var":
                new[name] = rng.uniform(0.5, 2.0, a.shape)
            elif name in ("weight", "running_mean", "bias") and net.layer_types[i].name in ("batchnorm", "layernorm"):
                new[name] = rng.normal(1.0 if name == "weight" else 0.0, 0.5, a.shape)
            else:
                new[name] = a * 1.5
        if new:
            net.set_params(i, **new)
    return net


def batch(net, n=3, seed=1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *net.input_shape)).astype(np.float32)


def cnnplay_outputs(net, x) -> list[np.ndarray]:
    """Every layer's output for each sample of the batch x, stacked: (N, *shape) per layer."""
    per_sample = [net.forward(xi) for xi in x]
    return [np.stack([outs[i] for outs in per_sample]) for i in range(len(net))]


def assert_close(got, want, what=""):
    """Equal to 1e-4 relative to the layer's largest value."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = max(np.abs(want).max(), 1e-6)
    err = np.abs(got - want).max() / scale
    assert err <= 1e-4, f"{what}: relative error {err:.2e}"
