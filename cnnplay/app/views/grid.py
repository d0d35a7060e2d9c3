"""Qt-free geometry of the views.

Where each channel's tile sits in a layer's mosaic, which unit a point in view
coordinates falls on, how a selected unit moves with the arrow keys, colour
levels, and the outline of a receptive-field box on a mosaic.

View coordinates follow pyqtgraph's row-major images with an inverted y axis:
pixel (row r, column c) of an image covers x in [c, c+1) and y in [r, r+1).
1D maps are drawn as lanes (lane t covers y in [t, t+1), sample l covers
x in [l, l+1)) and flat vectors as bars (bar f covers x in [f, f+1)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PAGE_SIZE = 64  # channels shown at once in one layer card


@dataclass(frozen=True)
class TileGrid:
    """A page of equally sized tiles laid out in rows, `gap` pixels apart."""

    channels: tuple[int, ...]  # the channel shown in each tile
    h: int
    w: int
    cols: int
    gap: int = 1

    @property
    def n(self) -> int:
        return len(self.channels)

    @property
    def rows(self) -> int:
        return max(1, math.ceil(self.n / self.cols))

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the mosaic image in pixels."""
        return (self.rows * (self.h + self.gap) - self.gap, self.cols * (self.w + self.gap) - self.gap)

    def origin(self, tile: int) -> tuple[int, int]:
        """(y, x) of a tile's top-left pixel in the mosaic."""
        return (tile // self.cols) * (self.h + self.gap), (tile % self.cols) * (self.w + self.gap)

    def tile_of(self, channel: int) -> int | None:
        try:
            return self.channels.index(channel)
        except ValueError:
            return None

    def locate(self, vx: float, vy: float) -> tuple[int, int, int] | None:
        """(channel, y, x) under a point in view coordinates; None over a gap or outside."""
        if not (math.isfinite(vx) and math.isfinite(vy)) or vx < 0 or vy < 0:
            return None
        px, py = self.w + self.gap, self.h + self.gap
        col, row = int(vx // px), int(vy // py)
        x, y = int(math.floor(vx - col * px)), int(math.floor(vy - row * py))
        tile = row * self.cols + col
        if col >= self.cols or x >= self.w or y >= self.h or tile >= self.n:
            return None
        return self.channels[tile], y, x

    def mosaic(self, maps: np.ndarray, fill=np.nan, dtype=np.float32) -> np.ndarray:
        """Tiles of `maps` (n, h, w), one per tile, gaps filled with `fill`."""
        n, h, w = maps.shape
        rows, cols, g = self.rows, self.cols, self.gap
        out = np.full((rows, h + g, cols, w + g), fill, dtype=dtype)
        if n < rows * cols:
            padded = np.full((rows * cols, h, w), fill, dtype=dtype)
            padded[:n] = maps
            maps = padded
        out[:, :h, :, :w] = maps.reshape(rows, cols, h, w).transpose(0, 2, 1, 3)
        out = out.reshape(rows * (h + g), cols * (w + g))
        return out[: out.shape[0] - g, : out.shape[1] - g]


def choose_cols(n: int, h: int, w: int, aspect: float = 3.0) -> int:
    """Columns that make a mosaic of n h x w tiles about `aspect` times wider than high."""
    if n <= 1:
        return 1
    cols = round(math.sqrt(n * aspect * h / max(w, 1)))
    return int(min(max(cols, 1), n))


DEFAULT_TILE = 96  # screen px: the smallest tile side the default zoom shows
MIN_TILE, MAX_TILE = 32, 512  # the zoom control's range
MIN_GAP_PX = 2.0  # screen px between tiles, whatever the map size
MIN_MARK_PX = 6.0  # screen px: the smallest field box or selection mark drawn


@dataclass(frozen=True)
class TileLayout:
    """How a page of tiles fills a card: columns, rows, gap (map px) and the
    screen size of one map pixel."""

    cols: int
    rows: int
    gap: int
    scale: float  # screen px per map px

    def screen_size(self, h: int, w: int) -> tuple[float, float]:
        """(height, width) of the whole mosaic on screen."""
        return ((self.rows * (h + self.gap) - self.gap) * self.scale,
                (self.cols * (w + self.gap) - self.gap) * self.scale)


def tile_layout(n: int, h: int, w: int, width: float, tile: float = DEFAULT_TILE,
                max_tile: float | None = None) -> TileLayout:
    """Tiles at least `tile` screen px on their longer side (the zoom), as many
    columns as fit `width` screen px, and then grown to fill the width (up to
    `max_tile`, default twice `tile`). The gap between tiles is at least
    MIN_GAP_PX on screen (a 512 px map shrunk to 128 px gets a 4 px-map gap)."""
    n, side = max(n, 1), max(h, w, 1)
    tile = max(float(tile), 1.0)
    cols = int(min(max(width // (tile + MIN_GAP_PX), 1), n))
    rows = math.ceil(n / cols)
    max_tile = 2 * tile if max_tile is None else max(max_tile, tile)
    shown = min((width - (cols - 1) * MIN_GAP_PX) / cols, max_tile)
    shown = max(shown, min(tile, width))  # a card narrower than one tile still shows one
    scale = shown / side
    gap = max(1, math.ceil(MIN_GAP_PX / scale))
    return TileLayout(cols, rows, gap, scale)


def page_channels(total: int, page: int, size: int = PAGE_SIZE) -> tuple[int, ...]:
    pages = max(1, math.ceil(total / size))
    page = min(max(page, 0), pages - 1)
    return tuple(range(page * size, min(total, (page + 1) * size)))


def page_count(total: int, size: int = PAGE_SIZE) -> int:
    return max(1, math.ceil(total / size))


# -- 1D lanes and flat bars ----------------------------------------------------

def locate_lane(vx: float, vy: float, channels: tuple[int, ...], length: int) -> tuple[int, int] | None:
    """(channel, l) under a point of a lanes view."""
    if not (math.isfinite(vx) and math.isfinite(vy)) or vx < 0 or vy < 0:
        return None
    lane, pos = int(vy), int(math.floor(vx))
    if lane >= len(channels) or pos >= length:
        return None
    return channels[lane], pos


def locate_bar(vx: float, count: int) -> tuple[int] | None:
    if not math.isfinite(vx) or vx < 0 or int(math.floor(vx)) >= count:
        return None
    return (int(math.floor(vx)),)


def bar_steps(values: np.ndarray, gapped: bool) -> tuple[np.ndarray, np.ndarray]:
    """x edges and heights of a bar chart drawn as one filled step curve (x has one
    more entry than y). Bar f covers x in [f, f+1); gapped bars cover [f+0.1, f+0.9)
    with zero-height steps between them."""
    v = np.asarray(values, np.float32)
    n = len(v)
    if not gapped:
        return np.arange(n + 1, dtype=np.float32), v
    if n == 0:
        return np.zeros(1, np.float32), v
    x = np.empty(2 * n, np.float32)
    x[0::2] = np.arange(n, dtype=np.float32) + 0.1
    x[1::2] = np.arange(n, dtype=np.float32) + 0.9
    y = np.zeros(2 * n - 1, np.float32)
    y[0::2] = v
    return x, y


def bar_heights(y: np.ndarray, gapped: bool) -> np.ndarray:
    """The per-bar heights back from bar_steps' y."""
    return np.asarray(y)[0::2] if gapped else np.asarray(y)


def lanes_curve(maps: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x, y of all lanes as one NaN-separated polyline: channel t is centred on
    y = t + 0.5, values divided by scales[t] fill +-0.45 of the lane (positive up)."""
    n, length = maps.shape
    x = np.empty((n, length + 1), np.float32)
    x[:, :length] = np.arange(length, dtype=np.float32) + 0.5
    x[:, length] = np.nan
    y = np.empty((n, length + 1), np.float32)
    s = np.where(scales > 0, scales, 1.0).astype(np.float32)[:, None]
    y[:, :length] = (np.arange(n, dtype=np.float32)[:, None] + 0.5) - 0.45 * maps / s
    y[:, length] = np.nan
    return x.ravel(), y.ravel()


# -- selection and the keyboard ------------------------------------------------

def step_unit(unit: tuple[int, ...], shape: tuple[int, ...], key: str) -> tuple[int, ...]:
    """Move a unit one step: 'left'/'right' along the last axis, 'up'/'down' along
    rows (2D) or channels (1D), 'prev'/'next' across channels; clamped to the shape."""
    u = list(unit)
    if len(shape) == 3:
        axis, delta = {"left": (2, -1), "right": (2, 1), "up": (1, -1), "down": (1, 1),
                       "prev": (0, -1), "next": (0, 1)}.get(key, (None, 0))
    elif len(shape) == 2:
        axis, delta = {"left": (1, -1), "right": (1, 1), "up": (0, -1), "down": (0, 1),
                       "prev": (0, -1), "next": (0, 1)}.get(key, (None, 0))
    else:
        axis, delta = {"left": (0, -1), "right": (0, 1), "prev": (0, -1), "next": (0, 1)}.get(key, (None, 0))
    if axis is None:
        return tuple(unit)
    u[axis] = min(max(u[axis] + delta, 0), shape[axis] - 1)
    return tuple(u)


# -- colour levels ----------------------------------------------------------------

def finite_range(a: np.ndarray) -> tuple[float, float]:
    if a.size == 0:
        return 0.0, 1.0
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if not (math.isfinite(lo) and math.isfinite(hi)):
        finite = a[np.isfinite(a)]
        if finite.size == 0:
            return 0.0, 1.0
        lo, hi = float(finite.min()), float(finite.max())
    return lo, hi


def layer_levels(lo: float, hi: float) -> tuple[tuple[float, float], bool]:
    """(levels, diverging): symmetric around 0 when values can be negative."""
    if lo < 0:
        m = max(-lo, hi, 1e-12)
        return (-m, m), True
    if hi - lo <= 1e-12:
        return (lo, lo + 1.0), False
    return (lo, hi), False


def per_channel_normalized(maps: np.ndarray, diverging: bool) -> np.ndarray:
    """Each channel scaled on its own: to [-1, 1] by its max |v| (diverging) or to [0, 1]."""
    flat = maps.reshape(maps.shape[0], -1)
    if diverging:
        m = np.abs(flat).max(axis=1) if flat.shape[1] else np.ones(len(flat), np.float32)
        m = np.where(m > 0, m, 1.0).astype(np.float32)
        return maps / m.reshape((-1,) + (1,) * (maps.ndim - 1))
    lo = flat.min(axis=1)
    span = flat.max(axis=1) - lo
    span = np.where(span > 0, span, 1.0)
    shape = (-1,) + (1,) * (maps.ndim - 1)
    return (maps - lo.reshape(shape)) / span.reshape(shape).astype(np.float32)


# -- receptive-field boxes -----------------------------------------------------------

def clip_box(box, shape) -> tuple[tuple[int, int], ...]:
    """The part of a half-open per-axis box that lies inside a map of `shape`."""
    return tuple((min(max(a, 0), n), min(max(b, 0), n)) for (a, b), n in zip(box, shape))


def box_size(box) -> int:
    return math.prod(max(0, b - a) for a, b in box)


def padding_fraction(box, shape) -> float:
    """How much of the box lies outside the map (in the padding)."""
    total = box_size(box)
    return 0.0 if total == 0 else 1.0 - box_size(clip_box(box, shape)) / total


def widen(a: float, b: float, least: float) -> tuple[float, float]:
    """[a, b) grown about its centre to at least `least` long."""
    if b - a >= least:
        return a, b
    c = (a + b) / 2
    return c - least / 2, c + least / 2


def tile_box_rects(grid: TileGrid, box, least: float = 0.0) -> list[tuple[float, float, float, float]]:
    """A 2D box (clipped to a tile) in every tile of a mosaic, as (x0, y0, x1, y1) in view
    coordinates; at least `least` map px wide and high (a 1x1 field on a shrunk map stays visible)."""
    (y0, y1), (x0, x1) = clip_box(box, (grid.h, grid.w))
    if not (y1 > y0 and x1 > x0):
        return []
    y0, y1 = widen(y0, y1, least)
    x0, x1 = widen(x0, x1, least)
    out = []
    for t in range(grid.n):
        oy, ox = grid.origin(t)
        out.append((ox + x0, oy + y0, ox + x1, oy + y1))
    return out

