"""A map's colour scale (cnnplay.app.views.colorbar): the colour map from low (bottom)
to high (top) beside an axis with the map's levels."""

import pyqtgraph as pg
from PySide6.QtCore import QPointF

from cnnplay.app.views import style
from cnnplay.app.views.colorbar import STEPS, ColorBar


def test_the_bar_shows_the_colour_map_low_to_high_beside_the_levels(qtbot):
    canvas = pg.GraphicsLayoutWidget()
    qtbot.addWidget(canvas)
    bar = ColorBar(values=(0, 1), colormap=style.colormap(False), width=10)
    canvas.addItem(bar, 0, 0)
    canvas.resize(80, 300)
    canvas.show()
    qtbot.waitExposed(canvas)
    cmap = style.colormap(True)
    bar.setColorMap(cmap)
    bar.setLevels((-2.5, 4.0))
    assert bar.colorMap() is cmap and bar.levels() == (-2.5, 4.0)
    assert list(bar.axis.range) == [-2.5, 4.0]
    image = bar.strip.pixmap().toImage()
    assert (image.width(), image.height()) == (1, STEPS)
    lut = cmap.getLookupTable(nPts=STEPS, alpha=True)
    for row in (0, STEPS // 2, STEPS - 1):
        c = image.pixelColor(0, row)
        assert (c.red(), c.green(), c.blue()) == tuple(int(v) for v in lut[row][:3])
    # the lowest colour at the bottom, the whole strip inside the view, 10 px wide
    vb = bar.view
    low, high = vb.mapViewToScene(QPointF(0.5, 0.5)), vb.mapViewToScene(QPointF(0.5, STEPS - 0.5))
    assert low.y() > high.y()
    strip, box = bar.strip.sceneBoundingRect(), vb.sceneBoundingRect()
    assert abs(strip.top() - box.top()) < 1 and abs(strip.bottom() - box.bottom()) < 1
    assert abs(box.width() - 10) <= 1
