"""Batch norm in training mode (batch statistics), forward and backward, on (N, C, P) batches.

The formulas are in core/training/batchnorm.py. Sums run in float64 over the
float32 data, one job per channel (each channel's sums in one fixed order, so
the result does not depend on the thread count); the element-wise passes run
one job per (sample, channel) row. Nothing float64 the size of the maps is
allocated: x-hat is recomputed in the backward pass from x and two numbers
per channel.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .coldstart import ready
from .launch import one_at_a_time, sized

# Reassociating the float64 sums lets them vectorize; each stays in one job, so
# it is still bit-for-bit reproducible run to run.
_FM = {"reassoc", "contract"}


@njit(cache=True, parallel=True, fastmath=_FM)
def _stats(x3, mean, var):
    """Per channel: mean and biased variance over the batch and positions (two passes)."""
    nb, c_n, p = x3.shape
    inv_m = 1.0 / (nb * p)
    for c in prange(c_n):
        s = 0.0
        for b in range(nb):
            xr = x3[b, c]
            for i in range(p):
                s += np.float64(xr[i])
        mu = s * inv_m
        q = 0.0
        for b in range(nb):
            xr = x3[b, c]
            for i in range(p):
                d = np.float64(xr[i]) - mu
                q += d * d
        mean[c] = mu
        var[c] = q * inv_m


@njit(cache=True, parallel=True)
def _normalize(x3, mean, invstd, weight, bias, y3):
    """y = (x - mean) * invstd * weight + bias per (sample, channel) row, in float64."""
    nb, c_n, p = x3.shape
    for job in prange(nb * c_n):
        b = job // c_n
        c = job - b * c_n
        mu, s, w, bb = mean[c], invstd[c], np.float64(weight[c]), np.float64(bias[c])
        xr = x3[b, c]
        yr = y3[b, c]
        for i in range(p):
            yr[i] = np.float32((np.float64(xr[i]) - mu) * s * w + bb)


@njit(cache=True, parallel=True, fastmath=_FM)
def _grad_sums(x3, gy3, mean, gsum, gxsum):
    """Per channel: sum(gy) and sum(gy * (x - mean))."""
    nb, c_n, p = x3.shape
    for c in prange(c_n):
        mu = mean[c]
        s = 0.0
        q = 0.0
        for b in range(nb):
            xr = x3[b, c]
            gr = gy3[b, c]
            for i in range(p):
                g = np.float64(gr[i])
                s += g
                q += g * (np.float64(xr[i]) - mu)
        gsum[c] = s
        gxsum[c] = q


@njit(cache=True, parallel=True)
def _grad_input(x3, gy3, mean, invstd, weight, gb_m, gw_m, gx3):
    """gx = weight * invstd * (gy - gb/m - xhat * gw/m) per (sample, channel) row."""
    nb, c_n, p = x3.shape
    for job in prange(nb * c_n):
        b = job // c_n
        c = job - b * c_n
        mu, s = mean[c], invstd[c]
        k = np.float64(weight[c]) * s
        a, d = gb_m[c], gw_m[c]
        xr = x3[b, c]
        gr = gy3[b, c]
        dr = gx3[b, c]
        for i in range(p):
            xhat = (np.float64(xr[i]) - mu) * s
            dr[i] = np.float32(k * (np.float64(gr[i]) - a - xhat * d))


KERNELS = (_stats, _normalize, _grad_sums, _grad_input)

_SERIAL_BELOW = 1 << 16  # elements: below this one thread is faster than starting the pool


def compiled() -> bool:
    """Whether the kernels can run now (else: the numpy formulation, see core/training/batchnorm.py)."""
    return ready(*KERNELS)


@one_at_a_time
def forward(x3, weight, bias, eps):
    """(y float32 (N, C, P), mean float64 (C,), biased var float64 (C,), invstd float64 (C,))."""
    c = x3.shape[1]
    mean = np.empty(c, np.float64)
    var = np.empty(c, np.float64)
    sized(_stats, x3.size, _SERIAL_BELOW)(x3, mean, var)
    invstd = 1.0 / np.sqrt(var + eps)
    y = np.empty_like(x3)
    sized(_normalize, x3.size, _SERIAL_BELOW)(x3, mean, invstd, weight, bias, y)
    return y, mean, var, invstd


@one_at_a_time
def backward(x3, gy3, mean, invstd, weight, input_grad=True):
    """(gx float32 (N, C, P) or None, gweight float64 (C,), gbias float64 (C,))."""
    nb, c, p = x3.shape
    gb = np.empty(c, np.float64)
    gxm = np.empty(c, np.float64)
    sized(_grad_sums, x3.size, _SERIAL_BELOW)(x3, gy3, mean, gb, gxm)
    gw = gxm * invstd  # sum(gy * xhat)
    gx = None
    if input_grad:
        m = nb * p
        gx = np.empty_like(x3)
        sized(_grad_input, x3.size, _SERIAL_BELOW)(x3, gy3, mean, invstd, weight, gb / m, gw / m, gx)
    return gx, gw, gb
