"""Batch norm in training mode, exactly nn.BatchNorm1d/2d.train():

    forward:  mean, var = statistics of x over the batch and every position
              (biased variance, divisor m = N * positions)
              y = (x - mean) / sqrt(var + eps) * weight + bias
              running_mean <- (1 - 0.1) * running_mean + 0.1 * mean
              running_var  <- (1 - 0.1) * running_var  + 0.1 * var * m / (m - 1)   (unbiased)
    backward: with xhat = (x - mean) / sqrt(var + eps) and the statistics
              differentiated through,
              gx = weight / sqrt(var + eps) * (gy - mean(gy) - xhat * mean(gy * xhat))
              gweight = sum(gy * xhat), gbias = sum(gy)   (sums over batch and positions)

x is (N, C, ...) (channels on axis 1; a flat (N, F) input has F channels at
one position). Statistics and sums are accumulated in float64 from the
float32 data; outputs are float32. Every other layer's training mode is its
inference mode (see the layer types' forward_batch / backward_batch).
"""

from __future__ import annotations

import numpy as np

MOMENTUM = 0.1


class BatchNormTrain:
    """One training-mode pass of one batch-norm layer: forward, then backward."""

    def __init__(self, x: np.ndarray, params: dict, eps: float):
        n, c = x.shape[0], x.shape[1]
        x3 = x.reshape(n, c, -1).astype(np.float64)
        self.m = n * x3.shape[2]
        self.shape = x.shape
        mean = x3.mean(axis=(0, 2))
        var = ((x3 - mean[None, :, None]) ** 2).mean(axis=(0, 2))
        self.invstd = 1.0 / np.sqrt(var + eps)
        self.xhat = (x3 - mean[None, :, None]) * self.invstd[None, :, None]
        self.weight = params["weight"].astype(np.float64)
        y = self.xhat * self.weight[None, :, None] + params["bias"].astype(np.float64)[None, :, None]
        self.y = y.astype(np.float32).reshape(x.shape)
        unbiased = var * self.m / (self.m - 1)
        self.running_mean = ((1 - MOMENTUM) * params["running_mean"].astype(np.float64)
                             + MOMENTUM * mean).astype(np.float32)
        self.running_var = ((1 - MOMENTUM) * params["running_var"].astype(np.float64)
                            + MOMENTUM * unbiased).astype(np.float32)

    def backward(self, gy: np.ndarray, input_grad: bool = True):
        """(gx float32 or None, {"weight": ..., "bias": ...})."""
        n, c = self.shape[0], self.shape[1]
        g3 = gy.reshape(n, c, -1).astype(np.float64)
        gb = g3.sum(axis=(0, 2))
        gw = (g3 * self.xhat).sum(axis=(0, 2))
        gx = None
        if input_grad:
            gx = (self.weight * self.invstd)[None, :, None] * (
                g3 - (gb / self.m)[None, :, None] - self.xhat * (gw / self.m)[None, :, None])
            gx = gx.astype(np.float32).reshape(self.shape)
        return gx, {"weight": gw.astype(np.float32), "bias": gb.astype(np.float32)}
