"""The three ways a layer's output is drawn: a mosaic of 2D channels, lanes of
1D channels, bars of a flat vector. Items are created once per view and
updated in place; clicks and hovers come out as unit indices."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QVBoxLayout, QWidget

from . import grid as g
from . import style
from .colorbar import ColorBar
from .marks import Marks
from .tint import Tint


class _MapView(QWidget):
    """Base: a pyqtgraph canvas whose clicks and hovers map to units."""

    clicked = Signal(tuple)  # a unit of the shown array
    double_clicked = Signal(tuple)
    hovered = Signal(object)  # a unit, or None when the pointer leaves the data

    def _connect_scene(self, scene, view_box):
        self.view_box = view_box
        view_box.home = self.home
        scene.sigMouseMoved.connect(self._on_move)
        scene.sigMouseClicked.connect(self._on_click)

    def locate(self, vx: float, vy: float):
        raise NotImplementedError

    def home(self) -> None:
        """Reset zoom: the whole content, as first shown."""
        self.view_box.autoRange(padding=0.02)

    def context_menu(self, scene_pos=None):
        """The right-click menu (cnnplay's own actions; built fresh each time)."""
        return self.view_box.cnnplay_menu(scene_pos)

    def unit_at_scene(self, pos):
        if not self.view_box.sceneBoundingRect().contains(pos):
            return None
        p = self.view_box.mapSceneToView(pos)
        return self.locate(p.x(), p.y())

    def _on_move(self, pos):
        self.hovered.emit(self.unit_at_scene(pos))

    def _on_click(self, ev):
        if ev.button() != Qt.LeftButton:
            return
        unit = self.unit_at_scene(ev.scenePos())
        if unit is not None:
            ev.accept()
            (self.double_clicked if ev.double() else self.clicked).emit(unit)

    def leaveEvent(self, ev):
        self.hovered.emit(None)
        super().leaveEvent(ev)


class MosaicView(_MapView):
    """Channels of a (C, H, W) map as a grid of small images, one shared colour bar."""

    def __init__(self, name: str = "maps", parent=None, actions=None):
        super().__init__(parent)
        self.canvas = style.graphics_widget()
        vb = style.ZoomViewBox(lockAspect=True, invertY=True)
        self.canvas.addItem(vb, 0, 0)
        self.bar = ColorBar(values=(0, 1), colormap=style.colormap(False), width=10)
        self.canvas.addItem(self.bar, 0, 1)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.tint = Tint(style.FIELD, 95)  # the field's mask on every tile
        self.box = Marks(style.pen(style.FIELD, 1.2))  # its box on every tile
        self.marker = Marks(style.pen(style.SELECT, 2))  # the selected unit and its tile
        for z, item in enumerate((self.image, self.tint, self.box, self.marker)):
            item.setZValue(z)
            vb.addItem(item, ignoreBounds=item is not self.image)
        style.own_menu(vb, self.canvas, name, actions)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.canvas)
        self._connect_scene(self.canvas.scene(), vb)
        self.setToolTip("Click: select a unit and see its receptive field · Double-click: enlarge the channel "
                        "(again: all channels) · Right-click: export and more · Ctrl+wheel: zoom")
        self.grid: g.TileGrid | None = None
        self.scale: float | None = None
        self.levels = (0.0, 1.0)
        self.gap_value = -1.0
        self.diverging = False
        self._field = None
        self._selected = None

    def locate(self, vx, vy):
        return None if self.grid is None else self.grid.locate(vx, vy)

    def home(self) -> None:
        if self.grid is not None:
            gh, gw = self.grid.shape
            self.view_box.setRange(QRectF(0, 0, gw, gh), padding=0.0)

    def set_maps(self, maps: np.ndarray, channels: tuple[int, ...], per_channel: bool,
                 layer_range: tuple[float, float], aspect: float = 3.5, cols: int | None = None,
                 gap: int = 1, scale: float | None = None) -> None:
        """Show maps[channels]; `layer_range` is (min, max) over the whole layer. `gap`
        (map px between tiles) and `scale` (screen px per map px) come from the card's
        tile layout; marks are drawn at least g.MIN_MARK_PX screen px wide."""
        _, h, w = maps.shape
        old = self.grid
        self.scale = scale
        self.grid = g.TileGrid(tuple(channels), h, w, cols or g.choose_cols(len(channels), h, w, aspect), gap)
        levels, div = g.layer_levels(*layer_range)
        shown = maps[list(channels)] if len(channels) != maps.shape[0] else maps
        if per_channel:
            shown = g.per_channel_normalized(shown, div)
            levels = (-1.0, 1.0) if div else (0.0, 1.0)
        colours_changed = old is None or div != self.diverging
        levels_changed = old is None or tuple(levels) != tuple(self.levels)
        self.levels, self.diverging = levels, div
        image_levels, self.gap_value = style.gap_levels(levels)
        self.image.setImage(self.grid.mosaic(shown, fill=self.gap_value), autoLevels=False, levels=image_levels,
                            lut=style.lut_with_gap(div))
        # The colour bar only when it changes: setting the same map or range again rebuilds
        # its gradient or re-lays out its axis, and repaints both.
        if colours_changed:
            self.bar.setColorMap(style.colormap(div))
        if levels_changed:
            self.bar.setLevels(values=levels)
        if old is None or old.shape != self.grid.shape:
            self.home()
        self._draw_overlays()

    def set_overlays(self, field=None, selected=None) -> None:
        """field: the receptive field on this map (box and mask over (H, W)); selected: (c, y, x)."""
        if field is not self._field:
            self._field = field
            self._draw_field()
        if selected != self._selected:
            self._selected = selected
            self._draw_marker()

    def _draw_overlays(self):
        self._draw_field()
        self._draw_marker()

    def _draw_field(self):
        """The field's mask as a tint over its box on every tile (one small image), and the box."""
        grid, field = self.grid, self._field
        if grid is None or field is None or tuple(field.shape) != (grid.h, grid.w):
            self.tint.show_mask(None)
            self.box.set_rects(())
            return
        (y0, y1), (x0, x1) = g.clip_box(field.box, (grid.h, grid.w))
        self.tint.show_mask(np.asarray(field.mask)[y0:y1, x0:x1], g.tile_box_rects(grid, field.box))
        self.box.set_rects(g.tile_box_rects(grid, field.box, self.least()))

    def least(self) -> float:
        """The smallest mark in map px: g.MIN_MARK_PX on screen."""
        vb = self.view_box
        shown = vb.viewRect().width()
        scale = vb.width() / shown if vb.width() > 0 and shown > 0 else (self.scale or 1.0)  # as drawn
        return g.MIN_MARK_PX / scale

    def _draw_marker(self):
        grid, sel = self.grid, self._selected
        tile = None if grid is None or sel is None or len(sel) != 3 else grid.tile_of(sel[0])
        if tile is None or not (0 <= sel[1] < grid.h and 0 <= sel[2] < grid.w):
            self.marker.set_rects(())
        else:
            oy, ox = grid.origin(tile)
            least = self.least()
            x0, x1 = g.widen(ox + sel[2], ox + sel[2] + 1, least)
            y0, y1 = g.widen(oy + sel[1], oy + sel[1] + 1, least)
            self.marker.set_rects([(x0, y0, x1, y1), (ox - 0.5, oy - 0.5, ox + grid.w + 0.5, oy + grid.h + 0.5)])


class LanesView(_MapView):
    """Channels of a (C, L) signal as stacked curves, one lane per channel."""

    def __init__(self, name: str = "signal", parent=None, actions=None):
        super().__init__(parent)
        self.plot = pg.PlotWidget(viewBox=style.ZoomViewBox(invertY=True))
        self.plot.setBackground(style.BACKGROUND)
        pi = self.plot.getPlotItem()
        pi.hideAxis("left")
        pi.setMouseEnabled(x=True, y=False)
        pi.hideButtons()
        vb = pi.getViewBox()
        self.tint = Tint(style.FIELD, 70)  # the field's mask across all lanes
        self.box = Marks(style.pen(style.FIELD, 1.2))
        self.heat = pg.ImageItem(axisOrder="row-major")
        self.curve = pg.PlotCurveItem(connect="finite", pen=style.pen(style.CURVE, 1))
        self.marker = Marks(style.pen(style.SELECT, 2))
        for z, item in enumerate((self.tint, self.heat, self.curve, self.box, self.marker)):
            item.setZValue(z)
            vb.addItem(item, ignoreBounds=isinstance(item, (Tint, Marks)))
        style.own_menu(vb, self.plot, name, actions, chart=pi)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot)
        self._connect_scene(self.plot.scene(), vb)
        self.channels: tuple[int, ...] = ()
        self.length = 0
        self._field = None
        self._selected = None

    def locate(self, vx, vy):
        return g.locate_lane(vx, vy, self.channels, self.length)

    def set_signal(self, maps: np.ndarray, channels: tuple[int, ...], per_channel: bool) -> None:
        shown = maps[list(channels)]
        peak = np.abs(shown).max(axis=1) if shown.size else np.ones(len(channels))
        scales = peak if per_channel else np.full(len(channels), peak.max() if peak.size else 1.0)
        x, y = g.lanes_curve(shown, scales)
        changed = (tuple(channels), maps.shape[1]) != (self.channels, self.length)
        self.channels, self.length = tuple(channels), maps.shape[1]
        self.curve.setData(x, y)
        if changed:
            self.view_box.setRange(QRectF(0, 0, self.length, len(channels)), padding=0.01)
        self._draw_overlays()

    def set_overlays(self, field=None, selected=None, effective=None) -> None:
        if field is self._field and selected == self._selected and effective is getattr(self, "_effective", None):
            return
        self._field, self._selected = field, selected
        self._effective = effective
        self._draw_overlays()

    def _draw_overlays(self):
        n, length, field = len(self.channels), self.length, self._field
        if field is None or tuple(field.shape) != (length,) or n == 0:
            self.tint.show_mask(None)
            self.box.set_rects(())
        else:
            (a, b), = g.clip_box(field.box, (length,))
            self.tint.show_mask(np.asarray(field.mask)[None, a:b], [(a, 0, b, n)])
            self.box.set_rects([(a, 0, b, n)] if b > a else [])
        eff = getattr(self, "_effective", None)
        if eff is None or n == 0 or np.shape(eff) != (length,):
            self.heat.setVisible(False)
        else:
            top = float(np.max(eff)) or 1.0
            self.heat.setImage(np.asarray(eff, np.float32)[None, :], autoLevels=False, levels=(0, top),
                               lut=style.heat_lut())
            self.heat.setRect(QRectF(0, 0, length, n))
            self.heat.setVisible(True)
        sel = self._selected
        lane = None
        if sel is not None and len(sel) == 2 and sel[0] in self.channels and 0 <= sel[1] < length:
            lane = self.channels.index(sel[0])
        if lane is None:
            self.marker.set_rects(())
        else:
            self.marker.set_rects([(sel[1], lane, sel[1] + 1, lane + 1)])


class BarsView(_MapView):
    """A flat vector (flatten or linear output) as a bar chart, one bar per feature.

    The bars are one filled step curve (cheap to update, unlike a BarGraphItem);
    the features in the selected unit's field are drawn again in the field colour,
    the selected feature in the selection colour."""

    GAPPED_BELOW = 200  # fewer bars than this get gaps between them

    def __init__(self, name: str = "outputs", parent=None, actions=None):
        super().__init__(parent)
        self.plot = pg.PlotWidget(viewBox=style.ZoomViewBox())
        self.plot.setBackground(style.BACKGROUND)
        pi = self.plot.getPlotItem()
        pi.setMouseEnabled(x=True, y=False)
        pi.hideButtons()
        pi.showGrid(y=True, alpha=0.15)
        vb = pi.getViewBox()
        self.bars = _step_bars(style.CURVE)
        self.field_bars = _step_bars(style.FIELD)
        self.highlight = _step_bars(style.SELECT)
        self.zero = pg.InfiniteLine(pos=0, angle=0, pen=style.pen(style.MUTED, 1))
        for z, item in enumerate((self.zero, self.bars, self.field_bars, self.highlight)):
            item.setZValue(z)
            vb.addItem(item)
        style.own_menu(vb, self.plot, name, actions, chart=pi)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot)
        self._connect_scene(self.plot.scene(), vb)
        self.values = np.zeros(0, np.float32)
        self._field = None
        self._selected = None

    @property
    def bar_count(self) -> int:
        return len(self.heights())

    def heights(self) -> np.ndarray:
        """The bar heights on screen, one per feature."""
        return g.bar_heights(self.bars.yData, len(self.values) < self.GAPPED_BELOW) \
            if self.bars.yData is not None else np.zeros(0, np.float32)

    def field_heights(self) -> np.ndarray:
        """Heights drawn in the field colour (0 for features outside the field)."""
        return g.bar_heights(self.field_bars.yData, len(self.values) < self.GAPPED_BELOW) \
            if self.field_bars.isVisible() and self.field_bars.yData is not None else np.zeros(len(self.values))

    def locate(self, vx, vy):
        return g.locate_bar(vx, len(self.values))

    def set_values(self, values: np.ndarray) -> None:
        changed = len(values) != len(self.values)
        self.values = np.asarray(values, np.float32)
        x, y = g.bar_steps(self.values, len(self.values) < self.GAPPED_BELOW)
        self.bars.setData(x, y)
        if changed:
            lo, hi = g.finite_range(self.values)
            self.view_box.setRange(QRectF(0, min(lo, 0), max(len(values), 1), max(hi, 0) - min(lo, 0) or 1),
                                   padding=0.03)
        else:
            self.view_box.enableAutoRange(axis="y")
        self._draw_overlays()

    def set_class_names(self, names) -> None:
        """Label the bars with class names (None: plain feature numbers); the y axis then
        holds probabilities from 0 to 1."""
        names = None if names is None else tuple(names)
        if names == getattr(self, "class_names", None):
            return
        self.class_names = names
        axis = self.plot.getPlotItem().getAxis("bottom")
        pi = self.plot.getPlotItem()
        if names is None:
            axis.setTicks(None)
            pi.setLabel("left", "")
            return
        axis.setTicks([[(i + 0.5, n) for i, n in enumerate(names)], []])
        pi.setLabel("left", "probability")
        self.view_box.setRange(QRectF(0, 0, max(len(names), 1), 1.0), padding=0.03)

    def set_overlays(self, field=None, selected=None) -> None:
        if field is self._field and selected == self._selected:
            return
        self._field, self._selected = field, selected
        self._draw_overlays()

    def _draw_overlays(self):
        n, field = len(self.values), self._field
        gapped = n < self.GAPPED_BELOW
        mask = None if field is None else np.asarray(field.mask)
        if mask is None or mask.shape != (n,) or n == 0:
            self.field_bars.setVisible(False)
        else:
            x, y = g.bar_steps(np.where(mask, self.values, 0).astype(np.float32), gapped)
            self.field_bars.setData(x, y)
            self.field_bars.setVisible(True)
        sel = self._selected
        if sel is not None and len(sel) == 1 and 0 <= sel[0] < n:
            f = sel[0]
            pad = 0.05 if gapped else 0.0
            self.highlight.setData(np.array([f + pad, f + 1 - pad], np.float32),
                                   np.array([self.values[f]], np.float32))
            self.highlight.setVisible(True)
        else:
            self.highlight.setVisible(False)


def _step_bars(color) -> pg.PlotCurveItem:
    c = QColor(color)
    return pg.PlotCurveItem(x=np.zeros(1, np.float32), y=np.zeros(0, np.float32), stepMode="center", fillLevel=0,
                            brush=pg.mkBrush(c), pen=pg.mkPen(None))
