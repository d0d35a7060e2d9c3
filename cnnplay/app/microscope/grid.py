"""A small grid of numbers, painted: an input window, a kernel, products.

Cells can be marked as padding (hatched, "pad"), as dilation holes (dim, no
number: the kernel skips them) or highlighted (the max-pool winner). The font
follows `scale` so that the panel stays readable on a projector.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from ...core.microscope import fmt

TEXT = QColor("#e6e8ec")
MUTED = QColor("#7d838f")
PAD = QColor("#ff6b6b")
HIGHLIGHT = QColor("#ffd166")
POS = QColor(64, 132, 222)
NEG = QColor(214, 84, 84)


def cell_font(scale: float) -> QFont:
    f = QFont()
    f.setPixelSize(max(10, int(round(15 * scale))))
    return f


class NumberGrid(QWidget):
    """values: 2D float array; padding / holes / highlight: bool masks or None."""

    def __init__(self, values, padding=None, holes=None, highlight=None, scale: float = 1.0,
                 tint: bool = True, parent=None):
        super().__init__(parent)
        self.values = np.atleast_2d(np.asarray(values, np.float64))
        shape = self.values.shape
        self.padding = np.zeros(shape, bool) if padding is None else np.asarray(padding, bool)
        self.holes = np.zeros(shape, bool) if holes is None else np.asarray(holes, bool)
        self.highlight = np.zeros(shape, bool) if highlight is None else np.asarray(highlight, bool)
        self.tint = tint
        self.font_ = cell_font(scale)
        fm = QFontMetrics(self.font_)
        texts = [self.text(r, c) for r in range(shape[0]) for c in range(shape[1])]
        w = max([fm.horizontalAdvance(t) for t in texts] + [fm.horizontalAdvance("-0.00")])
        self.cell = QSize(w + int(10 * scale), fm.height() + int(8 * scale))
        finite = self.values[~self.padding & ~self.holes & np.isfinite(self.values)]
        self.top = float(np.max(np.abs(finite))) if finite.size else 1.0
        self.setSizePolicy(QSizePolicy.Fixed, QSizePolicy.Fixed)
        self.setToolTip("hatched: padding (outside the map); dim: skipped by the dilated kernel")

    def text(self, r: int, c: int) -> str:
        if self.holes[r, c]:
            return ""
        if self.padding[r, c]:
            return "pad"
        return fmt(self.values[r, c])

    def sizeHint(self) -> QSize:
        h, w = self.values.shape
        return QSize(w * self.cell.width() + 1, h * self.cell.height() + 1)

    minimumSizeHint = sizeHint

    def paintEvent(self, ev) -> None:
        p = QPainter(self)
        p.setFont(self.font_)
        cw, ch = self.cell.width(), self.cell.height()
        rows, cols = self.values.shape
        for r in range(rows):
            for c in range(cols):
                rect = QRectF(c * cw, r * ch, cw, ch)
                v = self.values[r, c]
                if self.holes[r, c]:
                    p.fillRect(rect, QColor("#202328"))
                elif self.padding[r, c]:
                    p.fillRect(rect, QColor("#2a2225"))
                    p.fillRect(rect, QBrush(PAD.darker(160), Qt.BDiagPattern))
                elif self.tint and math.isfinite(v) and self.top > 0:
                    base = POS if v >= 0 else NEG
                    col = QColor(base)
                    col.setAlpha(int(30 + 150 * min(abs(v) / self.top, 1.0)))
                    p.fillRect(rect, QColor("#1f2227"))
                    p.fillRect(rect, col)
                else:
                    p.fillRect(rect, QColor("#1f2227"))
                p.setPen(QPen(QColor("#3a3f48"), 1))
                p.drawRect(rect)
                if self.highlight[r, c]:
                    p.setPen(QPen(HIGHLIGHT, 3))
                    p.drawRect(rect.adjusted(1.5, 1.5, -1.5, -1.5))
                p.setPen(MUTED if self.padding[r, c] else TEXT)
                p.drawText(rect, Qt.AlignCenter, self.text(r, c))
        p.end()
