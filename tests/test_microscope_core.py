"""Top patches, preferred input and class saliency (core/microscope): checked
against brute-force loops written here."""

from __future__ import annotations

import numpy as np
import pytest

from cnnplay import Network, NetworkError
from cnnplay.core.errors import Cancelled
from cnnplay.core.microscope import class_saliency, has_classes, preferred_input, top_patches
from cnnplay.core.microscope.preferred import blur

NET2D = {"input": [2, 14, 13], "layers": [
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 2, "dilation": 2}, {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 2, "padding": 1},
    {"type": "conv2d", "out_channels": 5, "kernel_size": 3, "stride": 2, "padding": 1}, {"type": "batchnorm"},
    {"type": "leaky_relu"}, {"type": "flatten"}, {"type": "linear", "out_features": 3}]}
NET1D = {"input": [2, 30], "layers": [
    {"type": "conv1d", "out_channels": 3, "kernel_size": 5, "padding": 3}, {"type": "relu"},
    {"type": "avgpool1d", "kernel_size": 2}, {"type": "conv1d", "out_channels": 4, "kernel_size": 3, "dilation": 2},
    {"type": "relu"}, {"type": "flatten"}, {"type": "linear", "out_features": 4}]}


def _data(net, n, seed=0):
    return np.random.default_rng(seed).random((n,) + tuple(net.input_shape), dtype=np.float32)


def _brute_top(net, xs, layer, channel, k):
    """Per sample a full forward pass; max over positions, first position of it."""
    rows = []
    for s, x in enumerate(xs):
        m = net.forward(x)[layer][channel]
        flat = np.asarray(m, np.float64).reshape(-1)
        best, where = -np.inf, 0
        for p, v in enumerate(flat):
            if v > best:
                best, where = v, p
        unit = (channel,) + (tuple(int(v) for v in np.unravel_index(where, m.shape)) if m.ndim else ())
        rows.append((-best, s, unit, best))
    rows.sort()
    return [(s, unit, best) for _, s, unit, best in rows[:k]]


def _table_box(net, row, unit):
    """The box from the analytic table (not receptive_field): a flat unit is the
    position it copies of the map that was flattened."""
    if row.kind == "spatial":
        return row.box(unit[1:])
    if row.kind == "global":
        return row.box(())
    flat = next(i for i, t in enumerate(net.layer_types) if t.name == "flatten")
    return row.box(np.unravel_index(unit[0], net.input_shape_of(flat))[1:])


def _brute_crop(x, box):
    size = tuple(b - a for a, b in box)
    crop = np.zeros((x.shape[0],) + size, np.float32)
    for idx in np.ndindex(*size):
        pos = tuple(a + i for (a, _), i in zip(box, idx))
        if all(0 <= p < n for p, n in zip(pos, x.shape[1:])):
            crop[(slice(None),) + idx] = x[(slice(None),) + pos]
    return crop


@pytest.mark.parametrize("spec", [NET2D, NET1D], ids=["2d", "1d"])
def test_top_patches_are_the_true_top_k_with_their_boxes(spec):
    net = Network.from_dict(spec, seed=4)
    xs = _data(net, 37)
    labels = np.arange(37) % 3
    table = net.receptive_field_table()

    class DS:  # a Dataset-like object (Contract 2: .x, .y)
        x, y = xs, labels

    for layer in range(len(net)):
        for channel in {0, net.output_shapes[layer][0] - 1}:
            progress = []
            got = top_patches(net, DS, layer, channel, k=9, batch_size=8,
                              progress=lambda d, n: progress.append((d, n)))
            want = _brute_top(net, xs, layer, channel, 9)
            assert [(p.sample, p.unit) for p in got] == [(s, u) for s, u, _ in want]
            np.testing.assert_allclose([p.value for p in got], [v for *_, v in want], rtol=1e-6, atol=1e-7)
            assert progress[-1] == (37, 37) and len(progress) == 5
            for p in got:
                assert p.label == labels[p.sample]
                assert p.box == _table_box(net, table[layer], p.unit)
                np.testing.assert_array_equal(p.crop, _brute_crop(xs[p.sample], p.box))
                assert p.inside.shape == p.crop.shape[1:]


def test_top_patches_cancel_and_bad_arguments():
    net = Network.from_dict(NET2D)
    xs = _data(net, 20)
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 4
    with pytest.raises(Cancelled):
        top_patches(net, xs, 3, 0, batch_size=4, should_stop=stop)
    with pytest.raises(NetworkError, match="no channel 5"):
        top_patches(net, xs, 3, 5)
    with pytest.raises(NetworkError, match="expects"):
        top_patches(net, xs[:, :1], 3, 0)


CASES = [(NET2D, 0, (1, 6, 6)), (NET2D, 2, (3, 3, 4)), (NET2D, 5, (2, 2, 1)), (NET2D, 7, (1,)),
         (NET1D, 1, (2, 10)), (NET1D, 4, (0, 5)), (NET1D, 6, (3,))]


@pytest.mark.parametrize("spec,layer,unit", CASES)
def test_gradient_ascent_raises_the_unit(spec, layer, unit):
    net = Network.from_dict(spec, seed=2)
    p = preferred_input(net, layer, unit, steps=48, seed=5)
    assert p.value > p.start_value
    q = len(p.history) // 4
    assert p.history[-q:].mean() > p.history[:q].mean()  # the trend goes up
    # the reported values are the network's own for the returned image
    outs = net.forward(p.image)
    assert p.value == pytest.approx(float(outs[p.objective_layer][unit]), rel=1e-6, abs=1e-7)
    assert p.unit_value == pytest.approx(float(outs[layer][unit]), rel=1e-6, abs=1e-7)
    assert p.image.min() >= 0.0 and p.image.max() <= 1.0
    assert p.box == net.receptive_field(layer, unit).box


def test_gradient_ascent_is_deterministic_for_a_seed():
    net = Network.from_dict(NET2D, seed=2)
    a = preferred_input(net, 3, (2, 2, 2), steps=20, seed=7)
    b = preferred_input(net, 3, (2, 2, 2), steps=20, seed=7)
    c = preferred_input(net, 3, (2, 2, 2), steps=20, seed=8)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.history, b.history)
    assert not np.array_equal(a.image, c.image)


def test_gradient_ascent_progress_cancel_and_relu_objective():
    net = Network.from_dict(NET2D, seed=2)
    seen = []
    p = preferred_input(net, 1, (0, 3, 3), steps=6, progress=lambda t, n: seen.append((t, n)))
    assert seen == [(t, 6) for t in range(1, 7)]
    assert p.objective_layer == 0  # a ReLU unit climbs through the conv value before it
    with pytest.raises(Cancelled):
        preferred_input(net, 3, (0, 1, 1), steps=50, should_stop=lambda: True)
    with pytest.raises(NetworkError, match="value_range"):
        preferred_input(net, 3, (0, 1, 1), value_range=(1, 1))


def test_blur_keeps_constants_and_smooths():
    x = np.zeros((1, 9, 9), np.float32)
    x[0, 4, 4] = 1.0
    y = blur(x, 1.0)
    assert y.sum() == pytest.approx(1.0, rel=1e-5)  # mass kept away from the borders
    assert y[0, 4, 4] < 1.0 and y[0, 4, 5] > 0 and y[0, 4, 4] > y[0, 4, 5]
    np.testing.assert_allclose(blur(np.full((2, 5, 3), 0.7, np.float32), 0.8), 0.7, rtol=1e-6)
    np.testing.assert_allclose(blur(np.full((2, 1, 7), 0.3, np.float32), 0.8), 0.3, rtol=1e-6)


def test_class_saliency_of_a_linear_classifier_is_its_weights():
    net = Network.from_dict({"input": [3, 5, 4], "layers": [{"type": "flatten"},
                                                             {"type": "linear", "out_features": 4}]}, seed=1)
    x = _data(net, 1)[0]
    assert has_classes(net)
    s = class_saliency(net, x)
    scores = net.forward(x)[-1]
    assert s.predicted == int(np.argmax(scores)) == s.class_index
    w = np.asarray(net.params(1)["weight"], np.float64)
    for k in range(4):
        ref = np.abs(w[k].reshape(3, 5, 4)).sum(axis=0)
        np.testing.assert_allclose(class_saliency(net, x, class_index=k).map, ref, rtol=1e-6)
    with pytest.raises(NetworkError, match="no class 4"):
        class_saliency(net, x, class_index=4)
    assert not has_classes(Network.from_dict({"input": [1, 4, 4], "layers": [{"type": "relu"}]}))
