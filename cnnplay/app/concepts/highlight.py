"""Outline of the layer hovered in the growth chart, on the input view.

The growth chart writes `session.view["highlight_layer"]`; this overlay draws
the field of that layer's centre unit (core: growth.highlight_field) on the
input: a dashed rectangle on an image, a shaded span on a 1D signal. It only
adds items to the input view's plots, so the input view needs no change.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt
from PySide6.QtGui import QColor

from ...core.concepts.growth import highlight_field
from ..views import style

COLOR = QColor("#f6ae2d")


class FieldHighlight(QObject):
    def __init__(self, session, image_view_box=None, lanes_plot=None, parent=None):
        super().__init__(parent)
        self.session = session
        self.rect = pg.PlotCurveItem(pen=style.pen(COLOR, 2, Qt.DashLine))
        self.rect.setZValue(10)
        self.span = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(246, 174, 45, 50),
                                        pen=style.pen(COLOR, 1.5))
        self.span.setZValue(10)
        if image_view_box is not None:
            image_view_box.addItem(self.rect)
        if lanes_plot is not None:
            lanes_plot.addItem(self.span)
        self.rect.setVisible(False)
        self.span.setVisible(False)
        self.field = None
        session.view_changed.connect(self.refresh)
        session.network_changed.connect(self.refresh)
        session.set_view(highlight_layer=None)  # transient: never restored from an autosave
        self.refresh()

    def refresh(self) -> None:
        layer = self.session.view.get("highlight_layer")
        net = self.session.network
        field = None
        if layer is not None and 0 <= layer < len(net):
            try:
                field = highlight_field(net, layer)
            except Exception:  # a half-edited network: draw nothing
                field = None
        self.field = field
        if field is None:
            self.rect.setVisible(False)
            self.span.setVisible(False)
            return
        box = field.box
        if len(box) == 2:
            (y0, y1), (x0, x1) = box
            self.rect.setData([x0, x1, x1, x0, x0], [y0, y0, y1, y1, y0])
            self.rect.setVisible(True)
            self.span.setVisible(False)
        else:
            self.span.setRegion(box[0])
            self.span.setVisible(True)
            self.rect.setVisible(False)


def attach_to_window(window):
    """A FieldHighlight on the window's input view, when it has one."""
    iv = getattr(getattr(window, "central", None), "input_view", None)
    if iv is None:
        return None
    vb = getattr(getattr(iv, "image_view", None), "view_box", None)
    lanes = getattr(getattr(iv, "lanes", None), "plot", None)
    return FieldHighlight(window.session, vb, lanes, parent=window)
