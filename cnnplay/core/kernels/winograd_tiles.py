"""The channels-last layout both Winograd schemes transform in (winograd.py).

A tile's transform combines the same positions of every channel, so with the
channels last each combination is one unit-stride loop over channels, long
enough to vectorize whatever the map's width (with channels first, a row of
tiles was 7-14 tiles long at 14-56 px, read at a stride of the tile size:
mostly scalar code, and F(4x4)'s transforms took 60 % of a 64-channel layer).
The maps come in and go out channels first: `channels_last` pads and turns
the input once, `_store_rows` writes each tile row's outputs back
(`_channels_first` turns a whole padded map back: the stride-2 scheme's input
gradient).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


def channels_last(x, padding, hp: int, wp: int) -> np.ndarray:
    """x (N, C, H, W) zero-padded by padding (ph, pw) before its first row and column,
    and after its last as far as (hp, wp) reaches (what lies beyond is dropped),
    as (N, hp, wp, C) float32."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    nb, ci, h, w = x.shape
    xt = np.empty((nb, hp, wp, ci), np.float32)
    _channels_last(x, padding[0], padding[1], _aliased(4 * h * w), xt)
    return xt


def _aliased(stride: int) -> bool:
    """Whether rows `stride` bytes apart fall in at most 4 of the 64 sets of a 32 KB,
    8-way L1 (Zen and Intel cores alike): a multiple of 1 KB."""
    return 4096 // math.gcd(stride, 4096) <= 4


@njit(cache=True, parallel=True)
def _channels_last(x, ph, pw, along, xt):
    """xt (N, Hp, Wp, C) = x (N, C, H, W) padded as channels_last says. One job per
    sample and row of xt. Read across the channels (a value of each per column,
    the writes in order) unless `along`: then a channel's row at a time (the
    writes C apart). Across took 0.5-0.9x along's time (64-512 channels at
    8-56 px) except where the channels' rows crowd a few L1 sets (_aliased):
    at 32 x 32 (rows 4 KB apart) along took 0.26x across's."""
    nb, ci, h, w = x.shape
    hp, wp = xt.shape[1], xt.shape[2]
    cols = max(0, min(w, wp - pw))
    for job in prange(nb * hp):
        b = job // hp
        r = job - b * hp
        dst = xt[b, r]
        if r < ph or r - ph >= h:
            dst[:, :] = 0
            continue
        dst[:pw, :] = 0
        dst[pw + cols:, :] = 0
        if along:
            for c in range(ci):
                src = x[b, c, r - ph]
                for col in range(cols):
                    dst[pw + col, c] = src[col]
        else:
            for col in range(cols):
                d = dst[pw + col]
                for c in range(ci):
                    d[c] = x[b, c, r - ph, col]


@njit(cache=True)
def _store_rows(q, b, top, y):
    """y[b, c, top + r, :Wo] = q[r, c, :Wo] for the rows r of q that y has: a tile row's
    outputs, gathered channels first while its tiles were transformed, copied
    out a whole row per channel. (Storing each tile's 4 values per channel and
    row as the tile was done, 64-128 lines 1-12 KB apart per tile, the F(4x4)
    output transform took 1.3-1.5x its time.)"""
    co, ho, wo = y.shape[1], y.shape[2], y.shape[3]
    for r in range(min(q.shape[0], ho - top)):
        for c in range(co):
            dst = y[b, c, top + r]
            src = q[r, c]
            for x in range(wo):
                dst[x] = src[x]


@njit(cache=True, parallel=True)
def _channels_first(xt, ph, pw, x):
    """x (N, C, H, W) = the padded, channels-last xt (N, Hp, Wp, C) cropped at (ph, pw):
    channels_last's inverse. One job per sample and row."""
    nb, ci, h, w = x.shape
    for job in prange(nb * h):
        b = job // h
        r = job - b * h
        src = xt[b, r + ph]
        for c in range(ci):
            dst = x[b, c, r]
            for col in range(w):
                dst[col] = src[pw + col, c]
