"""Arrays as small pictures: an image crop (gray or RGB) or a 1D signal crop
(one curve per channel), scaled up with visible pixels, padding tinted."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap, QPolygonF

PAD_RGB = (70, 36, 40)
CURVES = [QColor("#8ab4f8"), QColor("#f28b82"), QColor("#81c995"), QColor("#fdd663")]


def _to_rgb(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(C, H, W) -> uint8 (H, W, 3): RGB for 3 channels, gray (channel mean) otherwise."""
    a = (np.asarray(x, np.float64) - lo) / max(hi - lo, 1e-12)
    a = np.clip(np.nan_to_num(a), 0, 1)
    img = np.moveaxis(a, 0, -1) if a.shape[0] == 3 else np.repeat(a.mean(axis=0)[..., None], 3, axis=2)
    return np.ascontiguousarray((img * 255 + 0.5).astype(np.uint8))


def image_pixmap(x: np.ndarray, side: int, lo: float, hi: float, inside: np.ndarray | None = None) -> QPixmap:
    """x (C, H, W): nearest-neighbour scaled so the longer side is about `side` px."""
    rgb = _to_rgb(x, lo, hi)
    if inside is not None:
        rgb[~np.asarray(inside, bool)] = PAD_RGB
    h, w = rgb.shape[:2]
    img = QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()
    f = max(1, side // max(h, w, 1))
    return QPixmap.fromImage(img.scaled(w * f, h * f, Qt.IgnoreAspectRatio, Qt.FastTransformation))


def signal_pixmap(x: np.ndarray, width: int, height: int, lo: float, hi: float,
                  inside: np.ndarray | None = None) -> QPixmap:
    """x (C, L): one curve per channel on a dark background; padding shaded."""
    pm = QPixmap(width, height)
    pm.fill(QColor("#1f2227"))
    p = QPainter(pm)
    p.setRenderHint(QPainter.Antialiasing)
    n = x.shape[1]
    step = width / max(n, 1)
    if inside is not None:
        for i in np.flatnonzero(~np.asarray(inside, bool)):
            p.fillRect(int(i * step), 0, int(np.ceil(step)), height, QColor(*PAD_RGB))
    span = max(hi - lo, 1e-12)
    for c in range(x.shape[0]):
        pts = [QPointF((i + 0.5) * step, height - 4 - (height - 8) * (float(v) - lo) / span)
               for i, v in enumerate(np.nan_to_num(x[c]))]
        p.setPen(QPen(CURVES[c % len(CURVES)], 2))
        p.drawPolyline(QPolygonF(pts))
    p.end()
    return pm


def picture(x: np.ndarray, side: int, lo: float, hi: float, inside=None) -> QPixmap:
    if x.ndim == 3:
        return image_pixmap(x, side, lo, hi, inside)
    return signal_pixmap(x, side, max(side // 2, 40), lo, hi, inside)
