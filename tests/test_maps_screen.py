"""Maps that fill the screen (issue 16), driven through the real window offscreen:
tile sizes, the zoom, scrolling to a selected layer, wrapped headers, exports and
the right-click menu."""

import json

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication, QMenu

from cnnplay.app.main import create_window
from cnnplay.app.views import grid as g
from cnnplay.bundled import resource
from cnnplay.core.network import Network
from cnnplay.core.session import Session
from qt_events import EventRecorder

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def open_window(qtbot, spec, x, size=(1536, 940)):
    """A window the size cnnplay opens on a 1600x1000 screen (96 % x 94 %)."""
    session = Session(spec, x, {"kind": "image", "sample": "camera.png", "mode": "gray"})
    w = create_window(session=session, synchronous=True)
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    w._size_docks()
    qtbot.waitUntil(lambda: w.controller.forward_is_current())
    QApplication.processEvents()
    return w


def tile_px(view) -> float:
    """Screen px of one tile's longer side, measured from the view box as drawn."""
    vb = view.view_box
    per_px = vb.width() / vb.viewRect().width()
    return max(view.grid.h, view.grid.w) * per_px


def rng_input(shape):
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def test_sixteen_channels_of_128_show_tiles_of_96_px_without_zooming(qtbot, home):
    spec = {"input": [1, 128, 128], "layers": [{"type": "conv2d", "out_channels": 16, "kernel_size": 3,
                                                 "padding": 1}]}
    w = open_window(qtbot, spec, rng_input((1, 128, 128)))
    card = w.central.cards[0]
    qtbot.waitUntil(lambda: card.mosaic is not None and card.mosaic.grid is not None)
    view = card.mosaic
    assert len(view.grid.channels) == 16
    assert tile_px(view) >= 96
    # the whole mosaic is on screen: its height fits the card (no tile cut off)
    gh, gw = view.grid.shape
    assert view.view_box.viewRect().height() >= gh - 1e-6 and view.view_box.viewRect().width() >= gw - 1e-6


def test_the_zoom_sets_the_tile_size_from_the_toolbar_and_the_keyboard(qtbot, home):
    spec = {"input": [1, 32, 32], "layers": [{"type": "conv2d", "out_channels": 16, "kernel_size": 3,
                                               "padding": 1}]}
    w = open_window(qtbot, spec, rng_input((1, 32, 32)))
    panel, card = w.central, w.central.cards[0]
    before = tile_px(card.mosaic)
    panel.tile_slider.setValue(200)
    assert w.session.view["tile_size"] == 200
    qtbot.waitUntil(lambda: tile_px(card.mosaic) >= 199)
    assert tile_px(card.mosaic) > before
    panel.levels_box.setFocus()
    qtbot.keyClick(panel.levels_box, Qt.Key_Minus, Qt.ControlModifier)
    assert w.session.view["tile_size"] == 160
    qtbot.keyClick(panel.levels_box, Qt.Key_0, Qt.ControlModifier)
    assert w.session.view["tile_size"] == g.DEFAULT_TILE
    w.projector_action.trigger()  # View > Projector: larger text and tiles
    assert w.session.view["tile_size"] >= 192 and QApplication.font().pointSizeF() > 0
    w.projector_action.trigger()
    assert w.session.view["tile_size"] == g.DEFAULT_TILE


def test_selecting_a_row_scrolls_the_maps_to_its_card(qtbot, home):
    ex = json.loads(resource("examples", "vgg_like.json").read_text())
    spec = ex["network"]
    w = open_window(qtbot, spec, rng_input(tuple(spec["input"])))
    view, panel = w.stack.view, w.central
    last = len(spec["layers"]) - 1
    assert not panel._in_view(panel.cards[last])
    rect = view.visualRect(view.model().index(last))
    view.scrollTo(view.model().index(last))
    rect = view.visualRect(view.model().index(last))
    qtbot.mouseClick(view.viewport(), Qt.LeftButton, pos=rect.center())
    assert w.session.selected_layer == last
    bar = panel.scroll.verticalScrollBar()
    top = panel.cards[last].geometry().top()
    assert bar.value() <= top <= bar.value() + panel.scroll.viewport().height() - 20
    assert panel._in_view(panel.cards[last])


def test_card_headers_wrap_and_the_hover_readout_has_its_own_line(qtbot, home):
    spec = {"input": [1, 64, 64], "layers": [{"type": "conv2d", "out_channels": 16, "kernel_size": 3,
                                               "padding": 1, "dilation": 1, "stride": 1}]}
    w = open_window(qtbot, spec, rng_input((1, 64, 64)), size=(1000, 700))
    card = w.central.cards[0]
    w.central.splitter.setSizes([600, 300])  # a narrow maps column
    qtbot.waitUntil(lambda: card.width() < 330)
    QApplication.processEvents()
    title = card.title
    assert "16 × 64 × 64" in title.text()
    assert title.height() >= title.heightForWidth(title.width())  # every wrapped line shown
    assert title.heightForWidth(title.width()) > title.fontMetrics().height() * 1.5  # it did wrap
    view = card.mosaic
    pos = view.view_box.mapViewToScene(QPointF(2.5, 3.5))
    view._on_move(pos)
    assert card.info.text().startswith("ch 0  y 3  x 2") and "double-click" in card.info.text()
    assert card.info.geometry().top() >= title.geometry().bottom()
    assert card.info.isVisible() and card.title.isVisible()


def test_tile_borders_stay_visible_at_512_px(qtbot, home):
    spec = {"input": [1, 512, 512], "layers": [{"type": "conv2d", "out_channels": 8, "kernel_size": 3,
                                                 "padding": 1}]}
    w = open_window(qtbot, spec, rng_input((1, 512, 512)))
    view = w.central.cards[0].mosaic
    vb = view.view_box
    per_px = vb.width() / vb.viewRect().width()
    assert view.grid.gap * per_px >= 1.5  # the gap between tiles is drawn at least ~2 screen px
    img = view.image.image
    oy, ox = view.grid.origin(1)
    assert (img[:, ox - view.grid.gap:ox] == view.gap_value).all()  # and holds the gap value


def test_field_marks_on_a_shrunk_earlier_map_are_a_few_pixels_wide(qtbot, home):
    spec = {"input": [1, 384, 384], "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 1},
                                                {"type": "conv2d", "out_channels": 4, "kernel_size": 1}]}
    w = open_window(qtbot, spec, rng_input((1, 384, 384)))
    w.session.select_unit(1, (0, 100, 200))
    qtbot.waitUntil(lambda: w.controller.field_is_current())
    QApplication.processEvents()
    view = w.central.cards[0].mosaic
    assert w.session.network.receptive_field(1, (0, 100, 200), onto=0).box == ((100, 101), (200, 201))
    x0, y0, x1, y1 = view.box.rects[0]
    per_px = view.view_box.width() / view.view_box.viewRect().width()
    assert per_px < 0.5  # the map is shrunk: one map px is less than a screen px
    assert (x1 - x0) * per_px >= g.MIN_MARK_PX - 0.01 and (y1 - y0) * per_px >= g.MIN_MARK_PX - 0.01
    assert len(view.box.rects) == 4  # one per tile, each about the field's pixel
    for t, (x0, y0, x1, y1) in enumerate(view.box.rects):
        oy, ox = view.grid.origin(t)
        assert x0 < ox + 200.5 < x1 and y0 < oy + 100.5 < y1
    sx0, _, sx1, _ = w.central.cards[1].mosaic.marker.rects[0]  # the selected unit
    assert (sx1 - sx0) * per_px >= g.MIN_MARK_PX - 0.01


def test_png_export_of_a_layer_at_full_resolution(qtbot, home, tmp_path):
    from cnnplay.app.views import style
    from cnnplay.app.views.export import export_scale
    spec = {"input": [1, 20, 30], "layers": [{"type": "conv2d", "out_channels": 3, "kernel_size": 3,
                                               "padding": 1}]}
    w = open_window(qtbot, spec, rng_input((1, 20, 30)))
    card = w.central.cards[0]
    path = card.export_png(str(tmp_path / "layer0"))
    img = QImage(path)
    a = card.array
    s = export_scale(20, 30)
    assert s >= 1 and 30 * s >= 64
    assert img.width() >= 3 * 30 * s and img.height() >= 20 * s
    # find tile 0: nearest-neighbour blocks of s x s pixels with the colour-map colour of each value
    lo, hi = float(a.min()), float(a.max())
    m = max(-lo, hi)
    lut = style.lut(True) if lo < 0 else style.lut(False)
    levels = (-m, m) if lo < 0 else (lo, hi)
    rgb = np.array([[img.pixelColor(x, y).getRgb()[:3] for x in range(img.width())]
                    for y in range(img.height())], np.uint8)

    def colour(v):
        t = (v - levels[0]) / (levels[1] - levels[0])
        return lut[int(min(max(round(t * 255), 0), 255))]

    want = np.array([[colour(float(a[0, y, x])) for x in range(30)] for y in range(20)], np.uint8)
    big = np.repeat(np.repeat(want, s, axis=0), s, axis=1)
    hits = [(y, x) for y in range(img.height() - big.shape[0]) for x in range(0, 40)
            if (np.abs(rgb[y:y + big.shape[0], x:x + big.shape[1]].astype(int) - big).max() <= 1)]
    assert hits, "channel 0 is in the file, each map pixel an s x s block of its colour"
    top = hits[0][0]
    assert (rgb[:top] != rgb[0, 0]).any(axis=-1).any()  # the title is written above the tiles


def test_right_click_shows_cnnplay_actions_not_pyqtgraphs(qtbot, home, monkeypatch, tmp_path):
    spec = {"input": [1, 32, 32], "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3,
                                               "padding": 1}]}
    w = open_window(qtbot, spec, rng_input((1, 32, 32)))
    card = w.central.cards[0]
    view = card.mosaic
    shown = []
    monkeypatch.setattr(QMenu, "popup", lambda self, *a: shown.append([x.text() for x in self.actions()]))
    scene = view.view_box.mapViewToScene(QPointF(3.5, 4.5))
    pt = view.canvas.mapFromScene(scene)
    qtbot.mouseClick(view.canvas.viewport(), Qt.RightButton, pos=pt)
    assert shown, "a right-click opens a menu"
    texts = shown[-1]
    assert "Enlarge channel 0" in texts and "Export layer as PNG..." in texts and "Select this unit" in texts
    assert not {"View All", "Export...", "Mouse Mode", "Plot Options"} & set(texts)
    assert view.view_box.menu is None  # pyqtgraph's own menu is never built
    # the training charts have cnnplay's menu too
    for plot in (w.train_panel.curves.loss_plot, w.train_panel.curves.acc_plot):
        vb = plot.getPlotItem().getViewBox()
        assert vb.menuEnabled() and vb.menu is None
        chart_texts = [a.text() for a in vb.cnnplay_menu(None).actions()]
        assert "Export chart as SVG..." in chart_texts and "Save view as PNG..." in chart_texts
    path = str(tmp_path / "chart.svg")
    monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getSaveFileName", lambda *a, **k: (path, ""))
    growth = w.concept_panels["RF growth"]
    pi = next(iter(growth.plots.values()))
    menu = pi.getViewBox().cnnplay_menu(None)
    svg = next(a for a in menu.actions() if a.text() == "Export chart as SVG...")
    svg.trigger()
    assert open(path).read().lstrip().startswith("<?xml") and "<svg" in open(path).read()


def test_enlarge_button_and_the_double_click_hint(qtbot, home):
    spec = {"input": [1, 32, 32], "layers": [{"type": "conv2d", "out_channels": 4, "kernel_size": 3,
                                               "padding": 1}]}
    w = open_window(qtbot, spec, rng_input((1, 32, 32)))
    card = w.central.cards[0]
    assert card.enlarge.isVisible() and "double-click" in card.enlarge.toolTip()
    assert "ouble-click" in card.mosaic.toolTip()
    w.session.select_unit(0, (2, 5, 5))
    qtbot.mouseClick(card.enlarge, Qt.LeftButton)
    assert card.enlarged == 2 and card.mosaic.grid.channels == (2,)
    assert card.back.isVisible() and not card.enlarge.isVisible()
    qtbot.mouseClick(card.back, Qt.LeftButton)
    assert card.enlarged is None and len(card.mosaic.grid.channels) == 4


def test_the_maps_column_is_as_tall_as_its_cards_and_keeps_its_height_through_edits(qtbot, home):
    """The column of layer cards ends at the last card (no blank space under it) and keeps
    its height when an edit changes a summary but no card's size: resizing the column
    repaints every map in sight. Cards out of view (not drawn yet) count with the height
    they have."""
    from PySide6.QtCore import QEvent
    spec = {"input": [1, 24, 24], "layers": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 5, "padding": 2}, {"type": "batchnorm"},
        {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"}, {"type": "linear", "out_features": 4}]}
    # the real worker, as in the app: the cards out of sight get their maps while out of sight
    w = create_window(session=Session(spec, rng_input((1, 24, 24)), {"kind": "test"}))
    qtbot.addWidget(w)
    w.resize(1600, 1000)
    w.show()
    qtbot.waitExposed(w)
    qtbot.waitUntil(w.controller.forward_is_current)
    panel = w.central
    container, lay = panel.container, panel.cards_layout

    def content_height():
        m = lay.contentsMargins()
        cards = [c for c in panel.cards if not c.isHidden()]
        return sum(c.height() for c in cards) + lay.spacing() * (len(cards) - 1) + m.top() + m.bottom()

    qtbot.waitUntil(lambda: container.height() == max(content_height(), panel.scroll.viewport().height()))
    assert not panel.cards[-1].in_view  # the last cards are out of sight
    heights, total = [c.height() for c in panel.cards], container.height()
    spy = EventRecorder(container, QEvent.Type.Resize, lambda ev: ev.size().height())
    resized = spy.seen
    for d in (2, 1, 2):  # a longer summary ("p2, d2"), a shorter one, ...: the same output shape
        w.editor.update_layer(4, merge=False, dilation=d, padding=d)
        qtbot.waitUntil(w.controller.forward_is_current)
        qtbot.wait(50)
        assert [c.height() for c in panel.cards] == heights
        assert container.height() == total and resized == []
    spy.remove()


def test_a_pool_edit_that_changes_the_map_sizes_reuses_the_cards_items_and_weights(qtbot, home):
    """An avgpool's kernel 2 -> 1 -> 2 halves, doubles and halves the maps after it: the same
    cards, views and image items show the new sizes (updated in place), and the linear layer
    after the flatten takes back the weights it had at that input size (the undo history
    holds them) instead of drawing them again on the worker."""
    spec = {"input": [1, 32, 32], "layers": [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "avgpool2d", "kernel_size": 2}, {"type": "flatten"}, {"type": "linear", "out_features": 5}]}
    w = open_window(qtbot, spec, rng_input((1, 32, 32)))
    panel = w.central
    cards = list(panel.cards)
    for c in cards:
        c.flush()  # draw the cards out of sight too
    pool, flat = cards[2], cards[3]
    mosaic, image, bars = pool.mosaic, pool.mosaic.image, flat.bars
    weight16 = w.session.network.params(4)["weight"]
    assert weight16.shape == (5, 4 * 16 * 16) and pool.mosaic.grid.h == 16
    weights = {}
    for k, side in ((1, 32), (2, 16), (1, 32)):
        w.editor.update_layer(2, merge=False, kernel_size=k)
        qtbot.waitUntil(w.controller.forward_is_current)
        QApplication.processEvents()
        for c in cards:
            c.flush()
        assert list(panel.cards) == cards  # the same cards, not new ones
        assert pool.mosaic is mosaic and pool.mosaic.image is image and flat.bars is bars
        assert (pool.mosaic.grid.h, pool.mosaic.grid.w) == (side, side)
        assert image.image.shape == pool.mosaic.grid.shape  # the new mosaic is what the item holds
        assert f"4 × {side} × {side}" in pool.title.text()
        assert len(bars.values) == 4 * side * side and bars.bar_count == 4 * side * side
        np.testing.assert_array_equal(bars.values, w.controller.forward.outputs[3])
        weight = w.session.network.params(4)["weight"]
        assert weight.shape == (5, 4 * side * side)
        weights.setdefault(k, weight)
        assert np.shares_memory(weight, weights[k])  # back to a size seen before: the same weights
    assert np.shares_memory(w.session.network.params(4)["weight"], weights[1])
    # ... and they are the values a fresh network draws for that size
    fresh = Network.from_dict(w.session.spec, seed=w.session.seed)
    np.testing.assert_array_equal(fresh.params(4)["weight"], weights[1])
    w.undo_stack.undo()  # back to kernel 2: the network the history held, its maps in the same items
    qtbot.waitUntil(w.controller.forward_is_current)
    pool.flush()
    assert pool.mosaic.image is image and (pool.mosaic.grid.h, pool.mosaic.grid.w) == (16, 16)
    assert np.shares_memory(w.session.network.params(4)["weight"], weights[2])
