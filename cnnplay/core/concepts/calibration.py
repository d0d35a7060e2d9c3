"""Batch-norm calibration: running statistics from the current input.

At inference a batch norm computes (x - running_mean) / sqrt(running_var + eps)
* weight + bias per channel. Setting running_mean and running_var to the mean
and the biased variance (divide by N, as PyTorch's normalisation does) of each
channel of this layer's input *for the current image* makes its output have,
per channel, mean `bias` and standard deviation about `weight` on that image.
"""

from __future__ import annotations

import numpy as np

from ..errors import NetworkError
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
    h = np.asarray(layer_input(net, i, x, outputs), dtype=np.float64)
    flat = h.reshape(h.shape[0], -1)
    mean = flat.mean(axis=1)
    var = ((flat - mean[:, None]) ** 2).mean(axis=1)
    return {"running_mean": mean.astype(np.float32), "running_var": var.astype(np.float32)}
