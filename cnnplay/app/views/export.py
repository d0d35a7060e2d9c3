"""A layer's feature maps as a PNG at full resolution: every channel at its native
size or larger (integer nearest-neighbour scaling, never smoothed), the layer's
title on top and its colour bar with the level values at the right."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QPainter

from . import grid as g
from . import style

MIN_EXPORT_TILE = 64  # small maps are scaled up (by a whole factor) to at least this many px
GAP = 4  # px between tiles in the file
MARGIN = 12
BAR_W = 18


def export_scale(h: int, w: int) -> int:
    """The whole-number factor each map pixel becomes in the file (>= 1)."""
    return max(1, math.ceil(MIN_EXPORT_TILE / max(h, w, 1)))


def colored(values: np.ndarray, levels: tuple[float, float], diverging: bool) -> np.ndarray:
    """(..., 3) uint8 through the views' colour map (the same table as on screen)."""
    lo, hi = levels
    t = (np.asarray(values, np.float64) - lo) / (hi - lo if hi > lo else 1.0)
    idx = np.clip(np.nan_to_num(t, nan=0.0) * 255 + 0.5, 0, 255).astype(np.intp)
    return style.lut(diverging)[idx]


def layer_image(maps: np.ndarray, title: str, per_channel: bool = False,
                channels: tuple[int, ...] | None = None) -> QImage:
    """maps: (C, H, W). Returns the composed image (tiles, title, colour bar)."""
    maps = np.asarray(maps, np.float32)
    c, h, w = maps.shape
    channels = tuple(range(c)) if channels is None else tuple(channels)
    shown = maps[list(channels)]
    levels, div = g.layer_levels(*g.finite_range(maps))
    if per_channel:
        shown = g.per_channel_normalized(shown, div)
        levels = (-1.0, 1.0) if div else (0.0, 1.0)
    s = export_scale(h, w)
    cols = g.choose_cols(len(channels), h, w, 1.6)
    rows = math.ceil(len(channels) / cols)
    th, tw = h * s, w * s
    mosaic_w, mosaic_h = cols * (tw + GAP) - GAP, rows * (th + GAP) - GAP

    font = QFont()
    font.setPixelSize(max(14, min(28, mosaic_w // 40)))
    fm = QFontMetrics(font)
    small = QFont(font)
    small.setPixelSize(max(11, font.pixelSize() - 3))
    fms = QFontMetrics(small)
    label_w = max(fms.horizontalAdvance(f"{v:.4g}") for v in levels) + 6
    width = MARGIN + mosaic_w + MARGIN + BAR_W + label_w + MARGIN
    title_rect = fm.boundingRect(QRect(0, 0, max(width - 2 * MARGIN, 100), 10_000), Qt.TextWordWrap, title)
    top = MARGIN + title_rect.height() + MARGIN // 2
    height = top + max(mosaic_h, 120) + MARGIN

    rgb = np.empty((height, width, 3), np.uint8)
    rgb[:] = np.array([QColor(style.BACKGROUND).red(), QColor(style.BACKGROUND).green(),
                       QColor(style.BACKGROUND).blue()], np.uint8)
    tiles = colored(shown, levels, div)  # (n, h, w, 3)
    for t in range(len(channels)):
        r, col = divmod(t, cols)
        y0, x0 = top + r * (th + GAP), MARGIN + col * (tw + GAP)
        rgb[y0:y0 + th, x0:x0 + tw] = np.repeat(np.repeat(tiles[t], s, axis=0), s, axis=1)
    bar_h = max(mosaic_h, 120)
    bar_x = MARGIN + mosaic_w + MARGIN
    ramp = np.linspace(levels[1], levels[0], bar_h)
    rgb[top:top + bar_h, bar_x:bar_x + BAR_W] = colored(ramp, levels, div)[:, None, :]

    image = QImage(rgb.data, width, height, 3 * width, QImage.Format_RGB888).copy()
    p = QPainter(image)
    p.setPen(QColor(style.FOREGROUND))
    p.setFont(font)
    p.drawText(QRect(MARGIN, MARGIN, width - 2 * MARGIN, title_rect.height()), Qt.TextWordWrap, title)
    p.setFont(small)
    p.drawText(bar_x + BAR_W + 4, top + fms.ascent(), f"{levels[1]:.4g}")
    p.drawText(bar_x + BAR_W + 4, top + bar_h - fms.descent(), f"{levels[0]:.4g}")
    p.end()
    return image


def save_layer_png(maps: np.ndarray, path: str, title: str, per_channel: bool = False,
                   channels: tuple[int, ...] | None = None) -> str:
    """Write the layer as a PNG; returns the path written (".png" added if missing)."""
    if not path.lower().endswith(".png"):
        path += ".png"
    if not layer_image(maps, title, per_channel, channels).save(path, "PNG"):
        raise OSError(f"cannot write {path}")
    return path
