"""Issue 19, item 8: API gaps found by fuzzing. Each gets a NetworkError with a message,
and the inspector offers only values the core accepts (limits from the core's fields)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnplay import Network, NetworkError
from cnnplay.core.fields import MAX_INT, FieldContext, check_value
from cnnplay.core.layers import LAYER_TYPES, MAX_SLOPE
from cnnplay.core.session import Session

SPEC = {"input": [1, 6, 6], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3},
                                       {"type": "leaky_relu"}, {"type": "flatten"}]}


def nested(depth: int):
    v = [0]
    for _ in range(depth):
        v = [v]
    return v


@pytest.fixture
def net():
    return Network.from_dict(SPEC)


@pytest.mark.parametrize("unit", [nested(5000), [nested(5000), 0, 0], (0, nested(3000), 1), {"a": nested(3000)}])
def test_a_deeply_nested_unit_is_a_network_error(net, unit):
    x = np.zeros((1, 6, 6), np.float32)
    for call in (lambda: net.receptive_field(1, unit), lambda: net.effective_receptive_field(x, 1, unit)):
        with pytest.raises(NetworkError) as info:
            call()
        assert "unit" in str(info.value) and len(str(info.value)) < 300


@pytest.mark.parametrize("layer", [nested(5000), "1", 1.0, None])
def test_a_strange_layer_index_is_a_network_error(net, layer):
    with pytest.raises(NetworkError):
        net.receptive_field(layer, (0, 0, 0))


def test_session_select_unit_refuses_nested_units(net):
    s = Session(SPEC, np.zeros((1, 6, 6), np.float32), {"kind": "image", "sample": "camera.png"})
    for unit in (nested(5000), [nested(5000)], ["a", 0, 0]):
        with pytest.raises(NetworkError):
            s.select_unit(1, unit)
    with pytest.raises(NetworkError):
        s.select_unit(nested(5000), (0, 0, 0))
    assert s.selected_unit is None


@pytest.mark.parametrize("slope", [1e300, -1e300, 1e4, -MAX_SLOPE * 1.0001, 1e39])
def test_an_extreme_negative_slope_is_refused_with_a_message(slope):
    with pytest.raises(NetworkError) as info:
        Network.from_dict({"input": [1, 4], "layers": [{"type": "leaky_relu", "negative_slope": slope}]})
    e = info.value
    assert (e.layer, e.field) == (0, "negative_slope") and "1000" in str(e)


@settings(max_examples=40, deadline=None)
@given(slope=st.floats(-MAX_SLOPE, MAX_SLOPE), scale=st.floats(0, 1e30))
def test_every_accepted_slope_keeps_outputs_finite(slope, scale):
    """The class: any slope the core accepts, on any input float32 holds below 1e30
    (far beyond images and signals), gives finite outputs, equal to the definition."""
    net = Network.from_dict({"input": [1, 5], "layers": [{"type": "leaky_relu", "negative_slope": slope}]})
    x = (np.array([[-1.0, -0.5, 0.0, 0.5, 1.0]]) * scale).astype(np.float32)
    y = net.forward(x)[-1]
    assert np.isfinite(y).all()
    ref = np.where(x.astype(np.float64) >= 0, x, x.astype(np.float64) * float(np.float32(slope)))  # as stored
    assert np.allclose(y, ref, rtol=1e-6, atol=1e-37)  # below float32's smallest normal number


def every_field():
    return [(t, f) for t in LAYER_TYPES.values() for f in t.fields]


@pytest.mark.parametrize("t, f", every_field(), ids=lambda v: getattr(v, "name", ""))
def test_every_field_accepts_its_bounds_and_refuses_just_beyond(t, f):
    """Field.bounds() is what check_value enforces: the GUI takes its limits from it."""
    lo, hi = f.bounds()
    ctx = FieldContext(0, t.name)
    dims = t.dims or 1
    if f.kind in ("int", "size"):
        assert check_value(f, hi, dims, ctx) in (hi, (hi,) * dims)
        assert hi <= MAX_INT
        with pytest.raises(NetworkError):
            check_value(f, hi + 1, dims, ctx)
        if lo > -MAX_INT:
            check_value(f, lo, dims, ctx)
            with pytest.raises(NetworkError):
                check_value(f, lo - 1, dims, ctx)
    elif f.kind == "float":
        for v in (lo, hi):
            if math.isfinite(v) and not (f.positive and v <= 0):
                assert check_value(f, v, dims, ctx) == v
        for v in (hi * 1.01 if hi > 0 else hi + 1, lo * 1.01 if lo < 0 else lo - 1):
            if math.isfinite(v):
                with pytest.raises(NetworkError):
                    check_value(f, v, dims, ctx)


def test_inspector_editors_offer_only_what_the_core_accepts(qtbot, home):
    from PySide6.QtGui import QValidator
    from PySide6.QtWidgets import QLineEdit

    from cnnplay.app.main import create_window
    spec = {"input": [1, 16, 16], "layers": [{"type": name} | _required(name) for name in LAYER_TYPES
                                             if name not in ("flatten", "linear") and "1d" not in name]}
    w = create_window(session=Session(spec, np.zeros((1, 16, 16), np.float32),
                                      {"kind": "image", "sample": "camera.png", "mode": "gray"}))
    qtbot.addWidget(w)
    checked = 0
    for i, layer in enumerate(spec["layers"]):
        w.session.select_layer(i)
        t = LAYER_TYPES[layer["type"]]
        for f in t.fields:
            editor = w.inspector.editors[f.name]
            lo, hi = f.bounds()
            if f.kind == "int":
                assert (editor.minimum(), editor.maximum()) == (lo, hi)
                checked += 1
            elif f.kind == "size":
                cfg = t.normalize(w.session.layers[i], i)
                for spin, (alo, ahi) in zip(editor.spins, t.field_bounds(cfg, f.name)):
                    assert (spin.minimum(), spin.maximum()) == (alo, ahi)
                    assert lo <= alo and ahi <= hi
                    checked += 1
            elif f.kind == "float":
                assert isinstance(editor, QLineEdit)
                val = editor.validator()
                for text in ("1e300", "-1e300", "nan", "inf"):
                    accepted = val.validate(text, 0)[0] == QValidator.State.Acceptable
                    if accepted:
                        value = float(text)
                        assert math.isfinite(value) and lo <= value <= hi and not (f.positive and value <= 0), \
                            (f.name, text)
                checked += 1
    assert checked >= 10
    # typing an out-of-range slope never puts it in the model ("1e3" on the way is fine)
    i = [layer["type"] for layer in spec["layers"]].index("leaky_relu")
    w.session.select_layer(i)
    box = w.inspector.editors["negative_slope"]
    box.setFocus()
    qtbot.keyClicks(box, "\b" * 10 + "1e300")
    slope = w.session.layers[i].get("negative_slope", 0.01)
    assert -MAX_SLOPE <= slope <= MAX_SLOPE and w.session.error is None


def _required(name):
    return {"conv2d": {"out_channels": 2, "kernel_size": 3}, "maxpool2d": {"kernel_size": 2},
            "avgpool2d": {"kernel_size": 2}}.get(name, {})


def test_pool_padding_editor_follows_the_kernel_as_the_core_does(qtbot, home):
    """A pool's padding may be at most half its kernel (the core's rule, in
    LayerType.field_bounds): the padding boxes never offer more, and follow the kernel."""
    from cnnplay.app.main import create_window
    spec = {"input": [1, 16, 16], "layers": [{"type": "maxpool2d", "kernel_size": [3, 5]}]}
    w = create_window(session=Session(spec, np.zeros((1, 16, 16), np.float32),
                                      {"kind": "image", "sample": "camera.png", "mode": "gray"}))
    qtbot.addWidget(w)
    w.session.select_layer(0)
    pad = w.inspector.editors["padding"]
    assert [sp.maximum() for sp in pad.spins] == [1, 2]
    w.editor.update_layer(0, kernel_size=7)
    assert [sp.maximum() for sp in pad.spins] == [3, 3]
    pad.spins[0].setValue(9)  # clamped by the box: the model never holds a refused padding
    assert all(p <= 3 for p in np.atleast_1d(w.session.layers[0].get("padding", 0)))
    assert w.session.error is None
    t = LAYER_TYPES["maxpool2d"]
    assert t.field_bounds({"kernel_size": (4, 9)}, "padding") == ((0, 2), (0, 4))
    assert t.field_bounds({"kernel_size": "junk"}, "padding") == (t.fields[2].bounds(),) * 2
