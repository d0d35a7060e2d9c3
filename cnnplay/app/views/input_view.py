"""The input as the network sees it, with the selected unit's receptive field:
the theoretical box (solid where it lies on the input, dashed and hatched where
it lies in the padding), the exact mask as a tint (dilation holes show) and,
on a toggle, the effective field as a heat map."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QGraphicsRectItem, QStackedWidget, QVBoxLayout, QWidget

from . import grid as g
from . import style
from .cards import StaleOverlay, format_value, shape_text
from .maps import LanesView
from .marks import Marks
from .tint import Tint


class InputImageView(QWidget):
    hovered = Signal(object)  # (y, x) or None

    def __init__(self, parent=None):
        super().__init__(parent)
        self.plot = pg.PlotWidget(viewBox=style.ZoomViewBox(lockAspect=True, invertY=True, wheel_zoom=True))
        self.plot.setBackground(style.BACKGROUND)
        pi = self.plot.getPlotItem()
        pi.hideButtons()
        pi.hideAxis("left")  # the hover readout gives coordinates; the image gets the room
        pi.hideAxis("bottom")
        pi.setContentsMargins(0, 0, 0, 0)
        self.view_box = vb = pi.getViewBox()
        self.image = pg.ImageItem(axisOrder="row-major")
        self.hatch = QGraphicsRectItem()
        c = QColor(style.PADDING)
        c.setAlpha(120)
        self.hatch.setBrush(QBrush(c, Qt.BDiagPattern))
        self.hatch.setPen(pg.mkPen(None))
        self.tint = Tint(style.FIELD, 110)  # the field's mask over its box
        self.heat = pg.ImageItem(axisOrder="row-major")
        self.box = Marks(style.pen(style.FIELD, 2))  # the box on the input
        self.full_box = Marks(style.pen(style.PADDING, 1.5, Qt.DashLine))  # all of it, padding included
        for z, item in zip((-1, 0, 1, 2, 3, 4), (self.hatch, self.image, self.tint, self.heat, self.full_box, self.box)):
            item.setZValue(z)
            vb.addItem(item, ignoreBounds=isinstance(item, (Tint, Marks)))
        style.own_menu(vb, self.plot, "input")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.plot)
        self.plot.scene().sigMouseMoved.connect(self._on_move)
        vb.home = self.fit
        self.shape = (0, 0)
        self.field = None

    def set_image(self, x: np.ndarray) -> None:
        """x: (C, H, W). RGB for 3 channels, grey for 1, the channel mean otherwise."""
        c, h, w = x.shape
        lo, hi = g.finite_range(x)
        if hi <= lo:
            hi = lo + 1.0
        if c == 3:
            img = np.ascontiguousarray(np.moveaxis(x, 0, -1))
            self.image.setImage(img, autoLevels=False, levels=(lo, hi), lut=None)
        else:
            img = x[0] if c == 1 else x.mean(axis=0)
            self.image.setImage(img, autoLevels=False, levels=(lo, hi), lut=None)
        if self.shape != (h, w):
            self.shape = (h, w)
            self.fit()
            self.set_field(None, None)

    def fit(self) -> None:
        """The whole image, edge to edge."""
        h, w = self.shape
        if h and w:
            self.view_box.setRange(QRectF(0, 0, w, h), padding=0.0)

    def set_field(self, field, effective: np.ndarray | None) -> None:
        if field is self.field and effective is getattr(self, "effective", None):
            return
        self.field, self.effective = field, effective
        h, w = self.shape
        if field is None or tuple(field.shape) != (h, w):
            for item in (self.heat, self.hatch):
                item.setVisible(False)
            self.tint.show_mask(None)
            self.box.set_rects(())
            self.full_box.set_rects(())
            return
        (y0, y1), (x0, x1) = field.box
        (cy0, cy1), (cx0, cx1) = g.clip_box(field.box, (h, w))
        self.tint.show_mask(np.asarray(field.mask)[cy0:cy1, cx0:cx1], [(cx0, cy0, cx1, cy1)])
        self.box.set_rects([(cx0, cy0, cx1, cy1)] if cy1 > cy0 and cx1 > cx0 else [])
        padded = g.padding_fraction(field.box, (h, w)) > 0
        if padded:
            self.full_box.set_rects([(x0, y0, x1, y1)])
            self.hatch.setRect(QRectF(x0, y0, x1 - x0, y1 - y0))
        else:
            self.full_box.set_rects(())
        self.hatch.setVisible(padded)
        if effective is not None and np.shape(effective) == (h, w):
            top = float(np.max(effective)) or 1.0
            self.heat.setImage(np.asarray(effective, np.float32), autoLevels=False, levels=(0, top),
                               lut=style.heat_lut())
            self.heat.setVisible(True)
        else:
            self.heat.setVisible(False)
        # keep the whole box in sight
        r = self.view_box.viewRect()
        want = QRectF(min(x0, 0), min(y0, 0), max(x1, w) - min(x0, 0), max(y1, h) - min(y0, 0))
        if not r.contains(want):
            self.view_box.setRange(r.united(want), padding=0.02)

    def _on_move(self, pos):
        if not self.view_box.sceneBoundingRect().contains(pos):
            self.hovered.emit(None)
            return
        p = self.view_box.mapSceneToView(pos)
        y, x = int(np.floor(p.y())), int(np.floor(p.x()))
        h, w = self.shape
        self.hovered.emit((y, x) if 0 <= y < h and 0 <= x < w else None)


class InputView(QWidget):
    """Header, then the image (2D input) or the signal lanes (1D input)."""

    wants_height = Signal(int)  # the height that fits the input at the current width

    def __init__(self, parent=None):
        super().__init__(parent)
        self.title, self.info = style.header_labels()
        self.stack = QStackedWidget()
        self.image_view = InputImageView()
        self.lanes = LanesView(name="input")
        self.stack.addWidget(self.image_view)
        self.stack.addWidget(self.lanes)
        self.stale = StaleOverlay(self.stack)
        head = QVBoxLayout()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(2)
        lay.addWidget(self.title)
        lay.addWidget(self.stack, 1)
        lay.addWidget(self.info)
        del head
        self.x: np.ndarray | None = None
        self.image_view.hovered.connect(self._on_hover_image)
        self.lanes.hovered.connect(self._on_hover_lanes)

    def set_input(self, x: np.ndarray, source: str = "") -> None:
        self.x = x
        src = f"<span style='color:#9aa0aa'>&nbsp;&nbsp;{source}</span>" if source else ""
        self.title.setText(f"<b>Input</b>&nbsp;&nbsp;{shape_text(x.shape)}{src}")
        if x.ndim == 3:
            self.image_view.set_image(x)
            self.stack.setCurrentWidget(self.image_view)
        else:
            self.lanes.set_signal(x, tuple(range(x.shape[0])), per_channel=True)
            self.stack.setCurrentWidget(self.lanes)
        self._fit_height()

    def set_field(self, field, effective=None) -> None:
        if self.x is None:
            return
        if self.x.ndim == 3:
            self.image_view.set_field(field, effective)
        else:
            self.lanes.set_overlays(field=field, effective=effective)

    def _on_hover_image(self, pos):
        if pos is None or self.x is None:
            self.info.setText("")
            return
        y, x = pos
        vals = ", ".join(format_value(float(v)) for v in self.x[:, y, x][:4])
        f = self.image_view.field
        inside = "" if f is None else ("  in field" if np.asarray(f.mask)[y, x] else "")
        self.info.setText(f"y {y}  x {x}  = {vals}{inside}")

    def _on_hover_lanes(self, unit):
        if unit is None or self.x is None:
            self.info.setText("")
            return
        self.info.setText(f"ch {unit[0]}  l {unit[1]}  = {format_value(float(self.x[unit]))}")

    def heightForImage(self, width: int) -> int | None:
        """The height that shows a 2D input edge to edge at `width` (a band per channel for 1D)."""
        if self.x is None:
            return None
        extra = self.title.sizeHint().height() + self.info.sizeHint().height() + 10
        if self.x.ndim == 2:  # signal lanes: a band per channel, not the whole column
            return int(min(70 + 60 * self.x.shape[0], 360)) + extra
        h, w = self.x.shape[1:]
        return int(max(width - 4, 60) * h / max(w, 1)) + extra

    def _fit_height(self) -> None:
        """Ask for the height that leaves no empty bands above and below the image
        (the panel gives the rest of the column to the kernels)."""
        want = self.heightForImage(self.width())
        if want is not None:
            self.wants_height.emit(max(want, 160))

    def resizeEvent(self, ev):
        super().resizeEvent(ev)
        if ev.size().width() != ev.oldSize().width():
            self._fit_height()
        if self.stale.isVisible():
            self.stale.setGeometry(self.stack.rect())
