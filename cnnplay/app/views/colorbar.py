"""A map's colour scale: a vertical strip of the colour map beside its value axis.

What pyqtgraph's ColorBarItem (interactive=False) shows, from a view box and an
axis: ColorBarItem is a PlotItem, and building one (its right-click menus, its
plot options, four axes) took 16 ms, once per layer card.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QGraphicsPixmapItem

STEPS = 256  # colours in the strip (the strip spans 0..STEPS in its view)


class ColorBar(pg.GraphicsLayout):
    def __init__(self, values=(0.0, 1.0), colormap: pg.ColorMap | None = None, width: int = 10):
        super().__init__()
        self.layout.setContentsMargins(0, 0, 0, 0)
        self.layout.setSpacing(0)
        self.axis = pg.AxisItem("right")
        self.axis.setWidth(45)
        # framed in the axis's own pen, as ColorBarItem framed its strip with its axes
        self.view = pg.ViewBox(enableMouse=False, enableMenu=False, border=self.axis.pen())
        self.view.setRange(xRange=(0, 1), yRange=(0, STEPS), padding=0)
        self.view.disableAutoRange()
        self.strip = QGraphicsPixmapItem()
        self.strip.setShapeMode(QGraphicsPixmapItem.ShapeMode.BoundingRectShape)
        self.view.addItem(self.strip)
        self.addItem(self.view, 0, 0)
        self.addItem(self.axis, 0, 1)
        self.layout.setColumnFixedWidth(0, width)
        self.values = (float(values[0]), float(values[1]))
        self.axis.setRange(*self.values)
        self._colormap = None
        if colormap is not None:
            self.setColorMap(colormap)

    def setColorMap(self, colormap: pg.ColorMap) -> None:
        self._colormap = colormap
        rgba = np.ascontiguousarray(colormap.getLookupTable(nPts=STEPS, alpha=True)[:, None, :])  # (STEPS, 1, 4)
        image = QImage(rgba.data, 1, STEPS, 4, QImage.Format.Format_RGBA8888).copy()  # row i at y = i: low at the bottom
        self.strip.setPixmap(QPixmap.fromImage(image))

    def colorMap(self) -> pg.ColorMap | None:
        return self._colormap

    def setLevels(self, values) -> None:
        self.values = (float(values[0]), float(values[1]))
        self.axis.setRange(*self.values)

    def levels(self) -> tuple[float, float]:
        return self.values
