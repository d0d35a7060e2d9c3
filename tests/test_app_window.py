"""The window and the network builder, driven through the real widgets (offscreen).

Drags are real QDropEvents carrying the real MIME payloads, sent to the real
viewports (a simulated mouse cannot start a QDrag offscreen).
"""

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, QRect, Qt, QUrl
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QFontMetrics, QImage
from PySide6.QtWidgets import QApplication

from cnnplay.app.layer_stack import LAYER_MIME, ROW_MIME, _small_font, handle_drop, row_mime, session_rows
from cnnplay.app.main import create_window
from cnnplay.core.session import Session
from qt_events import EventRecorder

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SPEC = {"input": [1, 32, 32], "layers": [
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "flatten"},
    {"type": "linear", "out_features": 3},
]}


def small_session():
    x = np.random.default_rng(0).random((1, 32, 32), dtype=np.float32)
    return Session(SPEC, x, {"kind": "image", "sample": "camera.png", "mode": "gray", "max_side": 32})


@pytest.fixture
def window(qtbot, home):
    w = create_window(session=small_session())
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


def types(session):
    return [layer["type"] for layer in session.layers]


def row_texts(window):
    m = window.stack.view.model()
    return [m.data(m.index(i)) for i in range(m.rowCount())]


def drop_on(widget, mime, pos):
    """Enter, move and drop at `pos` (widget coordinates), as Qt delivers a real drag."""
    posf = QPointF(pos)
    enter = QDragEnterEvent(pos, Qt.DropAction.CopyAction | Qt.DropAction.MoveAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    drop = QDropEvent(posf, Qt.DropAction.CopyAction | Qt.DropAction.MoveAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)
    return enter.isAccepted(), drop.isAccepted()


def row_point(view, row, lower=False):
    rect = view.visualRect(view.model().index(row))
    return QPoint(rect.center().x(), rect.top() + (rect.height() * 3 // 4 if lower else rect.height() // 4))


def test_rows_show_summary_shape_params_and_macs_from_the_core(window):
    texts = row_texts(window)
    assert len(texts) == 5
    assert texts[0].startswith("0  conv2d 3x3, 16 ch".replace("16", "4"))
    assert "4\u00d732\u00d732" in texts[0] and "40 params" in texts[0] and "36.9k mult-adds" in texts[0]
    assert "linear 3" in texts[4] and "\u2192 3 " in texts[4]
    totals = window.stack.totals.text()
    assert f"{sum(window.session.network.parameter_counts):,} params" in totals


def test_drag_from_palette_drops_at_position(window):
    view = window.stack.view
    item = window.palette.items["batchnorm"]
    mime = window.palette.mimeData([item])  # the palette's own payload
    assert bytes(mime.data(LAYER_MIME)) == b"batchnorm"
    entered, dropped = drop_on(view.viewport(), mime, row_point(view, 1))  # upper half of row 1
    assert entered and dropped
    assert types(window.session) == ["conv2d", "batchnorm", "relu", "maxpool2d", "flatten", "linear"]
    assert window.session.selected_layer == 1
    assert "batchnorm" in row_texts(window)[1] and "4\u00d732\u00d732" in row_texts(window)[1]
    # Lower half of the last row: appended at the end.
    drop_on(view.viewport(), window.palette.mimeData([window.palette.items["relu"]]), row_point(view, 5, lower=True))
    assert types(window.session)[-1] == "relu"
    assert window.session.error is None or window.session.error.layer is not None


def test_reorder_by_dragging_a_row(window):
    view = window.stack.view
    ids = [layer["id"] for layer in window.session.layers]
    w0 = window.session.network.params(0)["weight"].copy()
    mime = row_mime(window.session, 1)  # what startDrag puts on the drag
    assert mime.hasFormat(ROW_MIME)
    drop_on(view.viewport(), mime, row_point(view, 0))  # relu before conv
    assert types(window.session) == ["relu", "conv2d", "maxpool2d", "flatten", "linear"]
    assert [layer["id"] for layer in window.session.layers] == [ids[1], ids[0]] + ids[2:]
    assert (window.session.network.params(1)["weight"] == w0).all()  # weights travel with the layer
    # Moving down: drop conv (now row 1) below the maxpool (row 2).
    drop_on(view.viewport(), row_mime(window.session, 1), row_point(view, 2, lower=True))
    assert types(window.session) == ["relu", "maxpool2d", "conv2d", "flatten", "linear"]
    window.undo_action.trigger()
    window.undo_action.trigger()
    assert types(window.session) == ["conv2d", "relu", "maxpool2d", "flatten", "linear"]


def test_handle_drop_ignores_garbage(window):
    before = window.session.state
    assert not handle_drop(window.editor, {LAYER_MIME: b"no_such_layer"}, 0)
    assert not handle_drop(window.editor, {ROW_MIME: b"xx"}, 0)
    assert not handle_drop(window.editor, {}, 0)
    assert window.session.state is before
    # Dropping plain text on the stack is refused.
    mime = QMimeData()
    mime.setText("conv2d")
    entered, dropped = drop_on(window.stack.view.viewport(), mime, QPoint(5, 5))
    assert not dropped and window.session.state is before


def test_delete_key_and_duplicate(window, qtbot):
    view = window.stack.view
    window.session.select_layer(1)
    view.setFocus()
    qtbot.waitUntil(view.hasFocus)
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    assert types(window.session) == ["conv2d", "maxpool2d", "flatten", "linear"]
    assert window.session.selected_layer == 1  # the next layer is selected
    view.duplicate_selected()
    assert types(window.session) == ["conv2d", "maxpool2d", "maxpool2d", "flatten", "linear"]
    assert len(set(layer["id"] for layer in window.session.layers)) == 5
    window.undo_action.trigger()
    window.undo_action.trigger()
    assert types(window.session) == ["conv2d", "relu", "maxpool2d", "flatten", "linear"]


def test_inspector_edit_merges_into_one_undo_step(window, qtbot):
    window.session.select_layer(0)
    spin = window.inspector.editors["out_channels"]
    assert spin.value() == 4
    count = window.undo_stack.count()
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, "32")
    assert window.session.layers[0]["out_channels"] == 32
    assert window.session.network.output_shapes[0] == (32, 32, 32)
    assert "32 ch" in row_texts(window)[0]
    assert window.undo_stack.count() == count + 1  # "3" then "32": one step
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.session.layers[0]["out_channels"] == 4)
    assert spin.value() == 4 and "4 ch" in row_texts(window)[0]
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: window.session.layers[0]["out_channels"] == 32)
    window.undo_action.trigger()
    qtbot.keyClick(window, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: window.session.layers[0]["out_channels"] == 32)


def test_size_field_lock_and_invalid_layer_row(window, qtbot):
    window.session.select_layer(2)  # maxpool 2x2
    size = window.inspector.editors["kernel_size"]
    assert size.locked()
    size.spins[0].setValue(3)
    assert window.session.layers[2]["kernel_size"] == 3  # locked: one int for both axes
    size.lock.setChecked(False)
    size.spins[1].setValue(2)
    assert window.session.layers[2]["kernel_size"] == [3, 2]
    size.lock.setChecked(True)
    assert window.session.layers[2]["kernel_size"] == 3
    # Too large for its 32x32 input: the row turns red with the core's message; later rows wait.
    size.spins[0].setValue(40)
    rows = session_rows(window.session)
    assert rows[2].status == "error" and "kernel" in rows[2].message
    assert [r.status for r in rows[3:]] == ["skipped", "skipped"]
    texts = row_texts(window)
    assert rows[2].message in texts[2] and "not computed" in texts[3]
    assert "32\u00d732" in texts[1]  # the layers before keep working
    assert window.inspector.error.isVisible() and rows[2].message in window.inspector.error.text()
    window.undo_action.trigger()
    assert window.session.error is None


def test_an_error_row_grows_to_show_the_whole_message(window, qtbot):
    """The core's message is wrapped on the layer's row, not cut at the column's edge;
    the row is as tall as the wrapped text and the other rows keep their height."""
    view = window.stack.view
    delegate = view.itemDelegate()
    window.editor.update_layer(2, kernel_size=40)  # too large for its 32x32 input
    message = "\u26a0 " + session_rows(window.session)[2].message
    small = QFontMetrics(_small_font(view.font()))

    def heights():
        return [view.visualRect(view.model().index(i)).height() for i in range(view.model().rowCount())]

    seen = {}
    for width in (300, 1200):
        window.stack.setFixedWidth(width)
        qtbot.waitUntil(lambda: abs(window.stack.width() - width) <= 1)
        text_width = view.viewport().width() - delegate.TEXT_LEFT - delegate.TEXT_RIGHT
        wrapped = small.boundingRect(QRect(0, 0, text_width, 10_000), Qt.TextFlag.TextWordWrap, message).height()
        qtbot.waitUntil(lambda: heights()[2] >= delegate.ROW_HEIGHT + wrapped - small.height())
        assert all(h == delegate.ROW_HEIGHT for i, h in enumerate(heights()) if i != 2)
        seen[width] = (heights()[2], wrapped // small.lineSpacing())
    assert seen[300][1] >= 2 and seen[1200][1] == 1  # several lines when narrow, one when wide
    assert seen[300][0] > seen[1200][0] == delegate.ROW_HEIGHT


def test_an_edit_repaints_only_the_rows_that_changed(window, qtbot):
    """Editing one layer's settings announces that row alone and repaints only its rect (a
    QListView lays out and repaints every row on any dataChanged); the rows read the new
    network. A change that makes a row taller still lays the rows out again."""
    from PySide6.QtCore import QEvent
    view = window.stack.view
    model = view.model()
    qtbot.waitUntil(window.controller.forward_is_current)
    qtbot.wait(50)
    changed = []
    model.dataChanged.connect(lambda a, b, *_: changed.append((a.row(), b.row())))
    spy = EventRecorder(view.viewport(), QEvent.Type.Paint, lambda ev: ev.region().boundingRect())
    painted = spy.seen
    window.editor.update_layer(0, merge=False, dilation=2, padding=2)
    qtbot.waitUntil(lambda: len(painted) > 0)
    qtbot.wait(50)
    assert changed == [(0, 0)]  # the shapes after it stay: their rows read the same
    assert row_texts(window) == [r.text() for r in session_rows(window.session)]
    assert "d2" in row_texts(window)[0]
    row0 = view.visualRect(model.index(0))
    assert all(row0.contains(r) for r in painted), (row0, painted)

    # A change of the output shapes: every row after the edited one reads anew.
    changed.clear()
    window.editor.update_layer(0, merge=False, out_channels=6)
    assert changed == [(i, i) for i in range(5)]  # 6 channels from layer 0 on: every shape changed
    assert row_texts(window) == [r.text() for r in session_rows(window.session)]

    # An error message makes its row taller: the rows are laid out again.
    window.editor.update_layer(2, kernel_size=40)
    delegate = view.itemDelegate()
    rect = lambda i: view.visualRect(model.index(i))  # noqa: E731
    qtbot.waitUntil(lambda: rect(2).height() > delegate.ROW_HEIGHT and rect(3).top() == rect(2).bottom() + 1)
    assert [rect(i).height() for i in (0, 1, 3, 4)] == [delegate.ROW_HEIGHT] * 4
    spy.remove()


def test_float_field_validates_as_you_type(window, qtbot):
    window.session.select_layer(1)
    window.inspector.type_combo.setCurrentIndex(window.inspector.type_combo.findData("leaky_relu"))
    window.inspector.type_combo.activated.emit(window.inspector.type_combo.currentIndex())
    assert types(window.session)[1] == "leaky_relu"
    box = window.inspector.editors["negative_slope"]
    box.setFocus()
    box.selectAll()
    qtbot.keyClicks(box, "0.2")
    assert window.session.layers[1]["negative_slope"] == pytest.approx(0.2)
    assert "leaky_relu 0.2" in row_texts(window)[1]


def test_save_and_reopen(window, qtbot, tmp_path):
    window.session.select_layer(0)
    window.editor.update_layer(0, out_channels=6)
    weights = window.session.network.params(0)["weight"].copy()
    path = tmp_path / "net.cnnplay"
    assert window.save_to(path)
    assert window.undo_stack.isClean() and "net.cnnplay" in window.windowTitle()
    window.new_network()
    assert window.session.layers == []
    assert window.open_file(path)
    assert types(window.session) == ["conv2d", "relu", "maxpool2d", "flatten", "linear"]
    assert window.session.layers[0]["out_channels"] == 6
    assert (window.session.network.params(0)["weight"] == weights).all()
    assert str(path.resolve()) in window.recent_files()
    # A damaged file: a message, and nothing changes.
    bad = tmp_path / "bad.cnnplay"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    before = window.session.state
    with qtbot.waitSignal(window.message):
        assert not window.open_file(bad)
    assert window.session.state is before and "bad.cnnplay" in window.banner.label.text()


def test_autosave_survives_a_kill(window, qtbot, home):
    window.session.select_layer(0)
    window.stack.view.add_type("batchnorm")  # after the selected conv
    window.editor.update_layer(0, out_channels=5)
    weights = window.session.network.params(0)["weight"].copy()
    with qtbot.waitSignal(window.autosaver.saved, timeout=5000):
        pass  # debounced write on the autosave thread
    assert (home / "autosave.cnnplay").exists()
    # "Kill": no close, no flush; a new window on the same CNNPLAY_HOME restores.
    w2 = create_window()
    qtbot.addWidget(w2)
    s2 = w2.session
    assert types(s2) == ["conv2d", "batchnorm", "relu", "maxpool2d", "flatten", "linear"]
    assert s2.layers[0]["out_channels"] == 5
    assert (s2.network.params(0)["weight"] == weights).all()
    assert (s2.input_array == window.session.input_array).all()
    assert s2.input_source == window.session.input_source
    assert "5 ch" in row_texts(w2)[0]


def test_corrupt_autosave_is_set_aside(qtbot, home):
    home.mkdir(parents=True)
    (home / "autosave.cnnplay").write_bytes(b"garbage, not a zip")
    w = create_window()
    qtbot.addWidget(w)
    aside = list(home.glob("autosave.corrupt-*.cnnplay"))
    assert len(aside) == 1 and aside[0].read_bytes() == b"garbage, not a zip"
    assert "could not be restored" in w.banner.label.text() and w.banner.isVisibleTo(w)
    # The first-start network: a trained example on a sample of its data set, classes named.
    assert types(w.session)[0] == "conv2d" and len(w.session.layers) >= 8
    assert w.session.input_source.get("kind") == "dataset"
    assert tuple(w.session.input_array.shape) == w.session.network.input_shape
    assert w.session.output_classes() is not None and w.session.training is not None


def test_drop_an_image_file_on_the_window(window, qtbot, tmp_path):
    path = tmp_path / "red.png"
    img = QImage(30, 20, QImage.Format.Format_RGB32)
    img.fill(QColor(255, 0, 0))
    assert img.save(str(path))
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    _, dropped = drop_on(window, mime, QPoint(700, 400))
    assert dropped
    s = window.session
    assert s.input_source["path"] == str(path)
    assert s.input_array.shape == (1, 20, 30)  # the gray mode of the current input is kept
    assert s.network.input_shape == (1, 20, 30)
    # RGB: the input channels follow, and the first conv's weights follow them.
    assert window.input_panel.set_mode("rgb")
    assert s.input_array.shape == (3, 20, 30) and s.network.params(0)["weight"].shape[1] == 3
    assert np.allclose(s.input_array[0], 1.0) and np.allclose(s.input_array[1], 0.0)
    window.undo_action.trigger()
    assert s.input_array.shape == (1, 20, 30)


def test_unreadable_dropped_file_keeps_the_input(window, qtbot, tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    before = window.session.input_array
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    with qtbot.waitSignal(window.message):
        drop_on(window, mime, QPoint(700, 400))
    assert window.session.input_array is before
    assert "empty.png" in window.banner.label.text()


def test_examples_load_with_a_fitting_input(window, qtbot):
    from cnnplay.app.examples import example_paths
    names = {p.stem: p for p in example_paths()}
    assert {"edge_detector", "vgg_like", "dilated", "signal_1d"} <= set(names)
    assert window.open_example(names["edge_detector"])
    s = window.session
    assert s.input_array.shape[0] == 1 and s.error is None
    sobel = s.network.params(0)["weight"][0, 0]
    assert (sobel == np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)).all()
    assert window.open_example(names["signal_1d"])
    assert s.input_array.ndim == 2 and s.error is None and types(s)[0] == "conv1d"
    window.undo_action.trigger()
    assert s.input_array.shape[0] == 1 and s.input_array.ndim == 3


def test_first_start_says_it_compiles_kernels_and_shows_maps_meanwhile(qtbot, home, monkeypatch):
    import cnnplay.app.window as window_module
    compiling = [True]
    monkeypatch.setattr(window_module, "kernels_compiling", lambda: compiling[0])
    monkeypatch.setattr(window_module, "kernel_progress", lambda: (1, 6))
    w = create_window(session=small_session())
    qtbot.addWidget(w)
    assert "first start" in w.banner.label.text().lower() and w.banner.isVisibleTo(w)
    assert "first start only" in w.busy_label.text()
    qtbot.waitUntil(lambda: w.controller.forward is not None, timeout=60000)
    assert w.time_label.text().startswith("Updated layers")
    qtbot.waitUntil(lambda: "(1/6)" in w.busy_label.text())
    assert w.banner.isVisibleTo(w)  # maps shown while the kernels still compile
    compiling[0] = False
    qtbot.waitUntil(lambda: not w.banner.isVisibleTo(w))
    assert w.busy_label.text() == "Ready"


def test_unexpected_exceptions_are_logged_and_shown(window, qtbot, app_log):
    import sys

    from cnnplay.app import main as main_module
    main_module.install_excepthook(window)
    try:
        raise RuntimeError("boom in a view")
    except RuntimeError:
        with qtbot.waitSignal(window.message):
            sys.excepthook(*sys.exc_info())
    assert "boom in a view" in window.banner.label.text()
    log = app_log()
    assert "RuntimeError: boom in a view" in log and "Traceback" in log


def test_restore_keeps_the_network_when_its_input_is_gone(window, qtbot, home):
    """The autosaved input array and the original file are both gone: the user's
    network is still restored, on a fitting input, with a message."""
    window.editor.update_layer(0, out_channels=6)
    window.session.set_input(window.session.input_array, {"kind": "image", "path": str(home / "vanished.png"),
                                                          "mode": "rgb", "max_side": 64})
    with qtbot.waitSignal(window.autosaver.saved, timeout=5000):
        pass
    (home / "autosave-input.npy").unlink()
    w2 = create_window()
    qtbot.addWidget(w2)
    assert types(w2.session) == types(window.session) and w2.session.layers[0]["out_channels"] == 6
    assert w2.session.input_array.shape[0] == window.session.input_array.shape[0]  # same colour mode
    assert "Your network is restored" in w2.banner.label.text()
    assert not list(home.glob("autosave.corrupt-*"))


def test_concept_panels_behind_other_tabs_wait_until_their_tab_is_clicked(window, qtbot):
    """On a fresh layout the tabified concept docks all say isVisible(); only the front
    one is on screen, and only it works. Clicking the Shift tab lets that panel catch up."""
    from PySide6.QtWidgets import QTabBar

    from cnnplay.app.concepts.invariance_view import InvarianceView
    shift = window.findChild(InvarianceView)
    qtbot.waitUntil(window.controller.forward_is_current, timeout=20000)
    window.editor.update_layer(0, out_channels=5)
    qtbot.waitUntil(window.controller.forward_is_current, timeout=20000)
    assert shift.pending is None and shift.result is None  # behind the Kernels tab: no shifted passes
    bar = next(b for b in window.findChildren(QTabBar) if "Shift" in [b.tabText(i) for i in range(b.count())])
    tab = [bar.tabText(i) for i in range(bar.count())].index("Shift")
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(tab).center())
    qtbot.waitUntil(lambda: shift.result is not None, timeout=20000)
    assert shift.result[0].network is window.session.network


def test_the_selected_unit_readout_is_never_cut_off(window, qtbot):
    """The Selected unit dock is short: its readout scrolls, as tall as its text needs."""
    s, c = window.session, window.controller
    qtbot.waitUntil(c.forward_is_current, timeout=20000)
    s.select_unit(0, (0, 2, 2))
    qtbot.waitUntil(c.field_is_current, timeout=20000)
    readout = window.central.readout
    # the unit's own text (its field's lines), not the empty readout's (which says "field" too)
    qtbot.waitUntil(lambda: readout.showing is not None and "padding" in readout.text(), timeout=5000)
    window.resizeDocks([window.central.unit_dock], [100], Qt.Orientation.Vertical)  # a short dock
    qtbot.waitUntil(lambda: window.central.unit_dock.height() < readout.heightForWidth(readout.width()))
    # every line is there to scroll to, once the scroll area has handled the layout
    # request the resize posted (Qt lays out in a later event, not within resizeDocks)
    qtbot.waitUntil(lambda: readout.height() >= readout.heightForWidth(readout.width()), timeout=2000)
    assert window.central.unit_dock.height() < readout.height()  # the dock is shorter: it scrolls
