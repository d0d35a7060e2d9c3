"""The rough edges a new user hit (issue 16), each driven through the real window
offscreen: keys, clicks and the widgets' own signals; asserts on the model and the views."""

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QFontMetrics, QWheelEvent
from PySide6.QtWidgets import (QAbstractButton, QAbstractSpinBox, QApplication, QComboBox, QLineEdit, QSlider,
                               QTabBar)

from cnnplay import Network
from cnnplay.app.main import create_window
from cnnplay.core.errors import NetworkError
from cnnplay.core.session import Session

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SPEC = {"input": [1, 32, 32], "layers": [
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "flatten"},
    {"type": "linear", "out_features": 3},
]}


def make_window(qtbot, spec=SPEC, size=(1536, 940)):
    x = np.random.default_rng(0).random(tuple(spec["input"]), dtype=np.float32)
    session = Session(spec, x, {"kind": "image", "sample": "camera.png", "mode": "gray", "max_side": 32})
    w = create_window(session=session, synchronous=True)
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(w.isActiveWindow, timeout=3000)
    return w


def select_row(qtbot, w, row):
    view = w.stack.view
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=view.visualRect(view.model().index(row)).center())
    assert w.session.selected_layer == row


def show_dock(qtbot, w, title):
    dock = w.concept_docks[title]
    dock.show()
    dock.raise_()
    qtbot.waitUntil(lambda: not dock.widget().visibleRegion().isEmpty())
    return w.concept_panels[title]


def test_ctrl_z_after_an_inspector_edit_undoes_it_where_the_focus_is(qtbot, home):
    w = make_window(qtbot)
    select_row(qtbot, w, 0)
    spin = w.inspector.editors["kernel_size"].spins[0]
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus)
    spin.selectAll()
    qtbot.keyClicks(spin, "5")
    qtbot.keyClick(spin, Qt.Key_Return)
    assert w.session.layers[0]["kernel_size"] == 5
    assert QApplication.focusWidget() in (spin, spin.findChild(QLineEdit))
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key_Z, Qt.ControlModifier)
    assert w.session.layers[0]["kernel_size"] == 3  # undone, the focus still in the box
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
    assert w.session.layers[0]["kernel_size"] == 5  # and redone
    # while typing, Ctrl+Z belongs to the field: the network's undo stack does not move
    spin.selectAll()
    qtbot.keyClicks(spin, "7")
    index = w.undo_stack.index()
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key_Z, Qt.ControlModifier)
    assert w.undo_stack.index() == index


def test_file_new_clears_the_example_banner(qtbot, home):
    from cnnplay.app.examples import example_paths
    w = make_window(qtbot)
    assert w.open_example(next(p for p in example_paths() if p.stem == "edge_detector"))
    assert w.banner.isVisible() and "Edge detector" in w.banner.label.text()
    w.new_action.trigger()
    assert not w.banner.isVisible() and w.session.layers == []


def test_the_status_bar_speaks_plainly_about_an_invalid_first_layer(qtbot, home):
    spec = dict(SPEC, layers=[{"type": "conv2d", "out_channels": 4, "kernel_size": 99}] + SPEC["layers"][1:])
    w = make_window(qtbot, spec)
    text = w.error_label.text()
    assert text.startswith("The first layer needs a fix: kernel size:") and "The 4 layers after it wait." in text
    assert "-1" not in w.stack.totals.text() and "The first layer needs a fix" in w.stack.totals.text()
    w.editor.update_layer(0, kernel_size=3)
    qtbot.waitUntil(lambda: w.controller.forward_is_current())
    assert w.time_label.text().startswith("Updated layers 0\u20134 in ")


def test_shift_tab_axis_labels_explanation_and_slider_values(qtbot, home):
    spec = {"input": [1, 32, 32], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1},
                                              {"type": "relu"}] * 10}
    w = make_window(qtbot, spec, size=(1366, 768))
    panel = show_dock(qtbot, w, "Shift")
    qtbot.waitUntil(lambda: panel.result is not None, timeout=20000)
    ticks = panel.plot.getPlotItem().getAxis("bottom")._tickLevels[0]
    labels = [t[1] for t in ticks]
    assert all("\n" not in s for s in labels)
    assert panel.plot.width() / len(labels) >= 20  # labels never closer than 20 px
    area = w.concept_docks["Shift"].widget()
    assert not area.horizontalScrollBar().isVisible()
    assert panel.width() <= area.viewport().width()
    panel.sliders["dx"].setValue(3)
    label = panel.value_labels["dx"]
    assert label.text() == "+3 px" and label.isVisible()
    assert label.width() >= label.fontMetrics().horizontalAdvance(label.text())  # the whole value shows


def test_kernels_tab_numbers_fit_and_the_preset_box_says_what_the_kernel_is(qtbot, home):
    spec = {"input": [1, 32, 32], "layers": [{"type": "conv2d", "out_channels": 2, "kernel_size": 7, "padding": 3}]}
    w = make_window(qtbot, spec, size=(1920, 1080))
    select_row(qtbot, w, 0)
    panel = show_dock(qtbot, w, "Kernels")
    grid = panel.grid
    k = w.session.network.params(0)["weight"][0, 0]
    for r in range(7):
        for c in range(7):
            item = grid.item(r, c)
            text = item.text()
            assert "\u2026" not in text and "..." not in text
            assert QFontMetrics(item.font()).horizontalAdvance(text) <= grid.columnWidth(c)
            assert abs(float(text) - k[r, c]) <= 0.05 * abs(k[r, c]) + 1e-3
    assert panel.preset_box.currentText().startswith("custom")  # random initial weights
    assert not panel.apply_button.isEnabled()
    sobel = np.zeros((2, 1, 7, 7), np.float32)
    from cnnplay.core.concepts.presets import make_kernel
    sobel[0, 0] = make_kernel("sobel_x", (7, 7))
    w.editor.edit("Sobel", lambda s: s.set_layer_params(0, weight=sobel))
    assert panel.preset_box.currentData() == "sobel_x"
    # choosing Gaussian shows its sigma row without moving the Apply button
    before = panel.apply_button.mapTo(w, QPoint(0, 0))
    panel.preset_box.setCurrentIndex(panel.preset_box.findData("gaussian"))
    QApplication.processEvents()
    assert panel.option_boxes["sigma"].isVisible()
    assert panel.apply_button.mapTo(w, QPoint(0, 0)) == before


def test_an_invalid_layers_message_shows_whole_on_its_card(qtbot, home):
    spec = dict(SPEC, layers=SPEC["layers"][:1] + [{"type": "conv2d", "out_channels": 4, "kernel_size": 3,
                                                    "dilation": 40}])
    w = make_window(qtbot, spec, size=(1366, 768))
    card = w.central.cards[1]
    QApplication.processEvents()
    msg = card.message
    assert "invalid" in msg.text() and "dilation" in msg.text()
    assert msg.height() >= msg.heightForWidth(msg.width())


def test_length_and_channels_boxes_keep_their_height_beside_input_notes(qtbot, home):
    w = make_window(qtbot, size=(1366, 768))
    w.session.set_input_notes(["Downscaled from 4000x3000 to 256x192 (area averaging); the alpha channel "
                               "was dropped; the image was converted to grayscale for this network."] * 3)
    w.resizeDocks([w.input_dock], [200], Qt.Vertical)
    QApplication.processEvents()
    for spin in (w.input_panel.length_spin, w.input_panel.channels_spin):
        assert spin.height() >= spin.sizeHint().height()


def test_the_empty_network_hints_wrap_inside_their_columns(qtbot, home):
    w = make_window(qtbot, size=(1366, 768))
    w.new_action.trigger()
    QApplication.processEvents()
    for label in (w.central.empty_label, w.stack.empty_hint):
        assert label.isVisible() and label.wordWrap()
        assert label.geometry().right() <= label.parentWidget().width()
        assert label.height() >= label.heightForWidth(label.width())


def test_the_wheel_over_the_rf_growth_chart_keeps_its_range_and_what_ifs_stay_inside(qtbot, home):
    w = make_window(qtbot, size=(1366, 768))
    panel = show_dock(qtbot, w, "RF growth")
    plot = panel.plots["r"]
    before = plot.getPlotItem().viewRange()
    pos = QPointF(plot.viewport().rect().center())
    for _ in range(5):
        ev = QWheelEvent(pos, plot.viewport().mapToGlobal(pos), QPoint(0, 0), QPoint(0, -120), Qt.NoButton,
                         Qt.NoModifier, Qt.NoScrollPhase, False)
        QApplication.sendEvent(plot.viewport(), ev)
    assert plot.getPlotItem().viewRange() == before
    panel.toggles["stride*2"].setChecked(True)
    panel.toggles["kernel+2"].setChecked(True)
    (x0, x1), (y0, y1) = plot.getPlotItem().viewRange()
    for curve in panel.curve_items["r"]:
        if curve.isVisible():
            xs, ys = curve.getData()
            assert x0 <= xs.min() and xs.max() <= x1 and y0 <= ys.min() and ys.max() <= y1


def test_default_network_in_examples_and_a_dilated_example_with_holes(qtbot, home):
    w = make_window(qtbot)
    titles = {a.text(): a for a in w.examples_menu.actions()}
    assert "Default network" in titles
    w.new_action.trigger()
    titles["Default network"].trigger()
    assert [layer["type"] for layer in w.session.layers][:2] == ["conv2d", "relu"] and len(w.session.layers) > 5
    titles["Dilated conv: holes"].trigger()
    net = w.session.network
    h, wd = net.output_shapes[0][1:]
    w.session.select_unit(0, (0, h // 2, wd // 2))
    qtbot.waitUntil(lambda: w.controller.field_is_current())
    field = net.receptive_field(0, (0, h // 2, wd // 2))
    (y0, y1), (x0, x1) = field.box
    assert field.mask.sum() == 9 and (y1 - y0) * (x1 - x0) == 81  # 9 pixels spread over a 9x9 box
    iv = w.central.input_view.image_view
    np.testing.assert_array_equal(iv.tint.covered(iv.shape), field.mask)
    assert int(iv.tint.covered(iv.shape).sum()) == 9


def test_padding_same_in_the_inspector_keeps_the_map_size(qtbot, home):
    w = make_window(qtbot)
    select_row(qtbot, w, 0)
    size = w.inspector.editors["padding"]
    qtbot.waitUntil(size.same.isVisible)
    qtbot.mouseClick(size.same, Qt.LeftButton)
    assert w.session.layers[0]["padding"] == "same"
    assert not size.spins[0].isEnabled()
    kernel = w.inspector.editors["kernel_size"].spins[0]
    kernel.setValue(7)
    assert w.session.network.output_shapes[0] == (4, 32, 32)
    assert size.spins[0].value() == 3  # the padding it stands for
    assert "same" in w.session.network.summaries[0]
    w.inspector.editors["stride"].spins[0].setValue(2)
    assert w.session.error is not None and "stride 1" in w.session.error.reason
    assert "stride 1" in w.inspector.error.text()


def test_help_lists_the_keyboard_shortcuts(qtbot, home):
    w = make_window(qtbot)
    help_menu = next(a.menu() for a in w.menuBar().actions() if a.text() == "&Help")
    act = next(a for a in help_menu.actions() if "Keyboard shortcuts" in a.text())
    act.trigger()
    text = w.shortcuts_box.text()
    for keys in ("Ctrl+Z", "Ctrl+Shift+Z", "Ctrl+=", "Arrow keys", "Esc", "Ctrl+D"):
        assert keys in text


INTERNAL = ("qt_", "qt_spinbox_lineedit")


def test_every_control_has_a_tooltip(qtbot, home):
    w = make_window(qtbot)
    select_row(qtbot, w, 0)
    for title in w.concept_docks:
        show_dock(qtbot, w, title)
    missing = []
    kinds = (QAbstractButton, QComboBox, QAbstractSpinBox, QSlider, QLineEdit)
    for widget in w.findChildren(QWidget_):
        if not isinstance(widget, kinds) or widget.objectName().startswith(INTERNAL):
            continue
        if isinstance(widget, QLineEdit) and isinstance(widget.parentWidget(), (QAbstractSpinBox, QComboBox)):
            continue  # the editor inside a box: the box has the tip
        if isinstance(widget.parentWidget(), QTabBar) or type(widget).__name__ in ("QDockWidgetTitleButton",):
            continue
        if not widget.toolTip().strip():
            missing.append(f"{type(widget).__name__} {widget.objectName()!r} {getattr(widget, 'text', lambda: '')()!r}")
    assert not missing, missing


from PySide6.QtWidgets import QWidget as QWidget_  # noqa: E402


def test_padding_same_in_the_core_follows_pytorch():
    rng = np.random.default_rng(3)
    for k, d in ((1, 1), (3, 1), (5, 1), (3, 2), (3, 3), (5, 2)):
        net = Network.from_dict({"input": [2, 9, 11], "layers": [
            {"type": "conv2d", "out_channels": 3, "kernel_size": k, "dilation": d, "padding": "same"}]})
        assert net.output_shapes[0] == (3, 9, 11)
        assert net.to_dict()["layers"][0]["padding"] == "same"
        x = rng.standard_normal((2, 9, 11)).astype(np.float32)
        wgt, b = net.params(0)["weight"].astype(np.float64), net.params(0)["bias"].astype(np.float64)
        p = d * (k - 1) // 2
        xp = np.pad(x.astype(np.float64), ((0, 0), (p, p), (p, p)))
        ref = np.zeros((3, 9, 11))
        for o in range(3):
            for y in range(9):
                for xx in range(11):
                    acc = b[o]
                    for c in range(2):
                        for i in range(k):
                            for j in range(k):
                                acc += wgt[o, c, i, j] * xp[c, y + i * d, xx + j * d]
                    ref[o, y, xx] = acc
        np.testing.assert_allclose(net.forward(x)[0], ref, rtol=1e-4, atol=1e-4)
    for layer, words in (({"kernel_size": 4}, "1 px on one side and 2 on the other"),
                         ({"kernel_size": 3, "stride": 2}, "only at stride 1"),
                         ({"kernel_size": 3, "padding": "valid"}, "or 'same'")):
        spec = {"input": [1, 9, 9], "layers": [dict({"type": "conv2d", "out_channels": 1, "padding": "same"},
                                                    **layer)]}
        with pytest.raises(NetworkError, match="padding") as e:
            Network.from_dict(spec)
        assert words in str(e.value)
    with pytest.raises(NetworkError, match="padding"):
        Network.from_dict({"input": [1, 9, 9], "layers": [{"type": "maxpool2d", "kernel_size": 3,
                                                             "padding": "same"}]})
