"""Shared look of the views: pyqtgraph options, colour maps (lookup tables built
once), colours of the overlays, a zoomable view box and "Save as PNG"."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QFileDialog, QLabel, QMenu, QSizePolicy, QWidget

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

BACKGROUND = "#17191d"


def header_labels() -> tuple[QLabel, QLabel]:
    """A view's header: a rich-text title and a muted monospace info line,
    both free to shrink (long names must not widen the panel)."""
    title, info = QLabel(), QLabel()
    title.setTextFormat(Qt.RichText)
    for label in (title, info):
        label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
    info.setStyleSheet("color: #9aa0aa; font-family: monospace;")
    return title, info
FOREGROUND = "#c8ccd4"
MUTED = "#7d838f"
SELECT = QColor("#ffd166")  # the selected unit
FIELD = QColor("#38e0c8")  # the receptive field (box and mask tint)
PADDING = QColor("#ff6b6b")  # the part of the field lying in padding
CURVE = QColor("#8ab4f8")


@lru_cache(maxsize=None)
def colormap(diverging: bool) -> pg.ColorMap:
    return pg.colormap.get("CET-D1A" if diverging else "viridis")


@lru_cache(maxsize=None)
def lut(diverging: bool) -> np.ndarray:
    """256-entry RGB lookup table (computed once per map)."""
    return colormap(diverging).getLookupTable(nPts=256, alpha=False)


@lru_cache(maxsize=None)
def lut_with_gap(diverging: bool) -> np.ndarray:
    """The colour map's table with entry 0 in the background colour: mosaics fill
    their gaps with a value below the levels, so gaps need no NaN (slow to render)."""
    bg = QColor(BACKGROUND)
    return np.concatenate([[[bg.red(), bg.green(), bg.blue()]], lut(diverging)]).astype(np.uint8)


def gap_levels(levels: tuple[float, float]) -> tuple[tuple[float, float], float]:
    """(image levels, gap value) for lut_with_gap: data in `levels` maps to entries 1..256."""
    lo, hi = levels
    step = (hi - lo) / 256.0
    return (lo - step, hi), lo - 64 * step


@lru_cache(maxsize=None)
def heat_lut() -> np.ndarray:
    """RGBA table for the effective field: transparent at 0, opaque hot at 1."""
    rgb = pg.colormap.get("CET-L3").getLookupTable(nPts=256, alpha=False).astype(np.float32)
    alpha = np.clip(np.linspace(0, 1.6, 256), 0, 1) ** 0.8 * 230
    return np.concatenate([rgb, alpha[:, None]], axis=1).astype(np.uint8)


def pen(color, width: float = 1.5, style=Qt.SolidLine):
    p = pg.mkPen(color, width=width)
    p.setStyle(style)
    p.setCosmetic(True)
    return p


class ZoomViewBox(pg.ViewBox):
    """A view box that zooms with Ctrl+wheel only, so the wheel scrolls the page.

    Its right-click menu is cnnplay's (`own_menu`): pyqtgraph's own menu, never
    shown, is not built (5 ms per view box, a dozen of them in the window)."""

    def __init__(self, *args, wheel_zoom: bool = False, **kwargs):
        kwargs.setdefault("enableMenu", False)
        super().__init__(*args, **kwargs)
        self.wheel_zoom = wheel_zoom
        self.cnnplay_menu = None  # set by own_menu

    def menuEnabled(self) -> bool:
        return self.cnnplay_menu is not None or super().menuEnabled()

    def wheelEvent(self, ev, axis=None):
        if self.wheel_zoom or ev.modifiers() & Qt.ControlModifier:
            super().wheelEvent(ev, axis)
        else:
            ev.ignore()


def graphics_widget() -> pg.GraphicsLayoutWidget:
    w = pg.GraphicsLayoutWidget()
    w.setBackground(BACKGROUND)
    w.ci.setContentsMargins(2, 2, 2, 2)
    return w


def own_menu(view_box: ZoomViewBox, widget: QWidget, name: str, actions=None, chart=None) -> None:
    """Give a view box cnnplay's own right-click menu instead of pyqtgraph's internal one.

    `actions(scene_pos)` -> [(text, callable, tooltip)] adds the owner's entries (e.g.
    enlarge a channel, export the layer); `chart` (a PlotItem or layout) adds "Export
    chart as SVG...". Every menu ends with "Reset zoom" and "Save view as PNG...".
    """
    view_box.cnnplay_menu = lambda scene_pos=None: context_menu(view_box, widget, name, actions, chart, scene_pos)

    def raise_menu(ev):
        menu = view_box.cnnplay_menu(ev.scenePos())
        menu.setAttribute(Qt.WA_DeleteOnClose)
        menu.popup(ev.screenPos().toPoint())

    view_box.raiseContextMenu = raise_menu


def context_menu(view_box, widget, name, actions=None, chart=None, scene_pos=None) -> QMenu:
    menu = QMenu(widget)
    menu.setToolTipsVisible(True)
    for text, fn, tip in (actions(scene_pos) if actions is not None else ()):
        act = menu.addAction(text, fn)
        act.setToolTip(tip)
    if menu.actions():
        menu.addSeparator()
    reset = menu.addAction("Reset zoom", lambda: reset_zoom(view_box))
    reset.setToolTip("Show the whole view again (Ctrl+wheel zooms, dragging pans)")
    png = menu.addAction("Save view as PNG...", lambda: save_png_dialog(widget, name))
    png.setToolTip("The view as it is on screen")
    if chart is not None:
        svg = menu.addAction("Export chart as SVG...", lambda: save_svg_dialog(chart, widget, name))
        svg.setToolTip("A vector drawing of the chart, for slides and papers")
    return menu


def reset_zoom(view_box: pg.ViewBox) -> None:
    home = getattr(view_box, "home", None)
    if callable(home):
        home()
    else:
        view_box.autoRange(padding=0.02)


def save_png_dialog(widget: QWidget, name: str) -> None:
    path, _ = QFileDialog.getSaveFileName(widget, "Save view as PNG", f"{name}.png", "PNG image (*.png)")
    if path:
        save_png(widget, path)


def save_png(widget: QWidget, path: str) -> bool:
    if not path.lower().endswith(".png"):
        path += ".png"
    return widget.grab().save(path, "PNG")


def save_svg_dialog(chart, widget: QWidget, name: str) -> None:
    path, _ = QFileDialog.getSaveFileName(widget, "Export chart as SVG", f"{name}.svg", "SVG drawing (*.svg)")
    if path:
        save_svg(chart, path)


def save_svg(chart, path: str, widget: QWidget | None = None) -> str:
    """Write a chart as an SVG file (vector curves, text as text); returns the path.
    `chart` is a PlotItem (or any QGraphicsItem) drawn in its scene's coordinates."""
    from PySide6.QtCore import QRectF, QSize
    from PySide6.QtGui import QPainter
    from PySide6.QtSvg import QSvgGenerator
    if not path.lower().endswith(".svg"):
        path += ".svg"
    rect = chart.sceneBoundingRect() if hasattr(chart, "sceneBoundingRect") else QRectF(widget.rect())
    gen = QSvgGenerator()
    gen.setFileName(path)
    gen.setSize(QSize(int(rect.width()), int(rect.height())))
    gen.setViewBox(QRectF(0, 0, rect.width(), rect.height()))
    gen.setTitle("cnnplay chart")
    p = QPainter(gen)
    try:
        chart.scene().render(p, QRectF(0, 0, rect.width(), rect.height()), rect)
    finally:
        p.end()
    return path
