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
float32 data; outputs are float32 (kernels: core/kernels/batchnorm_train.py).
Every other layer's training mode is its inference mode (see the layer types'
forward_batch / backward_batch).
"""

from __future__ import annotations

import numpy as np

from ..kernels import batchnorm_train as bn_kernels

MOMENTUM = 0.1


class BatchNormTrain:
    """One training-mode pass of one batch-norm layer: forward, then backward.

    Runs the numba kernels (core/kernels/batchnorm_train.py) when they are
    compiled, else (first start, still compiling) the same formulas in numpy."""

    def __init__(self, x: np.ndarray, params: dict, eps: float):
        n, c = x.shape[0], x.shape[1]
        self.x3 = np.ascontiguousarray(x, dtype=np.float32).reshape(n, c, -1)
        self.m = n * self.x3.shape[2]
        self.shape = x.shape
        self.weight = np.ascontiguousarray(params["weight"], dtype=np.float32)
        bias = np.ascontiguousarray(params["bias"], dtype=np.float32)
        self.numba = bn_kernels.compiled()
        if self.numba:
            y, self.mean, var, self.invstd = bn_kernels.forward(self.x3, self.weight, bias, float(eps))
        else:
            x64 = self.x3.astype(np.float64)
            self.mean = x64.mean(axis=(0, 2))
            var = ((x64 - self.mean[None, :, None]) ** 2).mean(axis=(0, 2))
            self.invstd = 1.0 / np.sqrt(var + eps)
            xhat = (x64 - self.mean[None, :, None]) * self.invstd[None, :, None]
            y = xhat * self.weight.astype(np.float64)[None, :, None] + bias.astype(np.float64)[None, :, None]
        self.y = y.astype(np.float32, copy=False).reshape(x.shape)
        unbiased = var * self.m / (self.m - 1)
        self.running_mean = ((1 - MOMENTUM) * params["running_mean"].astype(np.float64)
                             + MOMENTUM * self.mean).astype(np.float32)
        self.running_var = ((1 - MOMENTUM) * params["running_var"].astype(np.float64)
                            + MOMENTUM * unbiased).astype(np.float32)

    def backward(self, gy: np.ndarray, input_grad: bool = True):
        """(gx float32 or None, {"weight": ..., "bias": ...})."""
        n, c = self.shape[0], self.shape[1]
        g3 = np.ascontiguousarray(gy, dtype=np.float32).reshape(n, c, -1)
        if self.numba:
            gx, gw, gb = bn_kernels.backward(self.x3, g3, self.mean, self.invstd, self.weight, input_grad)
        else:
            g64 = g3.astype(np.float64)
            xhat = (self.x3.astype(np.float64) - self.mean[None, :, None]) * self.invstd[None, :, None]
            gb = g64.sum(axis=(0, 2))
            gw = (g64 * xhat).sum(axis=(0, 2))
            gx = None
            if input_grad:
                k = (self.weight.astype(np.float64) * self.invstd)[None, :, None]
                gx = (k * (g64 - (gb / self.m)[None, :, None] - xhat * (gw / self.m)[None, :, None])
                      ).astype(np.float32)
        if gx is not None:
            gx = gx.reshape(self.shape)
        return gx, {"weight": gw.astype(np.float32), "bias": gb.astype(np.float32)}
