"""Issue 9 GUI: each concept control driven once; assertions on what the session then holds."""

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from cnnplay.app.commands import Editor  # noqa: E402
from cnnplay.app.compute import ComputeWorker  # noqa: E402
from cnnplay.app.controller import ComputeController  # noqa: E402
from cnnplay.app.concepts.blocks_panel import BlocksPanel  # noqa: E402
from cnnplay.app.concepts.invariance_view import InvarianceView  # noqa: E402
from cnnplay.app.concepts.presets_panel import KernelPresetPanel, WeightSharingBox  # noqa: E402
from cnnplay.app.concepts.rf_growth_view import GrowthView  # noqa: E402
from cnnplay.core.concepts import growth_series, make_kernel  # noqa: E402
from cnnplay.core.session import Session  # noqa: E402

SPEC = {"input": [1, 16, 16], "layers": [
    {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
    {"type": "batchnorm"},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 4},
]}


@pytest.fixture
def env(qtbot):
    x = np.zeros((1, 16, 16), np.float32)
    x[0, [1, 5, 9, 13], [1, 9, 5, 13]] = 3.0
    x += np.linspace(0, 1, 16, dtype=np.float32)[None, None, :]
    session = Session(SPEC, x)
    worker = ComputeWorker(synchronous=True)
    controller = ComputeController(session, worker)
    editor = Editor(session)
    return session, controller, editor


def test_kernel_presets_and_hand_editing(qtbot, env):
    session, controller, editor = env
    panel = KernelPresetPanel(session, editor)
    qtbot.addWidget(panel)
    panel.show()  # panels work while visible (hidden ones defer)
    assert not panel.apply_button.isEnabled()
    session.select_layer(0)
    assert panel.grid.rowCount() == 3
    assert panel.preset_box.currentData() is None and not panel.apply_button.isEnabled()  # random: "custom"
    panel.preset_box.setCurrentIndex(panel.preset_box.findData("sobel_x"))
    assert panel.apply_button.isEnabled()
    panel.out_box.setValue(1)
    panel.scope_box.setCurrentIndex(panel.scope_box.findData("pair"))
    before = session.network.params(0)["weight"].copy()
    qtbot.mouseClick(panel.apply_button, Qt.LeftButton)
    w = session.network.params(0)["weight"]
    np.testing.assert_array_equal(w[1, 0], make_kernel("sobel_x", (3, 3)))
    np.testing.assert_array_equal(w[0], before[0])
    assert session.network.params(0)["bias"][1] == 0
    assert panel.grid.item(0, 0).text() == "-1"
    # hand editing one number
    panel.grid.item(1, 1).setText("2.5")
    assert session.network.params(0)["weight"][1, 0, 1, 1] == 2.5
    # both edits are undoable
    assert editor.stack.count() == 2
    editor.stack.undo()
    editor.stack.undo()
    np.testing.assert_array_equal(session.network.params(0)["weight"], before)
    # a Gaussian with its sigma option on all pairs
    panel.preset_box.setCurrentIndex(panel.preset_box.findData("gaussian"))
    assert panel.option_boxes["sigma"].isVisibleTo(panel)
    panel.option_boxes["sigma"].setValue(0.7)
    panel.scope_box.setCurrentIndex(panel.scope_box.findData("all"))
    panel.apply_preset()
    np.testing.assert_allclose(session.network.params(0)["weight"][0, 0], make_kernel("gaussian", (3, 3), sigma=0.7))


def test_kernel_panel_1d(qtbot):
    session = Session({"input": [1, 30], "layers": [{"type": "conv1d", "out_channels": 1, "kernel_size": 5}]},
                      np.zeros((1, 30), np.float32))
    editor = Editor(session)
    panel = KernelPresetPanel(session, editor)
    qtbot.addWidget(panel)
    panel.show()  # panels work while visible (hidden ones defer)
    session.select_layer(0)
    assert panel.grid.rowCount() == 1 and panel.grid.columnCount() == 5
    panel.preset_box.setCurrentIndex(panel.preset_box.findData("derivative"))
    panel.apply_preset()
    assert session.network.params(0)["weight"][0, 0].tolist() == [-1, -2, 0, 2, 1]


def test_weight_sharing_box(qtbot, env):
    session, _, _ = env
    box = WeightSharingBox(session)
    qtbot.addWidget(box)
    box.show()  # panels work while visible (hidden ones defer)
    text = box.text.text()
    assert "3 x 3 x 1 x 2 + 2 = 20" in text
    assert f"{256 * 512 + 512:,}" in text


def test_growth_view_what_if_and_hover(qtbot, env):
    session, _, _ = env
    view = GrowthView(session)
    qtbot.addWidget(view)
    view.show()  # panels work while visible (hidden ones defer)
    assert view.series[0].r == growth_series(session.network).r
    view.layer_box.setCurrentIndex(view.layer_box.findData(3))
    view.toggles["stride*2"].setChecked(True)
    assert view.series[-1].label.startswith("stride x2") and view.series[-1].error is None
    view.toggles["dilation*2"].setChecked(True)
    assert "no dilation" in view.series[-1].error and view.message.isVisibleTo(view)
    view.highlight(3)
    assert session.view["highlight_layer"] == 3
    view.highlight(None)
    assert session.view["highlight_layer"] is None
    # the chart's hover handler takes the layer from the point's data
    sc = view.scatters[0]
    pts = sc.points()
    view._on_hover(sc, [pts[2]])
    assert session.view["highlight_layer"] == 1


def test_invariance_view(qtbot, env):
    session, controller, _ = env
    view = InvarianceView(session, controller)
    qtbot.addWidget(view)
    view.show()  # panels work while visible (hidden ones defer)
    xs, ys = view.values()
    assert xs == [0, 1, 2, 3] and all(v == 0 for v in ys)  # zero shift
    view.sliders["dx"].setValue(1)
    view.sliders["dy"].setValue(1)
    changes = view.result[1]
    assert changes[0].relative_change > 0.1  # conv moves with the image
    assert changes[3].relative_change < changes[0].relative_change  # pooling much less
    view.mode_box.setCurrentIndex(1)
    assert view.result[0].fn is view.pending.fn
    view.measure_box.setCurrentIndex(1)
    xs, ys = view.values()
    assert len(xs) == 4 and ys[3] > ys[0]


def test_blocks_and_calibration(qtbot, env):
    session, controller, editor = env
    panel = BlocksPanel(session, editor, controller)
    qtbot.addWidget(panel)
    panel.show()  # panels work while visible (hidden ones defer)
    assert not panel.calib_button.isEnabled()
    session.select_layer(1)
    assert panel.calib_button.isEnabled()
    qtbot.mouseClick(panel.calib_button, Qt.LeftButton)
    y = session.network.forward(session.input_array)[1].reshape(2, -1)
    np.testing.assert_allclose(y.mean(1), 0, atol=1e-4)
    assert editor.stack.count() == 1
    session.select_layer(3)
    panel.channels.setValue(5)
    qtbot.mouseClick(panel.block_button, Qt.LeftButton)
    types = [l["type"] for l in session.layers]
    assert types == ["conv2d", "batchnorm", "relu", "maxpool2d", "conv2d", "batchnorm", "relu"]
    assert session.layers[4]["out_channels"] == 5 and session.error is None
    editor.stack.undo()
    assert len(session.layers) == 4


def test_field_highlight_overlay(qtbot, env):
    import pyqtgraph as pg
    from cnnplay.app.concepts.highlight import FieldHighlight
    session, _, _ = env
    w = pg.PlotWidget()
    qtbot.addWidget(w)
    h = FieldHighlight(session, w.getPlotItem().getViewBox(), None)
    session.set_view(highlight_layer=3)
    assert h.rect.isVisible() and h.field.box == session.network.receptive_field(3, (0, 2, 2)).box
    session.set_view(highlight_layer=None)
    assert not h.rect.isVisible()


def test_views_on_a_1d_network(qtbot):
    spec = {"input": [1, 64], "layers": [
        {"type": "conv1d", "out_channels": 2, "kernel_size": 3, "padding": 1},
        {"type": "maxpool1d", "kernel_size": 4}]}
    x = np.zeros((1, 64), np.float32)
    x[0, ::8] = 1.0
    session = Session(spec, x)
    controller = ComputeController(session, ComputeWorker(synchronous=True))
    inv = InvarianceView(session, controller)
    growth = GrowthView(session)
    sharing = WeightSharingBox(session)
    for w in (inv, growth, sharing):
        qtbot.addWidget(w)
        w.show()
    inv.sliders["dx"].setValue(1)
    assert not inv.sliders["dy"].isEnabled()
    assert inv.result[0].network is session.network and len(inv.result[1]) == 2
    assert growth.series[0].r == [(1,), (3,), (6,)] and growth.axis_box.count() == 1
    assert "3 x 1 x 2 + 2 = 8" in sharing.text.text()
    from cnnplay.app.concepts.highlight import FieldHighlight
    h = FieldHighlight(session, None, growth.plots["r"].getPlotItem())
    growth.highlight(1)
    assert h.span.isVisible() and tuple(h.span.getRegion()) == session.network.receptive_field(1, (0, 8)).box[0]


def test_hidden_panels_defer_their_work_until_shown(qtbot, env, monkeypatch):
    """A concept panel in a hidden tab costs nothing per edit: no chart rebuild,
    no shifted forward passes on the worker; it catches up when shown."""
    session, controller, _ = env
    growth, inv = GrowthView(session), InvarianceView(session, controller)
    for w in (growth, inv):
        qtbot.addWidget(w)
    submitted = []
    monkeypatch.setattr(controller.worker, "submit", submitted.append)
    tasks = lambda: [r for r in submitted if r.kind not in ("forward", "field")]  # noqa: E731
    session.update_layer(0, out_channels=3)
    session.update_layer(0, out_channels=4)
    assert tasks() == [] and growth.series == []
    growth.show()
    inv.show()
    assert growth.series and growth.series[0].layers
    assert len(tasks()) == 1 and tasks()[0].name == "shift invariance"


def test_calibrate_all_batch_norms_in_order(qtbot, env):
    """Each batch norm is calibrated on the maps of the ones before it, already calibrated:
    afterwards every batch norm's output has per-channel mean 0 and variance 1 on this image."""
    session, controller, editor = env
    session.insert_layer(4, {"type": "conv2d", "out_channels": 3, "kernel_size": 3})
    session.insert_layer(5, {"type": "batchnorm"})
    panel = BlocksPanel(session, editor, controller)
    qtbot.addWidget(panel)
    panel.show()
    assert panel.calib_all_button.isEnabled()
    qtbot.mouseClick(panel.calib_all_button, Qt.LeftButton)
    assert editor.stack.count() == 1  # one undo step for both
    outs = session.network.forward(session.input_array)
    for i in (1, 5):
        assert session.network.layer_types[i].name == "batchnorm"
        y = outs[i].astype(np.float64).reshape(outs[i].shape[0], -1)
        np.testing.assert_allclose(y.mean(1), 0, atol=1e-4)
        np.testing.assert_allclose(y.var(1), 1, rtol=1e-3)  # eps 1e-5 against variances of order 0.1-1
    editor.stack.undo()
    assert (session.network.params(5)["running_var"] == 1).all()


def test_cancel_tells_the_invariance_chart_and_resume_recomputes_it(qtbot, monkeypatch):
    """Cancel drops the chart's queued task: the chart says so (not "computing..."
    for ever), and computes again once Resume has completed the maps."""
    import threading
    import time

    from cnnplay import Network

    original = Network.layer_forward
    slow = threading.Event()
    slow.set()

    def layer_forward(net, i, x):
        if slow.is_set():
            time.sleep(0.15)  # a heavy layer
        return original(net, i, x)

    monkeypatch.setattr(Network, "layer_forward", layer_forward)
    x = np.random.default_rng(0).random((1, 16, 16), dtype=np.float32)
    session = Session(SPEC, x)
    worker = ComputeWorker()
    controller = ComputeController(session, worker)
    view = InvarianceView(session, controller)
    qtbot.addWidget(view)
    try:
        view.show()  # queues its task behind the forward pass that is running
        assert "computing" in view.status.text()
        qtbot.waitUntil(lambda: controller.running is not None, timeout=5000)
        with qtbot.waitSignal(worker.task_cancelled, timeout=5000):
            assert controller.cancel()
        assert "Cancelled" in view.status.text() and view.result is None
        slow.clear()
        controller.resume()
        qtbot.waitUntil(lambda: view.result is not None, timeout=10000)
        assert view.result[0].network is session.network and "computed in" in view.status.text()
    finally:
        worker.shutdown()
