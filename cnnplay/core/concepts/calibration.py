"""Batch-norm calibration: running statistics from the current input.

At inference a batch norm computes (x - running_mean) / sqrt(running_var + eps)
* weight + bias per channel. Setting running_mean and running_var to the mean
and the biased variance (divide by N, as PyTorch's normalisation does) of each
channel of this layer's input *for the current image* makes its output have,
per channel, mean `bias` and standard deviation about `weight` on that image.
"""

from __future__ import annotations

import numpy as np

from ..errors import Cancelled, NetworkError
from ..network import Network

EXPLANATION = (
    "Batch norm subtracts a stored mean and divides by a stored spread, per channel. Calibrating stores "
    "this image's own mean and variance at the layer's input, so the maps after it are centred on 0 "
    "with spread 1 (before its scale and shift)."
)


def layer_input(net: Network, i: int, x: np.ndarray, outputs: list | None = None) -> np.ndarray:
    """Layer i's input for network input x (from `outputs` when given, else computed)."""
    if i == 0:
        return net.check_input(x)
    if outputs is not None and len(outputs) >= i:
        return outputs[i - 1]
    h = net.check_input(x)
    for k in range(i):
        h = net.layer_forward(k, h)
    return h


def batchnorm_statistics(net: Network, i: int, x: np.ndarray, outputs: list | None = None) -> dict:
    """{"running_mean", "running_var"} for batchnorm layer i from input x (biased variance)."""
    if not 0 <= i < len(net):
        raise NetworkError(f"no layer {i}: the network has {len(net)} layers")
    if net.layer_types[i].name != "batchnorm":
        raise NetworkError("calibration is for batchnorm layers", i, None, net.layer_types[i].name)
    return _statistics(layer_input(net, i, x, outputs))


def calibrate_all(net: Network, x: np.ndarray, should_stop=None) -> dict[int, dict]:
    """{layer: statistics} for every batchnorm, top to bottom: each one sees the
    maps of the ones before it already calibrated (as if calibrated one by one)."""
    work = Network.from_dict(net.to_dict(), seed=net.seed, reuse=net)  # shares arrays; set_params replaces
    stats = {}
    h = work.check_input(x)
    for i in range(len(work)):
        if should_stop is not None and should_stop():
            raise Cancelled()
        if work.layer_types[i].name == "batchnorm":
            stats[i] = _statistics(h)
            work.set_params(i, **stats[i])
        h = work.layer_forward(i, h)
    return stats


def _statistics(h: np.ndarray) -> dict:
    """Per-channel mean and biased variance of a layer input, in float64."""
    flat = np.asarray(h, dtype=np.float64).reshape(h.shape[0], -1)
    mean = flat.mean(axis=1)
    var = ((flat - mean[:, None]) ** 2).mean(axis=1)
    return {"running_mean": mean.astype(np.float32), "running_var": var.astype(np.float32)}
