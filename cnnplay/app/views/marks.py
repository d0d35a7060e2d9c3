"""Outlined rectangles (field boxes, the selected unit, its tile) drawn with one
cosmetic pen: cheap items in place of a PlotCurveItem path.

Like the tint's patches (tint.py), each rectangle is its own small item, so a
change repaints the rectangles left and drawn, not the bounding rect of all of them
(on a mosaic: the whole mosaic). Pens up to 2 screen px wide need no margin: Qt
widens every repainted rect by 2 screen px.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QGraphicsItem

from .overlay import Overlay


class _Outline(QGraphicsItem):
    def __init__(self, pen, parent):
        super().__init__(parent)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._pen = pen
        self._rect = QRectF()

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter, option, widget=None) -> None:
        painter.setPen(self._pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(self._rect)

    def show(self, rect: QRectF | None) -> None:
        if rect is None:
            self.setVisible(False)
            return
        if rect != self._rect:
            self.prepareGeometryChange()
            self._rect = rect
        self.setVisible(True)


class Marks(Overlay):
    """Rectangles (x0, y0, x1, y1) in view coordinates, outlined with `pen`."""

    def __init__(self, pen, parent=None):
        super().__init__(parent)
        self._pen = pen
        self.rects: tuple[tuple[float, float, float, float], ...] = ()
        self._outlines: list[_Outline] = []

    def set_rects(self, rects) -> None:
        rects = tuple(tuple(float(v) for v in r) for r in rects)
        if rects == self.rects:
            return
        self.rects = rects
        while len(self._outlines) < len(rects):
            self._outlines.append(_Outline(self._pen, self))
        for k, outline in enumerate(self._outlines):
            if k < len(rects):
                x0, y0, x1, y1 = rects[k]
                outline.show(QRectF(x0, y0, x1 - x0, y1 - y0))
            else:
                outline.show(None)
