"""Backward kernels and the effective receptive field, against float64
references written here: forward functions in plain numpy/loops, their
vector-Jacobian products by central finite differences (or loops)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnnplay import Network
from cnnplay.core.kernels import direct512, grad
from strategies import conv_geometries


# ---------------------------------------------------------------------------
# float64 forward references (batch 1, PyTorch semantics)

def ref_conv(x, w, b, stride, padding, dilation):
    ci, h, wd = x.shape
    co, _, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.zeros((ci, h + 2 * ph, wd + 2 * pw))
    xp[:, ph:ph + h, pw:pw + wd] = x
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((co, ho, wo)) + (0 if b is None else np.asarray(b, float)[:, None, None])
    for ky in range(kh):
        for kx in range(kw):
            patch = xp[:, ky * dh:ky * dh + sh * (ho - 1) + 1:sh, kx * dw:kx * dw + sw * (wo - 1) + 1:sw]
            y += np.einsum("oc,chw->ohw", w[:, :, ky, kx], patch)
    return y


def ref_pool(x, kernel, stride, padding, mode):
    c, h, wd = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    fill = -np.inf if mode == "max" else 0.0
    xp = np.full((c, h + 2 * ph, wd + 2 * pw), fill)
    xp[:, ph:ph + h, pw:pw + wd] = x
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    y = np.empty((c, ho, wo))
    for oy in range(ho):
        for ox in range(wo):
            win = xp[:, oy * sh:oy * sh + kh, ox * sw:ox * sw + kw].reshape(c, -1)
            y[:, oy, ox] = win.max(axis=1) if mode == "max" else win.mean(axis=1)
    return y


def ref_batchnorm(x2, w, b, mean, var, eps):
    return (x2 - mean[:, None]) / np.sqrt(var[:, None] + eps) * w[:, None] + b[:, None]


def ref_layernorm(x2, w, b, eps):
    mu = x2.mean(axis=0)
    var = ((x2 - mu) ** 2).mean(axis=0)
    return (x2 - mu) / np.sqrt(var + eps) * w[:, None] + b[:, None]


def fd_grad(f, a, h=1e-6):
    """d f(a) / d a by central differences (f returns a scalar, float64)."""
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
    assert a.shape == b.shape
    scale = max(np.abs(b).max(), 1e-6)
    assert np.abs(a - b).max() <= rtol * scale, (np.abs(a - b).max(), scale)


def f32(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------------------
# Kernels

@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.lists(st.integers(1, 3), min_size=2, max_size=2),
       st.lists(st.integers(1, 4), min_size=2, max_size=2), st.lists(st.integers(0, 3), min_size=2, max_size=2),
       st.lists(st.integers(1, 3), min_size=2, max_size=2), st.lists(st.integers(1, 9), min_size=2, max_size=2),
       st.integers(0, 2**31 - 1))
def test_conv2d_backward(ci, co, k, s, p, d, hw, seed):
    spans = [dd * (kk - 1) + 1 for kk, dd in zip(k, d)]
    assume(all(n + 2 * pp >= sp for n, pp, sp in zip(hw, p, spans)))
    rng = np.random.default_rng(seed)
    x, w = f32(rng, ci, *hw), f32(rng, co, ci, *k)
    b = f32(rng, co)
    y = ref_conv(x, w, b, s, p, d)
    gy = f32(rng, *y.shape)
    gx, gw, gb = grad.conv2d_backward(x, w, gy, s, p, d)
    assert gx.dtype == gw.dtype == gb.dtype == np.float32
    loss = lambda **kw: lambda a: float((gy * ref_conv(**{"x": x, "w": w, "b": b, **{kw["name"]: a}},
                                                       stride=s, padding=p, dilation=d)).sum())
    close(gx, fd_grad(loss(name="x"), x))
    close(gw, fd_grad(loss(name="w"), w))
    close(gb, fd_grad(loss(name="b"), b))


def ref_weight_grad(x, gy, k, stride, padding, dilation):
    """The float64 weight gradient of a batch: per tap, the input samples it reads
    times the output gradient, summed over the batch and the positions."""
    n, ci, h, wd = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = k, stride, padding, dilation
    ho, wo = gy.shape[2:]
    xp = np.zeros((n, ci, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    gw = np.zeros((gy.shape[1], ci, kh, kw))
    for ky in range(kh):
        for kx in range(kw):
            patch = xp[:, :, ky * dh:ky * dh + sh * (ho - 1) + 1:sh, kx * dw:kx * dw + sw * (wo - 1) + 1:sw]
            gw[:, :, ky, kx] = np.einsum("nohw,nchw->oc", gy.astype(np.float64), patch)
    return gw


def gradient_case(rng, n, ci, co, k, stride, padding, dilation, hw):
    """(x, w, gy) float32 of a batched 2D convolution: gy the size of its output."""
    spans = [dd * (kk - 1) + 1 for kk, dd in zip(k, dilation)]
    ho = [(m + 2 * pp - sp) // ss + 1 for m, pp, sp, ss in zip(hw, padding, spans, stride)]
    return f32(rng, n, ci, *hw), f32(rng, co, ci, *k), f32(rng, n, co, *ho)


class _Counted:
    """A kernel wrapped to count its calls (the path a test means to take)."""

    def __init__(self, kernel):
        self.kernel, self.calls = kernel, 0

    def __call__(self, *args):
        self.calls += 1
        return self.kernel(*args)


@settings(max_examples=40, deadline=None)
@given(conv_geometries(batch=(1, 3), out_channels=(1, 9), kernel=(1, 5), side=(1, 12)), st.integers(0, 2**31 - 1))
def test_weight_gradient_over_position_ranges(geometry, seed):
    """The direct weight gradient's position-range sweep (grad._grad_weight_ranges),
    forced on any geometry: channel counts and tap counts that do not fill its 4 x 3
    blocks (repeated rows and taps are added once), batches, strides, dilations."""
    n, ci, co, k, s, p, d, hw = geometry
    x, w, gy = gradient_case(np.random.default_rng(seed), n, ci, co, k, s, p, d, hw)
    counted = _Counted(grad._grad_weight_ranges)
    saved = grad._grad_weight_ranges, grad.GW_RANGES_BYTES, direct512.avx512
    grad._grad_weight_ranges, grad.GW_RANGES_BYTES, direct512.avx512 = counted, 0, lambda: False
    try:
        _, gw, _ = grad.conv2d_backward_batch(x, w, gy, s, p, d, input_grad=False, algorithm="direct")
    finally:
        grad._grad_weight_ranges, grad.GW_RANGES_BYTES, direct512.avx512 = saved
    assert counted.calls == 1
    close(gw, ref_weight_grad(x, gy, k, s, p, d))


def test_a_large_batch_of_few_channels_takes_the_position_ranges():
    """3 -> 16 channels on 32 px at batch 64 (4.5 MB of gradient rows, the shapes
    bench's first layer): the weight gradient sweeps position ranges, to the reference."""
    rng = np.random.default_rng(4)
    x, w = f32(rng, 64, 3, 32, 32), f32(rng, 16, 3, 3, 3)
    gy = f32(rng, 64, 16, 32, 32)
    counted = _Counted(grad._grad_weight_ranges)
    saved = grad._grad_weight_ranges, direct512.avx512
    grad._grad_weight_ranges, direct512.avx512 = counted, lambda: False  # the L1 sweep (test_direct512: the other)
    try:
        _, gw, gb = grad.conv2d_backward_batch(x, w, gy, 1, 1, input_grad=False)
    finally:
        grad._grad_weight_ranges, direct512.avx512 = saved
    assert counted.calls == 1
    close(gw, ref_weight_grad(x, gy, (3, 3), (1, 1), (1, 1), (1, 1)))
    close(gb, gy.astype(np.float64).sum(axis=(0, 2, 3)))


def test_conv1d_backward_through_the_layer():
    # a 1D conv runs as height 1 through Conv.backward
    net = Network.from_dict({"input": [2, 17], "layers": [
        {"type": "conv1d", "out_channels": 3, "kernel_size": 4, "stride": 3, "padding": 5, "dilation": 2}]})
    rng = np.random.default_rng(3)
    x = f32(rng, 2, 17)
    p = net.params(0)
    w4, b = p["weight"][:, :, None, :], p["bias"]
    y = ref_conv(x[:, None], w4, b, (1, 3), (0, 5), (1, 2))[:, 0]
    gy = f32(rng, *y.shape)
    gx, grads = net.layer_backward(0, x, y.astype(np.float32), gy)
    loss_x = lambda a: float((gy * ref_conv(a[:, None], w4, b, (1, 3), (0, 5), (1, 2))[:, 0]).sum())
    loss_w = lambda a: float((gy * ref_conv(x[:, None], a[:, :, None], b, (1, 3), (0, 5), (1, 2))[:, 0]).sum())
    close(gx, fd_grad(loss_x, x))
    close(grads["weight"], fd_grad(loss_w, p["weight"]))
    close(grads["bias"], gy.sum(axis=1))


def ref_maxpool_backward(x, gy, kernel, stride, padding):
    """Loops: the first maximum of each window, in row-major scan order; a NaN
    always takes (PyTorch's rule: the last NaN wins)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    gx = np.zeros(x.shape)
    for c in range(gy.shape[0]):
        for oy in range(gy.shape[1]):
            for ox in range(gy.shape[2]):
                best, where = -np.inf, None
                for ky in range(kh):
                    for kx in range(kw):
                        iy, ix = oy * sh - ph + ky, ox * sw - pw + kx
                        if 0 <= iy < x.shape[1] and 0 <= ix < x.shape[2] and (
                                where is None or x[c, iy, ix] > best or np.isnan(x[c, iy, ix])):
                            best, where = x[c, iy, ix], (iy, ix)
                gx[c, where[0], where[1]] += gy[c, oy, ox]
    return gx


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3), st.lists(st.integers(1, 4), min_size=2, max_size=2),
       st.lists(st.integers(1, 4), min_size=2, max_size=2), st.lists(st.integers(0, 2), min_size=2, max_size=2),
       st.lists(st.integers(1, 9), min_size=2, max_size=2), st.booleans(), st.integers(0, 2**31 - 1))
def test_pool_backward(c, k, s, p, hw, ties, seed):
    p = [min(pp, kk // 2) for pp, kk in zip(p, k)]
    assume(all(n + 2 * pp >= kk for n, pp, kk in zip(hw, p, k)))
    rng = np.random.default_rng(seed)
    # small integers make ties common: the first maximum in scan order wins
    x = (rng.integers(-2, 3, (c, *hw)) if ties else rng.standard_normal((c, *hw))).astype(np.float32)
    y = ref_pool(x, k, s, p, "max")
    gy = f32(rng, *y.shape)
    gx = grad.maxpool2d_backward(x, gy, k, s, p)
    np.testing.assert_allclose(gx, ref_maxpool_backward(x, gy, k, s, p), rtol=1e-6, atol=1e-6)
    gx = grad.avgpool2d_backward(gy, x.shape, k, s, p)
    close(gx, fd_grad(lambda a: float((gy * ref_pool(a, k, s, p, "avg")).sum()), x, h=1e-3))


@pytest.mark.parametrize("k,hw", [(k, hw) for k in [(2, 2), (3, 3), (1, 2), (1, 4), (2, 3)]
                                   for hw in [(9, 75), (4, 4), (7, 3)]
                                   if all(n >= kk for n, kk in zip(hw, k))])  # the window fits
def test_tiled_maxpool_backward_with_ties_and_nans(k, hw):
    """Windows that tile the map (kernel == stride, no padding) take their own
    kernel: rows and columns outside every window get 0, ties the first
    maximum, and rows holding a NaN the scan's rule."""
    rng = np.random.default_rng(sum(k) * 100 + hw[1])
    x = rng.integers(-2, 3, (3, *hw)).astype(np.float32)
    x[1, rng.integers(0, hw[0], 3), rng.integers(0, hw[1], 3)] = np.nan
    x[2, 0, :] = np.nan
    gy = f32(rng, 3, hw[0] // k[0], hw[1] // k[1])
    gy[0, 0, 0] = np.inf  # masks keep any value exactly
    gx = grad.maxpool2d_backward(x, gy, k, k, (0, 0))
    want = ref_maxpool_backward(x, gy, k, k, (0, 0))
    np.testing.assert_array_equal(gx, want.astype(np.float32))
    # and the general kernel (overlapping windows) agrees with the same reference on NaNs
    gy = f32(rng, 3, hw[0] - k[0] + 1, hw[1] - k[1] + 1)
    gx = grad.maxpool2d_backward(x, gy, k, (1, 1), (0, 0))
    np.testing.assert_allclose(gx, ref_maxpool_backward(x, gy, k, (1, 1), (0, 0)), rtol=1e-6, atol=1e-6)


def test_maxpool_routes_to_the_argmax_only():
    x = np.array([[[1, 5, 2], [5, 0, 3], [4, 4, 9]]], np.float32)
    gy = np.array([[[2.0, 3.0], [7.0, 11.0]]], np.float32)
    gx = grad.maxpool2d_backward(x, gy, (2, 2), (1, 1), (0, 0))
    # windows: max 5 at (0,1) [first of the tie with (1,0)], 5 at (0,1), 5 at (1,0), 9 at (2,2)
    want = np.zeros((1, 3, 3), np.float32)
    want[0, 0, 1] = 2 + 3
    want[0, 1, 0] = 7
    want[0, 2, 2] = 11
    np.testing.assert_array_equal(gx, want)
    # padding is -inf: a window over padding and one -5 takes the -5
    gx = grad.maxpool2d_backward(np.full((1, 1, 1), -5, np.float32), np.ones((1, 2, 2), np.float32),
                                 (2, 2), (1, 1), (1, 1))
    assert gx.tolist() == [[[4.0]]]


def test_norm_backward():
    rng = np.random.default_rng(5)
    c, n = 4, 7
    x, gy = f32(rng, c, n), f32(rng, c, n)
    w, b, mean = f32(rng, c), f32(rng, c), f32(rng, c)
    var = (rng.random(c) + 0.2).astype(np.float32)
    gx, gw, gb = grad.batchnorm_backward(x, gy, w, mean, var, 1e-5)
    L = lambda xx=x, ww=w, bb=b: float((gy * ref_batchnorm(xx, ww, bb, mean.astype(float), var.astype(float), 1e-5)).sum())
    close(gx, fd_grad(lambda a: L(xx=a), x))
    close(gw, fd_grad(lambda a: L(ww=a), w))
    close(gb, fd_grad(lambda a: L(bb=a), b))
    gx, gw, gb = grad.layernorm_backward(x, gy, w, 1e-5)
    L = lambda xx=x, ww=w, bb=b: float((gy * ref_layernorm(xx, ww, bb, 1e-5)).sum())
    close(gx, fd_grad(lambda a: L(xx=a), x), rtol=1e-4)
    close(gw, fd_grad(lambda a: L(ww=a), w))
    close(gb, fd_grad(lambda a: L(bb=a), b))


def test_leaky_relu_and_linear_backward():
    x = np.array([[-2.0, -0.0, 0.0, 1e-30, 3.0]], np.float32)
    gy = np.array([[1.0, -2.0, 3.0, -4.0, np.inf]], np.float32)
    gx = grad.leaky_relu_backward(x, gy, 0.0)
    assert gx.tolist() == [[0.0, 0.0, 0.0, -4.0, np.inf]]
    assert not np.signbit(gx[0, :3]).any()  # exactly +0, never -0
    gx = grad.leaky_relu_backward(x, gy, 0.25)
    assert gx.tolist() == [[0.25, -0.5, 0.75, -4.0, np.inf]]
    rng = np.random.default_rng(2)
    xv, w, gv = f32(rng, 6), f32(rng, 4, 6), f32(rng, 4)
    gx, gw, gb = grad.linear_backward(xv, w, gv)
    close(gx, w.astype(float).T @ gv)
    close(gw, np.outer(gv.astype(float), xv))
    close(gb, gv)


def test_wrappers_validate_shapes():
    with pytest.raises(ValueError):
        grad.conv2d_backward(np.zeros((2, 5, 5)), np.zeros((1, 3, 3, 3)), np.zeros((1, 3, 3)))
    with pytest.raises(ValueError):
        grad.conv2d_backward(np.zeros((3, 5, 5)), np.zeros((1, 3, 3, 3)), np.zeros((1, 4, 3)))
    with pytest.raises(ValueError):
        grad.maxpool2d_backward(np.zeros((1, 4, 4)), np.zeros((1, 3, 2)), 2, 2)
    with pytest.raises(ValueError):
        grad.avgpool2d_backward(np.zeros((1, 2, 2)), (1, 4), 2, 2)
    with pytest.raises(ValueError):
        grad.linear_backward(np.zeros(3), np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(ValueError):
        grad.leaky_relu_backward(np.zeros(3), np.zeros(4), 0.1)


# ---------------------------------------------------------------------------
# The effective receptive field

def ref_forward(net, x, upto):
    """float64 forward of layers 0..upto with the network's parameters."""
    h = np.asarray(x, np.float64)
    for i in range(upto + 1):
        t, cfg, p = net.layer_types[i], net.configs[i], {k: np.asarray(v, np.float64) for k, v in net.params(i).items()}
        one_d = h.ndim == 2 and t.name.endswith("1d")
        hm = h[:, None, :] if one_d else h
        lift = (lambda v: (1,) + tuple(v)) if one_d else tuple  # strides, kernels, dilations
        liftp = (lambda v: (0,) + tuple(v)) if one_d else tuple  # paddings
        if t.name.startswith("conv"):
            w = p["weight"][:, :, None, :] if one_d else p["weight"]
            out = ref_conv(hm, w, p.get("bias"), lift(cfg["stride"]), liftp(cfg["padding"]), lift(cfg["dilation"]))
        elif "pool" in t.name:
            out = ref_pool(hm, lift(cfg["kernel_size"]), lift(cfg["stride"]), liftp(cfg["padding"]), t.name[:3])
        elif t.name in ("relu", "leaky_relu"):
            slope = cfg.get("negative_slope", 0.0)
            out = np.where(h > 0, h, slope * h)
        elif t.name == "batchnorm":
            out = ref_batchnorm(h.reshape(h.shape[0], -1), p["weight"], p["bias"], p["running_mean"],
                                p["running_var"], cfg["eps"]).reshape(h.shape)
        elif t.name == "layernorm":
            out = ref_layernorm(h.reshape(h.shape[0], -1), p["weight"], p["bias"], cfg["eps"]).reshape(h.shape)
        elif t.name == "flatten":
            out = h.reshape(-1)
        elif t.name == "linear":
            out = p["weight"] @ h + (p["bias"] if "bias" in p else 0)
        h = out[:, 0, :] if one_d and out.ndim == 3 else out
    return h


def ref_erf(net, x, layer, unit):
    g = fd_grad(lambda a: float(ref_forward(net, a, layer)[tuple(unit)]), x, h=1e-5)
    return np.abs(g).sum(axis=0)


def randomize_norms(net, rng):
    for i, t in enumerate(net.layer_types):
        if t.name == "batchnorm":
            c = net.params(i)["weight"].shape[0]
            net.set_params(i, weight=rng.uniform(0.5, 2, c), bias=rng.normal(size=c),
                           running_mean=rng.normal(size=c), running_var=rng.uniform(0.5, 2, c))
        elif t.name == "layernorm":
            c = net.params(i)["weight"].shape[0]
            net.set_params(i, weight=rng.uniform(0.5, 2, c), bias=rng.normal(size=c))


ERF_NETS = [
    {"input": [2, 11, 10], "layers": [
        {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 2, "dilation": 2},
        {"type": "batchnorm"}, {"type": "leaky_relu", "negative_slope": 0.1},
        {"type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1},
        {"type": "conv2d", "out_channels": 2, "kernel_size": [2, 3], "stride": [1, 2], "padding": 1},
        {"type": "layernorm"}, {"type": "avgpool2d", "kernel_size": 2, "padding": 1},
        {"type": "flatten"}, {"type": "linear", "out_features": 3}]},
    {"input": [1, 23], "layers": [
        {"type": "conv1d", "out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 3},
        {"type": "relu"}, {"type": "maxpool1d", "kernel_size": 2, "stride": 1},
        {"type": "conv1d", "out_channels": 2, "kernel_size": 2, "dilation": 3},
        {"type": "avgpool1d", "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "batchnorm"},
        {"type": "flatten"}, {"type": "relu"}, {"type": "linear", "out_features": 2}]},
]


@pytest.mark.parametrize("spec", ERF_NETS)
def test_effective_field_matches_finite_differences(spec):
    net = Network.from_dict(spec, seed=7)
    rng = np.random.default_rng(11)
    randomize_norms(net, rng)
    x = rng.standard_normal(net.input_shape).astype(np.float32)
    outputs = net.forward(x)
    for layer in (0, 3, 4, len(net) - 3, len(net) - 1):
        shape = net.output_shapes[layer]
        unit = tuple(int(rng.integers(n)) for n in shape)
        erf = net.effective_receptive_field(x, layer, unit)
        assert erf.shape == net.input_shape[1:] and erf.dtype == np.float32
        ref = ref_erf(net, x, layer, unit)
        close(erf, ref, rtol=1e-3)
        np.testing.assert_array_equal(erf, net.effective_receptive_field(x, layer, unit, outputs=outputs))
        # the gradient never leaves the exact field
        rf = net.receptive_field(layer, unit)
        assert not erf[~rf.mask].any()


def test_a_relu_that_is_off_gives_exactly_zero():
    net = Network.from_dict({"input": [1, 6, 6], "layers": [
        {"type": "conv2d", "out_channels": 1, "kernel_size": 3}, {"type": "relu"},
        {"type": "conv2d", "out_channels": 1, "kernel_size": 2}]})
    net.set_params(0, weight=np.ones((1, 1, 3, 3)), bias=[0.0])
    x = np.ones((1, 6, 6), np.float32)
    x[0, :3, :3] = -1.0  # unit (0, 0, 0) of conv 0 sees only -1s: its relu is off
    erf = net.effective_receptive_field(x, 1, (0, 0, 0))
    assert erf.dtype == np.float32 and (erf == 0).all()
    assert net.effective_receptive_field(x, 1, (0, 2, 2)).sum() == 9.0
    # a unit above it still gets gradient through its other (on) inputs
    erf = net.effective_receptive_field(x, 2, (0, 0, 0))
    ref = ref_erf(net, x, 2, (0, 0, 0))
    close(erf, ref, rtol=1e-3)


def test_max_pooling_routes_the_field_to_the_argmax():
    net = Network.from_dict({"input": [1, 4, 4], "layers": [{"type": "maxpool2d", "kernel_size": 2}]})
    x = np.array([[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 9, 1], [2, 3, 4, 5]]], np.float32)
    erf = net.effective_receptive_field(x, 0, (0, 1, 1))
    want = np.zeros((4, 4), np.float32)
    want[2, 2] = 1.0  # the 9 at (2, 2): the only maximum of rows 2-3, columns 2-3
    np.testing.assert_array_equal(erf, want)
    erf = net.effective_receptive_field(x, 0, (0, 1, 0))
    want = np.zeros((4, 4), np.float32)
    want[2, 1] = 1.0  # the 9 of rows 2-3, columns 0-1
    np.testing.assert_array_equal(erf, want)


def test_effective_field_validates():
    from cnnplay import NetworkError
    net = Network.from_dict({"input": [1, 4, 4], "layers": [{"type": "relu"}]})
    x = np.zeros((1, 4, 4), np.float32)
    with pytest.raises(NetworkError):
        net.effective_receptive_field(x, 1, (0, 0, 0))
    with pytest.raises(NetworkError):
        net.effective_receptive_field(x, 0, (0, 4, 0))
    with pytest.raises(NetworkError):
        net.effective_receptive_field(np.zeros((1, 5, 4)), 0, (0, 0, 0))
    with pytest.raises(NetworkError):
        net.effective_receptive_field(x, 0, (0, 0, 0), outputs=[])
