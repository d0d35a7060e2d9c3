"""Generated data sets: shapes, orientations and waveforms, deterministic from a seed.

Every generator takes `count` (samples), `noise` (standard deviation of the
added Gaussian noise) and `seed`, draws everything from one
`numpy.random.default_rng(seed)` in a fixed order, and returns
(x float32, y int64, classes). Classes are balanced (sample i has class
i mod K before a seeded shuffle). Images lie in [0, 1] (clipped after the
noise); signals are not clipped.
"""

from __future__ import annotations

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross")
WAVEFORMS = ("sine", "square", "sawtooth", "triangle", "chirp")


def _labels(rng, count: int, k: int) -> np.ndarray:
    y = np.arange(count, dtype=np.int64) % k
    rng.shuffle(y)
    return y


def _colours(rng, count: int, channels: int, polarity: str = "both") -> tuple[np.ndarray, np.ndarray]:
    """(foreground, background) per sample and channel in [0, 1] whose means
    over channels differ by a contrast of 0.3-0.9; polarity "light": the
    foreground is brighter, "dark": darker, "both": either at random. In RGB
    each keeps a random hue (its deviation from its mean, shrunk to fit)."""
    bg = rng.uniform(0.0, 1.0, (count, channels))
    fg = rng.uniform(0.0, 1.0, (count, channels))
    contrast = rng.uniform(0.3, 0.9, count)
    sign = np.where(rng.random(count) < 0.5, -1.0, 1.0)
    level = rng.random(count)
    if polarity != "both":
        sign[:] = 1.0 if polarity == "light" else -1.0
    lo = np.where(sign > 0, 0.0, contrast)
    hi = np.where(sign > 0, 1.0 - contrast, 1.0)
    m_bg = lo + (hi - lo) * level
    m_fg = m_bg + sign * contrast

    def around(c, m):
        dev = c - c.mean(1, keepdims=True)
        room = np.minimum(m, 1.0 - m)[:, None]
        scale = np.minimum(1.0, room / np.maximum(np.abs(dev).max(1, keepdims=True), 1e-12))
        return np.clip(m[:, None] + dev * scale, 0.0, 1.0)

    return around(fg, m_fg), around(bg, m_bg)


def _finish(img: np.ndarray, noise: float, rng) -> np.ndarray:
    if noise > 0:
        img = img + rng.normal(0.0, noise, img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def shapes(size: int = 32, count: int = 1000, noise: float = 0.1, seed: int = 0, channels: int = 1,
           polarity: str = "light"):
    """Circles, squares, triangles and crosses of random position, size (outer
    radius 20-40 % of the image), rotation and contrast (gray or RGB colours),
    anti-aliased, on a flat background. A shape always lies wholly inside.
    polarity: "light" shapes on a darker background, "dark" the reverse,
    "both" either (harder to learn: a small net needs many more epochs)."""
    rng = np.random.default_rng(seed)
    y = _labels(rng, count, len(SHAPES))
    r = rng.uniform(0.2, 0.4, count) * size
    cx = rng.uniform(r + 0.5, size - 0.5 - r)
    cy = rng.uniform(r + 0.5, size - 0.5 - r)
    theta = rng.uniform(0, 2 * np.pi, count)
    fg, bg = _colours(rng, count, channels, polarity)

    pix = np.arange(size) + 0.5
    px = pix[None, None, :] - cx[:, None, None]
    py = pix[None, :, None] - cy[:, None, None]
    c, s = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    u, v = c * px + s * py, -s * px + c * py  # coordinates in the shape's frame
    rr = r[:, None, None]
    dist = np.empty((count, size, size))
    for k, name in enumerate(SHAPES):
        m = y == k
        if not m.any():
            continue
        uu, vv, rk = u[m], v[m], rr[m]
        if name == "circle":
            d = np.hypot(uu, vv) - 0.8 * rk
        elif name == "square":
            a = rk / np.sqrt(2)
            d = np.maximum(np.abs(uu), np.abs(vv)) - a
        elif name == "triangle":  # equilateral, circumradius r: three half-planes at distance r/2
            d = np.full(uu.shape, -np.inf)
            for ang in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
                d = np.maximum(d, uu * np.cos(ang) + vv * np.sin(ang) - rk / 2)
        else:  # cross: two bars of half-length a, half-width a/3, within radius r
            a = rk / np.hypot(1, 1 / 3)
            bar1 = np.maximum(np.abs(uu) - a, np.abs(vv) - a / 3)
            bar2 = np.maximum(np.abs(uu) - a / 3, np.abs(vv) - a)
            d = np.minimum(bar1, bar2)
        dist[m] = d
    cover = np.clip(0.5 - dist, 0.0, 1.0)  # anti-aliased edge one pixel wide
    img = bg[:, :, None, None] + (fg - bg)[:, :, None, None] * cover[:, None]
    return _finish(img, noise, rng), y, list(SHAPES)


def orientations(size: int = 32, count: int = 1000, noise: float = 0.1, seed: int = 0, channels: int = 1,
                 angles: int = 4):
    """Gratings (half the samples) and single bars at `angles` orientations
    evenly spaced over 180 degrees (class k: stripes run at k * 180 / angles
    degrees counter-clockwise from horizontal, as seen on screen), jittered by up to a quarter of the spacing,
    with random period, phase, bar width and contrast."""
    rng = np.random.default_rng(seed)
    y = _labels(rng, count, angles)
    step = np.pi / angles
    theta = y * step + rng.uniform(-step / 4, step / 4, count)
    is_bar = rng.random(count) < 0.5
    period = rng.uniform(4.0, max(size / 2, 5.0), count)
    phase = rng.uniform(0, 2 * np.pi, count)
    offset = rng.uniform(-0.25, 0.25, count) * size
    width = rng.uniform(0.06, 0.15, count) * size
    fg, bg = _colours(rng, count, channels)

    pix = np.arange(size) + 0.5 - size / 2
    px, py = pix[None, None, :], pix[None, :, None]
    t = theta[:, None, None]
    # stripes run at angle t counter-clockwise from horizontal, as seen on screen (y down)
    across = np.sin(t) * px + np.cos(t) * py
    grating = 0.5 + 0.5 * np.sin(2 * np.pi * across / period[:, None, None] + phase[:, None, None])
    bar = np.clip(width[:, None, None] / 2 + 0.5 - np.abs(across - offset[:, None, None]), 0.0, 1.0)
    cover = np.where(is_bar[:, None, None], bar, grating)
    img = bg[:, :, None, None] + (fg - bg)[:, :, None, None] * cover[:, None]
    classes = [f"{round(k * 180 / angles, 1):g} deg" for k in range(angles)]
    return _finish(img, noise, rng), y, classes


def waveforms(length: int = 128, count: int = 1000, noise: float = 0.1, seed: int = 0, channels: int = 1):
    """Sine, square, sawtooth, triangle and chirp signals of random frequency
    (2-8 cycles over the signal; a chirp sweeps from f to 2-4 f, up or down),
    phase, amplitude (0.5-1) and offset (+-0.2), plus Gaussian noise; every
    channel holds the same wave with its own noise."""
    rng = np.random.default_rng(seed)
    y = _labels(rng, count, len(WAVEFORMS))
    cycles = rng.uniform(2.0, 8.0, count)
    phase = rng.uniform(0.0, 1.0, count)
    amp = rng.uniform(0.5, 1.0, count)
    offset = rng.uniform(-0.2, 0.2, count)
    sweep = rng.uniform(2.0, 4.0, count)
    down = rng.random(count) < 0.5
    t = (np.arange(length) / length)[None, :]
    f = cycles[:, None]
    cyc = f * t + phase[:, None]  # position in cycles
    frac = cyc % 1.0
    sig = np.empty((count, length))
    for k, name in enumerate(WAVEFORMS):
        m = y == k
        if name == "sine":
            w = np.sin(2 * np.pi * cyc[m])
        elif name == "square":
            w = np.where(frac[m] < 0.5, 1.0, -1.0)
        elif name == "sawtooth":
            w = 2 * frac[m] - 1
        elif name == "triangle":
            w = 1 - 4 * np.abs(frac[m] - 0.5)
        else:  # linear chirp from f to sweep*f (or the reverse): phase = f t + (sweep-1) f t^2 / 2
            tt = np.where(down[m, None], 1 - t, t)
            w = np.sin(2 * np.pi * (f[m] * tt + (sweep[m, None] - 1) * f[m] * tt * tt / 2 + phase[m, None]))
        sig[m] = w
    sig = amp[:, None] * sig + offset[:, None]
    x = np.repeat(sig[:, None, :], channels, axis=1)
    if noise > 0:
        x = x + rng.normal(0.0, noise, x.shape)
    return x.astype(np.float32), y, list(WAVEFORMS)
