"""Shape inference, parameter counts and validation, against formulas written here."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnplay import Network, NetworkError


def out_len(n, k, s, p, d):
    """PyTorch's output length formula."""
    return math.floor((n + 2 * p - d * (k - 1) - 1) / s) + 1


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 9), s=st.integers(1, 5), p=st.integers(0, 6),
       d=st.integers(1, 4), cin=st.integers(1, 5), cout=st.integers(1, 7), bias=st.booleans())
def test_conv1d_shape_and_params(n, k, s, p, d, cin, cout, bias):
    spec = {"input": [cin, n], "layers": [{"type": "conv1d", "out_channels": cout, "kernel_size": k,
                                           "stride": s, "padding": p, "dilation": d, "bias": bias}]}
    expected = out_len(n, k, s, p, d)
    if expected < 1:
        with pytest.raises(NetworkError, match=r"layer 0 \(conv1d\), kernel_size"):
            Network.from_dict(spec)
        return
    net = Network.from_dict(spec)
    assert net.output_shapes == [(cout, expected)]
    assert net.parameter_counts == [k * cin * cout + (cout if bias else 0)]
    assert net.macs == [cout * expected * cin * k]
    assert net.params(0)["weight"].shape == (cout, cin, k)


@settings(max_examples=150, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), k=st.tuples(st.integers(1, 7), st.integers(1, 7)),
       s=st.tuples(st.integers(1, 4), st.integers(1, 4)), p=st.tuples(st.integers(0, 4), st.integers(0, 4)),
       d=st.tuples(st.integers(1, 3), st.integers(1, 3)), cin=st.integers(1, 4), cout=st.integers(1, 6))
def test_conv2d_shape_and_params(h, w, k, s, p, d, cin, cout):
    spec = {"input": [cin, h, w], "layers": [{"type": "conv2d", "out_channels": cout, "kernel_size": list(k),
                                              "stride": list(s), "padding": list(p), "dilation": list(d)}]}
    oh, ow = out_len(h, k[0], s[0], p[0], d[0]), out_len(w, k[1], s[1], p[1], d[1])
    if oh < 1 or ow < 1:
        with pytest.raises(NetworkError, match=r"layer 0 \(conv2d\), kernel_size: kernel .* spans"):
            Network.from_dict(spec)
        return
    net = Network.from_dict(spec)
    assert net.output_shapes == [(cout, oh, ow)]
    assert net.parameter_counts == [k[0] * k[1] * cin * cout + cout]


@settings(max_examples=100, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), k=st.integers(1, 6), s=st.none() | st.integers(1, 4),
       p=st.integers(0, 3), mode=st.sampled_from(["max", "avg"]), c=st.integers(1, 4))
def test_pool2d_shape(h, w, k, s, p, mode, c):
    layer = {"type": f"{mode}pool2d", "kernel_size": k, "padding": p}
    if s is not None:
        layer["stride"] = s
    stride = k if s is None else s
    spec = {"input": [c, h, w], "layers": [layer]}
    oh, ow = out_len(h, k, stride, p, 1), out_len(w, k, stride, p, 1)
    if p > k // 2:
        with pytest.raises(NetworkError, match=r"layer 0 \(\w+pool2d\), padding"):
            Network.from_dict(spec)
    elif oh < 1 or ow < 1:
        with pytest.raises(NetworkError, match="kernel_size"):
            Network.from_dict(spec)
    else:
        net = Network.from_dict(spec)
        assert net.output_shapes == [(c, oh, ow)]
        assert net.parameter_counts == [0]


def test_pointwise_flatten_linear_shapes_and_counts():
    net = Network.from_dict({"input": [3, 10, 12], "layers": [
        {"type": "batchnorm"}, {"type": "layernorm"}, {"type": "relu"}, {"type": "leaky_relu"},
        {"type": "flatten"}, {"type": "linear", "out_features": 7}, {"type": "batchnorm"},
        {"type": "linear", "out_features": 2, "bias": False}]})
    assert net.output_shapes == [(3, 10, 12)] * 4 + [(360,), (7,), (7,), (2,)]
    assert net.parameter_counts == [6, 6, 0, 0, 0, 360 * 7 + 7, 14, 14]
    assert set(net.params(0)) == {"weight", "bias", "running_mean", "running_var"}
    assert (net.params(0)["weight"] == 1).all() and (net.params(0)["running_var"] == 1).all()


def test_round_trip_and_deterministic_init():
    spec = {"input": [2, 9, 9], "layers": [
        {"type": "conv2d", "out_channels": 3, "kernel_size": [3, 1], "stride": 2, "id": "a"},
        {"type": "avgpool2d", "kernel_size": 2, "stride": 1}, {"type": "flatten"},
        {"type": "linear", "out_features": 4}]}
    a, b = Network.from_dict(spec, seed=5), Network.from_dict(spec, seed=5)
    again = Network.from_dict(a.to_dict(), seed=5)
    assert again.to_dict() == a.to_dict()
    assert a.to_dict()["layers"][0] == {"type": "conv2d", "out_channels": 3, "kernel_size": [3, 1],
                                         "stride": 2, "padding": 0, "dilation": 1, "bias": True, "id": "a"}
    for i in range(len(a)):
        for name, arr in a.params(i).items():
            assert (arr == b.params(i)[name]).all() and (arr == again.params(i)[name]).all()
    c = Network.from_dict(spec, seed=6)
    assert not (c.params(0)["weight"] == a.params(0)["weight"]).all()
    # PyTorch's default init bound 1/sqrt(fan_in)
    assert abs(a.params(3)["weight"]).max() <= 1 / math.sqrt(a.output_shapes[2][0])


@pytest.mark.parametrize("spec, pattern", [
    ({"input": [3, 8, 8], "layers": [{"type": "conv3d"}]}, r"layer 0, type: unknown layer type 'conv3d'"),
    ({"input": [3, 8, 8], "layers": [{"type": "conv2d", "kernel_size": 3}]}, r"layer 0 \(conv2d\), out_channels: is required"),
    ({"input": [3, 8, 8], "layers": [{"type": "relu"}, {"type": "conv2d", "out_channels": 0, "kernel_size": 3}]},
     r"layer 1 \(conv2d\), out_channels: must be at least 1"),
    ({"input": [3, 8, 8], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "stride": 0}]},
     r"stride: must be at least 1"),
    ({"input": [3, 8, 8], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": -1}]}, r"kernel_size: must be at least 1"),
    ({"input": [3, 8, 8], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": "3"}]}, r"kernel_size: must be an integer"),
    ({"input": [3, 8, 8], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": [3, 3, 3]}]}, r"needs \[h, w\]"),
    ({"input": [3, 9, 9], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 7, "dilation": 2}]},
     r"layer 0 \(conv2d\), kernel_size: kernel 7x7 with dilation 2 spans 13 px but its input is 9x9 after padding"),
    ({"input": [3, 4, 4], "layers": [{"type": "maxpool2d", "kernel_size": 2}, {"type": "maxpool2d", "kernel_size": 2},
                                     {"type": "maxpool2d", "kernel_size": 2}]}, r"layer 2 \(maxpool2d\).*spans 2 px but its input is 1x1"),
    ({"input": [3, 8, 8], "layers": [{"type": "linear", "out_features": 3}]}, r"layer 0 \(linear\): needs a flat input.*add a flatten"),
    ({"input": [3, 8, 8], "layers": [{"type": "conv1d", "out_channels": 3, "kernel_size": 3}]}, r"needs a 1D signal.*use conv2d"),
    ({"input": [3, 8, 8], "layers": [{"type": "flatten"}, {"type": "conv2d", "out_channels": 3, "kernel_size": 1}]},
     r"layer 1 \(conv2d\): needs .*flat vector"),
    ({"input": [3, 8, 8], "layers": [{"type": "relu", "slope": 2}]}, r"layer 0 \(relu\), slope: unknown field"),
    ({"input": [3, 8, 8], "layers": [{"type": "batchnorm", "eps": 0}]}, r"eps: must be greater than 0"),
    ({"input": [3, 8, 8], "layers": [{"type": "leaky_relu", "negative_slope": float("nan")}]}, r"negative_slope: must be finite"),
    ({"input": [3, 8, 8], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "bias": 1}]}, r"bias: must be true or false"),
    ({"input": [3, 8, 8], "layers": [{"type": "avgpool2d", "kernel_size": 3, "padding": 2}]}, r"padding 2 is more than half"),
    ({"input": [3, 8, 8], "layers": ["relu"]}, r"layer 0: must be an object"),
    ({"input": [0, 8, 8], "layers": []}, r"input"),
    ({"input": [3, 8, 8, 8], "layers": []}, r"input"),
    ({"input": [3, 8, 8], "layers": {}}, r"'layers' must be a list"),
])
def test_invalid_descriptions_name_layer_and_field(spec, pattern):
    with pytest.raises(NetworkError, match=pattern):
        Network.from_dict(spec)


def test_partial_build_keeps_the_valid_prefix():
    spec = {"input": [1, 16, 16], "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3}, {"type": "relu"},
        {"type": "conv2d", "out_channels": 4, "kernel_size": 99}, {"type": "relu"}]}
    net = Network.from_dict(spec, partial=True)
    assert len(net) == 2 and net.error.layer == 2 and net.error.field == "kernel_size"
    with pytest.raises(NetworkError):
        Network.from_dict(spec)


def test_memory_budget_refuses_huge_layers_before_allocating():
    spec = {"input": [3, 64, 64], "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 10**9}]}
    with pytest.raises(NetworkError, match=r"layer 1 \(linear\).*memory limit"):
        Network.from_dict(spec)
    spec = {"input": [3, 256, 256], "layers": [{"type": "conv2d", "out_channels": 100_000, "kernel_size": 3}]}
    with pytest.raises(NetworkError, match=r"layer 0 \(conv2d\).*memory limit"):
        Network.from_dict(spec)


def test_set_params_checks_shapes_and_values():
    net = Network.from_dict({"input": [2, 5, 5], "layers": [{"type": "conv2d", "out_channels": 3, "kernel_size": 3}]})
    with pytest.raises(NetworkError, match=r"layer 0 \(conv2d\), weight: expects shape \(3, 2, 3, 3\)"):
        net.set_params(0, weight=[[1.0]])
    with pytest.raises(NetworkError, match="no parameter 'gamma'"):
        net.set_params(0, gamma=[1.0])
    with pytest.raises(NetworkError, match="NaN"):
        net.set_params(0, bias=[0.0, float("nan"), 0.0])
    before = net.layer_keys()
    net.set_params(0, bias=[1, 2, 3])
    assert (net.params(0)["bias"] == [1, 2, 3]).all()
    assert net.layer_keys() != before
    with pytest.raises(ValueError):
        net.params(0)["bias"][0] = 5  # read-only views: the only way in is set_params


def test_parameters_are_made_on_first_use_and_deterministic():
    """Building (e.g. on the GUI thread for every edit) allocates no weights; they are
    made when first needed, with the same values whenever that is."""
    import tracemalloc

    spec = {"input": [4, 64, 64], "layers": [{"type": "flatten"}, {"type": "linear", "out_features": 500}]}
    tracemalloc.start()
    net = Network.from_dict(spec, seed=3)
    build_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    weight_bytes = 500 * 4 * 64 * 64 * 4
    assert build_peak < weight_bytes / 20
    assert net.estimate_bytes() >= weight_bytes  # the estimate still counts them
    w = net.params(1)["weight"]
    assert w.shape == (500, 4 * 64 * 64) and abs(w).max() <= 1 / math.sqrt(4 * 64 * 64)
    again = Network.from_dict(spec, seed=3)
    again.forward(np.zeros((4, 64, 64), np.float32))  # made by a forward pass this time
    assert (again.params(1)["weight"] == w).all()
    reused = Network.from_dict(dict(spec, layers=spec["layers"] + [{"type": "relu"}]), seed=3, reuse=net)
    assert (reused.params(1)["weight"] == w).all()


def test_initial_parameters_for_a_shape_seen_before_are_shared_while_a_network_holds_them():
    """A layer whose input shape changes and changes back (an avgpool's kernel before a
    linear layer) takes back the weights drawn the first time while an earlier network
    (the undo history) still holds them: the same arrays, not a second draw. Other seeds,
    positions or settings get their own; with no network left holding them, they are drawn
    again, with the same values."""
    import gc

    def spec(k, out=7):
        return {"input": [2, 16, 16], "layers": [{"type": "avgpool2d", "kernel_size": k}, {"type": "flatten"},
                                                   {"type": "linear", "out_features": out}]}

    a = Network.from_dict(spec(2), seed=5)
    w = a.params(2)["weight"]
    b = Network.from_dict(spec(1), seed=5, reuse=a)  # new input size: new weights
    assert b.params(2)["weight"].shape == (7, 512)
    c = Network.from_dict(spec(2), seed=5, reuse=b)  # back: a's weights
    assert np.shares_memory(c.params(2)["weight"], w)
    assert c.layer_params(2).version != a.layer_params(2).version  # caches still see a new layer
    assert not np.shares_memory(Network.from_dict(spec(2), seed=6).params(2)["weight"], w)
    other = Network.from_dict(spec(2, out=8), seed=5).params(2)["weight"]
    assert other.shape == (8, 128) and not np.shares_memory(other, w)
    values = w.copy()
    del a, b, c, w
    gc.collect()
    again = Network.from_dict(spec(2), seed=5).params(2)["weight"]
    np.testing.assert_array_equal(again, values)
