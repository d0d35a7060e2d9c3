"""Forward passes of a batch of samples up to one layer (the one place the
microscope runs batches): Network.layer_forward_batch (Contract 1: the layer
types' batched kernels, packed weights kept per parameter version)."""

from __future__ import annotations

import numpy as np

from ..errors import Cancelled, NetworkError


def check_samples(net, data) -> tuple[np.ndarray, np.ndarray | None]:
    """(x float32 (N, *input_shape), labels or None) from an array or a Dataset
    (anything with .x and .y)."""
    labels = None
    if hasattr(data, "x") and hasattr(data, "y"):
        x, labels = data.x, np.asarray(data.y)
    else:
        x = data
    x = np.asarray(x)
    if x.ndim != len(net.input_shape) + 1 or tuple(x.shape[1:]) != tuple(net.input_shape):
        raise NetworkError(f"the data set's samples are {tuple(x.shape[1:])} but the network expects "
                           f"{tuple(net.input_shape)}", field="input")
    if labels is not None and labels.shape != (x.shape[0],):
        labels = None
    return np.ascontiguousarray(x, dtype=np.float32), labels


def forward_upto(net, xb: np.ndarray, layer: int, should_stop=None) -> np.ndarray:
    """Layer `layer`'s output for every sample of xb (N, *input_shape)."""
    h = xb
    for i in range(layer + 1):
        if should_stop is not None and should_stop():
            raise Cancelled()
        h = net.layer_forward_batch(i, h)
    return h
