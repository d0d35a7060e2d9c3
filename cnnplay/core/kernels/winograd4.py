"""Winograd F(4x4, 3x3)'s transforms: tiles of 4x4 outputs from 6x6 inputs.

The same scheme as winograd.py's F(2x2, 3x3) (that module runs both, see its
doc), with Lavin and Gray's matrices for 4x4 tiles:

    B^T = [[4,  0, -5,  0, 1, 0],      G = [[ 1/4,     0,    0],     A^T = [[1, 1,  1, 1,  1, 0],
           [0, -4, -4,  1, 1, 0],           [-1/6, -1/6, -1/6],             [0, 1, -1, 2, -2, 0],
           [0,  4, -4, -1, 1, 0],           [-1/6,  1/6, -1/6],             [0, 1,  1, 4,  4, 0],
           [0, -2, -1,  2, 1, 0],           [1/24, 1/12,  1/6],             [0, 1, -1, 8, -8, 1]]
           [0,  2, -1, -2, 1, 0],           [1/24, -1/12, 1/6],
           [0,  4,  0, -5, 0, 1]]           [   0,     0,    1]]

36 products per 16 outputs instead of 144 multiply-adds (4x fewer; F(2x2) has 2.25x).
With 64-128 channels the 16 products of F(2x2) are short for BLAS and the
transforms dominate; F(4x4) moves 2.25x less data through them per output. The
price is accuracy: the transforms multiply by up to 8 and divide by 24, so in
float32 a result is within about 2e-5 of the float64 sum relative to its
scale (F(2x2): a few 1e-7), inside the 1e-4 the tests hold every kernel to.

Tiles are read and written as unit-stride runs over a row of tiles: a tile
row's input rows are split into four column phases (columns 4j + p), so the six
columns of tile j are phases 0-3 at j and phases 0-1 at j + 1.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64)


@njit(cache=True, parallel=True)
def _kernel_transform(w, flip, u):
    """u[6a+b, o, c] = (G w[o, c] G^T)[a, b] for the 3x3 kernels w (Co, Ci, 9);
    flip: u[., c, o] of the kernel turned by 180 degrees (the input gradient's).
    In float64, rounded once: at most 128 channels take this scheme, so it is
    cheap, and the transform adds no error of its own."""
    nrow, ncol = u.shape[1], u.shape[2]
    for r in prange(nrow):
        g = np.empty((3, 3))
        t = np.empty((6, 3))
        for q in range(ncol):
            k = w[q, r] if flip else w[r, q]
            for i in range(9):
                g[i // 3, i % 3] = k[8 - i] if flip else k[i]
            _product(G, g, t)  # G g
            for a in range(6):
                for b in range(6):  # (G g) G^T
                    u[6 * a + b, r, q] = t[a, 0] * G[b, 0] + t[a, 1] * G[b, 1] + t[a, 2] * G[b, 2]


@njit(cache=True, parallel=True)
def _adjoint_kernel_transform(gu, gw):
    """gw[o, c] (3x3, flattened) = G^T gU[:, o, c] G for gU (36, Co, Ci), in float64."""
    co, ci = gu.shape[1], gu.shape[2]
    for o in prange(co):
        m = np.empty((6, 6))
        t = np.empty((6, 3))
        for c in range(ci):
            for e in range(36):
                m[e // 6, e % 6] = gu[e, o, c]
            _product(m, G, t)  # gU G
            for i in range(3):
                for j in range(3):  # G^T (gU G)
                    s = 0.0
                    for a in range(6):
                        s += G[a, i] * t[a, j]
                    gw[o, c, 3 * i + j] = s


@njit(cache=True)
def _product(a, b, out):
    """out = a @ b for small float64 matrices (numba's @ would need scipy's BLAS)."""
    for i in range(a.shape[0]):
        for j in range(b.shape[1]):
            s = 0.0
            for k in range(a.shape[1]):
                s += a[i, k] * b[k, j]
            out[i, j] = s


@njit(cache=True, parallel=True)
def _input_transform(xp, r0, r1, tw, v, plane, n):
    """V[e, c, t] = (B^T d B)[e] for tile rows [r0, r1) of the padded maps xp
    (N, Ci, 4*th + 2, 4*tw + 2), into the flat v (V[e, c, t] at v[e*plane + c*n + t],
    tile t = (b*(r1 - r0) + i - r0)*tw + j). One job per sample and input channel."""
    nb, ci = xp.shape[0], xp.shape[1]
    rows = r1 - r0
    for job in prange(nb * ci):
        b = job // ci
        c = job - b * ci
        h = np.empty((24, tw + 1), np.float32)  # the 6 rows of B^T d, each in 4 column phases
        for i in range(r0, r1):
            _input_row(xp[b, c], 4 * i, h, v, plane, c * n + (b * rows + i - r0) * tw, tw)


@njit(cache=True)
def _input_row(x, top, h, v, plane, t0, tw):
    """One row of tiles: B^T d on the six input rows from `top` (per column phase),
    then (.) B per tile from those phases."""
    f2, f4, f5 = np.float32(2), np.float32(4), np.float32(5)
    d0, d1, d2, d3, d4, d5 = x[top], x[top + 1], x[top + 2], x[top + 3], x[top + 4], x[top + 5]
    for p in range(4):
        for j in range(tw + 1 if p < 2 else tw):
            col = 4 * j + p
            a0, a1, a2, a3, a4, a5 = d0[col], d1[col], d2[col], d3[col], d4[col], d5[col]
            h[p, j] = f4 * a0 - f5 * a2 + a4
            h[4 + p, j] = a3 + a4 - f4 * (a1 + a2)
            h[8 + p, j] = a4 - a3 + f4 * (a1 - a2)
            h[12 + p, j] = a4 - a2 + f2 * (a3 - a1)
            h[16 + p, j] = a4 - a2 + f2 * (a1 - a3)
            h[20 + p, j] = f4 * a1 - f5 * a3 + a5
    for r in range(6):
        c0, c1, c2, c3 = h[4 * r], h[4 * r + 1], h[4 * r + 2], h[4 * r + 3]
        a = 6 * r * plane + t0
        w0, w1, w2 = v[a:a + tw], v[a + plane:a + plane + tw], v[a + 2 * plane:a + 2 * plane + tw]
        w3, w4, w5 = v[a + 3 * plane:a + 3 * plane + tw], v[a + 4 * plane:a + 4 * plane + tw], \
            v[a + 5 * plane:a + 5 * plane + tw]
        for j in range(tw):
            a0, a1, a2, a3, a4, a5 = c0[j], c1[j], c2[j], c3[j], c0[j + 1], c1[j + 1]
            w0[j] = f4 * a0 - f5 * a2 + a4
            w1[j] = a3 + a4 - f4 * (a1 + a2)
            w2[j] = a4 - a3 + f4 * (a1 - a2)
            w3[j] = a4 - a2 + f2 * (a3 - a1)
            w4[j] = a4 - a2 + f2 * (a1 - a3)
            w5[j] = f4 * a1 - f5 * a3 + a5


@njit(cache=True, parallel=True)
def _output_transform(m, plane, n, bias, r0, r1, tw, y):
    """y[b, o, 4i:4i+4, 4j:4j+4] = (A^T M A) + bias[o] for tile rows [r0, r1)
    (M[e, o, t] at m[e*plane + o*n + t]), cropped to y's (Ho, Wo). One job per
    sample and output channel."""
    nb, co, ho, wo = y.shape
    rows = r1 - r0
    for job in prange(nb * co):
        b = job // co
        o = job - b * co
        p = np.empty((24, tw), np.float32)  # A^T M: 4 rows x 6 columns of runs
        out = np.empty((4, 4 * tw), np.float32)  # a tile row's outputs, before cropping to Wo
        for i in range(r0, r1):
            _output_row(m, plane, o * n + (b * rows + i - r0) * tw, tw, bias[o], p, out)
            for r in range(min(4, ho - 4 * i)):
                dst = y[b, o, 4 * i + r]
                src = out[r]
                for x in range(wo):
                    dst[x] = src[x]


@njit(cache=True)
def _output_row(m, plane, t0, tw, bo, p, out):
    """One row of tiles: A^T M (on the six rows of each column k), then (.) A + bo."""
    f2, f4, f8 = np.float32(2), np.float32(4), np.float32(8)
    for k in range(6):
        a = k * plane + t0
        s = 6 * plane
        m0, m1, m2 = m[a:a + tw], m[a + s:a + s + tw], m[a + 2 * s:a + 2 * s + tw]
        m3, m4, m5 = m[a + 3 * s:a + 3 * s + tw], m[a + 4 * s:a + 4 * s + tw], m[a + 5 * s:a + 5 * s + tw]
        for j in range(tw):
            sp, sm = m1[j] + m2[j], m1[j] - m2[j]
            tp, tm = m3[j] + m4[j], m3[j] - m4[j]
            p[k, j] = m0[j] + sp + tp
            p[6 + k, j] = sm + f2 * tm
            p[12 + k, j] = sp + f4 * tp
            p[18 + k, j] = sm + f8 * tm + m5[j]
    for r in range(4):
        q0, q1, q2, q3, q4, q5 = p[6 * r], p[6 * r + 1], p[6 * r + 2], p[6 * r + 3], p[6 * r + 4], p[6 * r + 5]
        dst = out[r]
        for j in range(tw):
            sp, sm = q1[j] + q2[j], q1[j] - q2[j]
            tp, tm = q3[j] + q4[j], q3[j] - q4[j]
            dst[4 * j] = q0[j] + sp + tp + bo
            dst[4 * j + 1] = sm + f2 * tm + bo
            dst[4 * j + 2] = sp + f4 * tp + bo
            dst[4 * j + 3] = sm + f8 * tm + q5[j] + bo


@njit(cache=True, parallel=True)
def _grad_output_transform(gyp, r0, r1, tw, m, plane, n):
    """gM[e, o, t] = (A gY A^T)[e] for tile rows [r0, r1) of the output gradients
    gyp (N, Co, 4*th, 4*tw) (zero beyond the real outputs), into the flat m laid
    out as _input_transform's v: the adjoint of _output_transform. The rows of A
    are (1, 0, 0, 0), (1, 1, 1, 1), (1, -1, 1, -1), (1, 2, 4, 8), (1, -2, 4, -8),
    (0, 0, 0, 1)."""
    nb, co = gyp.shape[0], gyp.shape[1]
    rows = r1 - r0
    f2, f4, f8 = np.float32(2), np.float32(4), np.float32(8)
    for job in prange(nb * co):
        b = job // co
        o = job - b * co
        h = np.empty((24, tw), np.float32)  # A gY: 6 rows, each in 4 column phases
        for i in range(r0, r1):
            g0, g1, g2, g3 = gyp[b, o, 4 * i], gyp[b, o, 4 * i + 1], gyp[b, o, 4 * i + 2], gyp[b, o, 4 * i + 3]
            for q in range(4):
                for j in range(tw):
                    col = 4 * j + q
                    a0, a1, a2, a3 = g0[col], g1[col], g2[col], g3[col]
                    ep, op = a0 + a2, a1 + a3
                    e4, o8 = a0 + f4 * a2, f2 * a1 + f8 * a3
                    h[q, j] = a0
                    h[4 + q, j] = ep + op
                    h[8 + q, j] = ep - op
                    h[12 + q, j] = e4 + o8
                    h[16 + q, j] = e4 - o8
                    h[20 + q, j] = a3
            t0 = o * n + (b * rows + i - r0) * tw
            for r in range(6):  # (.) A^T on row r's four column values
                c0, c1, c2, c3 = h[4 * r], h[4 * r + 1], h[4 * r + 2], h[4 * r + 3]
                a = 6 * r * plane + t0
                w0, w1, w2 = m[a:a + tw], m[a + plane:a + plane + tw], m[a + 2 * plane:a + 2 * plane + tw]
                w3, w4, w5 = m[a + 3 * plane:a + 3 * plane + tw], m[a + 4 * plane:a + 4 * plane + tw], \
                    m[a + 5 * plane:a + 5 * plane + tw]
                for j in range(tw):
                    ep, op = c0[j] + c2[j], c1[j] + c3[j]
                    e4, o8 = c0[j] + f4 * c2[j], f2 * c1[j] + f8 * c3[j]
                    w0[j] = c0[j]
                    w1[j] = ep + op
                    w2[j] = ep - op
                    w3[j] = e4 + o8
                    w4[j] = e4 - o8
                    w5[j] = c3[j]
