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

The maps are transformed channels last (winograd_tiles.py): every combination
of a tile's positions is one unit-stride loop over its channels.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .winograd_tiles import _store_rows

G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64)


@njit(cache=True, parallel=True)
def _kernel_transform(taps, u):
    """u[6a+b, r, q] = (G g G^T)[a, b], g[i, j] = taps[3i + j, r, q]: the kernels'
    taps laid out as u's rows and columns (winograd.kernel_transform). In float64,
    rounded once (at most 128 channels take this scheme, and the transform adds
    no error of its own); one job per row, each sum a loop over its columns."""
    nrow, ncol = u.shape[1], u.shape[2]
    for r in prange(nrow):
        t = np.empty((6, 3, ncol))  # G g: [a][j][column]
        for a in range(6):
            ga0, ga1, ga2 = G[a, 0], G[a, 1], G[a, 2]
            for j in range(3):
                g0, g1, g2, ta = taps[j, r], taps[3 + j, r], taps[6 + j, r], t[a, j]
                for q in range(ncol):
                    ta[q] = ga0 * g0[q] + ga1 * g1[q] + ga2 * g2[q]
        for a in range(6):
            t0, t1, t2 = t[a, 0], t[a, 1], t[a, 2]
            for b in range(6):  # (G g) G^T
                gb0, gb1, gb2, dst = G[b, 0], G[b, 1], G[b, 2], u[6 * a + b, r]
                for q in range(ncol):
                    dst[q] = t0[q] * gb0 + t1[q] * gb1 + t2[q] * gb2


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
def _input_transform(xt, r0, r1, tw, v, plane):
    """V[e, t, c] = (B^T d B)[e] for tile rows [r0, r1) of the padded, channels-last
    maps xt (N, 4*th + 2, 4*tw + 2, Ci), into the flat v (V[e, t, c] at
    v[e*plane + t*Ci + c], tile t = (b*(r1 - r0) + i - r0)*tw + j). One job per
    sample and tile row: per tile, B^T on each column of its d, then on each row
    of the result, every loop over the channels."""
    nb, ci = xt.shape[0], xt.shape[3]
    rows = r1 - r0
    for job in prange(nb * rows):
        b = job // rows
        i = r0 + job - b * rows
        h = np.empty((6, 6, ci), np.float32)  # B^T d: [row][column][channel]
        for j in range(tw):
            for k in range(6):
                d0, d1, d2 = xt[b, 4 * i, 4 * j + k], xt[b, 4 * i + 1, 4 * j + k], xt[b, 4 * i + 2, 4 * j + k]
                d3, d4, d5 = xt[b, 4 * i + 3, 4 * j + k], xt[b, 4 * i + 4, 4 * j + k], xt[b, 4 * i + 5, 4 * j + k]
                h0, h1, h2, h3, h4, h5 = h[0, k], h[1, k], h[2, k], h[3, k], h[4, k], h[5, k]
                for c in range(ci):
                    h0[c], h1[c], h2[c], h3[c], h4[c], h5[c] = _bt(d0[c], d1[c], d2[c], d3[c], d4[c], d5[c])
            t = (job * tw + j) * ci
            for r in range(6):
                e0, e1, e2, e3, e4, e5 = h[r, 0], h[r, 1], h[r, 2], h[r, 3], h[r, 4], h[r, 5]
                a = 6 * r * plane + t
                w0, w1, w2 = v[a:a + ci], v[a + plane:a + plane + ci], v[a + 2 * plane:a + 2 * plane + ci]
                w3, w4, w5 = v[a + 3 * plane:a + 3 * plane + ci], v[a + 4 * plane:a + 4 * plane + ci], \
                    v[a + 5 * plane:a + 5 * plane + ci]
                for c in range(ci):
                    w0[c], w1[c], w2[c], w3[c], w4[c], w5[c] = _bt(e0[c], e1[c], e2[c], e3[c], e4[c], e5[c])


@njit(cache=True)
def _bt(a0, a1, a2, a3, a4, a5):
    """B^T (a0, ..., a5) (B^T in the module doc). On scalars, so that the loops
    calling it vectorize."""
    f2, f4, f5 = np.float32(2), np.float32(4), np.float32(5)
    return (f4 * a0 - f5 * a2 + a4, a3 + a4 - f4 * (a1 + a2), a4 - a3 + f4 * (a1 - a2),
            a4 - a2 + f2 * (a3 - a1), a4 - a2 + f2 * (a1 - a3), f4 * a1 - f5 * a3 + a5)


@njit(cache=True, parallel=True)
def _output_transform(m, plane, bias, r0, r1, tw, y):
    """y[b, o, 4i:4i+4, 4j:4j+4] = (A^T M A) + bias[o] for tile rows [r0, r1)
    (M[e, t, o] at m[e*plane + t*Co + o]), cropped to y's (Ho, Wo). One job per
    sample and tile row."""
    nb, co = y.shape[0], y.shape[1]
    rows = r1 - r0
    for job in prange(nb * rows):
        b = job // rows
        i = r0 + job - b * rows
        p = np.empty((4, 6, co), np.float32)  # A^T M: [row][column][channel]
        q = np.empty((4, co, 4 * tw), np.float32)  # the tile row's outputs: [row][channel][column]
        s = 6 * plane
        for j in range(tw):
            t = (job * tw + j) * co
            for k in range(6):
                a = k * plane + t
                m0, m1, m2 = m[a:a + co], m[a + s:a + s + co], m[a + 2 * s:a + 2 * s + co]
                m3, m4, m5 = m[a + 3 * s:a + 3 * s + co], m[a + 4 * s:a + 4 * s + co], m[a + 5 * s:a + 5 * s + co]
                p0, p1, p2, p3 = p[0, k], p[1, k], p[2, k], p[3, k]
                for c in range(co):
                    p0[c], p1[c], p2[c], p3[c] = _at(m0[c], m1[c], m2[c], m3[c], m4[c], m5[c])
            for r in range(4):
                e0, e1, e2, e3, e4, e5 = p[r, 0], p[r, 1], p[r, 2], p[r, 3], p[r, 4], p[r, 5]
                qr = q[r]
                for c in range(co):
                    z0, z1, z2, z3 = _at(e0[c], e1[c], e2[c], e3[c], e4[c], e5[c])
                    bc = bias[c]
                    qr[c, 4 * j], qr[c, 4 * j + 1] = z0 + bc, z1 + bc
                    qr[c, 4 * j + 2], qr[c, 4 * j + 3] = z2 + bc, z3 + bc
        _store_rows(q, b, 4 * i, y)


@njit(cache=True)
def _at(m0, m1, m2, m3, m4, m5):
    """A^T (m0, ..., m5) (A^T in the module doc)."""
    f2, f4, f8 = np.float32(2), np.float32(4), np.float32(8)
    sp, sm = m1 + m2, m1 - m2
    tp, tm = m3 + m4, m3 - m4
    return m0 + sp + tp, sm + f2 * tm, sp + f4 * tp, sm + f8 * tm + m5


@njit(cache=True, parallel=True)
def _grad_output_transform(gyt, oy, ox, r0, r1, tw, m, plane):
    """gM[e, t, o] = (A gY A^T)[e] for tile rows [r0, r1) of the channels-last output
    gradients gyt (gY[b, o, 0, 0] at gyt[b, oy, ox, o], zero beyond the real outputs), into the
    flat m laid out as _input_transform's v: the adjoint of _output_transform.
    One job per sample and tile row."""
    nb, co = gyt.shape[0], gyt.shape[3]
    rows = r1 - r0
    for job in prange(nb * rows):
        b = job // rows
        i = r0 + job - b * rows
        h = np.empty((6, 4, co), np.float32)  # A gY: [row][column][channel]
        for j in range(tw):
            for k in range(4):
                g0, g1 = gyt[b, oy + 4 * i, ox + 4 * j + k], gyt[b, oy + 4 * i + 1, ox + 4 * j + k]
                g2, g3 = gyt[b, oy + 4 * i + 2, ox + 4 * j + k], gyt[b, oy + 4 * i + 3, ox + 4 * j + k]
                h0, h1, h2, h3, h4, h5 = h[0, k], h[1, k], h[2, k], h[3, k], h[4, k], h[5, k]
                for c in range(co):
                    h0[c], h1[c], h2[c], h3[c], h4[c], h5[c] = _a(g0[c], g1[c], g2[c], g3[c])
            t = (job * tw + j) * co
            for r in range(6):
                e0, e1, e2, e3 = h[r, 0], h[r, 1], h[r, 2], h[r, 3]
                a = 6 * r * plane + t
                w0, w1, w2 = m[a:a + co], m[a + plane:a + plane + co], m[a + 2 * plane:a + 2 * plane + co]
                w3, w4, w5 = m[a + 3 * plane:a + 3 * plane + co], m[a + 4 * plane:a + 4 * plane + co], \
                    m[a + 5 * plane:a + 5 * plane + co]
                for c in range(co):
                    w0[c], w1[c], w2[c], w3[c], w4[c], w5[c] = _a(e0[c], e1[c], e2[c], e3[c])


@njit(cache=True)
def _a(a0, a1, a2, a3):
    """A (a0, ..., a3): A's rows are (1, 0, 0, 0), (1, 1, 1, 1), (1, -1, 1, -1),
    (1, 2, 4, 8), (1, -2, 4, -8), (0, 0, 0, 1)."""
    f2, f4, f8 = np.float32(2), np.float32(4), np.float32(8)
    ep, op = a0 + a2, a1 + a3
    e4, o8 = a0 + f4 * a2, f2 * a1 + f8 * a3
    return a0, ep + op, ep - op, e4 + o8, e4 - o8, a3
