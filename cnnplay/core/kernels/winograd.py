"""Winograd convolution: 3x3 convolutions with stride 1 and many channels.

Two schemes (`Scheme`, `SCHEMES`), one mechanism: F(2x2, 3x3), described here,
and F(4x4, 3x3) (winograd4.py: 4x4 output tiles from 6x6 inputs, 36 products,
4x fewer multiply-adds, less exact). conv.choose_shape picks one per layer.

Each 2x2 block of outputs (a tile) comes from a 4x4 block of the zero-padded
input. In the transformed domain the 3x3 kernel becomes 4x4 and the 9
multiply-adds per output and input channel become 16 per 4 outputs (2.25x
fewer), as 16 independent matrix products:

    V[e] = (B^T d B)[e]          per tile and input channel (d: its 4x4 input)
    U[e] = (G g G^T)[e]          per output and input channel (g: the 3x3 kernel)
    M[e] = U[e] @ V[e]           (Co x Ci) @ (Ci x tiles), e = 0..15, BLAS
    y    = A^T M A + bias        per tile and output channel: its 2x2 outputs

(Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2015.)
The transforms only add and halve, so in float32 the results stay within a
few 1e-7 of the direct sum (the tests hold them to the float64 reference).
The transforms are parallel numba kernels, the 16 (36) products one batched
numpy matmul (BLAS). The tiles are taken a block of tile rows at a time, so
that V and M together stay within BUDGET (8 MB, the cap of the GEMM path's
column buffer) whatever the map size.

The training engine's weight gradient has the same form (`weight_grad`): the
forward pass is linear in U, so with gY a tile's 2x2 output gradient

    gM[e] = (A gY A^T)[e]                            per tile and output channel
    gU[e] = sum over tiles of gM[e] @ V[e]^T          (Co x tiles) @ (tiles x Ci), BLAS
    gw    = G^T gU G                                 per output and input channel

again 2.25x fewer multiply-adds than im2col + one product. The input
gradient is the forward convolution of the flipped kernel, whose transform
is the forward's with rows and columns 0 and 3 swapped (G J = P G, J the
reversal, P that swap) and the channels transposed (`kernel_transform(flip=True)`;
F(4x4)'s G has no such symmetry: it transforms the turned kernel as it reads it).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
from numba import njit, prange

from . import blas, winograd4

BUDGET = 8 << 20  # bytes V and M may take together (at least one tile row)


def kernel_transform(w: np.ndarray, flip: bool = False, scheme: "Scheme | None" = None) -> np.ndarray:
    """U (16, Co, Ci) float32 from 3x3 weights w (Co, Ci, 3, 3): U[4a+b] = (G w G^T)[a, b],
    G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]] (scheme F2, the
    default; F4: (36, Co, Ci) with winograd4.G); flip=True: the transform (., Ci, Co)
    of the flipped, transposed kernel the input gradient convolves with. Once per
    parameter version, which in training is every step."""
    sc = scheme or F2
    w = np.ascontiguousarray(w, dtype=np.float32).view()
    w.flags.writeable = False  # always read-only: one compiled specialisation, not two (params are frozen)
    co, ci = w.shape[:2]
    u = np.empty((sc.elems, ci, co) if flip else (sc.elems, co, ci), np.float32)
    sc.kernel(w.reshape(co, ci, 9), flip, u)
    return u


@njit(cache=True, parallel=True)
def _kernel_transform(w, flip, u):
    """u[4a+b, o, c] = (G w[o, c] G^T)[a, b] for the 3x3 kernels w (Co, Ci, 9);
    flip: u[4p(a)+p(b), c, o] instead, p swapping 0 and 3. One job per row of u,
    so a job writes whole rows (numpy on whole planes made 16 temporaries:
    11 ms for 512 x 512 channels)."""
    nrow, ncol = u.shape[1], u.shape[2]
    for r in prange(nrow):
        t = np.empty((4, 3), np.float32)
        for q in range(ncol):
            g = w[q, r] if flip else w[r, q]
            for j in range(3):  # G g
                t[0, j], t[3, j] = g[j], g[6 + j]
                s = g[j] + g[6 + j]
                t[1, j] = (s + g[3 + j]) * np.float32(0.5)
                t[2, j] = (s - g[3 + j]) * np.float32(0.5)
            for a in range(4):  # (G g) G^T
                s = t[a, 0] + t[a, 2]
                row = (t[a, 0], (s + t[a, 1]) * np.float32(0.5), (s - t[a, 1]) * np.float32(0.5), t[a, 2])
                fa = 3 - a if flip and a % 3 == 0 else a
                for b in range(4):
                    fb = 3 - b if flip and b % 3 == 0 else b
                    u[4 * fa + fb, r, q] = row[b]


@njit(cache=True, parallel=True)
def _input_transform(xp, r0, r1, tw, v, plane, n):
    """V[e, c, t] = (B^T d B)[e] for tile rows [r0, r1) of the padded maps xp
    (N, Ci, 2*th + 2, 2*tw + 2), into the flat v: V[e, c, t] is v[e*plane + c*n + t],
    tile t = (b*(r1 - r0) + i - r0)*tw + j. One job per sample and input
    channel, a row of tiles at a time (`_input_row`)."""
    nb, ci = xp.shape[0], xp.shape[1]
    rows = r1 - r0
    for job in prange(nb * ci):
        b = job // ci
        c = job - b * ci
        halves = np.empty((8, tw + 1), np.float32)
        for i in range(r0, r1):
            _input_row(xp[b, c, 2 * i], xp[b, c, 2 * i + 1], xp[b, c, 2 * i + 2], xp[b, c, 2 * i + 3],
                       halves, v, plane, c * n + (b * rows + i - r0) * tw, tw)


@njit(cache=True)
def _input_row(x0, x1, x2, x3, h, v, plane, t0, tw):
    """One row of tiles (the 4x4 blocks at columns 2j..2j+3 of rows x0..x3).
    B^T d first, on whole rows: d0 - d2, d1 + d2, d2 - d1, d1 - d3, each split
    into even and odd columns (h, 8 rows); then (.) B per tile from those
    halves, every loop unit-stride so that it vectorizes (the 4x4 blocks
    overlap by two columns: read in place they compiled to scalar code)."""
    for j in range(tw + 1):
        e, o = 2 * j, 2 * j + 1
        h[0, j], h[1, j] = x0[e] - x2[e], x0[o] - x2[o]
        h[2, j], h[3, j] = x1[e] + x2[e], x1[o] + x2[o]
        h[4, j], h[5, j] = x2[e] - x1[e], x2[o] - x1[o]
        h[6, j], h[7, j] = x1[e] - x3[e], x1[o] - x3[o]
    for r in range(4):
        ev, od = h[2 * r], h[2 * r + 1]
        a = 4 * r * plane + t0
        w0, w1 = v[a:a + tw], v[a + plane:a + plane + tw]
        w2, w3 = v[a + 2 * plane:a + 2 * plane + tw], v[a + 3 * plane:a + 3 * plane + tw]
        for j in range(tw):
            w0[j] = ev[j] - ev[j + 1]
            w1[j] = od[j] + ev[j + 1]
            w2[j] = ev[j + 1] - od[j]
            w3[j] = od[j] - od[j + 1]


@njit(cache=True, parallel=True)
def _output_transform(m, plane, n, bias, r0, r1, tw, y):
    """y[b, o, 2i:2i+2, 2j:2j+2] = (A^T M A) + bias[o] for tile rows [r0, r1)
    (M[e, o, t] is m[e*plane + o*n + t], tile t as in _input_transform), cropped
    to y's (Ho, Wo). One job per sample and output channel."""
    nb, co, ho, wo = y.shape
    rows = r1 - r0
    for job in prange(nb * co):
        b = job // co
        o = job - b * co
        out = np.empty((2, 2 * tw), np.float32)  # a tile row's outputs, before cropping to Wo
        for i in range(r0, r1):
            _output_row(m, plane, o * n + (b * rows + i - r0) * tw, tw, bias[o], out[0], out[1])
            for r in range(min(2, ho - 2 * i)):
                dst = y[b, o, 2 * i + r]
                src = out[r]
                for x in range(wo):
                    dst[x] = src[x]


@njit(cache=True)
def _output_row(m, plane, t0, tw, bo, y0, y1):
    """One row of tiles (M[e] at m[e*plane + t0:...]): A^T M A + bo into rows y0,
    y1 (2*tw columns each)."""
    m0, m1, m2, m3 = _runs4(m, t0, plane, tw)
    m4, m5, m6, m7 = _runs4(m, t0 + 4 * plane, plane, tw)
    m8, m9, m10, m11 = _runs4(m, t0 + 8 * plane, plane, tw)
    m12, m13, m14, m15 = _runs4(m, t0 + 12 * plane, plane, tw)
    for j in range(tw):
        # A^T M: rows m0 + m1 + m2 and m1 - m2 - m3 (per column) ...
        p0, p1, p2, p3 = m0[j] + m4[j] + m8[j], m1[j] + m5[j] + m9[j], m2[j] + m6[j] + m10[j], m3[j] + m7[j] + m11[j]
        q0, q1, q2, q3 = m4[j] - m8[j] - m12[j], m5[j] - m9[j] - m13[j], m6[j] - m10[j] - m14[j], \
            m7[j] - m11[j] - m15[j]
        # ... then (.) A, plus the bias
        y0[2 * j] = p0 + p1 + p2 + bo
        y0[2 * j + 1] = p1 - p2 - p3 + bo
        y1[2 * j] = q0 + q1 + q2 + bo
        y1[2 * j + 1] = q1 - q2 - q3 + bo


@njit(cache=True)
def _runs4(a, start, step, n):
    """Four runs of n from the flat a, `step` apart."""
    return a[start:start + n], a[start + step:start + step + n], a[start + 2 * step:start + 2 * step + n], \
        a[start + 3 * step:start + 3 * step + n]


@njit(cache=True, parallel=True)
def _grad_output_transform(gyp, r0, r1, tw, m, plane, n):
    """gM[e, o, t] = (A gY A^T)[e] for tile rows [r0, r1) of the output gradients
    gyp (N, Co, 2*th, 2*tw) (zero beyond the real outputs), into the flat m laid
    out as _input_transform's v: the adjoint of _output_transform. One job per
    sample and output channel, a row of tiles at a time."""
    nb, co = gyp.shape[0], gyp.shape[1]
    rows = r1 - r0
    for job in prange(nb * co):
        b = job // co
        o = job - b * co
        h = np.empty((4, tw), np.float32)
        for i in range(r0, r1):
            g0, g1 = gyp[b, o, 2 * i], gyp[b, o, 2 * i + 1]
            for j in range(tw):  # the tile's gY = [[h0, h1], [h2, h3]], as unit-stride runs
                h[0, j], h[1, j] = g0[2 * j], g0[2 * j + 1]
                h[2, j], h[3, j] = g1[2 * j], g1[2 * j + 1]
            t0 = o * n + (b * rows + i - r0) * tw
            for r in range(4):  # row r of A gY: (p, q); then (p, q) A^T = (p, p + q, p - q, -q)
                a = 4 * r * plane + t0
                w0, w1 = m[a:a + tw], m[a + plane:a + plane + tw]
                w2, w3 = m[a + 2 * plane:a + 2 * plane + tw], m[a + 3 * plane:a + 3 * plane + tw]
                for j in range(tw):
                    if r == 0:
                        p, q = h[0, j], h[1, j]
                    elif r == 1:
                        p, q = h[0, j] + h[2, j], h[1, j] + h[3, j]
                    elif r == 2:
                        p, q = h[0, j] - h[2, j], h[1, j] - h[3, j]
                    else:
                        p, q = -h[2, j], -h[3, j]
                    w0[j], w1[j], w2[j], w3[j] = p, p + q, p - q, -q


def _rows_per_block(elems: int, ci: int, co: int, th: int, tw: int, nb: int, budget: int) -> int:
    """Tile rows per block: V and M (elems x (Ci + Co) floats per tile) within budget."""
    return max(1, min(th, budget // (elems * (ci + co) * tw * nb * 4)))


def _grad_budget(elems: int, ci: int, co: int) -> int:
    """weight_grad's budget for V and M: BUDGET, or gU's size if larger. Each block
    adds its product to gU (16 x Co x Ci, 16 MB for 512 x 512 channels), and its
    tiles are the product's inner dimension: with few tiles per block, re-reading
    gU and BLAS's short products cost more than the larger V and M."""
    return max(BUDGET, 4 * elems * co * ci)


def _tiles(sc: "Scheme", ho: int, wo: int) -> tuple[int, int]:
    """Tile rows and columns covering an (Ho, Wo) output."""
    return -(-ho // sc.tile), -(-wo // sc.tile)


def workspace_bytes(ci: int, co: int, ho: int, wo: int, scheme: "Scheme | None" = None) -> int:
    """What conv3x3 allocates for one sample (the padded maps, V and M), its input
    having ci channels or co (the backward's flipped kernel)."""
    sc = scheme or F2
    th, tw = _tiles(sc, ho, wo)
    rows = _rows_per_block(sc.elems, ci, co, th, tw, 1, BUDGET)
    return 4 * (max(ci, co) * (sc.tile * th + 2) * (sc.tile * tw + 2)
                + sc.elems * (ci + co) * (rows * tw + 16))


def weight_grad_bytes(ci: int, co: int, ho: int, wo: int, scheme: "Scheme | None" = None) -> int:
    """What weight_grad allocates for one sample: the padded maps, the padded
    output gradient, V and M within its budget, gU and a part, and gw."""
    sc = scheme or F2
    th, tw = _tiles(sc, ho, wo)
    rows = _rows_per_block(sc.elems, ci, co, th, tw, 1, _grad_budget(sc.elems, ci, co))
    return 4 * (ci * (sc.tile * th + 2) * (sc.tile * tw + 2) + co * sc.tile ** 2 * th * tw
                + sc.elems * (ci + co) * (rows * tw + 16) + 2 * sc.elems * co * ci + co * ci * 9)


def conv3x3(x, u, bias, padding, y) -> None:
    """y (N, Co, Ho, Wo) = the stride-1 3x3 convolution of x (N, Ci, H, W) with the
    transformed kernel u (16 or 36, Co, Ci: its scheme) and bias (Co,), zero
    padding (ph, pw)."""
    sc = SCHEMES[u.shape[0]]
    co, ho, wo = y.shape[1:]
    for r0, r1, n, v, m, mflat, mplane in _blocks(sc, x, co, ho, wo, padding, BUDGET):
        blas.batched_matmul(u, v, m)
        sc.output(mflat, mplane, n, bias, r0, r1, _tiles(sc, ho, wo)[1], y)


def weight_grad(x, gy, padding, scheme: "Scheme | None" = None) -> np.ndarray:
    """gw (Co, Ci, 3, 3), summed over the batch, of the stride-1 3x3 convolution of
    x (N, Ci, H, W) with zero padding (ph, pw) whose output gradient is
    gy (N, Co, Ho, Wo): gU[e] = sum over tiles of gM[e] @ V[e]^T, a block of tile
    rows at a time as in conv3x3, then gw = G^T gU G."""
    sc = scheme or F2
    nb, ci = x.shape[:2]
    co, ho, wo = gy.shape[1:]
    th, tw = _tiles(sc, ho, wo)
    gyp = np.zeros((nb, co, sc.tile * th, sc.tile * tw), np.float32)  # the cropped outputs' gradient is 0
    gyp[:, :, :ho, :wo] = gy
    gu = np.empty((sc.elems, co, ci), np.float32)
    part = None
    for r0, r1, n, v, m, mflat, mplane in _blocks(sc, x, co, ho, wo, padding, _grad_budget(sc.elems, ci, co)):
        sc.grad_output(gyp, r0, r1, tw, mflat, mplane, n)
        if r0 == 0:  # (elems, Co, Ci); BLAS takes V^T as it lies
            blas.batched_matmul(m, v.transpose(0, 2, 1), gu)
        else:
            part = blas.batched_matmul(m, v.transpose(0, 2, 1), np.empty_like(gu) if part is None else part)
            gu += part
    gw = np.empty((co, ci, 9), np.float32)
    sc.adjoint(gu, gw)
    return gw.reshape(co, ci, 3, 3)


def _blocks(sc: "Scheme", x, co: int, ho: int, wo: int, padding, budget: int):
    """The tiles of an (Ho, Wo) output of x (N, Ci, H, W), a block of tile rows at a
    time within `budget`: yields (r0, r1, n, V, M, M's flat buffer, its plane stride)
    with V (elems, Ci, n) already transformed and M (elems, Co, n) to be filled. The
    buffers are the same for every block (the last one laid out for its shorter n)."""
    nb, ci = x.shape[:2]
    th, tw = _tiles(sc, ho, wo)
    xp = _padded_input(x, padding, sc.tile * th + 2, sc.tile * tw + 2)
    rows = _rows_per_block(sc.elems, ci, co, th, tw, nb, budget)
    n_max = nb * rows * tw
    vflat = np.empty(sc.elems * (ci * n_max + 16), np.float32)
    mflat = np.empty(sc.elems * (co * n_max + 16), np.float32)
    for r0 in range(0, th, rows):
        r1 = min(th, r0 + rows)
        n = nb * (r1 - r0) * tw
        vplane, v = _planes(vflat, sc.elems, ci, n)
        mplane, m = _planes(mflat, sc.elems, co, n)
        sc.input(xp, r0, r1, tw, vflat, vplane, n)
        yield r0, r1, n, v, m, mflat, mplane


@njit(cache=True, parallel=True)
def _adjoint_kernel_transform(gu, gw):
    """gw[o, c] (3x3) = G^T gU[:, o, c] G for gU (16, Co, Ci): the rows of G^T are
    (1, 1/2, 1/2, 0), (0, 1/2, -1/2, 0), (0, 1/2, 1/2, 1). One job per output
    channel (numpy on whole planes: 13 ms for 512 x 512 channels)."""
    co, ci = gu.shape[1], gu.shape[2]
    half = np.float32(0.5)
    for o in prange(co):
        t = np.empty((3, 4), np.float32)
        for c in range(ci):
            for b in range(4):  # G^T gU, column b
                s = (gu[4 + b, o, c] + gu[8 + b, o, c]) * half
                t[0, b] = gu[b, o, c] + s
                t[1, b] = (gu[4 + b, o, c] - gu[8 + b, o, c]) * half
                t[2, b] = gu[12 + b, o, c] + s
            g = gw[o, c]
            for i in range(3):  # (G^T gU) G, row i
                s = (t[i, 1] + t[i, 2]) * half
                g[3 * i] = t[i, 0] + s
                g[3 * i + 1] = (t[i, 1] - t[i, 2]) * half
                g[3 * i + 2] = t[i, 3] + s


def _padded_input(x, padding, hp: int, wp: int) -> np.ndarray:
    """x (N, Ci, H, W) zero-padded to (hp, wp), the tiles' input blocks (more than the
    padding where the tiles overhang the output; rows beyond the tiles dropped)."""
    nb, ci, h, w = x.shape
    ph, pw = padding
    xp = np.zeros((nb, ci, hp, wp), np.float32)
    hh, ww = min(h, hp - ph), min(w, wp - pw)
    xp[:, :, ph:ph + hh, pw:pw + ww] = x[:, :, :hh, :ww]
    return xp


def _planes(flat, elems: int, rows: int, n: int):
    """(plane stride, (elems, rows, n) view of flat): elems matrices of rows x n, each
    plane one cache line further than a packed layout: planes a multiple of
    4 KB apart (64 x 784 floats, say) put the runs a tile row reads or writes
    in the same L1 set, and the transforms ran at a third of their speed."""
    plane = rows * n + 16
    return plane, flat[:elems * plane].reshape(elems, plane)[:, :rows * n].reshape(elems, rows, n)


class Scheme(NamedTuple):
    """One Winograd F(m x m, 3x3): its tile and the kernels that transform for it."""
    name: str  # the algorithm's name (conv.choose_shape's answer)
    tile: int  # outputs per tile side, m
    elems: int  # (m + 2)^2: entries of a transformed tile, products per tile
    kernel: Callable  # (w (Co, Ci, 9), flip, u): U = G w G^T
    input: Callable  # (xp, r0, r1, tw, v, plane, n): V = B^T d B
    output: Callable  # (m, plane, n, bias, r0, r1, tw, y): y = A^T M A + bias
    grad_output: Callable  # (gyp, r0, r1, tw, m, plane, n): gM = A gY A^T
    adjoint: Callable  # (gU, gw): gw = G^T gU G
    kernels: tuple  # what the forward runs (coldstart.ready)
    grad_kernels: tuple  # what weight_grad runs


F2 = Scheme("winograd", 2, 16, _kernel_transform, _input_transform, _output_transform, _grad_output_transform,
            _adjoint_kernel_transform,
            (_input_transform, _output_transform, _input_row, _output_row, _runs4, _kernel_transform),
            (_input_transform, _input_row, _grad_output_transform, _adjoint_kernel_transform))
_w4 = winograd4
F4 = Scheme("winograd4", 4, 36, _w4._kernel_transform, _w4._input_transform, _w4._output_transform,
            _w4._grad_output_transform, _w4._adjoint_kernel_transform,
            (_w4._input_transform, _w4._output_transform, _w4._input_row, _w4._output_row, _w4._kernel_transform,
             _w4._product),
            (_w4._input_transform, _w4._input_row, _w4._grad_output_transform, _w4._adjoint_kernel_transform,
             _w4._product))
SCHEMES = {16: F2, 36: F4, F2.name: F2, F4.name: F4}  # by transformed-tile size or by name
NAMES = (F2.name, F4.name)
