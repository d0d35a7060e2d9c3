"""MapsPanel (pytest-qt, offscreen): clicks select the right unit, overlays equal
the core's fields, edits update the displayed arrays, stale data is veiled."""

import gc

import numpy as np
import pytest
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtWidgets import QApplication, QMainWindow

from cnnplay.app.compute import ComputeWorker
from cnnplay.app.controller import ComputeController
from cnnplay.app.views import MapsPanel
from cnnplay.core.session import Session

SPEC_2D = {"layers": [
    {"type": "conv2d", "out_channels": 5, "kernel_size": 3, "stride": 2, "padding": 1},  # 5 x 6 x 12
    {"type": "relu"},
    {"type": "conv2d", "out_channels": 3, "kernel_size": 3, "dilation": 2, "padding": 1},  # 3 x 4 x 10
    {"type": "flatten"},
    {"type": "linear", "out_features": 7},
]}
SPEC_1D = {"layers": [
    {"type": "conv1d", "out_channels": 4, "kernel_size": 5, "padding": 2},
    {"type": "maxpool1d", "kernel_size": 2},
]}


class HoldingWorker(ComputeWorker):
    """A synchronous worker that can hold requests back, to see the in-between state."""

    def __init__(self):
        super().__init__(synchronous=True)
        self.hold = False
        self.held = []
        self.submitted = []

    def submit(self, request):
        self.submitted.append(request)
        if self.hold:
            self.held.append(request)
        else:
            super().submit(request)

    def release(self):
        self.hold = False
        held, self.held = self.held, []
        for r in held:
            super().submit(r)


@pytest.fixture(autouse=True)
def _teardown():
    made.clear()
    yield
    # Take every panel down while Qt is alive (not at interpreter exit).
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


made = []


def make(qtbot, spec=SPEC_2D, x=None):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 11, 23)).astype(np.float32) if x is None else x
    session = Session(spec, x, {"name": "noise"})
    worker = HoldingWorker()
    controller = ComputeController(session, worker)
    panel = MapsPanel(session, controller)
    win = QMainWindow()
    win.setCentralWidget(panel)
    win.resize(1200, 800)
    qtbot.addWidget(win)
    made.append((win, panel, worker))  # keeps the window (and so the panel) alive
    win.show()
    qtbot.waitExposed(win)
    win.activateWindow()  # arrow keys work while the focus is in the panel
    qtbot.waitUntil(win.isActiveWindow, timeout=2000)
    return session, worker, controller, panel


def click_view(qtbot, view, vx, vy, double=False):
    """Click a map view at view coordinates (vx, vy) through real mouse events."""
    canvas = view.canvas if hasattr(view, "canvas") else view.plot
    scene_pt = view.view_box.mapViewToScene(QPointF(vx, vy))
    pt = canvas.mapFromScene(scene_pt)
    if double:
        qtbot.mouseDClick(canvas.viewport(), Qt.LeftButton, pos=pt)
    else:
        qtbot.mouseClick(canvas.viewport(), Qt.LeftButton, pos=pt)


def click_unit(qtbot, card, unit):
    view = card.current_view()
    c, y, x = unit
    oy, ox = view.grid.origin(view.grid.tile_of(c))
    click_view(qtbot, view, ox + x + 0.5, oy + y + 0.5)


def test_maps_show_every_layer_output(qtbot):
    session, worker, controller, panel = make(qtbot)
    outputs = controller.forward.outputs
    assert len(panel.cards) == 5
    for i in (0, 1, 2):
        view = panel.cards[i].current_view()
        np.testing.assert_array_equal(view.image.image, view.grid.mosaic(outputs[i], fill=view.gap_value))
        assert view.grid.channels == tuple(range(outputs[i].shape[0]))
    assert panel.cards[0].current_view().image.image.shape == view.grid.shape or True


@pytest.mark.parametrize("layer,unit", [(0, (3, 5, 11)), (0, (0, 0, 0)), (2, (2, 3, 1)), (1, (4, 2, 9))])
def test_click_on_a_feature_map_selects_that_unit(qtbot, layer, unit):
    session, worker, controller, panel = make(qtbot)
    click_unit(qtbot, panel.cards[layer], unit)
    assert session.selected_unit == (layer, unit)


def test_click_after_zooming_in_still_selects_the_right_unit(qtbot):
    session, worker, controller, panel = make(qtbot)
    view = panel.cards[0].current_view()
    oy, ox = view.grid.origin(view.grid.tile_of(4))
    view.view_box.setRange(QRectF(ox + 6, oy + 2, 4, 3), padding=0)  # a strong zoom into channel 4
    click_unit(qtbot, panel.cards[0], (4, 3, 8))
    assert session.selected_unit == (0, (4, 3, 8))
    click_view(qtbot, view, ox + 7.9, oy + 2.1)
    assert session.selected_unit == (0, (4, 2, 7))


def test_input_overlay_equals_the_core_mask(qtbot):
    session, worker, controller, panel = make(qtbot)
    click_unit(qtbot, panel.cards[2], (1, 0, 9))  # a corner unit: its box reaches into the padding
    net = session.network
    rf = net.receptive_field(2, (1, 0, 9))
    iv = panel.input_view.image_view
    shown = iv.tint.image > 0
    np.testing.assert_array_equal(shown, rf.mask)
    assert iv.tint.isVisible() and iv.hatch.isVisible()  # part of the box lies in padding
    # earlier maps show the part of them that feeds the unit
    for k in (0, 1):
        view = panel.cards[k].current_view()
        on_map = net.receptive_field(2, (1, 0, 9), onto=k).mask
        tint = view.tint.image > 0
        oy, ox = view.grid.origin(0)
        np.testing.assert_array_equal(tint[oy:oy + view.grid.h, ox:ox + view.grid.w], on_map)
    assert "Layer 2" in panel.readout.text() and "padding" in panel.readout.text()


def test_arrow_keys_move_the_selected_unit(qtbot):
    session, worker, controller, panel = make(qtbot)
    click_unit(qtbot, panel.cards[0], (2, 3, 4))
    qtbot.keyClick(panel, Qt.Key_Right)
    assert session.selected_unit == (0, (2, 3, 5))
    qtbot.keyClick(panel, Qt.Key_Up)
    assert session.selected_unit == (0, (2, 2, 5))
    qtbot.keyClick(panel, Qt.Key_PageDown)
    assert session.selected_unit == (0, (3, 2, 5))
    qtbot.keyClick(panel, Qt.Key_Escape)
    assert session.selected_unit is None


def test_changing_a_layer_updates_only_the_maps_it_changes(qtbot):
    session, worker, controller, panel = make(qtbot)
    before0 = panel.cards[0].current_view().image.image
    before2 = panel.cards[2].current_view().image.image
    session.update_layer(2, out_channels=6)
    outputs = controller.forward.outputs
    assert controller.forward.first_recomputed == 2
    view2 = panel.cards[2].current_view()
    assert view2.grid.channels == tuple(range(6))
    np.testing.assert_array_equal(view2.image.image, view2.grid.mosaic(outputs[2], fill=view2.gap_value))
    assert view2.image.image.shape != before2.shape
    assert panel.cards[0].current_view().image.image is before0  # not re-uploaded


def test_bar_chart_has_one_bar_per_output_feature_and_bars_are_clickable(qtbot):
    session, worker, controller, panel = make(qtbot)
    bars = panel.reveal(4).current_view()
    assert bars.bar_count == 7
    np.testing.assert_array_equal(bars.heights(), controller.forward.outputs[4])
    assert panel.reveal(3).current_view().bar_count == 3 * 4 * 10
    panel.reveal(4)
    click_view(qtbot, bars, 5.5, 0.0)
    assert session.selected_unit == (4, (5,))
    session.update_layer(4, out_features=3)
    assert bars.bar_count == 3


def test_recomputing_is_shown_while_a_result_is_stale(qtbot):
    session, worker, controller, panel = make(qtbot)
    worker.hold = True
    session.update_layer(2, kernel_size=1, dilation=1, padding=0)
    assert not controller.forward_is_current()
    # not at once (most recomputes end within VEIL_DELAY_MS: no flash), but once it lasts
    assert not any(not c.stale.isHidden() for c in panel.cards)
    qtbot.waitUntil(lambda: [not c.stale.isHidden() for c in panel.cards] == [False, False, True, True, True])
    assert "recomputing" in panel.cards[2].stale.text()  # the layers before the edit stay current
    worker.release()
    assert controller.forward_is_current()
    assert not any(not c.stale.isHidden() for c in panel.cards)
    view2 = panel.cards[2].current_view()
    np.testing.assert_array_equal(view2.image.image, view2.grid.mosaic(controller.forward.outputs[2], fill=view2.gap_value))


def test_a_recompute_that_ends_soon_is_never_veiled(qtbot):
    """The result arrives before VEIL_DELAY_MS: the veils asked for are called off."""
    session, worker, controller, panel = make(qtbot)
    worker.hold = True
    session.update_layer(2, kernel_size=1, dilation=1, padding=0)
    assert [c.stale._later.isActive() for c in panel.cards] == [False, False, True, True, True]  # asked, pending
    worker.release()
    assert controller.forward_is_current()
    assert not any(c.stale._later.isActive() or not c.stale.isHidden() for c in panel.cards)


def test_view_settings_redraw_without_computing(qtbot):
    session, worker, controller, panel = make(qtbot)
    n = len(worker.submitted)
    session.set_view(levels="channel")
    assert len(worker.submitted) == n
    view = panel.cards[0].current_view()
    assert view.levels == (-1.0, 1.0)  # conv output has negative values: diverging, per channel
    img = view.image.image
    np.testing.assert_allclose(np.abs(img[:view.grid.h, :view.grid.w]).max(), 1.0, rtol=1e-6)
    assert panel.levels_box.currentData() == "channel"


def test_invalid_layer_and_the_layers_after_it_say_so(qtbot):
    session, worker, controller, panel = make(qtbot)
    session.update_layer(2, kernel_size=99)
    assert len(panel.cards) == 5 and panel.cards[2].current_view() is None
    assert "invalid" in panel.cards[2].message.text()
    assert "Not computed" in panel.cards[3].message.text()
    assert panel.cards[0].current_view() is not None


def test_selection_survives_an_edit_where_the_unit_still_exists(qtbot):
    session, worker, controller, panel = make(qtbot)
    click_unit(qtbot, panel.cards[2], (1, 2, 3))
    session.update_layer(0, out_channels=8)
    assert session.selected_unit == (2, (1, 2, 3))
    rf = session.network.receptive_field(2, (1, 2, 3))
    np.testing.assert_array_equal(panel.input_view.image_view.tint.image > 0, rf.mask)


def test_one_dimensional_layers_show_lanes_and_select_by_click(qtbot):
    x = np.random.default_rng(0).standard_normal((2, 40)).astype(np.float32)
    session, worker, controller, panel = make(qtbot, SPEC_1D, x)
    lanes = panel.cards[1].current_view()
    assert lanes.channels == (0, 1, 2, 3) and lanes.length == 20
    click_view(qtbot, lanes, 12.5, 2.5)
    assert session.selected_unit == (1, (2, 12))
    rf = session.network.receptive_field(1, (2, 12))
    tint = panel.input_view.lanes.tint.image[0] > 0
    np.testing.assert_array_equal(tint, rf.mask)


def test_effective_field_toggle_shows_a_heat_map(qtbot):
    session, worker, controller, panel = make(qtbot)
    click_unit(qtbot, panel.cards[2], (0, 2, 5))
    iv = panel.input_view.image_view
    assert not iv.heat.isVisible()
    panel.effective_box.setChecked(True)
    assert session.view["show_effective"] is True
    assert controller.field.effective is not None
    assert iv.heat.isVisible()
    np.testing.assert_allclose(iv.heat.image, controller.field.effective)


def test_kernels_of_the_selected_conv_layer(qtbot):
    session, worker, controller, panel = make(qtbot)
    session.select_layer(2)
    view = panel.kernels.mosaic
    w = session.network.params(2)["weight"]  # (3, 5, 3, 3)
    assert view.grid.cols == 5 and view.grid.n == 15
    np.testing.assert_array_equal(view.image.image, view.grid.mosaic(w.reshape(15, 3, 3), fill=view.gap_value))
    session.select_layer(1)  # relu: no kernels
    assert panel.kernels.stack.currentWidget() is panel.kernels.message


def test_double_click_enlarges_a_channel_and_save_png(qtbot, tmp_path):
    session, worker, controller, panel = make(qtbot)
    card = panel.cards[0]
    view = card.current_view()
    view.double_clicked.emit((3, 1, 1))  # pyqtgraph's double-click, as the view reports it
    assert card.enlarged == 3 and view.grid.channels == (3,)
    click_unit(qtbot, card, (3, 4, 5))  # the enlarged map still maps clicks to units
    assert session.selected_unit == (0, (3, 4, 5))
    view.double_clicked.emit((3, 1, 1))
    assert card.enlarged is None and len(view.grid.channels) == 5
    from cnnplay.app.views.style import save_png
    assert save_png(view.canvas, str(tmp_path / "maps.png"))
    assert (tmp_path / "maps.png").stat().st_size > 0


def test_a_linear_unit_highlights_every_feature_of_the_flatten_bars_and_the_maps_before(qtbot):
    session, worker, controller, panel = make(qtbot)
    session.select_unit(4, (2,))  # a linear unit sees the whole flattened vector
    assert controller.field_is_current()
    flat = panel.reveal(3).current_view()
    mask = session.network.receptive_field(4, (2,), onto=3).mask
    assert mask.all()
    np.testing.assert_array_equal(flat.field_heights(), np.where(mask, controller.forward.outputs[3], 0))
    view = panel.reveal(2).current_view()
    assert view.tint.isVisible() and (view.tint.image > 0).sum() == 3 * 4 * 10  # every unit of every channel
    session.select_unit(3, (17,))  # a flatten unit: the bars show no field, only the selected bar
    assert controller.field_is_current()
    assert not flat.field_bars.isVisible() and flat.highlight.isVisible()


def test_cards_out_of_view_draw_when_scrolled_into_view(qtbot):
    session, worker, controller, panel = make(qtbot)
    session.set_view(tile_size=400)  # large tiles: the last cards lie below the fold
    qtbot.waitUntil(lambda: panel.cards[0].height() > panel.scroll.viewport().height())
    panel.reveal(0)
    far = [c for c in panel.cards if not panel._in_view(c)]
    assert far, "the test needs a card below the fold"
    card = far[-1]
    before = card.current_view().heights().copy() if card.current_view() is not None else None
    session.update_layer(4, out_features=4)
    assert controller.forward_is_current() and card.array is controller.forward.outputs[card.index]
    if before is not None:  # not redrawn while out of sight
        np.testing.assert_array_equal(card.current_view().heights(), before)
    panel.scroll.verticalScrollBar().setValue(panel.scroll.verticalScrollBar().maximum())
    qtbot.waitUntil(lambda: panel._in_view(card))
    np.testing.assert_array_equal(card.current_view().heights(), controller.forward.outputs[card.index])


def test_kernels_follow_weight_edits_of_the_selected_layer(qtbot):
    session, worker, controller, panel = make(qtbot)
    session.select_layer(2)
    w = np.arange(3 * 5 * 3 * 3, dtype=np.float32).reshape(3, 5, 3, 3) / 100
    session.set_layer_params(2, weight=w)
    view = panel.kernels.mosaic
    np.testing.assert_array_equal(view.image.image, view.grid.mosaic(w.reshape(15, 3, 3), fill=view.gap_value))


def test_the_enlarged_channel_follows_the_window_width(qtbot):
    session, worker, controller, panel = make(qtbot)
    card = panel.cards[0]
    card.current_view().double_clicked.emit((1, 0, 0))
    qtbot.waitUntil(lambda: card.height() > card.stack.height() >= card._height)  # laid out
    h0 = card.height()
    win = panel.window()
    win.resize(700, 800)
    qtbot.waitUntil(lambda: card.height() < h0)
    win.resize(1500, 900)
    qtbot.waitUntil(lambda: card.height() > h0)


def test_the_input_fills_its_view_without_axes(qtbot):
    session, worker, controller, panel = make(qtbot)
    iv = panel.input_view.image_view
    pi = iv.plot.getPlotItem()
    assert not pi.getAxis("left").isVisible() and not pi.getAxis("bottom").isVisible()
    (x0, x1), (y0, y1) = iv.view_box.viewRange()
    h, w = session.input_array.shape[1:]
    # the view is no more than a few pixels larger than the image on either axis
    assert x0 <= 0 and y0 <= 0 and x1 >= w and y1 >= h
    assert (x1 - x0) <= w * 1.1 and (y1 - y0) <= h * 1.1


def test_kernels_keep_their_picture_when_an_edit_keeps_the_weights(qtbot):
    """Dilation and padding change the layer's summary, not its weights: the kernels view
    keeps the image it shows (no re-upload, no repaint) and only its title changes; new
    weights are drawn anew."""
    session, worker, controller, panel = make(qtbot)
    session.select_layer(2)
    view = panel.kernels.mosaic
    shown, levels = view.image.image, view.bar.levels()
    session.update_layer(2, dilation=1, padding=1)
    assert session.network.summaries[2] in panel.kernels.title.text() and "d2" not in panel.kernels.title.text()
    assert view.image.image is shown and view.bar.levels() == levels
    w = session.network.params(2)["weight"]
    np.testing.assert_array_equal(view.image.image, view.grid.mosaic(w.reshape(15, 3, 3), fill=view.gap_value))
    session.set_layer_params(2, weight=np.asarray(w) * 3)
    assert view.image.image is not shown
    np.testing.assert_array_equal(view.image.image, view.grid.mosaic(np.asarray(w).reshape(15, 3, 3) * 3,
                                                                   fill=view.gap_value))
    m = float(np.abs(w).max()) * 3
    np.testing.assert_allclose(view.bar.levels(), (-m, m), rtol=1e-6)


def test_colour_bars_follow_the_maps_levels_and_colours(qtbot):
    """Each mosaic's colour bar shows its levels and colour map (diverging around 0 when
    the layer has negative values) through edits and view settings; it is set again only
    when they change."""
    from cnnplay.app.views import style
    session, worker, controller, panel = make(qtbot)

    def check():
        for card in panel.cards:
            view = card.current_view()
            if view is not None and hasattr(view, "bar"):
                assert view.bar.levels() == tuple(view.levels)
                assert view.bar.colorMap() is style.colormap(view.diverging)

    check()
    assert panel.cards[0].current_view().diverging and not panel.cards[1].current_view().diverging  # conv, relu
    session.update_layer(0, out_channels=4)
    check()
    session.set_view(levels="channel")
    check()
    assert panel.cards[1].current_view().bar.levels() == (0.0, 1.0)
    session.set_view(levels="layer")
    check()


def test_the_readout_keeps_the_last_field_until_the_edited_one_is_in(qtbot):
    """After an edit the selected unit's readout keeps the last field while the new one is
    computed (as the maps keep theirs): no 'computing' flash when it comes soon, which
    would lay the readout out twice; it says it is computing once that lasts over
    VEIL_DELAY_MS; the new field replaces it as soon as it is in."""
    from cnnplay.app.views.panel import VEIL_DELAY_MS
    session, worker, controller, panel = make(qtbot)
    click_unit(qtbot, panel.cards[2], (1, 2, 3))
    before = panel.readout.text()
    assert "box" in before and "d2" in before
    shown = []
    panel.readout.setText = lambda text, _set=panel.readout.setText: (shown.append(text), _set(text))
    worker.hold = True
    session.update_layer(2, dilation=1, padding=1)  # comes in soon: straight to the new field
    assert panel.readout.text() == before and not controller.field_is_current()
    worker.release()
    assert controller.field_is_current()
    after = panel.readout.text()
    assert "d2" not in after and "box" in after and after != before
    assert shown == [after]
    row = session.network.receptive_field_table()[2]
    assert f"RF size {row.size[0]}×{row.size[1]}" in after

    worker.hold = True
    session.update_layer(2, dilation=2, padding=1)  # takes long: says so after VEIL_DELAY_MS
    assert panel.readout.text() == after
    qtbot.waitUntil(lambda: "computing the receptive field" in panel.readout.text(), timeout=VEIL_DELAY_MS + 2000)
    assert "d2" in panel.readout.text()  # the new layer, no field numbers yet
    worker.release()
    assert controller.field_is_current() and "computing" not in panel.readout.text()
    assert panel.readout.text() == before  # the same network as at first: the same field


def test_when_shown_runs_once_the_edits_results_are_in(qtbot):
    """controller.when_shown(fn): fn runs after the forward pass and the selected unit's
    field for the session as it is now are in (and painted), not before; with nothing
    on its way, on the next turns of the event loop."""
    session, worker, controller, panel = make(qtbot)
    click_unit(qtbot, panel.cards[2], (1, 2, 3))
    ran = []
    controller.when_shown(lambda: ran.append("idle"))
    qtbot.waitUntil(lambda: ran == ["idle"])
    worker.hold = True
    session.update_layer(2, dilation=1, padding=1)
    controller.when_shown(lambda: ran.append((controller.forward_is_current(), controller.field_is_current())))
    qtbot.wait(100)
    assert ran == ["idle"]  # the edit's maps and field are not in: it waits
    worker.release()
    qtbot.waitUntil(lambda: len(ran) == 2)
    assert ran[1] == (True, True)


def test_a_deleted_controller_drops_its_queued_when_shown_steps(qtbot):
    """when_shown's steps wait for later turns of the event loop; a controller deleted
    meanwhile (its window closed) drops them: they ran on the deleted object and raised
    in the event loop (pytest-qt fails a test on that)."""
    import shiboken6
    session, worker, controller, panel = make(qtbot)
    qtbot.waitUntil(controller.forward_is_current)
    ran = []
    controller.when_shown(lambda: ran.append(True))  # answered: would run two turns later
    shiboken6.delete(controller)
    qtbot.wait(100)
    assert ran == [] and not shiboken6.isValid(controller)


def test_the_readout_keeps_only_a_field_it_shows(qtbot):
    """A unit selected again after an edit made while nothing was selected: the readout
    had no field of it on screen to keep, so it says at once that it is computing."""
    session, worker, controller, panel = make(qtbot)
    click_unit(qtbot, panel.cards[2], (1, 2, 3))
    session.select_unit(None)
    assert "Click a unit" in panel.readout.text()
    session.update_layer(2, dilation=1, padding=1)
    worker.hold = True
    session.select_unit(2, (1, 2, 3))
    assert "computing the receptive field" in panel.readout.text() and "d2" not in panel.readout.text()
    worker.release()
    assert controller.field_is_current() and "box" in panel.readout.text()
