"""A receptive field's mask as a tint: one small image covering just the field's box
on the map, drawn at each place it belongs (every tile of a mosaic, the input, the
lanes of a signal).

Each place is its own small item (a patch), so a change repaints only the boxes
the tint left and the ones it covers now: Qt keeps one dirty rect per item (several
updates of one item merge into their bounding rect, which on a mosaic is the whole
mosaic). A click on a unit then repaints a few small patches of each earlier map
instead of whole mosaics, and nothing at all when the new field covers the same
pixels (a linear unit after another). The image is made from the core's mask,
never computed here.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QGraphicsItem

from .overlay import Overlay


class _Patch(QGraphicsItem):
    """One place of a tint: the image stretched over `rect`."""

    def __init__(self, parent):
        super().__init__(parent)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self._rect = QRectF()
        self._image = None

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter, option, widget=None) -> None:
        if self._image is not None:
            painter.drawImage(self._rect, self._image)

    def show(self, image: QImage | None, rect: QRectF | None = None) -> None:
        if image is None:
            self.setVisible(False)  # (repaints where it was)
            self._image = None
            return
        if rect != self._rect:
            self.prepareGeometryChange()  # repaints where it was and where it goes
            self._rect = rect
        else:
            self.update()
        self._image = image
        self.setVisible(True)


class Tint(Overlay):
    """The mask of a box, `color` at `alpha` where True, drawn into each place
    (x0, y0, x1, y1 in view coordinates, as Marks' rectangles; the image is stretched
    to fill it)."""

    def __init__(self, color, alpha: int, parent=None):
        super().__init__(parent)
        c = QColor(color)
        a = alpha / 255.0  # premultiplied ARGB
        self._on = np.uint32((alpha << 24) | (round(c.red() * a) << 16) | (round(c.green() * a) << 8)
                             | round(c.blue() * a))
        self.block: np.ndarray | None = None  # the mask over the box (bool), as drawn
        self.places: tuple[tuple[float, float, float, float], ...] = ()
        self._pixels = None  # the image's bytes (the QImage reads them)
        self._patches: list[_Patch] = []

    def show_mask(self, block: np.ndarray | None, places=()) -> None:
        """block: bool (h, w), the mask over the field's box; places: where to draw it.
        None (or nothing True, or no place) clears it."""
        places = tuple(tuple(float(v) for v in p) for p in places)
        if block is None or block.size == 0 or not places or not block.any():
            block, places = None, ()
        else:
            block = np.asarray(block, bool)
        if places == self.places and (block is self.block or (block is not None and self.block is not None
                                                                and np.array_equal(block, self.block))):
            return  # the same pixels: nothing to repaint
        image = None
        if block is not None:
            pixels = np.ascontiguousarray(np.where(block, self._on, np.uint32(0)), np.uint32)
            h, w = pixels.shape
            image = QImage(pixels.data, w, h, 4 * w, QImage.Format.Format_ARGB32_Premultiplied)
            self._pixels = pixels
        self.block, self.places = block, places
        while len(self._patches) < len(places):
            self._patches.append(_Patch(self))
        for k, patch in enumerate(self._patches):
            if k < len(places):
                x0, y0, x1, y1 = places[k]
                patch.show(image, QRectF(x0, y0, x1 - x0, y1 - y0))
            else:
                patch.show(None)
        if block is None:
            self._pixels = None

    def covered(self, shape: tuple[int, int]) -> np.ndarray:
        """The pixels (rows, columns of a `shape` grid in view coordinates) the tint
        covers: what a test compares with the core's mask."""
        out = np.zeros(shape, bool)
        if self.block is None:
            return out
        bh, bw = self.block.shape
        for patch, (x0, y0, x1, y1) in zip(self._patches, self.places):
            if not patch.isVisible():
                continue
            x0, y0 = int(round(x0)), int(round(y0))
            w, h = int(round(x1)) - x0, int(round(y1)) - y0
            rows, cols = np.arange(h) * bh // max(h, 1), np.arange(w) * bw // max(w, 1)
            out[y0:y0 + h, x0:x0 + w] |= self.block[np.ix_(rows, cols)]
        return out
