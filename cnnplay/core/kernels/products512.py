"""Batched products with short inner dimensions in 512-bit registers (AVX-512 CPUs).

Winograd's forward pass and input gradient multiply, per transformed tile entry
e, the tiles' transformed inputs V[e] (n tiles x Ci) by the transformed kernel
U[e] (Ci x Co): 16 or 36 products whose inner dimension is the layer's input
channels. With 64-128 channels they are short for BLAS: OpenBLAS ran them at
70-81 GMAC/s on an Intel Xeon (2 threads), half the machine's peak.

A block here is 6 rows of V x 64 columns of U: 24 registers of 16 float32
(`vectors.F32x16`) that stay in registers over the whole inner dimension, fed
per step by 4 loads of U's row and 6 of V's entries broadcast; the sums run in
the inner dimension's order, fused, one per output. One process, alternating
with BLAS (Intel Xeon):

- the forward products (`_products`): 123-137 GMAC/s, 0.52-0.66x the time with
  64-128 channels, 0.78x with 256, 0.82x on 64 tiles;
- the weight gradient's gU[e] = gM[e]^T V[e] (Co x tiles times tiles x Ci,
  `_products_planes`, the left operand a transposed view): 0.44-0.58x with 64-128
  channels over 256-1024 tiles, 0.76x over 4096. Their long inner dimension is
  summed in order in float32: 1.2e-6 of the largest entry over 1024 tiles, 3e-6
  over 4096, against BLAS's 6e-7 and 5e-7 (its blocked sums); the F(4x4)
  transforms around them round to 6-11e-6;
- the stride-2 scheme's 9 forward products (inner dimensions Ci, 2 Ci, 4 Ci), one
  after the other (`matmuls`, `_product`): 0.48-0.72x blas.matmuls' time with
  64-128 channels in on 196-784 tiles, 0.90x on 49 tiles of 256 -> 512 channels.

Each layout of the operands has a kernel of its own, so that each compiles one
specialisation (the cold start's rule, test_coldstart). Where it does not apply
(no AVX-512, columns not a multiple of 64, fewer than 6 rows, rows with gaps)
the products go to BLAS.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import blas
from .coldstart import ready
from .vectors import avx512, fma16, load16, splat16, store16, wide_vectors

ROWS, COLUMNS = 6, 64  # the block


def applies(a, b, out) -> bool:
    """Whether out[e] = a[e] @ b[e] (3D operands) or out = a @ b (2D) runs here: on
    AVX-512, float32, b's and out's rows contiguous (a's entries are read one by
    one: a transposed view is fine), a multiple of COLUMNS columns and at least
    ROWS rows."""
    return (avx512() and a.ndim == b.ndim == out.ndim and a.ndim in (2, 3) and out.shape[-1] % COLUMNS == 0
            and a.shape[-2] >= ROWS and b.strides[-1] == out.strides[-1] == 4
            and a.dtype == b.dtype == out.dtype == np.float32)


def batched_matmul(a, b, out):
    """out[e] = a[e] @ b[e] (3D): here where it applies (and is compiled), else BLAS."""
    kernel = _products if b.flags.c_contiguous else _products_planes
    if a.ndim == 3 and applies(a, b, out) and ready(kernel):
        kernel(a, b, out)
        return out
    return blas.batched_matmul(a, b, out)


def matmuls(products) -> None:
    """out = a @ b for each 2D (a, b, out) of products: here those that apply (one
    after the other, each on every thread), BLAS the others (blas.matmuls).
    Winograd's stride-2 forward pass: 9 products of tiles x Ci, 2 Ci or 4 Ci by
    that x Co (winograd_s2.py)."""
    rest = []
    for a, b, out in products:
        if a.flags.c_contiguous and b.flags.c_contiguous and applies(a, b, out) and ready(_product):
            _product(a, b, out)
        else:
            rest.append((a, b, out))
    if rest:
        blas.matmuls(rest)


@njit(cache=True, parallel=True)
def _product(a, b, out):
    """out (n, C) = a (n, K) @ b (K, C), all rows contiguous, C a multiple of 64, n >= 6."""
    blocks = (a.shape[0] + 5) // 6
    for job in prange(blocks):
        wide_vectors()
        _rows(a, b, out, job * 6)


@njit(cache=True, parallel=True)
def _products(a, b, out):
    """out (E, n, C) = a (E, n, K) @ b (E, K, C), C a multiple of 64, n >= 6, b
    contiguous (Winograd's forward pass and input gradient: U)."""
    blocks = (a.shape[1] + 5) // 6
    for job in prange(a.shape[0] * blocks):
        wide_vectors()
        e = job // blocks
        _rows(a[e], b[e], out[e], (job - e * blocks) * 6)


@njit(cache=True, parallel=True)
def _products_planes(a, b, out):
    """_products for b in planes with gaps (the weight gradient's V): a kernel of its
    own, so that each compiles one specialisation."""
    blocks = (a.shape[1] + 5) // 6
    for job in prange(a.shape[0] * blocks):
        wide_vectors()
        e = job // blocks
        _rows(a[e], b[e], out[e], (job - e * blocks) * 6)


@njit(cache=True, inline="always")
def _rows(ae, be, oe, r):
    """oe[r:r + 6] = ae[r:r + 6] @ be, 64 columns at a time: one job. The grid's
    last block is moved back to end at the last row and stores only its own rows."""
    n, nk = ae.shape
    r0 = min(r, n - 6)
    skip = r - r0  # rows the previous block stored
    x0 = ae[r0]
    x1 = ae[r0 + 1]
    x2 = ae[r0 + 2]
    x3 = ae[r0 + 3]
    x4 = ae[r0 + 4]
    x5 = ae[r0 + 5]
    for g in range(be.shape[1] // 64):
        c = g * 64
        z = splat16(np.float32(0.0))
        a00 = z
        a01 = z
        a02 = z
        a03 = z
        a10 = z
        a11 = z
        a12 = z
        a13 = z
        a20 = z
        a21 = z
        a22 = z
        a23 = z
        a30 = z
        a31 = z
        a32 = z
        a33 = z
        a40 = z
        a41 = z
        a42 = z
        a43 = z
        a50 = z
        a51 = z
        a52 = z
        a53 = z
        for k in range(nk):
            bk = be[k]
            u0 = load16(bk, c)
            u1 = load16(bk, c + 16)
            u2 = load16(bk, c + 32)
            u3 = load16(bk, c + 48)
            s = x0[k]
            a00 = fma16(a00, u0, s)
            a01 = fma16(a01, u1, s)
            a02 = fma16(a02, u2, s)
            a03 = fma16(a03, u3, s)
            s = x1[k]
            a10 = fma16(a10, u0, s)
            a11 = fma16(a11, u1, s)
            a12 = fma16(a12, u2, s)
            a13 = fma16(a13, u3, s)
            s = x2[k]
            a20 = fma16(a20, u0, s)
            a21 = fma16(a21, u1, s)
            a22 = fma16(a22, u2, s)
            a23 = fma16(a23, u3, s)
            s = x3[k]
            a30 = fma16(a30, u0, s)
            a31 = fma16(a31, u1, s)
            a32 = fma16(a32, u2, s)
            a33 = fma16(a33, u3, s)
            s = x4[k]
            a40 = fma16(a40, u0, s)
            a41 = fma16(a41, u1, s)
            a42 = fma16(a42, u2, s)
            a43 = fma16(a43, u3, s)
            s = x5[k]
            a50 = fma16(a50, u0, s)
            a51 = fma16(a51, u1, s)
            a52 = fma16(a52, u2, s)
            a53 = fma16(a53, u3, s)
        if skip <= 0:
            _store_row(oe[r0], c, a00, a01, a02, a03)
        if skip <= 1:
            _store_row(oe[r0 + 1], c, a10, a11, a12, a13)
        if skip <= 2:
            _store_row(oe[r0 + 2], c, a20, a21, a22, a23)
        if skip <= 3:
            _store_row(oe[r0 + 3], c, a30, a31, a32, a33)
        if skip <= 4:
            _store_row(oe[r0 + 4], c, a40, a41, a42, a43)
        _store_row(oe[r0 + 5], c, a50, a51, a52, a53)


@njit(cache=True, inline="always")
def _store_row(row, c, v0, v1, v2, v3):
    store16(row, c, v0)
    store16(row, c + 16, v1)
    store16(row, c + 32, v2)
    store16(row, c + 48, v3)
