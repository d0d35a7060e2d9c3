"""Forward kernels against independent float64 references written here with plain loops."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnnplay import Network, NetworkError
from cnnplay.core.kernels import conv, dense, norm, pointwise, pool

RTOL = 1e-4


def rel_err(got, ref):
    got = np.asarray(got, np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    scale = max(np.abs(ref).max(initial=0.0), 1e-30)
    return np.abs(got - ref).max(initial=0.0) / scale


# -- references: float64, plain loops ----------------------------------------

def ref_conv(x, w, b, stride, padding, dilation):
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    ci, h, wd = x.shape
    co, _, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    hp, wp = h + 2 * ph, wd + 2 * pw
    xp = np.zeros((ci, hp, wp))
    xp[:, ph:ph + h, pw:pw + wd] = x
    ho = (hp - dh * (kh - 1) - 1) // sh + 1
    wo = (wp - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((co, ho, wo))
    for oy in range(ho):
        for ox in range(wo):
            for ky in range(kh):
                for kx in range(kw):
                    y[:, oy, ox] += w[:, :, ky, kx] @ xp[:, oy * sh + ky * dh, ox * sw + kx * dw]
    if b is not None:
        y += np.asarray(b, np.float64)[:, None, None]
    return y


def ref_pool(x, kernel, stride, padding, mode):
    x = np.asarray(x, np.float64)
    c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    fill = -np.inf if mode == "max" else 0.0
    xp = np.full((c, h + 2 * ph, w + 2 * pw), fill)
    xp[:, ph:ph + h, pw:pw + w] = x
    ho = (h + 2 * ph - kh) // sh + 1
    wo = (w + 2 * pw - kw) // sw + 1
    y = np.zeros((c, ho, wo))
    for ch in range(c):
        for oy in range(ho):
            for ox in range(wo):
                vals = [xp[ch, oy * sh + ky, ox * sw + kx] for ky in range(kh) for kx in range(kw)]
                y[ch, oy, ox] = max(vals) if mode == "max" else sum(vals) / (kh * kw)
    return y


def ref_batchnorm(x2, weight, bias, mean, var, eps):
    x2 = np.asarray(x2, np.float64)
    y = np.empty_like(x2)
    for c in range(x2.shape[0]):
        y[c] = (x2[c] - mean[c]) / math.sqrt(float(var[c]) + eps) * weight[c] + bias[c]
    return y


def ref_layernorm(x2, weight, bias, eps):
    x2 = np.asarray(x2, np.float64)
    y = np.empty_like(x2)
    for n in range(x2.shape[1]):
        col = x2[:, n]
        m = sum(col) / len(col)
        v = sum((col - m) ** 2) / len(col)
        y[:, n] = (col - m) / math.sqrt(v + eps) * weight + bias
    return y


def ref_leaky(x, slope):
    x = np.asarray(x, np.float64)
    return np.where(x > 0, x, x * slope)


def ref_linear(x, w, b):
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    y = np.array([sum(w[o, f] * x[f] for f in range(x.shape[0])) for o in range(w.shape[0])])
    return y if b is None else y + b


def rnd(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# -- kernels -------------------------------------------------------------------

CONV_CASES = [
    # ci, h, w, co, (kh, kw), stride, padding, dilation, bias
    (1, 7, 9, 1, (3, 3), (1, 1), (0, 0), (1, 1), True),          # single channel
    (3, 11, 13, 5, (3, 3), (1, 1), (1, 1), (1, 1), True),        # odd sizes, co not a multiple of 8
    (4, 10, 9, 8, (3, 2), (2, 3), (1, 0), (1, 1), False),        # stride > 1, rectangular, no bias
    (2, 13, 12, 3, (3, 3), (1, 1), (2, 2), (2, 3), True),        # dilation > 1
    (3, 6, 7, 4, (3, 3), (1, 1), (2, 2), (1, 1), True),          # padding > kernel/2
    (2, 9, 9, 6, (5, 5), (3, 2), (4, 3), (1, 2), True),          # all at once, padding near the span
    (24, 8, 9, 20, (3, 3), (1, 1), (1, 1), (1, 1), True),        # many channels, K % 4 != 0 ... co % 8 != 0
    (17, 7, 7, 9, (1, 1), (1, 1), (0, 0), (1, 1), False),        # 1x1
    (3, 16, 16, 8, (7, 7), (2, 2), (3, 3), (1, 1), True),        # big kernel with stride
    (5, 1, 37, 7, (1, 5), (1, 1), (0, 2), (1, 1), True),         # 1D as height 1
    (4, 1, 41, 9, (1, 4), (1, 3), (0, 5), (1, 2), True),         # 1D with stride, dilation, big padding
    (6, 3, 3, 2, (3, 3), (1, 1), (0, 0), (1, 1), True),          # output 1x1
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d(case):
    ci, h, w, co, k, s, p, d, bias = case
    rng = np.random.default_rng(hash(case) % 2**32)
    x, wt = rnd(rng, ci, h, w), rnd(rng, co, ci, *k)
    b = rnd(rng, co) if bias else None
    x0, w0 = x.copy(), wt.copy()
    y = conv.conv2d(x, wt, b, s, p, d)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    assert rel_err(y, ref_conv(x, wt, b, s, p, d)) < RTOL
    assert np.array_equal(x, x0) and np.array_equal(wt, w0)


def test_conv2d_larger_than_one_chunk():
    rng = np.random.default_rng(1)
    x, wt, b = rnd(rng, 3, 40, 45), rnd(rng, 10, 3, 3, 3), rnd(rng, 10)
    assert rel_err(conv.conv2d(x, wt, b, (1, 1), (1, 1), (1, 1)), ref_conv(x, wt, b, (1, 1), (1, 1), (1, 1))) < RTOL


def test_conv2d_accepts_non_contiguous_input():
    rng = np.random.default_rng(2)
    x = rnd(rng, 3, 12, 20)[:, :, ::2]
    wt = rnd(rng, 4, 3, 3, 3)
    assert rel_err(conv.conv2d(x, wt, None, (1, 1), (0, 0), (1, 1)), ref_conv(x, wt, None, (1, 1), (0, 0), (1, 1))) < RTOL


POOL_CASES = [
    # c, h, w, kernel, stride, padding
    (3, 8, 8, (2, 2), (2, 2), (0, 0)),
    (2, 9, 11, (3, 3), (2, 2), (1, 1)),      # stride != kernel, padding
    (4, 7, 10, (3, 2), (1, 2), (1, 1)),      # overlapping, rectangular
    (1, 10, 9, (4, 5), (3, 1), (2, 2)),      # padding = kernel/2
    (5, 1, 33, (1, 4), (1, 4), (0, 0)),      # 1D
    (2, 1, 20, (1, 3), (1, 2), (0, 1)),      # 1D with padding
    # rows of >= 32 outputs take the grouped-tap path for strides 2 and 4
    (3, 3, 71, (2, 3), (2, 2), (1, 1)),      # stride-2 tap pairs with padded edge columns
    (2, 4, 141, (3, 5), (2, 4), (1, 2)),     # stride-4 tap group + a single tap, padding
    (3, 1, 130, (1, 4), (1, 4), (0, 0)),     # 1D, kernel = stride = 4
    (2, 1, 66, (1, 2), (1, 2), (0, 1)),      # 1D, kernel = stride = 2, padding
    # windows that tile the map (kernel == stride, no padding) have a kernel of their own
    (3, 9, 75, (2, 2), (2, 2), (0, 0)),      # 2x2, an odd row and column left over
    (2, 10, 9, (3, 3), (3, 3), (0, 0)),      # 3x3 tiles
    (2, 6, 8, (2, 4), (2, 4), (0, 0)),       # unequal sides
    (2, 9, 19, (4, 4), (4, 4), (0, 0)),      # 4x4 tiles, rows and columns left over
    (3, 1, 131, (1, 2), (1, 2), (0, 0)),     # 1D
]


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool(case, mode):
    c, h, w, k, s, p = case
    x = rnd(np.random.default_rng(3), c, h, w)
    x0 = x.copy()
    fn = pool.maxpool2d if mode == "max" else pool.avgpool2d
    y = fn(x, k, s, p)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    assert rel_err(y, ref_pool(x, k, s, p, mode)) < RTOL
    assert np.array_equal(x, x0)


def test_maxpool_all_negative_with_padding():
    x = -np.abs(rnd(np.random.default_rng(4), 2, 5, 5)) - 1
    y = pool.maxpool2d(x, (3, 3), (2, 2), (1, 1))
    assert np.isfinite(y).all()
    assert rel_err(y, ref_pool(x, (3, 3), (2, 2), (1, 1), "max")) < RTOL


def test_batchnorm():
    rng = np.random.default_rng(5)
    x2 = rnd(rng, 6, 50)
    w, b, m = rnd(rng, 6), rnd(rng, 6), rnd(rng, 6)
    v = np.abs(rnd(rng, 6)) + 0.1
    x0 = x2.copy()
    y = norm.batchnorm(x2, w, b, m, v, 1e-3)
    assert y.dtype == np.float32 and rel_err(y, ref_batchnorm(x2, w, b, m, v, 1e-3)) < RTOL
    assert np.array_equal(x2, x0)


@pytest.mark.parametrize("c,n", [(1, 7), (5, 300), (64, 33)])
def test_layernorm(c, n):
    rng = np.random.default_rng(6)
    x2 = rnd(rng, c, n) * 3 + 2
    w, b = rnd(rng, c), rnd(rng, c)
    y = norm.layernorm(x2, w, b, 1e-5)
    assert y.dtype == np.float32 and rel_err(y, ref_layernorm(x2, w, b, 1e-5)) < RTOL


@pytest.mark.parametrize("slope", [0.0, 0.01, 0.3])
@pytest.mark.parametrize("shape", [(7,), (3, 11), (2, 5, 6), (2, 130, 130)])
def test_leaky_relu(slope, shape):
    x = rnd(np.random.default_rng(7), *shape)
    x0 = x.copy()
    y = pointwise.leaky_relu(x, slope)
    assert y.shape == shape and y.dtype == np.float32
    assert rel_err(y, ref_leaky(x, slope)) < RTOL
    assert np.array_equal(x, x0)


@pytest.mark.parametrize("f,o,bias", [(1, 1, True), (37, 5, True), (300, 10, False)])
def test_linear(f, o, bias):
    rng = np.random.default_rng(8)
    x, w = rnd(rng, f), rnd(rng, o, f)
    b = rnd(rng, o) if bias else None
    y = dense.linear(x, w, b)
    assert y.shape == (o,) and y.dtype == np.float32
    assert rel_err(y, ref_linear(x, w, b)) < RTOL


# -- whole networks ------------------------------------------------------------

def ref_layer(name, cfg, x, p):
    """One layer in float64 from the spec's own semantics (not the layer code)."""
    if name in ("conv1d", "conv2d"):
        one_d = x.ndim == 2
        xm = x[:, None, :] if one_d else x
        w = p["weight"][:, :, None, :] if one_d else p["weight"]
        lift = (lambda t: (1,) + t) if one_d else (lambda t: t)
        pad = ((0,) + cfg["padding"]) if one_d else cfg["padding"]
        y = ref_conv(xm, w, p.get("bias"), lift(cfg["stride"]), pad, lift(cfg["dilation"]))
        return y[:, 0, :] if one_d else y
    if "pool" in name:
        one_d = x.ndim == 2
        xm = x[:, None, :] if one_d else x
        lift = (lambda t: (1,) + t) if one_d else (lambda t: t)
        pad = ((0,) + cfg["padding"]) if one_d else cfg["padding"]
        y = ref_pool(xm, lift(cfg["kernel_size"]), lift(cfg["stride"]), pad, name[:3])
        return y[:, 0, :] if one_d else y
    if name == "batchnorm":
        return ref_batchnorm(x.reshape(x.shape[0], -1), p["weight"], p["bias"], p["running_mean"],
                             p["running_var"], cfg["eps"]).reshape(x.shape)
    if name == "layernorm":
        return ref_layernorm(x.reshape(x.shape[0], -1), p["weight"], p["bias"], cfg["eps"]).reshape(x.shape)
    if name == "relu":
        return ref_leaky(x, 0.0)
    if name == "leaky_relu":
        return ref_leaky(x, cfg["negative_slope"])
    if name == "flatten":
        return x.reshape(-1)
    if name == "linear":
        return ref_linear(x, p["weight"], p.get("bias"))
    raise AssertionError(name)


size = st.integers(1, 3)


@st.composite
def layer_dicts(draw, dims):
    kind = draw(st.sampled_from(["conv", "conv", "conv", "maxpool", "avgpool", "batchnorm",
                                 "layernorm", "relu", "leaky_relu"]))
    def sz(s):
        return draw(s) if dims == 1 else draw(st.one_of(s, st.lists(s, min_size=2, max_size=2)))

    if kind == "conv":
        return {"type": f"conv{dims}d", "out_channels": draw(st.integers(1, 10)),
                "kernel_size": sz(st.integers(1, 4)), "stride": sz(st.integers(1, 2)),
                "padding": sz(st.integers(0, 3)), "dilation": sz(st.integers(1, 2)),
                "bias": draw(st.booleans())}
    if kind in ("maxpool", "avgpool"):
        k = draw(st.integers(1, 3))
        return {"type": f"{kind}{dims}d", "kernel_size": k, "stride": draw(st.integers(1, 3)),
                "padding": draw(st.integers(0, k // 2))}
    if kind == "leaky_relu":
        return {"type": kind, "negative_slope": draw(st.floats(0, 0.5))}
    return {"type": kind}


@st.composite
def networks(draw):
    dims = draw(st.sampled_from([1, 2]))
    c = draw(st.integers(1, 5))
    spatial = [draw(st.integers(4, 14)) for _ in range(dims)]
    layers = draw(st.lists(layer_dicts(dims), min_size=1, max_size=5))
    if draw(st.booleans()):
        layers += [{"type": "flatten"}, {"type": "linear", "out_features": draw(st.integers(1, 6))}]
    return {"input": [c] + spatial, "layers": layers}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(spec=networks(), seed=st.integers(0, 1000))
def test_network_forward_matches_reference(spec, seed):
    try:
        net = Network.from_dict(spec, seed=seed)
    except NetworkError:
        assume(False)
    rng = np.random.default_rng(seed)
    for i, t in enumerate(net.layer_types):
        if t.name == "batchnorm":  # non-trivial running statistics
            c = net.input_shape_of(i)[0]
            net.set_params(i, running_mean=rnd(rng, c), running_var=np.abs(rnd(rng, c)) + 0.5,
                           weight=rnd(rng, c), bias=rnd(rng, c))
    x = rnd(rng, *net.input_shape)
    outs = net.forward(x)
    h = x.astype(np.float64)
    for i, (t, cfg) in enumerate(zip(net.layer_types, net.configs)):
        p = {k: np.asarray(v, np.float64) for k, v in net.params(i).items()}
        h = ref_layer(t.name, cfg, h, p)
        assert outs[i].dtype == np.float32
        assert rel_err(outs[i], h) < RTOL, (i, t.name, cfg)
        h = np.asarray(outs[i], np.float64)  # compare each layer on its own input


def test_bench_networks_run_small():
    # the bench's network shapes, shrunk: the same layer mix end to end
    spec = {"input": [3, 32, 32], "layers": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"},
        {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "dilation": 2, "padding": 2},
        {"type": "relu"}, {"type": "avgpool2d", "kernel_size": 2}, {"type": "flatten"},
        {"type": "linear", "out_features": 10}]}
    net = Network.from_dict(spec)
    x = rnd(np.random.default_rng(9), 3, 32, 32)
    outs = net.forward(x)
    h = x.astype(np.float64)
    for i, (t, cfg) in enumerate(zip(net.layer_types, net.configs)):
        p = {k: np.asarray(v, np.float64) for k, v in net.params(i).items()}
        h = ref_layer(t.name, cfg, h, p)
    assert rel_err(outs[-1], h) < RTOL


def test_numba_cache_in_platform_cache_folder(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["XDG_CACHE_HOME"] = str(tmp_path)
    code = "import cnnplay.core.kernels.pointwise, numba; print(numba.config.CACHE_DIR)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    if sys.platform.startswith("linux"):
        assert out.stdout.strip() == str(tmp_path / "cnnplay" / "numba")
    else:
        assert out.stdout.strip().endswith(os.path.join("cnnplay", "numba"))


def test_conv2d_rejects_bad_geometry():
    x, w = np.ones((2, 5, 5), np.float32), np.ones((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError):
        conv.conv2d(x, w, None, (0, 1), (0, 0), (1, 1))
    with pytest.raises(ValueError):
        conv.conv2d(x, w, None, (1, 1), (0, 0), (3, 3))  # spans 7 > 5
    with pytest.raises(ValueError):
        conv.conv2d(x, np.ones((3, 4, 3, 3), np.float32), None, (1, 1), (0, 0), (1, 1))


def test_the_direct_kernel_takes_taps_phase_by_phase():
    """With a stride, the direct kernel's taps go phase image by phase image (a pass
    then reads one image); with stride 1 they keep PyTorch's weight order."""
    plan = conv._plan(5, 12, 12, 3, 3, (2, 2), (1, 1), (1, 1))
    k = plan.k
    order = plan.direct_order[:k]
    assert sorted(order) == list(range(k)) and list(plan.direct_order[k:]) == list(range(k, len(plan.rows)))
    phase = (plan.rows[:k] // 5)[order]
    assert np.all(np.diff(phase) >= 0) and len(set(phase)) == 4
    flat = conv._plan(5, 12, 12, 3, 3, (1, 1), (1, 1), (2, 2))
    assert np.array_equal(flat.direct_order, np.arange(len(flat.rows)))
