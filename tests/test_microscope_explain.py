"""The computation breakdown (core/microscope/explain.py): its numbers reproduce
the map's value for every layer type, 1D and 2D, and the windows it shows are
the cells a plain loop in this test reads."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnplay import Network
from cnnplay.core.microscope import block_of, explain
from cnnplay.core.microscope.explain import ConvStep, FlattenStep, InputStep, LinearStep, PointwiseStep, PoolStep

from strategies import networks


def _randomize(net: Network, seed: int) -> None:
    """Batch-norm statistics and norm weights away from the identity, so every
    number of the formulas matters."""
    rng = np.random.default_rng(seed)
    for i, t in enumerate(net.layer_types):
        if t.name in ("batchnorm", "layernorm"):
            c = net.param_shapes(i)["weight"]
            p = {"weight": rng.uniform(0.5, 2, c), "bias": rng.uniform(-1, 1, c)}
            if t.name == "batchnorm":
                p.update(running_mean=rng.uniform(-0.5, 0.5, c), running_var=rng.uniform(0.2, 3, c))
            net.set_params(i, **p)


def _ref_window(xin, pos, k, s, p, d, pad):
    """Plain loops: the values a window reads (2D; a 1D signal as height 1) and
    which taps are padding."""
    maps = xin[:, None, :] if xin.ndim == 2 else xin
    if len(pos) == 1:
        pos, k, s, p, d = (0,) + pos, (1,) + k, (1,) + s, (0,) + p, (1,) + d
    n = maps.shape[1:]

    def read(c):
        vals = np.zeros(k)
        padm = np.zeros(k, bool)
        for ky in range(k[0]):
            for kx in range(k[1]):
                iy = pos[0] * s[0] - p[0] + ky * d[0]
                ix = pos[1] * s[1] - p[1] + kx * d[1]
                if 0 <= iy < n[0] and 0 <= ix < n[1]:
                    vals[ky, kx] = maps[c, iy, ix]
                else:
                    vals[ky, kx], padm[ky, kx] = pad, True
        return vals, padm
    return read


def _scale_of(step) -> float:
    """The size of the numbers a step adds up (float32 maps round at ~1e-7 of it)."""
    if isinstance(step, ConvStep):
        return float(np.abs(step.channel_sums).sum()) + abs(step.bias or 0) + sum(
            float(np.abs(ch.products).sum()) for ch in step.channels)
    if isinstance(step, PointwiseStep) and "mean" in step.numbers:
        n = step.numbers
        return (abs(step.x) + abs(n["mean"])) * abs(n["weight"]) / math.sqrt(n["var"] + n["eps"]) + abs(n["bias"])
    if isinstance(step, LinearStep):
        return sum(abs(t.product) for t in step.terms) + abs(step.rest_sum) + abs(step.bias or 0) + 1
    return abs(step.value) + 1e-3


def check_explanation(net, x, outs, layer, unit):
    e = explain(net, x, outs, layer, unit, top_channels=2, top_terms=2)
    assert e.value == float(outs[layer][unit])
    first, last = block_of(net, layer)
    assert [s.layer for s in e.steps] == list(range(first, last + 1))
    assert e.steps[e.selected].layer == layer
    assert e.steps[e.selected].map_value == e.value
    for s in e.steps:
        m = x if s.layer < 0 else outs[s.layer]
        assert s.map_value == float(m[unit] if not isinstance(s, (FlattenStep, LinearStep)) else m[s.unit])
        tol = 2e-5 * _scale_of(s) + 1e-6
        assert abs(s.value - s.map_value) <= tol, (s.name, s.value, s.map_value)
    prev = None
    for s in e.steps:
        xin = x if s.layer <= 0 else outs[s.layer - 1]
        if isinstance(s, PointwiseStep):
            assert s.x == prev.map_value  # each step starts from the value the map before holds
        elif isinstance(s, ConvStep):
            w = net.windows[s.layer]
            read = _ref_window(xin, s.unit[1:], w.kernel, w.stride, w.padding, w.dilation, 0.0)
            weight = np.asarray(net.params(s.layer)["weight"][s.unit[0]], np.float64)
            weight = weight[:, None, :] if weight.ndim == 2 else weight
            sums = []
            for c in range(xin.shape[0]):
                vals, _ = read(c)
                sums.append(float((vals * weight[c]).sum()))
            np.testing.assert_allclose(s.channel_sums, sums, rtol=1e-12, atol=1e-12)
            for ch in s.channels:
                vals, padm = read(ch.window.channel)
                np.testing.assert_array_equal(ch.window.values, vals)
                np.testing.assert_array_equal(ch.window.tap_padding, padm)
                np.testing.assert_array_equal(ch.kernel, weight[ch.window.channel])
                assert ch.window.taps.sum() == ch.kernel.size
                # the region's tapped cells are the values; padding cells are outside the input
                assert np.array_equal(ch.window.region[ch.window.taps].reshape(vals.shape), vals)
            shown = sum(ch.total for ch in s.channels)
            assert len(s.channels) + s.rest_count == xin.shape[0]
            assert shown + s.rest_sum + (s.bias or 0.0) == pytest.approx(s.value, rel=1e-9, abs=1e-9)
        elif isinstance(s, PoolStep):
            w = net.windows[s.layer]
            pad = -np.inf if s.mode == "max" else 0.0
            vals, padm = _ref_window(xin, s.unit[1:], w.kernel, w.stride, w.padding, w.dilation, pad)(s.unit[0])
            np.testing.assert_array_equal(s.window.values, vals)
            if s.mode == "max":
                assert s.value == vals.max() == s.window.values[s.winner]
                assert not s.window.tap_padding[s.winner]
            else:
                assert s.count == vals.size and s.total == pytest.approx(vals.sum(), abs=1e-12)
        elif isinstance(s, LinearStep):
            w = np.asarray(net.params(s.layer)["weight"][s.unit[0]], np.float64)
            prods = w * np.asarray(xin, np.float64)
            assert len(s.terms) + s.rest_count == prods.size
            top = sorted(abs(t.product) for t in s.terms)
            assert all(t.product == prods[t.index] for t in s.terms)
            assert s.rest_count == 0 or top[0] >= np.sort(np.abs(prods))[::-1][len(s.terms) - 1]
            assert sum(t.product for t in s.terms) + s.rest_sum + (s.bias or 0) == pytest.approx(s.value, abs=1e-9)
        elif isinstance(s, FlattenStep):
            assert xin[s.source] == s.map_value
            assert np.ravel_multi_index(s.source, xin.shape) == s.unit[0]
        else:
            assert isinstance(s, InputStep)
        prev = s
    return e


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=networks(out_channels=st.integers(1, 4), in_channels=st.integers(1, 4), seeded=True),
       data=st.data())
def test_breakdown_reproduces_every_layer(net, data):
    _randomize(net, net.seed)
    x = np.random.default_rng(net.seed).standard_normal(net.input_shape).astype(np.float32)
    outs = net.forward(x)
    for layer in range(len(net)):
        shape = net.output_shapes[layer]
        unit = tuple(data.draw(st.integers(0, n - 1)) for n in shape)
        check_explanation(net, x, outs, layer, unit)


@pytest.mark.parametrize("dims", [1, 2])
def test_every_layer_type(dims):
    """Each layer type at least once, every unit of a small network."""
    k = 3 if dims == 2 else [3]
    sp = [9, 8] if dims == 2 else [17]
    net = Network.from_dict({"input": [3] + sp, "layers": [
        {"type": "batchnorm"}, {"type": "leaky_relu", "negative_slope": 0.2},
        {"type": f"conv{dims}d", "out_channels": 9, "kernel_size": k, "padding": 2, "dilation": 2},
        {"type": "batchnorm"}, {"type": "relu"},
        {"type": f"maxpool{dims}d", "kernel_size": 2, "padding": 1},
        {"type": f"conv{dims}d", "out_channels": 4, "kernel_size": 2, "stride": 2, "bias": False},
        {"type": "layernorm"},
        {"type": f"avgpool{dims}d", "kernel_size": 3, "padding": 1, "stride": 1},
        {"type": "flatten"}, {"type": "layernorm"}, {"type": "linear", "out_features": 5},
        {"type": "relu"}, {"type": "batchnorm"}, {"type": "linear", "out_features": 3, "bias": False}]}, seed=3)
    _randomize(net, 1)
    x = np.random.default_rng(2).standard_normal(net.input_shape).astype(np.float32)
    outs = net.forward(x)
    kinds = set()
    for layer in range(len(net)):
        for unit in np.ndindex(*net.output_shapes[layer]):
            e = check_explanation(net, x, outs, layer, unit)
            kinds |= {type(s).__name__ for s in e.steps}
    assert kinds == {"InputStep", "ConvStep", "PoolStep", "FlattenStep", "LinearStep", "PointwiseStep"}


def test_text_reads_like_the_issue():
    net = Network.from_dict({"input": [1, 5, 5], "layers": [
        {"type": "conv2d", "out_channels": 1, "kernel_size": 3}, {"type": "batchnorm"}, {"type": "relu"}]})
    net.set_params(0, weight=np.ones((1, 1, 3, 3)), bias=[0.5])
    net.set_params(1, running_mean=[0.4], running_var=[1.96], weight=[0.8], bias=[0.1])
    x = np.full((1, 5, 5), 0.3, np.float32)
    outs = net.forward(x)
    e = explain(net, x, outs, 2, (0, 1, 1))
    # conv: 9 * 0.3 + 0.5 = 3.2; batch norm: (3.2 - 0.4) / 1.4 * 0.8 + 0.1 = 1.7
    assert e.chain() == "3.2 -> batchnorm -> 1.7 -> relu -> 1.7"
    assert e.steps[1].equation == "(3.2 - 0.4) / sqrt(1.96 + 1e-5) * 0.8 + 0.1 = 1.7"
    assert e.steps[2].equation == "max(1.7, 0) = 1.7"
    assert e.selected == 2 and e.steps[0].kind == "conv"
    # a conv unit's block also goes on to the norm and activation after it
    assert [s.layer for s in explain(net, x, outs, 0, (0, 0, 0)).steps] == [0, 1, 2]
