"""Contract 1: every layer type's forward_batch / backward_batch.

References are written here in float64: one windowed reference (patches of the
padded input) for conv and pooling, plain numpy for the rest, per sample in a
loop; gradients by central finite differences of sum(gy * f(x)) over the whole
batch (so parameter gradients are summed over the batch by construction). Also
checked: a batch gives the same values as N single passes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnnplay.core.layers import LAYER_TYPES
from strategies import conv_geometries


# ---------------------------------------------------------------------------
# float64 references, one sample (C, *spatial)

def patches(x, kernel, stride, padding, dilation, fill):
    """(C, kh, kw, Ho, Wo): the padded input under every tap of every window."""
    c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    xp = np.full((c, h + 2 * ph, w + 2 * pw), fill)
    xp[:, ph:ph + h, pw:pw + w] = x
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.empty((c, kh, kw, ho, wo))
    for ky in range(kh):
        for kx in range(kw):
            out[:, ky, kx] = xp[:, ky * dh:ky * dh + sh * (ho - 1) + 1:sh, kx * dw:kx * dw + sw * (wo - 1) + 1:sw]
    return out


def as2d(cfg, name, x):
    """A 1D layer's sample and geometry as height 1."""
    one = len(cfg["kernel_size"]) == 1
    g = lambda key, pad: ((pad,) + tuple(cfg[key])) if one else tuple(cfg[key])
    geo = (g("kernel_size", 1), g("stride", 1), g("padding", 0), g("dilation", 1) if "dilation" in cfg else (1, 1))
    return (x[:, None, :] if one else x), geo, one


def ref_sample(name, cfg, x, p):
    x = np.asarray(x, np.float64)
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    if name.startswith("conv"):
        x2, geo, one = as2d(cfg, name, x)
        pt = patches(x2, *geo, 0.0)
        w = p["weight"][:, :, None, :] if one else p["weight"]
        y = np.einsum("oikl,iklhw->ohw", w, pt)
        if "bias" in p:
            y = y + p["bias"][:, None, None]
        return y[:, 0] if one else y
    if "pool" in name:
        x2, geo, one = as2d(cfg, name, x)
        mode = name[:3]
        pt = patches(x2, *geo, -np.inf if mode == "max" else 0.0)
        y = pt.max(axis=(1, 2)) if mode == "max" else pt.mean(axis=(1, 2))
        return y[:, 0] if one else y
    if name == "batchnorm":
        c = x.shape[0]
        sh = (c,) + (1,) * (x.ndim - 1)
        return ((x - p["running_mean"].reshape(sh)) / np.sqrt(p["running_var"].reshape(sh) + cfg["eps"])
                * p["weight"].reshape(sh) + p["bias"].reshape(sh))
    if name == "layernorm":
        c = x.shape[0]
        sh = (c,) + (1,) * (x.ndim - 1)
        mu = x.mean(axis=0)
        var = ((x - mu) ** 2).mean(axis=0)
        return (x - mu) / np.sqrt(var + cfg["eps"]) * p["weight"].reshape(sh) + p["bias"].reshape(sh)
    if name in ("relu", "leaky_relu"):
        slope = cfg.get("negative_slope", 0.0)
        return np.where(x > 0, x, slope * x)
    if name == "flatten":
        return x.reshape(-1)
    if name == "linear":
        return p["weight"] @ x + (p["bias"] if "bias" in p else 0.0)
    raise AssertionError(name)


def ref_batch(name, cfg, x, p):
    return np.stack([ref_sample(name, cfg, x[i], p) for i in range(x.shape[0])])


def fd_grad(f, a, h=1e-6):
    a = np.array(a, dtype=np.float64)
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + h
        up = f(a)
        a[i] = old - h
        down = f(a)
        a[i] = old
        g[i] = (up - down) / (2 * h)
    return g


def close(a, b, rtol=1e-4):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(np.abs(b).max(), 1e-6)
    assert np.abs(a - b).max() <= rtol * scale, (np.abs(a - b).max(), scale)


# ---------------------------------------------------------------------------
# Layers under test

CASES = [
    ("conv2d", {"out_channels": 4, "kernel_size": 3, "padding": 1}, (3, 6, 7)),
    ("conv2d", {"out_channels": 3, "kernel_size": [2, 3], "stride": 2, "padding": [1, 0], "dilation": [1, 2]}, (2, 7, 8)),
    ("conv2d", {"out_channels": 5, "kernel_size": 1, "bias": False}, (6, 4, 3)),
    ("conv1d", {"out_channels": 3, "kernel_size": 4, "stride": 3, "padding": 5, "dilation": 2}, (2, 17)),
    ("maxpool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, (3, 7, 6)),
    ("maxpool1d", {"kernel_size": 2}, (2, 9)),
    ("avgpool2d", {"kernel_size": 2, "padding": 1}, (2, 5, 5)),
    ("avgpool1d", {"kernel_size": 3, "stride": 2, "padding": 1}, (3, 10)),
    ("batchnorm", {}, (3, 4, 5)),
    ("batchnorm", {"eps": 1e-3}, (4, 6)),
    ("batchnorm", {}, (5,)),
    ("layernorm", {}, (4, 3, 3)),
    ("layernorm", {}, (6,)),
    ("relu", {}, (2, 3, 4)),
    ("leaky_relu", {"negative_slope": 0.2}, (3, 5)),
    ("flatten", {}, (2, 3, 4)),
    ("linear", {"out_features": 4}, (7,)),
    ("linear", {"out_features": 3, "bias": False}, (5,)),
]


def make(name, raw, in_shape, seed=0):
    t = LAYER_TYPES[name]
    cfg = t.normalize({"type": name, **raw}, 0)
    rng = np.random.default_rng(seed)
    params = t.init_params(cfg, in_shape, rng)
    for k in list(params):  # away from the identity start: every term matters
        a = rng.standard_normal(params[k].shape).astype(np.float32)
        params[k] = (np.abs(a) + 0.3).astype(np.float32) if k == "running_var" else a
    return t, cfg, params


def rand(rng, shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("name,raw,in_shape", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_forward_and_backward_batch(name, raw, in_shape):
    t, cfg, params = make(name, raw, in_shape)
    rng = np.random.default_rng(1)
    n = 3
    x = rand(rng, (n,) + in_shape)
    y = t.forward_batch(cfg, x, params)
    assert y.dtype == np.float32
    want = ref_batch(name, cfg, x, params)
    close(y, want)
    gy = rand(rng, y.shape)
    gx, grads = t.backward_batch(cfg, x, y, gy, params)
    assert gx.dtype == np.float32 and gx.shape == x.shape
    loss = lambda xx=x, pp=params: float((gy * ref_batch(name, cfg, xx, pp)).sum())
    close(gx, fd_grad(lambda a: loss(xx=a), x))
    learned = [k for k in t.learnable if k in params]
    assert sorted(grads) == sorted(learned)
    for k in learned:
        assert grads[k].shape == params[k].shape and grads[k].dtype == np.float32
        close(grads[k], fd_grad(lambda a: loss(pp={**params, k: a}), params[k]))
    gx2, none = t.backward_batch(cfg, x, y, gy, params, param_grads=False)
    assert none == {}
    np.testing.assert_allclose(gx2, gx, rtol=1e-6, atol=1e-6)
    # a first layer: no input gradient needed, the same parameter gradients
    gx3, grads3 = t.backward_batch(cfg, x, y, gy, params, input_grad=False)
    assert gx3 is None or np.allclose(gx3, gx, rtol=1e-6, atol=1e-6)
    assert name.startswith("conv") <= (gx3 is None)
    for k in learned:
        np.testing.assert_allclose(grads3[k], grads[k], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,raw,in_shape", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_batch_equals_single_passes(name, raw, in_shape):
    t, cfg, params = make(name, raw, in_shape, seed=4)
    rng = np.random.default_rng(2)
    n = 5
    x = rand(rng, (n,) + in_shape)
    y = t.forward_batch(cfg, x, params)
    single = np.stack([t.forward(cfg, x[i], params) for i in range(n)])
    close(y, single, rtol=1e-5)
    gy = rand(rng, y.shape)
    gx, grads = t.backward_batch(cfg, x, y, gy, params)
    singles = [t.backward(cfg, x[i], y[i], gy[i], params) for i in range(n)]
    close(gx, np.stack([s[0] for s in singles]), rtol=1e-5)
    for k, g in grads.items():
        close(g, sum(s[1][k].astype(np.float64) for s in singles), rtol=1e-5)


@settings(max_examples=30, deadline=None)
@given(conv_geometries(), st.integers(0, 2**31 - 1))
def test_conv2d_batch_any_geometry(geometry, seed):
    n, ci, co, k, s, p, d, hw = geometry
    raw = {"out_channels": co, "kernel_size": k, "stride": s, "padding": p, "dilation": d}
    t, cfg, params = make("conv2d", raw, (ci, *hw), seed)
    rng = np.random.default_rng(seed)
    x = rand(rng, (n, ci, *hw))
    y = t.forward_batch(cfg, x, params)
    close(y, ref_batch("conv2d", cfg, x, params))
    gy = rand(rng, y.shape)
    gx, grads = t.backward_batch(cfg, x, y, gy, params)
    # conv is linear in x and in w: the reference VJPs are exact sums over patches
    xs = np.asarray(x, np.float64)
    pt = np.stack([patches(xs[i], k, s, p, d, 0.0) for i in range(n)])  # (N, C, kh, kw, Ho, Wo)
    close(grads["weight"], np.einsum("nohw,niklhw->oikl", gy, pt))
    close(grads["bias"], gy.astype(np.float64).sum(axis=(0, 2, 3)))
    close(gx, fd_grad(lambda a: float((gy * ref_batch("conv2d", cfg, a, params)).sum()), x))


def test_batch_of_one_and_bad_batches():
    t, cfg, params = make("conv2d", {"out_channels": 2, "kernel_size": 3}, (1, 5, 5))
    x = np.ones((1, 1, 5, 5), np.float32)
    assert t.forward_batch(cfg, x, params).shape == (1, 2, 3, 3)
    with pytest.raises(ValueError, match="batch"):
        t.forward_batch(cfg, np.ones((0, 1, 5, 5), np.float32), params)
    with pytest.raises(ValueError, match="batch"):
        t.backward_batch(cfg, x, None, np.ones((2, 2, 3, 3), np.float32), params)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["direct", "gemm"]),
       conv_geometries(batch=(1, 3), in_channels=(1, 9), out_channels=(1, 10), side=(1, 7)), st.booleans(),
       st.integers(0, 2**31 - 1))
def test_both_conv_algorithms(algo, geometry, bias, seed):
    """The direct kernel and the GEMM (im2col + matmul) formulation, forced, on any
    geometry: forward, weight gradient and input gradient against the references."""
    from cnnplay.core.kernels import conv, grad
    n, ci, co, k, s, p, d, hw = geometry
    rng = np.random.default_rng(seed)
    x = rand(rng, (n, ci, *hw))
    w = rand(rng, (co, ci, *k))
    b = rand(rng, (co,)) if bias else None
    params = {"weight": w} | ({"bias": b} if bias else {})
    cfg = {"kernel_size": tuple(k), "stride": tuple(s), "padding": tuple(p), "dilation": tuple(d)}
    y = conv.conv2d_batch(x, w, b, s, p, d, algorithm=algo)
    close(y, np.stack([ref_sample("conv2d", cfg, x[i], params) for i in range(n)]))
    gy = rand(rng, y.shape)
    gx, gw, gb = grad.conv2d_backward_batch(x, w, gy, s, p, d, algorithm=algo)
    xs = np.asarray(x, np.float64)
    pt = np.stack([patches(xs[i], k, s, p, d, 0.0) for i in range(n)])
    close(gw, np.einsum("nohw,niklhw->oikl", gy, pt))
    close(gb, gy.astype(np.float64).sum(axis=(0, 2, 3)))
    close(gx, conv_input_grad(x.shape, w, gy, k, s, p, d))


def conv_input_grad(x_shape, w, gy, k, s, p, d):
    """The float64 input gradient of a convolution: every output's gradient scattered
    back through its window."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = k, s, p, d
    n, ci, h, wd = x_shape
    gxp = np.zeros((n, ci, h + 2 * ph, wd + 2 * pw))
    contrib = np.einsum("nohw,oikl->niklhw", gy.astype(np.float64), w.astype(np.float64))
    ho, wo = gy.shape[2:]
    for ky in range(kh):
        for kx in range(kw):
            gxp[:, :, ky * dh:ky * dh + sh * (ho - 1) + 1:sh, kx * dw:kx * dw + sw * (wo - 1) + 1:sw] += contrib[:, :, ky, kx]
    return gxp[:, :, ph:ph + h, pw:pw + wd]


def test_the_chooser_sends_channel_heavy_layers_to_blas():
    """The chooser: channel-heavy 3x3 layers with stride 1 run as Winograd (F(4x4) up
    to 128 channels, F(2x2) beyond); 1x1 ones, and 3x3 ones with stride 2 from 128
    channels, as GEMM; few channels, 5x5 and dilated kernels, and 64-channel
    stride-2 ones on the direct kernel (allow_winograd=False: the weight gradient's
    choice while Winograd's gradient kernels are still compiling, GEMM for a
    Winograd layer); all give the reference values (forward, and the gradients of
    the GEMM and direct ones)."""
    from cnnplay.core.kernels import conv, grad
    rng = np.random.default_rng(7)
    for ci, co, k, s, pad, want in ((64, 64, 3, 1, 1, "winograd4"), (70, 65, 3, 1, 0, "winograd4"),
                                    (128, 128, 3, 1, 1, "winograd4"), (129, 64, 3, 1, 1, "winograd"),
                                    (64, 160, 3, 1, 0, "winograd"),
                                    (128, 96, 1, 1, 0, "gemm"), (64, 96, 1, 2, 0, "gemm"),
                                    (128, 160, 3, 2, 1, "gemm"), (64, 128, 3, 2, 1, "direct"),
                                    (64, 256, 3, 2, 1, "gemm"), (96, 192, 3, 2, 1, "gemm"),
                                    (256, 64, 3, 2, 1, "direct"),
                                    (128, 128, 5, 1, 2, "direct"), (3, 16, 3, 1, 1, "direct"),
                                    (16, 32, 3, 1, 1, "direct")):
        plan = conv._plan(ci, 9, 8, k, k, (s, s), (pad, pad), (1, 1))
        assert conv.choose(plan, co, 2) == want
        assert conv.choose(plan, co, 2, allow_winograd=False) == ("gemm" if "winograd" in want else want)
        x, w, b = rand(rng, (2, ci, 9, 8)), rand(rng, (co, ci, k, k)) * 0.1, rand(rng, (co,))
        cfg = {"kernel_size": (k, k), "stride": (s, s), "padding": (pad, pad), "dilation": (1, 1)}
        y = conv.conv2d_batch(x, w, b, s, pad, 1, version=("test", ci, co, k, s))
        close(y, np.stack([ref_sample("conv2d", cfg, x[i], {"weight": w, "bias": b}) for i in range(2)]))
        if want in ("gemm", "direct"):  # the gradients in the same formulation
            gy = rand(rng, y.shape)
            gx, gw, _ = grad.conv2d_backward_batch(x, w, gy, s, pad, 1, version=("test", ci, co, k, s))
            pt = np.stack([patches(np.asarray(x[i], np.float64), (k, k), (s, s), (pad, pad), (1, 1), 0.0)
                           for i in range(2)])
            close(gw, np.einsum("nohw,niklhw->oikl", gy, pt))
            close(gx, conv_input_grad(x.shape, w, gy, (k, k), (s, s), (pad, pad), (1, 1)))


@settings(max_examples=40, deadline=None)
@given(conv_geometries(in_channels=(1, 3), out_channels=(1, 1), padding=(0, 3)), st.integers(1, 4))
def test_the_batch_source_layout(geometry, per_job):
    """conv._make_source writes every column of a batch's source (into memory full of
    NaN), whatever its channels per job: sample b's phase image (py, px) of channel c
    from column b*length holds padded pixel (i*sh + py, j*sw + px) at i*Wq + j, zeros
    elsewhere; with stride 1 down the samples overlap in padding rows, and each one
    still reads back whole (that the outputs are right: the batch tests against the
    references)."""
    from cnnplay.core.kernels import conv
    n, ci, _, k, s, p, d, hw = geometry
    plan = conv._plan(ci, *hw, *k, tuple(s), tuple(p), tuple(d))
    rng = np.random.default_rng(n * 7 + ci)
    x = rand(rng, (n, ci, *hw)) + 2.0  # no zeros of its own
    if s[0] == 1 and n > 1:
        assert plan.length == max(hw[0] + p[0], plan.ho) * plan.wq  # padding rows shared
    out = np.full((plan.phases * ci, plan.columns(n)), np.nan, np.float32)
    conv._make_source(x, s[0], s[1], p[0], p[1], plan.hq, plan.wq, plan.length, per_job, out)
    assert not np.isnan(out).any()
    covered = np.zeros(out.shape, bool)
    for b in range(n):
        for py in range(s[0]):
            for px in range(s[1]):
                for c in range(ci):
                    img = np.zeros((plan.hq, plan.wq), np.float32)
                    for i in range(plan.hq):
                        for j in range(plan.wq):
                            yy, xx = i * s[0] + py - p[0], j * s[1] + px - p[1]
                            if 0 <= yy < hw[0] and 0 <= xx < hw[1]:
                                img[i, j] = x[b, c, yy, xx]
                    row = (py * s[1] + px) * ci + c
                    cols = slice(b * plan.length, b * plan.length + plan.hq * plan.wq)
                    np.testing.assert_array_equal(out[row, cols], img.ravel())
                    covered[row, cols] = True
    assert (out[~covered] == 0).all()


def test_a_scattered_input_gradient_takes_blas_from_64_channels(monkeypatch):
    """Where the input gradient is scattered back per stride phase (stride > 1, or
    fewer than 8 input channels), it runs as W^T gY + col2im from 64 channels in
    and out, whatever the kernel and whatever the forward chose; below, on the
    direct kernel. Each against the float64 reference."""
    from cnnplay.core.kernels import conv, grad
    used = []
    for name in ("_grad_input_gemm", "_grad_input_direct"):
        real = getattr(grad, name)
        monkeypatch.setattr(grad, name, lambda *a, real=real, name=name: used.append(name) or real(*a))
    rng = np.random.default_rng(8)
    for ci, co, k, s, pad, d, hw, want in ((64, 128, 3, 2, 1, 1, (9, 8), "gemm"),
                                           (64, 64, 5, 2, 2, 1, (10, 11), "gemm"),
                                           (96, 64, 3, 3, 1, 2, (13, 12), "gemm"),
                                           (32, 64, 3, 2, 1, 1, (9, 8), "direct"),
                                           (64, 32, 7, 2, 3, 1, (9, 9), "direct"),
                                           (4, 64, 3, 1, 1, 1, (9, 8), "direct")):
        assert not conv.flipped_input_grad(ci, (k, k), (s, s), (pad, pad), (d, d))
        assert conv.choose_input_grad(ci, co) == want
        x, w = rand(rng, (2, ci, *hw)), rand(rng, (co, ci, k, k)) * 0.1
        ho, wo = ((n + 2 * pad - d * (k - 1) - 1) // s + 1 for n in hw)
        gy = rand(rng, (2, co, ho, wo))
        used.clear()
        gx, _, _ = grad.conv2d_backward_batch(x, w, gy, s, pad, d, param_grads=False)
        assert used == [f"_grad_input_{want}"]
        close(gx, conv_input_grad(x.shape, w, gy, (k, k), (s, s), (pad, pad), (d, d)))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["winograd", "winograd4"]), st.integers(1, 3), st.integers(1, 12), st.integers(1, 10),
       st.lists(st.integers(0, 2), min_size=2, max_size=2), st.lists(st.integers(1, 11), min_size=2, max_size=2),
       st.booleans(), st.booleans(), st.integers(0, 2**31 - 1))
def test_winograd(scheme, n, ci, co, p, hw, bias, tiny_blocks, seed):
    """Winograd F(2x2, 3x3) and F(4x4, 3x3), forced, on any 3x3 stride-1 geometry
    (outputs of every size modulo the tile, padding 0-2, a budget of one tile row
    or the default): the forward pass, the weight gradient and, through the
    backward pass's stride-1 input gradient, the flipped kernel, against the
    references."""
    from cnnplay.core.kernels import conv, grad, winograd
    assume(all(m + 2 * pp >= 3 for m, pp in zip(hw, p)))
    rng = np.random.default_rng(seed)
    x, w = rand(rng, (n, ci, *hw)), rand(rng, (co, ci, 3, 3))
    b = rand(rng, (co,)) if bias else None
    params = {"weight": w} | ({"bias": b} if bias else {})
    cfg = {"kernel_size": (3, 3), "stride": (1, 1), "padding": tuple(p), "dilation": (1, 1)}
    budget = winograd.BUDGET
    try:
        winograd.BUDGET = 1 if tiny_blocks else budget
        y = conv.conv2d_batch(x, w, b, 1, p, 1, algorithm=scheme)
        close(y, np.stack([ref_sample("conv2d", cfg, x[i], params) for i in range(n)]))
        gy = rand(rng, y.shape)
        gx, gw, gb = grad.conv2d_backward_batch(x, w, gy, 1, p, 1, algorithm=scheme)
    finally:
        winograd.BUDGET = budget
    # the parameter gradients: every output's gradient times the input under each tap
    xp = np.zeros((n, ci, hw[0] + 2 * p[0], hw[1] + 2 * p[1]))
    xp[:, :, p[0]:p[0] + hw[0], p[1]:p[1] + hw[1]] = x
    gw_ref = np.zeros((co, ci, 3, 3))
    for ky in range(3):
        for kx in range(3):
            gw_ref[:, :, ky, kx] = np.einsum("nohw,nihw->oi", gy.astype(np.float64),
                                             xp[:, :, ky:ky + y.shape[2], kx:kx + y.shape[3]])
    close(gw, gw_ref)
    close(gb, gy.astype(np.float64).sum(axis=(0, 2, 3)))
    gxp = np.zeros((n, ci, hw[0] + 2 * p[0], hw[1] + 2 * p[1]))
    contrib = np.einsum("nohw,oikl->niklhw", gy.astype(np.float64), w.astype(np.float64))
    ho, wo = y.shape[2:]
    for ky in range(3):
        for kx in range(3):
            gxp[:, :, ky:ky + ho, kx:kx + wo] += contrib[:, :, ky, kx]
    close(gx, gxp[:, :, p[0]:p[0] + hw[0], p[1]:p[1] + hw[1]])


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([None, "winograd", "winograd4"]), st.integers(1, 3), st.integers(1, 6), st.integers(1, 6),
       st.lists(st.integers(1, 3), min_size=2, max_size=2), st.lists(st.integers(0, 2), min_size=2, max_size=2),
       st.lists(st.integers(1, 13), min_size=2, max_size=2), st.booleans(), st.integers(0, 2**31 - 1))
def test_dilated_3x3_layers_on_their_phase_sub_images(scheme, n, ci, co, d, q, hw, bias, seed):
    """A dilated 3x3 layer whose padding is a multiple of its dilation runs as the
    undilated layer on its phase sub-images (kernels/atrous.py), in Winograd (forced
    here with few channels; None: a channel-heavy layer, chosen): forward, weight,
    bias and input gradients, and the input gradient alone, against the float64
    sums over every window, on maps of every size modulo the dilation."""
    from cnnplay.core.kernels import conv, grad
    assume(tuple(d) != (1, 1))
    p = [qq * dd for qq, dd in zip(q, d)]
    assume(all(m + 2 * pp >= 2 * dd + 1 for m, pp, dd in zip(hw, p, d)))
    if scheme is None:  # channel-heavy: the chooser's own choice
        ci, co, hw = ci + 63, co + 63, [min(m, 9) for m in hw]
        assume(all(m + 2 * pp >= 2 * dd + 1 for m, pp, dd in zip(hw, p, d)))
        assert conv.choose(conv._plan(ci, *hw, 3, 3, (1, 1), tuple(p), tuple(d)), co) == "winograd4"
    rng = np.random.default_rng(seed)
    x, w = rand(rng, (n, ci, *hw)), rand(rng, (co, ci, 3, 3))
    b = rand(rng, (co,)) if bias else None
    params = {"weight": w} | ({"bias": b} if bias else {})
    cfg = {"kernel_size": (3, 3), "stride": (1, 1), "padding": tuple(p), "dilation": tuple(d)}
    y = conv.conv2d_batch(x, w, b, 1, p, d, algorithm=scheme)
    close(y, np.stack([ref_sample("conv2d", cfg, x[i], params) for i in range(n)]))
    gy = rand(rng, y.shape)
    gx, gw, gb = grad.conv2d_backward_batch(x, w, gy, 1, p, d, algorithm=scheme)
    pt = np.stack([patches(np.asarray(x[i], np.float64), (3, 3), (1, 1), p, d, 0.0) for i in range(n)])
    close(gw, np.einsum("nohw,niklhw->oikl", gy, pt))
    close(gb, gy.astype(np.float64).sum(axis=(0, 2, 3)))
    gx_ref = conv_input_grad(x.shape, w, gy, (3, 3), (1, 1), p, d)
    close(gx, gx_ref)
    gx_only, none_w, none_b = grad.conv2d_backward_batch(x, w, gy, 1, p, d, param_grads=False, algorithm=scheme)
    assert none_w is None and none_b is None
    close(gx_only, gx_ref)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.lists(st.integers(1, 3), min_size=2, max_size=2),
       st.lists(st.integers(1, 9), min_size=2, max_size=2), st.lists(st.integers(0, 2), min_size=2, max_size=2))
def test_phase_sub_images_and_back(n, c, d, hw, extra):
    """atrous.to_batch: sample (a*dw + b)*N + i holds phase (a, b) of sample i, zero
    beyond it (also when asked for larger sub-images); from_batch puts every
    phase back."""
    from cnnplay.core.kernels import atrous
    x = rand(np.random.default_rng(3), (n, c, *hw))
    hs, ws = atrous.sub_size(*hw, d)
    assert (hs, ws) == (max(len(range(a, hw[0], d[0])) for a in range(d[0])),
                        max(len(range(b, hw[1], d[1])) for b in range(d[1])))
    size = (hs + extra[0], ws + extra[1])
    xs = atrous.to_batch(x, d, size)
    ref = np.zeros((d[0] * d[1] * n, c, *size), np.float32)
    for a in range(d[0]):
        for b in range(d[1]):
            for i in range(n):
                for r in range(size[0]):
                    for col in range(size[1]):
                        if r * d[0] + a < hw[0] and col * d[1] + b < hw[1]:
                            ref[(a * d[1] + b) * n + i, :, r, col] = x[i, :, r * d[0] + a, col * d[1] + b]
    np.testing.assert_array_equal(xs, ref)
    np.testing.assert_array_equal(atrous.from_batch(xs, d, n, *hw), x)


def test_the_chooser_sends_dilated_3x3_layers_to_winograd():
    """Channel-heavy dilated 3x3 layers whose padding is a multiple of the dilation
    take Winograd on their sub-images; other dilated layers (padding not a
    multiple, 5x5, few channels) stay on the direct kernel; the memory rule asks
    the same."""
    from cnnplay.core.kernels import conv
    for ci, co, k, pad, dil, want in ((128, 128, 3, 2, 2, "winograd4"), (256, 256, 3, 4, 2, "winograd"),
                                      (64, 64, 3, (2, 3), (2, 3), "winograd4"), (64, 64, 3, 0, (1, 2), "winograd4"),
                                      (128, 128, 3, 1, 2, "direct"), (128, 128, 5, 4, 2, "direct"),
                                      (32, 64, 3, 2, 2, "direct")):
        pad, dil = ((pad, pad) if isinstance(pad, int) else pad), ((dil, dil) if isinstance(dil, int) else dil)
        assert conv.choose(conv._plan(ci, 20, 20, k, k, (1, 1), pad, dil), co) == want
        assert conv.choose_shape(ci, co, conv.winograd_geometry(k, k, (1, 1), dil, pad), k * k, 1, 400) == want


def test_3x3_layers_with_32_channels_take_winograd_over_many_positions():
    """3x3 stride-1 layers with 32-63 channels in or out take Winograd from 2048
    output positions in the call (batch x map), the direct kernel below, and with
    fewer than 32 channels always, as do dilated ones; the memory rule (no
    positions) counts Winograd's buffers. A chosen layer's forward pass and gradients against the
    float64 sums."""
    from cnnplay.core.kernels import conv, grad
    for ci, co, hw, nb, want in ((32, 64, 20, 1, "direct"), (32, 64, 20, 8, "winograd4"),
                                 (48, 32, 64, 1, "winograd4"), (48, 32, 45, 1, "direct"),
                                 (40, 256, 46, 1, "winograd"), (16, 64, 64, 8, "direct"), (64, 16, 64, 8, "direct")):
        plan = conv._plan(ci, hw, hw, 3, 3, (1, 1), (1, 1), (1, 1))
        assert conv.choose(plan, co, nb) == want
        unbounded = "direct" if min(ci, co) < 32 else want.replace("direct", "winograd4")
        assert conv.choose_shape(ci, co, True, 9) == unbounded  # the memory rule's: any batch
    # dilated ones stay direct (their sub-images' copies ate the gain)
    assert conv.choose(conv._plan(32, 64, 64, 3, 3, (1, 1), (2, 2), (2, 2)), 64, 8) == "direct"
    assert conv.choose(conv._plan(64, 64, 64, 3, 3, (1, 1), (2, 2), (2, 2)), 64, 1) == "winograd4"
    rng = np.random.default_rng(5)
    x, w, b = rand(rng, (8, 32, 16, 17)), rand(rng, (40, 32, 3, 3)), rand(rng, (40,))
    assert conv.choose(conv._plan(32, 16, 17, 3, 3, (1, 1), (1, 1), (1, 1)), 40, 8) == "winograd4"
    cfg = {"kernel_size": (3, 3), "stride": (1, 1), "padding": (1, 1), "dilation": (1, 1)}
    y = conv.conv2d_batch(x, w, b, 1, 1, 1)
    close(y, np.stack([ref_sample("conv2d", cfg, x[i], {"weight": w, "bias": b}) for i in range(8)]))
    gy = rand(rng, y.shape)
    gx, gw, gb = grad.conv2d_backward_batch(x, w, gy, 1, 1, 1)
    pt = np.stack([patches(np.asarray(x[i], np.float64), (3, 3), (1, 1), (1, 1), (1, 1), 0.0) for i in range(8)])
    close(gw, np.einsum("nohw,niklhw->oikl", gy, pt))
    close(gb, gy.astype(np.float64).sum(axis=(0, 2, 3)))
    close(gx, conv_input_grad(x.shape, w, gy, (3, 3), (1, 1), (1, 1), (1, 1)))


@pytest.mark.parametrize("shape, padding, hp, wp", [((2, 3, 16, 16), (1, 1), 22, 22), ((1, 5, 32, 32), (2, 0), 34, 30),
                                                 ((2, 4, 7, 9), (0, 2), 6, 14), ((1, 2, 3, 5), (2, 1), 10, 9)])
def test_channels_last_pads_and_turns_the_maps(shape, padding, hp, wp):
    """The maps as the Winograd transforms read them (winograd_tiles.channels_last):
    zero-padded before the first row and column and after the last, cropped to
    (hp, wp), channels last; read along each channel's rows where they lie a
    multiple of 1 KB apart (16 x 16, 32 x 32), else across the channels."""
    from cnnplay.core.kernels import winograd_tiles
    n, c, h, w = shape
    x = rand(np.random.default_rng(5), shape)
    ref = np.zeros((n, hp, wp, c), np.float32)
    for b in range(n):
        for r in range(hp):
            for col in range(wp):
                if 0 <= r - padding[0] < h and 0 <= col - padding[1] < w:
                    ref[b, r, col] = x[b, :, r - padding[0], col - padding[1]]
    assert winograd_tiles._aliased(4 * h * w) == (h * w in (256, 1024))
    np.testing.assert_array_equal(winograd_tiles.channels_last(x, padding, hp, wp), ref)


@pytest.mark.parametrize("scheme", ["winograd", "winograd4"])
def test_winograd_on_maps_whose_rows_alias(scheme):
    """A 32 x 32 map (channel rows 4 KB apart: the input is turned channels last
    along its rows): forward and both gradients against the float64 sums."""
    from cnnplay.core.kernels import conv, grad
    rng = np.random.default_rng(11)
    x, w, b = rand(rng, (2, 3, 32, 32)), rand(rng, (4, 3, 3, 3)), rand(rng, (4,))
    cfg = {"kernel_size": (3, 3), "stride": (1, 1), "padding": (1, 1), "dilation": (1, 1)}
    y = conv.conv2d_batch(x, w, b, 1, 1, 1, algorithm=scheme)
    close(y, np.stack([ref_sample("conv2d", cfg, x[i], {"weight": w, "bias": b}) for i in range(2)]))
    gy = rand(rng, y.shape)
    gx, gw, _ = grad.conv2d_backward_batch(x, w, gy, 1, 1, 1, algorithm=scheme)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    gw_ref = np.zeros(w.shape)
    gxp = np.zeros(xp.shape)
    for ky in range(3):
        for kx in range(3):
            gw_ref[:, :, ky, kx] = np.einsum("nohw,nihw->oi", gy.astype(np.float64), xp[:, :, ky:ky + 32, kx:kx + 32])
            gxp[:, :, ky:ky + 32, kx:kx + 32] += np.einsum("nohw,oi->nihw", gy.astype(np.float64), w[:, :, ky, kx])
    close(gw, gw_ref)
    close(gx, gxp[:, :, 1:33, 1:33])


def test_winograd_takes_only_3x3_stride_1():
    from cnnplay.core.kernels import conv
    x, w = np.ones((1, 2, 8, 8), np.float32), np.ones((3, 2, 3, 3), np.float32)
    for scheme in ("winograd", "winograd4"):
        with pytest.raises(ValueError, match="Winograd"):
            conv.conv2d_batch(x, w, None, 2, 1, 1, algorithm=scheme)


def test_packed_weights_follow_the_parameter_version():
    """Kernels keep packed weights per network parameter version: after set_params
    the new weights are used (no stale packing), and one version packs once."""
    from cnnplay import Network
    from cnnplay.core.kernels import conv
    net = Network.from_dict({"input": [64, 6, 6], "layers": [
        {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "padding": 1}]})
    x = rand(np.random.default_rng(0), (2, 64, 6, 6))
    y1 = net.layer_forward_batch(0, x)
    packs = len(conv._PACKED)
    y1b = net.layer_forward_batch(0, x)
    assert len(conv._PACKED) == packs and np.array_equal(y1, y1b)
    w = np.array(net.params(0)["weight"]) * 2
    net.set_params(0, weight=w)
    y2 = net.layer_forward_batch(0, x)
    p = net.params(0)
    cfg = net.configs[0]
    close(y2, np.stack([ref_sample("conv2d", cfg, x[i], p) for i in range(2)]))
    assert not np.allclose(y1, y2)
    # a caller's own changes to the parameter dict never meet a stale packing
    p = net.params(0)
    p["weight"] = np.asarray(p["weight"]) * -3
    y3 = net.layer_types[0].forward_batch(cfg, x, p)
    close(y3, np.stack([ref_sample("conv2d", cfg, x[i], p) for i in range(2)]))


@pytest.mark.parametrize("algo", ["direct", "gemm", "winograd4", "winograd_s2"])
def test_a_version_reused_for_other_weights_finds_no_packing_of_another_shape(algo):
    """The packed weights are kept per (version, kind, weight shape): a caller that
    passes one version for two layers of different shapes (against the docs) gets
    right values, not arrays of the other shape, which the kernels would read and
    write past (it corrupted the heap). Forward and both gradients."""
    from cnnplay.core.kernels import conv, grad
    rng = np.random.default_rng(3)
    stride = 2 if algo in ("gemm", "winograd_s2") else 1
    cfg = {"kernel_size": (3, 3), "stride": (stride, stride), "padding": (1, 1), "dilation": (1, 1)}
    for co in (160, 72):  # the second layer is smaller: reads past the first's packing would go unseen
        x, w, b = rand(rng, (2, 128, 9, 9)), rand(rng, (co, 128, 3, 3)), rand(rng, (co,))
        y = conv.conv2d_batch(x, w, b, stride, 1, 1, version=("shared",), algorithm=algo)
        close(y, np.stack([ref_sample("conv2d", cfg, x[i], {"weight": w, "bias": b}) for i in range(2)]))
        gy = rand(rng, y.shape)
        gx, gw, _ = grad.conv2d_backward_batch(x, w, gy, stride, 1, 1, version=("shared",), algorithm=algo)
        pt = np.stack([patches(np.asarray(x[i], np.float64), (3, 3), (stride, stride), (1, 1), (1, 1), 0.0)
                       for i in range(2)])
        close(gw, np.einsum("nohw,niklhw->oikl", gy, pt))
        close(gx, conv_input_grad(x.shape, w, gy, (3, 3), (stride, stride), (1, 1), (1, 1)))


def test_winograd_gradients_follow_the_parameter_version():
    """The backward pass of a Winograd layer keeps the flipped kernel's transform
    per parameter version: after set_params its input gradient uses the new
    weights, and its weight gradient matches the reference each time."""
    from cnnplay import Network
    net = Network.from_dict({"input": [64, 5, 6], "layers": [
        {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "padding": 1}]})
    rng = np.random.default_rng(3)
    x = rand(rng, (2, 64, 5, 6))
    gy = rand(rng, (2, 64, 5, 6))
    xp = np.zeros((2, 64, 7, 8))
    xp[:, :, 1:6, 1:7] = x
    for scale in (1.0, -2.0):
        net.set_params(0, weight=np.asarray(net.params(0)["weight"]) * scale)
        w = np.asarray(net.params(0)["weight"], np.float64)
        gx, grads = net.layer_backward_batch(0, x, net.layer_forward_batch(0, x), gy)
        gxp = np.zeros_like(xp)
        gw = np.zeros(w.shape)
        for ky in range(3):
            for kx in range(3):
                gxp[:, :, ky:ky + 5, kx:kx + 6] += np.einsum("nohw,oi->nihw", gy.astype(np.float64), w[:, :, ky, kx])
                gw[:, :, ky, kx] = np.einsum("nohw,nihw->oi", gy.astype(np.float64), xp[:, :, ky:ky + 5, kx:kx + 6])
        close(gx, gxp[:, :, 1:6, 1:7])
        close(grads["weight"], gw)


@pytest.mark.parametrize("n, ci, co, hw, algo", [(1, 5, 3, (4, 6), "gemm"), (3, 7, 2, (5, 5), "gemm"),
                                                 (2, 64, 72, (6, 7), None), (1, 64, 64, (1, 9), None)])
def test_pointwise_gradients_against_float64_sums(n, ci, co, hw, algo):
    """1x1, stride 1, no padding: the weight gradient as one product over every
    sample's positions (grad._grad_weight_pointwise), forced or chosen for 64+
    channels, and the input gradient, against float64 sums."""
    from cnnplay.core.kernels import grad
    rng = np.random.default_rng(ci + co)
    x, w = rand(rng, (n, ci, *hw)), rand(rng, (co, ci, 1, 1))
    gy = rand(rng, (n, co, *hw))
    gx, gw, gb = grad.conv2d_backward_batch(x, w, gy, 1, 0, 1, algorithm=algo)
    g64, x64, w64 = (np.asarray(a, np.float64) for a in (gy, x, w))
    want_gw = np.zeros((co, ci))
    for i in range(n):
        for yy in range(hw[0]):
            for xx in range(hw[1]):
                want_gw += np.outer(g64[i, :, yy, xx], x64[i, :, yy, xx])
    close(gw, want_gw.reshape(co, ci, 1, 1))
    close(gb, g64.sum(axis=(0, 2, 3)))
    close(gx, np.einsum("nohw,oi->nihw", g64, w64[:, :, 0, 0]))


@pytest.mark.parametrize("n, ci, co, hw, stride, algo", [(2, 64, 96, (7, 9), (2, 2), None),
                                                         (1, 5, 3, (6, 5), (3, 2), "gemm"),
                                                         (3, 128, 64, (1, 11), (1, 2), None)])
def test_strided_pointwise_against_float64_sums(n, ci, co, hw, stride, algo):
    """1x1 with a stride, no padding (ResNet's shortcuts): the product on every
    stride-th pixel (conv.pointwise_input), forward and both gradients, against
    float64 sums."""
    from cnnplay.core.kernels import conv, grad
    rng = np.random.default_rng(ci * co)
    x, w, b = rand(rng, (n, ci, *hw)), rand(rng, (co, ci, 1, 1)), rand(rng, (co,))
    plan = conv._plan(ci, *hw, 1, 1, stride, (0, 0), (1, 1))
    assert plan.pointwise and (algo or conv.choose(plan, co, n)) == "gemm"
    y = conv.conv2d_batch(x, w, b, stride, 0, 1, version=("strided 1x1", ci, co), algorithm=algo)
    (sh, sw), (ho, wo) = stride, y.shape[2:]
    assert (ho, wo) == (-(-hw[0] // sh), -(-hw[1] // sw))
    x64, w64 = np.asarray(x, np.float64), np.asarray(w[:, :, 0, 0], np.float64)
    want = np.empty((n, co, ho, wo))
    for i in range(n):
        for oy in range(ho):
            for ox in range(wo):
                want[i, :, oy, ox] = w64 @ x64[i, :, oy * sh, ox * sw] + b
    close(y, want)
    gy = rand(rng, y.shape)
    gx, gw, _ = grad.conv2d_backward_batch(x, w, gy, stride, 0, 1, algorithm=algo)
    g64 = np.asarray(gy, np.float64)
    want_gw, want_gx = np.zeros((co, ci)), np.zeros(x.shape)
    for i in range(n):
        for oy in range(ho):
            for ox in range(wo):
                want_gw += np.outer(g64[i, :, oy, ox], x64[i, :, oy * sh, ox * sw])
                want_gx[i, :, oy * sh, ox * sw] += w64.T @ g64[i, :, oy, ox]
    close(gw, want_gw.reshape(co, ci, 1, 1))
    close(gx, want_gx)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 600), st.sampled_from([1, 4, 9, 25]), st.integers(1, 5000),
       st.sampled_from([4096, 1 << 20, 4 << 20, 8 << 20]))
def test_column_blocks_cover_the_matrix_once(channels, ntap, n_total, budget):
    """conv.column_blocks tiles the K x positions column matrix exactly once, in
    blocks within the budget (whole columns) or, where not even 128 whole columns
    fit, of 256 positions and whole input channels; whole-column blocks are of
    even size, so no tail of a few columns re-reads the weights (196 positions
    at 2304 rows and 2 MB: 112 + 84, not 192 + 4)."""
    from cnnplay.core.kernels import conv
    k = channels * ntap
    seen = np.zeros((k, n_total), np.int8)
    blocks = list(conv.column_blocks(k, ntap, n_total, budget))
    whole = 4 * k * 128 <= budget  # 128 whole columns fit
    for n0, nc, k0, k1 in blocks:
        seen[k0:k1, n0:n0 + nc] += 1
        if whole:
            assert (k0, k1) == (0, k) and 4 * k * nc <= budget
        else:
            assert nc <= 256 and (k1 - k0) % ntap == 0
    assert (seen == 1).all()
    widths = [nc for _, nc, _, _ in blocks]
    if whole and len(widths) > 1:
        assert max(widths) - min(widths) <= 16 * len(widths)
    assert [nc for _, nc, _, _ in conv.column_blocks(2304, 9, 196, 2 << 20)] == [112, 84]


def test_gemm_in_small_column_blocks(monkeypatch):
    """With a tiny column budget the GEMM splits both positions and input channels
    (conv.column_blocks): the same values as the references, forward and both
    gradients (the input gradient's col2im, grad._grad_input_gemm, in those blocks)."""
    from cnnplay.core.kernels import conv, grad
    monkeypatch.setattr(conv, "gemm_budget", lambda nbytes: 4096)
    rng = np.random.default_rng(11)
    # the last: 286 output positions, so a block of 256 ends inside a row of the second sample
    for ci, co, k, s, p, d, hw in ((5, 3, 3, 1, 1, 1, (9, 10)), (4, 6, 2, 2, 1, 2, (11, 7)), (7, 2, 1, 1, 0, 1, (6, 6)),
                                   (3, 4, 3, 1, 1, 1, (13, 11))):
        x, w, b = rand(rng, (2, ci, *hw)), rand(rng, (co, ci, k, k)), rand(rng, (co,))
        cfg = {"kernel_size": (k, k), "stride": (s, s), "padding": (p, p), "dilation": (d, d)}
        blocks = list(conv.column_blocks(ci * k * k, k * k, 2 * 200, 4096))
        assert len({b[2] for b in blocks}) > 1 or k == 1
        if hw == (13, 11):
            assert [b[0] for b in conv.column_blocks(ci * k * k, k * k, 2 * 13 * 11, 4096)][-1] == 256
        y = conv.conv2d_batch(x, w, b, s, p, d, algorithm="gemm")
        close(y, np.stack([ref_sample("conv2d", cfg, x[i], {"weight": w, "bias": b}) for i in range(2)]))
        gy = rand(rng, y.shape)
        gx, gw, _ = grad.conv2d_backward_batch(x, w, gy, s, p, d, algorithm="gemm")
        pt = np.stack([patches(np.asarray(x[i], np.float64), (k, k), (s, s), (p, p), (d, d), 0.0) for i in range(2)])
        close(gw, np.einsum("nohw,niklhw->oikl", gy, pt))
        close(gx, conv_input_grad(x.shape, w, gy, (k, k), (s, s), (p, p), (d, d)))


@pytest.mark.parametrize("spec, shape", [
    ({"type": "conv2d", "out_channels": 5, "kernel_size": 3, "stride": 2, "padding": 1}, (3, 9, 8)),
    ({"type": "conv1d", "out_channels": 4, "kernel_size": 5, "padding": 2}, (2, 30)),  # views each call
    ({"type": "conv2d", "out_channels": 64, "kernel_size": 3, "padding": 1}, (64, 9, 7)),  # Winograd
])
def test_a_training_step_builds_each_conv_source_once(spec, shape, monkeypatch):
    """Inside reuse_sources() (a training step), the weight gradient reads the input as
    the forward pass rearranged it (the flat source, or channels last for Winograd; a
    1D layer's input is a new view each call: the memory it views is the key); gy's is
    not kept; the results are bit for bit those computed without it."""
    from cnnplay import Network
    from cnnplay.core.kernels import conv, reuse, winograd
    net = Network.from_dict({"input": list(shape), "layers": [spec]})
    turned = []  # the maps winograd turns channels last, by shape
    real = winograd.channels_last
    monkeypatch.setattr(winograd, "channels_last", lambda a, *args: turned.append(a.shape) or real(a, *args))
    rng = np.random.default_rng(1)
    x = rand(rng, (3, *shape))
    y = net.layer_forward_batch(0, x)
    gy = rand(rng, y.shape)
    want = net.layer_backward_batch(0, x, y, gy, param_grads=True)
    with reuse.reuse_sources():
        y2 = net.layer_forward_batch(0, x)
        memo = reuse._local.memo
        assert len(memo) == 1
        (key, (_, kept)), = memo.items()
        turned.clear()
        with reuse.reuse_sources():  # nested: the outer block's memo serves
            got = net.layer_backward_batch(0, x, y2, gy, param_grads=True)
            assert reuse._local.memo is memo
        assert len(memo) == 1 and next(iter(memo.values()))[1] is kept
        if spec["out_channels"] == 64:
            assert key[3][0] == "channels last" and kept.shape == (3, 14, 10, 64)  # F(4x4)-tiles of 9 x 7, padded
            assert turned == [gy.shape]  # the backward turned gy once (both gradients), x not again
        else:  # the lookup the weight gradient made: a fresh view of x's memory finds the kept source
            view = x[:, :, None, :] if x.ndim == 3 else x[...]
            assert conv._source(view, key[3], None, None) is kept
    assert reuse._local.memo is None  # nothing is kept after the block
    assert np.array_equal(y, y2)
    assert np.array_equal(got[0], want[0])
    assert all(np.array_equal(got[1][k], want[1][k]) for k in want[1])


def test_a_training_step_splits_a_dilated_input_once(monkeypatch):
    """Inside reuse_sources() (a training step), the backward pass of a dilated layer
    on its phase sub-images reads the sub-images the forward pass made (only the
    output gradient is split again), and gives bit for bit what it gives without."""
    from cnnplay import Network
    from cnnplay.core.kernels import atrous, reuse
    net = Network.from_dict({"input": [64, 11, 10], "layers": [
        {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "padding": 2, "dilation": 2}]})
    split = []
    real = atrous.to_batch
    monkeypatch.setattr(atrous, "to_batch", lambda a, *args: split.append(a.shape) or real(a, *args))
    rng = np.random.default_rng(2)
    x = rand(rng, (2, 64, 11, 10))
    y = net.layer_forward_batch(0, x)
    gy = rand(rng, y.shape)
    want = net.layer_backward_batch(0, x, y, gy, param_grads=True)
    assert split == [x.shape, x.shape, gy.shape]  # without reuse: x split again for the weight gradient
    split.clear()
    with reuse.reuse_sources():
        y2 = net.layer_forward_batch(0, x)
        got = net.layer_backward_batch(0, x, y2, gy, param_grads=True)
    assert split == [x.shape, gy.shape]
    assert np.array_equal(y, y2) and np.array_equal(got[0], want[0])
    assert all(np.array_equal(got[1][k], want[1][k]) for k in want[1])
