"""The microscope panels (pytest-qt, offscreen): a click on a unit fills the
Computation panel with the core's explanation, the arrow keys walk it; top
patches, preferred input and the class saliency show the core's results."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMainWindow, QSplitter

from cnnplay.app.compute import ComputeWorker
from cnnplay.app.controller import ComputeController
from cnnplay.app.microscope import ComputationPanel, ExcitesPanel
from cnnplay.app.microscope.excites import NO_DATASET
from cnnplay.app.views import MapsPanel
from cnnplay.core.microscope import explain, fmt, top_patches
from cnnplay.core.session import Session
from cnnplay.datasets import Dataset
from test_views_panel import click_unit

SPEC = {"layers": [
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1, "dilation": 2}, {"type": "batchnorm"},
    {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
    {"type": "flatten"}, {"type": "linear", "out_features": 3}]}

made = []


@pytest.fixture(autouse=True)
def _teardown():
    yield
    for win, panel, worker in made:
        panel.detach()
        win.close()
        win.deleteLater()
        worker.shutdown()
    made.clear()
    QApplication.processEvents()


@pytest.fixture(autouse=True, scope="module")
def _collect_after_the_module():
    """The panels' Python cycles go while Qt is alive (not at interpreter exit): one
    full collection after the module, not one per test (0.3-0.6 s each late in a run)."""
    yield
    gc.collect()


def make(qtbot):
    x = np.random.default_rng(3).random((2, 12, 14), dtype=np.float32)
    session = Session(SPEC, x, {"name": "noise"})
    worker = ComputeWorker(synchronous=True)
    controller = ComputeController(session, worker)
    maps = MapsPanel(session, controller)
    comp = ComputationPanel(session, controller)
    exc = ExcitesPanel(session, controller, maps.input_view)
    split = QSplitter()
    for w in (maps, comp, exc):
        split.addWidget(w)
    win = QMainWindow()
    win.setCentralWidget(split)
    win.resize(1500, 900)
    qtbot.addWidget(win)
    made.append((win, maps, worker))
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()
    qtbot.waitUntil(win.isActiveWindow, timeout=2000)
    return session, controller, maps, comp, exc


def test_click_fills_the_computation_panel_and_arrow_keys_walk_it(qtbot):
    session, controller, maps, comp, exc = make(qtbot)
    assert comp.explanation is None and "Click a unit" in comp.status.text()
    click_unit(qtbot, maps.cards[0], (2, 3, 4))
    assert session.selected_unit == (0, (2, 3, 4))
    e = comp.explanation
    want = explain(session.network, session.input_array, controller.forward.outputs, 0, (2, 3, 4))
    assert (e.layer, e.unit, e.value) == (want.layer, want.unit, want.value)
    assert [s.layer for s in e.steps] == [0, 1, 2]  # conv -> batch norm -> relu
    views = comp.step_views
    assert len(views) == 3 and views[0].property("selected") == "true"
    # the conv step: one row per input channel: window (span 5x5 with holes), kernel, products
    win, ker, prod = views[0].grids[0]
    ch = want.steps[0].channels[0]
    np.testing.assert_array_equal(win.values, ch.window.region)
    np.testing.assert_array_equal(win.holes, ~ch.window.taps)
    np.testing.assert_array_equal(ker.values, ch.kernel)
    np.testing.assert_array_equal(prod.values, ch.products)
    assert len(views[0].grids) == 2  # two input channels
    assert fmt(e.value) in comp.title.text()
    # the arrow keys step the unit (MapsPanel) and the panel follows
    qtbot.keyClick(maps, Qt.Key_Right)
    assert session.selected_unit == (0, (2, 3, 5))
    assert comp.explanation.unit == (2, 3, 5)
    np.testing.assert_array_equal(comp.step_views[0].grids[0][0].values,
                                  explain(session.network, session.input_array, controller.forward.outputs,
                                          0, (2, 3, 5)).steps[0].channels[0].window.region)
    qtbot.keyClick(maps, Qt.Key_Down)
    assert comp.explanation.unit == (2, 4, 5)
    # a pooling unit: the winner is outlined
    click_unit(qtbot, maps.cards[3], (1, 2, 3))
    step = comp.explanation.steps[0]
    assert step.kind == "pool"
    ((grid,),) = comp.step_views[0].grids
    assert grid.highlight.sum() == 1 and grid.values[grid.highlight][0] == step.value
    # larger numbers for a projector
    size = comp.step_views[0].grids[0][0].font_.pixelSize()
    comp.set_scale(comp.scale * 1.5)
    assert comp.step_views[0].grids[0][0].font_.pixelSize() > size
    qtbot.keyClick(maps, Qt.Key_Escape)
    assert comp.explanation is None and "Click a unit" in comp.status.text()


def test_top_patches_preferred_input_and_saliency(qtbot, tmp_path):
    session, controller, maps, comp, exc = make(qtbot)
    click_unit(qtbot, maps.cards[2], (1, 4, 6))
    qtbot.waitUntil(lambda: exc.preferred is not None, timeout=30000)  # after the debounce
    assert NO_DATASET[:30] in exc.patch_note.text()
    assert exc.tile_widgets == []
    # the preferred input is computed for the selected unit (through the value before the ReLU)
    p = exc.preferred[1]
    assert (p.layer, p.unit, p.objective_layer) == (2, (1, 4, 6), 1)
    assert p.value > p.start_value
    assert exc.save_png(str(tmp_path / "pref"))
    assert (tmp_path / "pref.png").stat().st_size > 0
    # attach a data set: the nine best samples of the channel
    rng = np.random.default_rng(0)
    ds = Dataset(rng.random((30, 2, 12, 14), dtype=np.float32), np.arange(30) % 3, ["a", "b", "c"], name="tiny")
    session.set_dataset(ds)
    qtbot.waitUntil(lambda: exc.patches is not None, timeout=30000)
    want = top_patches(session.network, ds, 2, 1, k=9)
    got = exc.patches[1]
    assert [q.sample for q in got] == [q.sample for q in want]
    assert len(exc.tile_widgets) == 9
    first_caption = exc.tile_widgets[0].findChildren(type(exc.patch_note))[1].text()
    assert fmt(want[0].value) in first_caption and ["a", "b", "c"][want[0].label] in first_caption
    # cached: walking inside the channel computes nothing new
    n = len(exc.patch_cache)
    qtbot.keyClick(maps, Qt.Key_Left)
    qtbot.wait(exc.debounce.interval() + 50)
    assert exc.patches[1] is got and len(exc.patch_cache) == n
    # why this class: the saliency of the predicted class, drawn over the input and labelled
    assert exc.sal_box.isEnabled()
    exc.sal_box.setChecked(True)
    scores = controller.forward.outputs[-1]
    assert exc.saliency is not None and exc.saliency[1].class_index == int(np.argmax(scores))
    np.testing.assert_array_equal(exc.overlay.image.image, exc.saliency[1].map)
    assert exc.overlay.image.isVisible() and "saliency: why" in exc.overlay.label.textItem.toPlainText()
    # short, so it fits on a small input image (it was cut off: 'saliency: why "square" (clas');
    # the note under the checkbox says the rest
    text = exc.overlay.label.textItem.toPlainText()
    assert "(class" not in text and len(text) <= 24 and "(class" in exc.sal_note.text()
    # a clicked class bar: its saliency
    other = (int(np.argmax(scores)) + 1) % 3
    session.select_unit(5, (other,))
    assert exc.saliency[1].class_index == other and "clicked" in exc.sal_note.text()
    assert f"\u201c{'abc'[other]}\u201d" in exc.sal_note.text()  # the data set's class names
    exc.sal_box.setChecked(False)
    assert not exc.overlay.image.isVisible()


def test_in_the_window_the_tabs_wait_then_follow_the_selection(qtbot, home):
    """The two docks sit behind the Training results tab and compute nothing there; a click on
    the Computation tab fills it for the selected unit, through the real worker thread."""
    from PySide6.QtWidgets import QTabBar

    from cnnplay.app.main import create_window
    x = np.random.default_rng(0).random((1, 20, 20), dtype=np.float32)
    w = create_window(session=Session({"input": [1, 20, 20], "layers": SPEC["layers"]}, x))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    try:
        assert set(w.microscope_docks) == {"Computation", "What excites it"}
        qtbot.waitUntil(w.controller.forward_is_current, timeout=30000)
        w.session.select_unit(2, (1, 5, 7))
        qtbot.wait(300)
        assert w.computation_panel.explanation is None and w.computation_panel.runner.pending is None
        bar = next(b for b in w.findChildren(QTabBar)
                   if "Computation" in [b.tabText(i) for i in range(b.count())])
        tab = [bar.tabText(i) for i in range(bar.count())].index("Computation")
        qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(tab).center())
        qtbot.waitUntil(lambda: w.computation_panel.explanation is not None, timeout=30000)
        e = w.computation_panel.explanation
        assert (e.layer, e.unit) == (2, (1, 5, 7)) and e.value == float(w.controller.forward.outputs[2][1, 5, 7])
        w.session.select_unit(2, (1, 5, 8))
        qtbot.waitUntil(lambda: w.computation_panel.explanation.unit == (1, 5, 8), timeout=30000)
    finally:
        w.close()
