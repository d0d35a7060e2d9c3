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
    shown = iv.tint.covered(iv.shape)
    np.testing.assert_array_equal(shown, rf.mask)
    assert iv.hatch.isVisible()  # part of the box lies in padding
    # earlier maps show the part of them that feeds the unit, on every tile
    for k in (0, 1):
        view = panel.cards[k].current_view()
        on_map = net.receptive_field(2, (1, 0, 9), onto=k).mask
        tint = view.tint.covered(view.grid.shape)
        for t in range(view.grid.n):
            oy, ox = view.grid.origin(t)
            np.testing.assert_array_equal(tint[oy:oy + view.grid.h, ox:ox + view.grid.w], on_map)
        assert tint.sum() == view.grid.n * on_map.sum()  # nothing in the gaps
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
    iv = panel.input_view.image_view
    np.testing.assert_array_equal(iv.tint.covered(iv.shape), rf.mask)


def test_one_dimensional_layers_show_lanes_and_select_by_click(qtbot):
    x = np.random.default_rng(0).standard_normal((2, 40)).astype(np.float32)
    session, worker, controller, panel = make(qtbot, SPEC_1D, x)
    lanes = panel.cards[1].current_view()
    assert lanes.channels == (0, 1, 2, 3) and lanes.length == 20
    click_view(qtbot, lanes, 12.5, 2.5)
    assert session.selected_unit == (1, (2, 12))
    rf = session.network.receptive_field(1, (2, 12))
    lanes_in = panel.input_view.lanes
    tint = lanes_in.tint.covered((len(lanes_in.channels), lanes_in.length))
    np.testing.assert_array_equal(tint, np.broadcast_to(rf.mask, tint.shape))  # across every lane


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
    assert view.tint.covered(view.grid.shape).sum() == 3 * 4 * 10  # every unit of every channel
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


def test_the_readout_says_it_is_computing_only_when_the_field_is_late(qtbot):
    """A unit selected while nothing was: the readout keeps its hint while the field is
    computed (it comes in a few ms: written once), says it is computing once that lasts
    over VEIL_DELAY_MS (then it shows no field of anything), and the field when it is in."""
    from cnnplay.app.views.panel import VEIL_DELAY_MS
    session, worker, controller, panel = make(qtbot)
    click_unit(qtbot, panel.cards[2], (1, 2, 3))
    session.select_unit(None)
    assert "Click a unit" in panel.readout.text() and panel.readout.showing is None
    session.update_layer(2, dilation=1, padding=1)
    worker.hold = True
    session.select_unit(2, (1, 2, 3))
    assert "Click a unit" in panel.readout.text()
    qtbot.waitUntil(lambda: "computing the receptive field" in panel.readout.text(), timeout=VEIL_DELAY_MS + 2000)
    assert "d2" not in panel.readout.text() and "box" not in panel.readout.text()
    assert panel.readout.showing is None
    worker.release()
    assert controller.field_is_current() and "box" in panel.readout.text()
    assert panel.readout.showing == (2, (1, 2, 3))


def test_a_click_draws_the_field_on_every_earlier_map_and_writes_the_readout_once(qtbot):
    """A click on a unit: on every earlier map the tint covers exactly the core's mask on
    every tile and the box outlines the core's box (clipped to the map) on every tile; the
    input shows the field on the input; the clicked map marks the unit and its tile; the
    readout is written once, with the unit's field (no "computing" in between)."""
    from cnnplay.app.views import grid as g
    session, worker, controller, panel = make(qtbot)
    click_unit(qtbot, panel.cards[2], (1, 2, 3))
    shown = []
    panel.readout.setText = lambda text, _set=panel.readout.setText: (shown.append(text), _set(text))
    unit = (2, 1, 6)
    click_unit(qtbot, panel.cards[2], unit)
    assert session.selected_unit == (2, unit) and controller.field_is_current()
    assert len(shown) == 1 and "unit (c 2, y 1, x 6)" in shown[0] and "box" in shown[0]
    assert "computing" not in shown[0] and panel.readout.text() == shown[0]
    net = session.network
    for k in (0, 1):
        field = net.receptive_field(2, unit, onto=k)
        view = panel.cards[k].current_view()
        grid = view.grid
        tint = view.tint.covered(grid.shape)
        for t in range(grid.n):
            oy, ox = grid.origin(t)
            np.testing.assert_array_equal(tint[oy:oy + grid.h, ox:ox + grid.w], field.mask)
        assert tint.sum() == grid.n * field.mask.sum()
        (y0, y1), (x0, x1) = g.clip_box(field.box, (grid.h, grid.w))
        assert len(view.box.rects) == grid.n
        for t, (bx0, by0, bx1, by1) in enumerate(view.box.rects):
            oy, ox = grid.origin(t)
            assert bx0 <= ox + x0 and ox + x1 <= bx1 and by0 <= oy + y0 and oy + y1 <= by1
            assert (bx1 - bx0, by1 - by0) == (x1 - x0, y1 - y0) or min(x1 - x0, y1 - y0) < view.least()
        assert view.marker.rects == ()  # the unit is not on this map
    iv = panel.input_view.image_view
    on_input = net.receptive_field(2, unit)
    np.testing.assert_array_equal(iv.tint.covered(iv.shape), on_input.mask)
    (y0, y1), (x0, x1) = g.clip_box(on_input.box, iv.shape)
    assert iv.box.rects == ((x0, y0, x1, y1),)
    clicked = panel.cards[2].current_view()
    assert clicked.tint.block is None and clicked.box.rects == ()  # no field on the clicked map itself
    oy, ox = clicked.grid.origin(clicked.grid.tile_of(2))
    ux0, uy0, ux1, uy1 = clicked.marker.rects[0]
    assert ux0 <= ox + 6 < ox + 7 <= ux1 and uy0 <= oy + 1 < oy + 2 <= uy1
    assert clicked.marker.rects[1] == (ox - 0.5, oy - 0.5, ox + clicked.grid.w + 0.5, oy + clicked.grid.h + 0.5)

    session.select_unit(None)  # Esc: every mark goes
    for k in (0, 1, 2):
        view = panel.cards[k].current_view()
        assert view.tint.block is None and view.box.rects == () and view.marker.rects == ()
    assert iv.tint.block is None and iv.box.rects == () and "Click a unit" in panel.readout.text()


def test_an_effective_field_that_fails_leaves_the_box_and_stops_saying_computing(qtbot, monkeypatch):
    """In effective-field mode the box and masks come first; when the effective field then
    fails, they stay on screen and the readout no longer says it is computing it."""
    from cnnplay import Network

    def fail(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(Network, "effective_receptive_field", fail)
    session, worker, controller, panel = make(qtbot)
    panel.effective_box.setChecked(True)
    failed = []
    controller.failed.connect(failed.append)
    session.select_unit(2, (0, 2, 5))
    assert controller.field_is_current() and controller.field.effective is None and failed
    iv = panel.input_view.image_view
    np.testing.assert_array_equal(iv.tint.covered(iv.shape), session.network.receptive_field(2, (0, 2, 5)).mask)
    assert "box" in panel.readout.text() and "computing" not in panel.readout.text()
    assert not iv.heat.isVisible()


def test_clicks_repaint_only_what_changed_and_leave_no_stale_marks(qtbot):
    """The tint's patches and the boxes tell Qt only the rects they left and drew: after
    each click, what the screen would hold (the last picture, repainted only where Qt
    sent paint events) equals the maps drawn afresh, and the repainted area is a small
    part of each map that changed."""
    from PySide6.QtCore import QEvent, QObject
    from PySide6.QtGui import QImage, QPainter, QRegion

    x = np.random.default_rng(2).standard_normal((2, 44, 92)).astype(np.float32)  # fields small on the maps
    session, worker, controller, panel = make(qtbot, x=x)
    canvases = {k: panel.cards[k].current_view().canvas for k in (0, 1, 2)}
    canvases["input"] = panel.input_view.image_view.plot
    grabbing = [False]

    def grab(canvas):
        grabbing[0] = True  # (a grab paints the widget too: not a repaint Qt asked for)
        try:
            return canvas.viewport().grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
        finally:
            grabbing[0] = False

    class Painted(QObject):
        def __init__(self):
            super().__init__()
            self.regions = {k: QRegion() for k in canvases}

        def eventFilter(self, obj, ev):
            if ev.type() == QEvent.Type.Paint and not grabbing[0]:
                for k, c in canvases.items():
                    if obj is c.viewport():
                        self.regions[k] = self.regions[k].united(ev.region())
            return False

    def pixels(img):
        a = np.frombuffer(img.constBits(), np.uint32).reshape(img.height(), img.bytesPerLine() // 4)
        return a[:, :img.width()].copy()

    painted = Painted()
    screen = {}
    for k, c in canvases.items():
        c.viewport().installEventFilter(painted)
        screen[k] = grab(c)
    area = {k: 0 for k in canvases}

    def settle():
        for _ in range(5):
            QApplication.processEvents()
            for k, c in canvases.items():
                r = painted.regions[k]
                if not r.isEmpty():
                    area[k] += sum(x.width() * x.height() for x in r)
                    p = QPainter(screen[k])
                    p.setClipRegion(r)
                    p.drawImage(0, 0, grab(c))
                    p.end()
                    painted.regions[k] = QRegion()

    try:
        for layer, unit in [(2, (1, 2, 3)), (2, (0, 3, 4)), (1, (4, 0, 0)), (2, (2, 10, 19)), (4, (3,)),
                            (3, (17,)), (0, (1, 5, 5)), (2, (1, 2, 3)), (2, (1, 0, 43))]:
            area = {k: 0 for k in canvases}
            session.select_unit(layer, unit)
            assert controller.field_is_current()
            settle()
            for k, c in canvases.items():
                np.testing.assert_array_equal(pixels(screen[k]), pixels(grab(c)), err_msg=f"{k} after {unit}")
            if (layer, unit) == (2, (2, 10, 19)):  # a small field moved on two mosaics: small repaints
                for k in (0, 1):
                    vp = canvases[k].viewport()
                    assert 0 < area[k] < 0.25 * vp.width() * vp.height()
    finally:
        for c in canvases.values():
            c.viewport().removeEventFilter(painted)
