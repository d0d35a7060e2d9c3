"""Training-mode gradients of every layer type and of the loss, against float64
finite differences of a reference forward pass written here (plain numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from cnnplay import Network, Trainer

# -- the float64 reference: every layer type in training mode -----------------------


def ref_conv2d(x, w, b, stride, pad, dil):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * pad[0], wd + 2 * pad[1]))
    xp[:, :, pad[0]:pad[0] + h, pad[1]:pad[1] + wd] = x
    ho = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n, o, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dil[0]: i * dil[0] + stride[0] * (ho - 1) + 1: stride[0],
                       j * dil[1]: j * dil[1] + stride[1] * (wo - 1) + 1: stride[1]]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    if b is not None:
        y += b[None, :, None, None]
    return y


def ref_pool2d(x, k, s, p, mode):
    n, c, h, w = x.shape
    fill = -np.inf if mode == "max" else 0.0
    xp = np.full((n, c, h + 2 * p[0], w + 2 * p[1]), fill)
    xp[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x
    ho = (h + 2 * p[0] - k[0]) // s[0] + 1
    wo = (w + 2 * p[1] - k[1]) // s[1] + 1
    y = np.zeros((n, c, ho, wo))
    for a in range(ho):
        for b in range(wo):
            win = xp[:, :, a * s[0]:a * s[0] + k[0], b * s[1]:b * s[1] + k[1]]
            y[:, :, a, b] = win.max(axis=(2, 3)) if mode == "max" else win.sum(axis=(2, 3)) / (k[0] * k[1])
    return y


def ref_forward(spec, params, x):
    """Training-mode forward of `spec` in float64: batch norm uses batch statistics."""
    h = x.astype(np.float64)
    for layer, p in zip(spec["layers"], params):
        t = layer["type"]
        p = {k: v.astype(np.float64) for k, v in p.items()}
        if t in ("conv2d", "conv1d"):
            one_d = t == "conv1d"
            k = layer["kernel_size"]
            st, pd, dl = layer.get("stride", 1), layer.get("padding", 0), layer.get("dilation", 1)
            w = p["weight"][:, :, None, :] if one_d else p["weight"]
            hh = h[:, :, None, :] if one_d else h
            y = ref_conv2d(hh, w, p.get("bias"), (1, st) if one_d else (st, st), (0, pd) if one_d else (pd, pd),
                           (1, dl) if one_d else (dl, dl))
            h = y[:, :, 0, :] if one_d else y
        elif "pool" in t:
            one_d = t.endswith("1d")
            k = layer["kernel_size"]
            st, pd = layer.get("stride", k), layer.get("padding", 0)
            hh = h[:, :, None, :] if one_d else h
            y = ref_pool2d(hh, (1, k) if one_d else (k, k), (1, st) if one_d else (st, st),
                           (0, pd) if one_d else (pd, pd), t[:3])
            h = y[:, :, 0, :] if one_d else y
        elif t == "batchnorm":
            axes = (0,) + tuple(range(2, h.ndim))
            mean = h.mean(axis=axes, keepdims=True)
            var = ((h - mean) ** 2).mean(axis=axes, keepdims=True)  # biased, as in training mode
            shape = (1, -1) + (1,) * (h.ndim - 2)
            h = (h - mean) / np.sqrt(var + 1e-5) * p["weight"].reshape(shape) + p["bias"].reshape(shape)
        elif t == "layernorm":
            mean = h.mean(axis=1, keepdims=True) if h.ndim > 2 else h.mean(axis=1, keepdims=True)
            var = ((h - mean) ** 2).mean(axis=1, keepdims=True)
            shape = (1, -1) + (1,) * (h.ndim - 2)
            h = (h - mean) / np.sqrt(var + 1e-5) * p["weight"].reshape(shape) + p["bias"].reshape(shape)
        elif t == "relu":
            h = np.maximum(h, 0)
        elif t == "leaky_relu":
            h = np.where(h > 0, h, layer.get("negative_slope", 0.01) * h)
        elif t == "flatten":
            h = h.reshape(h.shape[0], -1)
        elif t == "linear":
            h = h @ p["weight"].T + (p["bias"] if "bias" in p else 0)
        else:
            raise AssertionError(t)
    return h


def ref_loss(z, y):
    """nn.CrossEntropyLoss(): mean over the batch of -log softmax(z)[y], float64."""
    m = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]
    return float(np.mean(lse - z[np.arange(len(y)), y]))


HEAD = [{"type": "flatten"}, {"type": "linear", "out_features": 3}]

CASES = {
    "conv2d": ([3, 6, 6], [{"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2, "padding": 1,
                            "dilation": 1}]),
    "conv2d-dilated": ([2, 7, 7], [{"type": "conv2d", "out_channels": 3, "kernel_size": 3, "dilation": 2,
                                    "padding": 1, "bias": False}]),
    "conv1d": ([2, 12], [{"type": "conv1d", "out_channels": 3, "kernel_size": 3, "stride": 2, "dilation": 2,
                          "padding": 2}]),
    "maxpool2d": ([2, 6, 6], [{"type": "conv2d", "out_channels": 2, "kernel_size": 1},
                              {"type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1}]),
    "avgpool2d": ([2, 6, 6], [{"type": "conv2d", "out_channels": 2, "kernel_size": 1},
                              {"type": "avgpool2d", "kernel_size": 2, "padding": 1}]),
    "maxpool1d": ([2, 10], [{"type": "conv1d", "out_channels": 2, "kernel_size": 1},
                            {"type": "maxpool1d", "kernel_size": 3, "stride": 2}]),
    "avgpool1d": ([2, 10], [{"type": "conv1d", "out_channels": 2, "kernel_size": 1},
                            {"type": "avgpool1d", "kernel_size": 2}]),
    "batchnorm2d": ([2, 4, 4], [{"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1},
                                {"type": "batchnorm"}]),
    "batchnorm1d-signal": ([2, 8], [{"type": "conv1d", "out_channels": 3, "kernel_size": 3},
                                    {"type": "batchnorm"}]),
    "batchnorm-flat": ([2, 3, 3], [{"type": "flatten"}, {"type": "linear", "out_features": 5},
                                   {"type": "batchnorm"}]),
    "layernorm": ([3, 4, 4], [{"type": "conv2d", "out_channels": 4, "kernel_size": 1}, {"type": "layernorm"}]),
    "relu": ([2, 4, 4], [{"type": "conv2d", "out_channels": 3, "kernel_size": 3}, {"type": "relu"}]),
    # ReLU then max pool: the trainer pools first, then rectifies (relu_then_maxpool)
    "relu-maxpool2d": ([2, 6, 6], [{"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1},
                                   {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2}]),
    "relu-maxpool2d-overlapping": ([2, 7, 7], [{"type": "conv2d", "out_channels": 2, "kernel_size": 3,
                                                "padding": 1}, {"type": "relu"},
                                               {"type": "maxpool2d", "kernel_size": 3, "stride": 2, "padding": 1}]),
    "relu-maxpool1d": ([2, 12], [{"type": "conv1d", "out_channels": 3, "kernel_size": 3, "padding": 1},
                                 {"type": "relu"}, {"type": "maxpool1d", "kernel_size": 2}]),
    "leaky_relu": ([2, 4, 4], [{"type": "conv2d", "out_channels": 3, "kernel_size": 3},
                               {"type": "leaky_relu", "negative_slope": 0.2}]),
    "linear-only": ([1, 2, 5], [{"type": "flatten"}, {"type": "linear", "out_features": 4, "bias": False},
                                {"type": "relu"}]),
}


def _perturbed(net, params):
    """The network's parameters plus small random offsets (so batch-norm affine
    parameters and biases are not at their symmetric initial values)."""
    rng = np.random.default_rng(1)
    for i, p in enumerate(params):
        for k in list(p):
            if k.startswith("running"):
                continue
            p[k] = (p[k] + rng.normal(0, 0.3, p[k].shape)).astype(np.float32)
        net.set_params(i, **p)
    return params


@pytest.mark.parametrize("case", sorted(CASES))
def test_training_gradients_match_finite_differences(case):
    shape, body = CASES[case]
    spec = {"input": shape, "layers": body + HEAD}
    net = Network.from_dict(spec, seed=3)
    params = _perturbed(net, [dict(net.params(i)) for i in range(len(net))])
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (5,) + tuple(shape)).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0])
    tr = Trainer(net)
    loss, hits, grads, running = tr.gradients(x, y)

    p64 = [{k: v.astype(np.float64) for k, v in p.items()} for p in params]
    assert loss == pytest.approx(ref_loss(ref_forward(spec, p64, x), y), rel=1e-5, abs=1e-6)
    learnable = {(i, k) for i, p in enumerate(params) for k in p if not k.startswith("running")}
    assert set(grads) == learnable
    h = 1e-6
    for (i, k), g in grads.items():
        num = np.zeros(g.shape)
        for idx in np.ndindex(g.shape):
            for sign in (1, -1):
                q = [dict(d) for d in p64]
                q[i][k] = q[i][k].copy()
                q[i][k][idx] += sign * h
                num[idx] += sign * ref_loss(ref_forward(spec, q, x), y) / (2 * h)
        scale = max(np.abs(num).max(), 1e-3)
        np.testing.assert_allclose(g, num, rtol=0, atol=2e-4 * scale + 1e-6, err_msg=f"{case}: layer {i} {k}")


def test_batchnorm_running_statistics_follow_pytorch_rule():
    spec = {"input": [2, 3, 3], "layers": [{"type": "batchnorm"}, {"type": "flatten"},
                                           {"type": "linear", "out_features": 2}]}
    net = Network.from_dict(spec)
    net.set_params(0, running_mean=[0.5, -1.0], running_var=[2.0, 0.25])
    x = np.random.default_rng(0).normal(1, 2, (4, 2, 3, 3)).astype(np.float32)
    tr = Trainer(net, lr=0.1)
    tr.step(x, np.array([0, 1, 1, 0]))
    xs = x.astype(np.float64).transpose(1, 0, 2, 3).reshape(2, -1)
    m = xs.shape[1]
    mean, var_unbiased = xs.mean(1), xs.var(1) * m / (m - 1)
    p = net.params(0)
    np.testing.assert_allclose(p["running_mean"], 0.9 * np.array([0.5, -1.0]) + 0.1 * mean, rtol=1e-6)
    np.testing.assert_allclose(p["running_var"], 0.9 * np.array([2.0, 0.25]) + 0.1 * var_unbiased, rtol=1e-6)


def test_loss_gradient_and_stability():
    from cnnplay.core.training import cross_entropy
    z = np.array([[1000.0, 0.0, -1000.0], [0.5, 0.25, 0.0]], np.float32)  # exp(1000) overflows naively
    y = np.array([2, 0])
    loss, g = cross_entropy(z, y)
    assert np.isfinite(loss) and loss == pytest.approx(ref_loss(z.astype(np.float64), y))
    num = np.zeros(z.shape)
    z64 = z.astype(np.float64)
    for idx in np.ndindex(z.shape):
        for s in (1, -1):
            q = z64.copy()
            q[idx] += s * 1e-6
            num[idx] += s * ref_loss(q, y) / 2e-6
    np.testing.assert_allclose(g, num, atol=1e-6)
