"""Kernel presets for conv weights: convolution as filtering.

`make_kernel(name, size, **options)` returns one float32 kernel of shape
`size` ((kh, kw) in 2D, (k,) in 1D). `apply_preset(weight, ...)` writes it into
a conv layer's weight array (PyTorch layout (Cout, Cin, kh, kw) or
(Cout, Cin, k)) for one (out, in) pair, a diagonal, or every pair, and returns
a new array (the input is never modified); the caller then hands it to
`Session.set_layer_params`.

Conventions. The layers compute a cross-correlation (like PyTorch): output
pixel (y, x) is sum_t w[t] * input[y + t...]. So "Sobel x" below responds
positively where the image gets brighter to the right, and "Sobel y" where it
gets brighter downwards.

Sizes. Every preset works for any size where it makes sense:
- identity: a single 1 at the centre tap; for an even size the centre falls
  between taps and the 1 sits at index k // 2 (the output shifts by half a
  pixel relative to an odd kernel);
- box, gaussian, gabor: sampled at offsets from the true centre (k - 1) / 2,
  so they stay symmetric for even sizes too;
- sobel_x / sobel_y: the separable form smoothing (x) derivative, with
  binomial smoothing [1, 2, 1] and derivative [-1, 0, 1] at size 3 and their
  binomial generalisations at other sizes (size 2: [1, 1] and [-1, 1]);
  needs at least 2 taps along the derivative axis;
- laplacian: the sum over axes with at least 3 taps of a second difference
  ([1, -2, 1] at size 3, binomially smoothed when larger) times a centred
  smoothing along the other axes: exactly [[0,1,0],[1,-4,1],[0,1,0]] at 3x3;
  needs at least 3 taps along one axis;
- sharpen: identity - laplacian ([[0,-1,0],[-1,5,-1],[0,-1,0]] at 3x3);
- random: uniform in +-1/sqrt(fan_in) (the layers' own initialisation),
  reproducible from `seed`.
A preset that cannot be built for a size raises PresetError saying why.

1D kernels are the height-1 case of the 2D ones: "derivative" is sobel_x of a
1 x k kernel, "laplacian" the second difference, and so on.
"""

from __future__ import annotations

import math

import numpy as np


class PresetError(ValueError):
    """A preset that does not exist or cannot be built for this kernel size."""


PRESETS_2D = ("identity", "box", "gaussian", "sharpen", "sobel_x", "sobel_y", "laplacian", "gabor", "random")
PRESETS_1D = ("identity", "box", "gaussian", "derivative", "laplacian", "sharpen", "gabor", "random")

TITLES = {
    "identity": "Identity", "box": "Box blur", "gaussian": "Gaussian blur", "sharpen": "Sharpen",
    "sobel_x": "Sobel x (vertical edges)", "sobel_y": "Sobel y (horizontal edges)",
    "laplacian": "Laplacian (spots and edges)", "gabor": "Gabor (oriented stripes)",
    "random": "Random (seeded)", "derivative": "Derivative",
}

HELP = {
    "identity": "Copies the input: the output equals the input pixel under the kernel's centre.",
    "box": "Averages all pixels under the kernel: a blur.",
    "gaussian": "A weighted average that favours the centre: a smooth blur; larger sigma, stronger blur.",
    "sharpen": "Identity minus the Laplacian: boosts a pixel against its neighbours, so edges look crisper.",
    "sobel_x": "Right minus left, smoothed vertically: bright where the image gets brighter to the right.",
    "sobel_y": "Below minus above, smoothed horizontally: bright where the image gets brighter downwards.",
    "laplacian": "Neighbours minus the centre: zero on flat areas and ramps, strong on spots and edges.",
    "gabor": "A striped wave under a Gaussian window: responds to stripes and edges at one orientation and scale.",
    "random": "Random weights like a freshly initialised layer (same seed, same numbers).",
    "derivative": "Next minus previous sample: large where the signal rises or falls.",
}

# Options each preset takes, with defaults: (name, default, minimum, maximum, step).
PRESET_OPTIONS = {
    "gaussian": (("sigma", 1.0, 0.1, 50.0, 0.1),),
    "gabor": (("theta", 0.0, -180.0, 180.0, 15.0), ("wavelength", 4.0, 1.0, 100.0, 0.5),
              ("sigma", 2.0, 0.1, 50.0, 0.1)),
    "random": (("seed", 0, 0, 2**31 - 1, 1),),
}


def make_kernel(name: str, size, *, sigma: float | None = None, theta: float = 0.0,
                wavelength: float = 4.0, seed: int = 0, fan_in: int | None = None,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """One kernel of shape `size` ((kh, kw) or (k,) or an int for k)."""
    size = (int(size),) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
    if len(size) not in (1, 2) or any(s < 1 for s in size):
        raise PresetError(f"a kernel size must be 1 or 2 positive integers, not {size}")
    names = PRESETS_1D if len(size) == 1 else PRESETS_2D
    if name not in names:
        raise PresetError(f"unknown {len(size)}D preset {name!r} (known: {', '.join(names)})")
    if len(size) == 1:
        name2 = "sobel_x" if name == "derivative" else name
        return _kernel_2d(name2, (1,) + size, sigma, theta, wavelength, seed, fan_in, rng)[0]
    return _kernel_2d(name, size, sigma, theta, wavelength, seed, fan_in, rng)


def _kernel_2d(name, size, sigma, theta, wavelength, seed, fan_in, rng) -> np.ndarray:
    kh, kw = size
    if name == "identity":
        k = np.zeros(size)
        k[kh // 2, kw // 2] = 1.0
    elif name == "box":
        k = np.full(size, 1.0 / (kh * kw))
    elif name == "gaussian":
        s = 1.0 if sigma is None else float(sigma)
        if not s > 0:
            raise PresetError(f"sigma must be positive, not {s}")
        y, x = _offsets(size)
        k = np.exp(-(x * x + y * y) / (2 * s * s))
        k /= k.sum()
    elif name == "sobel_x":
        if kw < 2:
            raise PresetError("Sobel x needs a kernel at least 2 taps wide")
        k = np.outer(_binomial(kh), _derivative(kw))
    elif name == "sobel_y":
        if kh < 2:
            raise PresetError("Sobel y needs a kernel at least 2 taps high")
        k = np.outer(_derivative(kh), _binomial(kw))
    elif name == "laplacian":
        k = _laplacian(size)
    elif name == "sharpen":
        k = 0.0 - _laplacian(size)  # 0.0 - x: no negative zeros in the grid
        k[kh // 2, kw // 2] += 1.0
    elif name == "gabor":
        k = _gabor(size, theta, wavelength, 2.0 if sigma is None else sigma)
    elif name == "random":
        bound = 1.0 / math.sqrt(fan_in if fan_in else kh * kw)
        rng = rng if rng is not None else np.random.default_rng(int(seed))
        k = rng.uniform(-bound, bound, size=size)
    else:  # pragma: no cover - guarded by make_kernel
        raise PresetError(f"unknown preset {name!r}")
    return np.ascontiguousarray(k, dtype=np.float32)


def _offsets(size):
    """Per-tap offsets from the kernel's true centre (k - 1) / 2, as (y, x) grids."""
    kh, kw = size
    return np.meshgrid(np.arange(kh) - (kh - 1) / 2, np.arange(kw) - (kw - 1) / 2, indexing="ij")


def _binomial(n: int) -> np.ndarray:
    """Row n - 1 of Pascal's triangle: [1], [1, 1], [1, 2, 1], [1, 3, 3, 1], ..."""
    return np.array([math.comb(n - 1, i) for i in range(n)], dtype=float)


def _derivative(n: int) -> np.ndarray:
    """Smoothed first difference of length n >= 2: binomial(n - 1) * [-1, 1]."""
    return np.convolve(_binomial(n - 1), [-1.0, 1.0])


def _second(n: int) -> np.ndarray:
    """Smoothed second difference of length n >= 3: binomial(n - 2) * [1, -2, 1]."""
    return np.convolve(_binomial(n - 2), [1.0, -2.0, 1.0])


def _centred(n: int) -> np.ndarray:
    """Smoothing that matches _second's support: binomial(n - 2) padded with zeros (n >= 3)."""
    if n < 3:
        return _binomial(n) / _binomial(n).sum()
    return np.concatenate([[0.0], _binomial(n - 2), [0.0]])


def _laplacian(size) -> np.ndarray:
    kh, kw = size
    if kh < 3 and kw < 3:
        raise PresetError("the Laplacian needs at least 3 taps along one axis")
    k = np.zeros(size)
    if kw >= 3:
        k += np.outer(_centred(kh), _second(kw))
    if kh >= 3:
        k += np.outer(_second(kh), _centred(kw))
    return k


def _gabor(size, theta_deg, wavelength, sigma) -> np.ndarray:
    """cos(2 pi x' / wavelength) under a Gaussian window of `sigma`, x' along the
    direction `theta` (degrees; 0 oscillates left-right, i.e. vertical stripes),
    made zero-mean (flat areas give 0) and scaled so its positive taps sum to 1."""
    if not wavelength > 0:
        raise PresetError(f"the wavelength must be positive, not {wavelength}")
    if not sigma > 0:
        raise PresetError(f"sigma must be positive, not {sigma}")
    y, x = _offsets(size)
    t = math.radians(theta_deg)
    xr = x * math.cos(t) + y * math.sin(t)
    k = np.exp(-(x * x + y * y) / (2 * sigma * sigma)) * np.cos(2 * math.pi * xr / wavelength)
    if k.size > 1:
        k -= k.mean()
    total = np.abs(k).sum() / 2
    if total < 1e-12:
        raise PresetError("this Gabor kernel is all zeros at this size (try a larger kernel or wavelength)")
    return k / total


def apply_preset(weight: np.ndarray, name: str, out: int | None = None, inp: int | None = None,
                 scope: str | None = None, **options) -> np.ndarray:
    """A copy of a conv weight array with the preset written in.

    scope: "pair" (only weight[out, inp]), "diagonal" (weight[c, c] gets the
    kernel, every other pair becomes 0: each output channel filters its
    matching input channel) or "all" (every pair gets the kernel, so each
    output sums the filtered input channels). By default "pair" when `out` and
    `inp` are given, else "all". For "random", each pair gets its own numbers
    (from the seed and the pair's indices) with the layer's fan-in.
    """
    w = np.array(weight, dtype=np.float32, copy=True)
    if w.ndim not in (3, 4):
        raise PresetError(f"a conv weight is (Cout, Cin, k) or (Cout, Cin, kh, kw), not {w.shape}")
    co, ci = w.shape[:2]
    size = w.shape[2:]
    if scope is None:
        scope = "pair" if out is not None and inp is not None else "all"
    if scope == "pair":
        if out is None or inp is None or not (0 <= out < co and 0 <= inp < ci):
            raise PresetError(f"no channel pair ({out}, {inp}) in a weight with {co} outputs and {ci} inputs")
        pairs = [(out, inp)]
    elif scope == "diagonal":
        w[:] = 0.0
        pairs = [(c, c) for c in range(min(co, ci))]
    elif scope == "all":
        pairs = [(o, i) for o in range(co) for i in range(ci)]
    else:
        raise PresetError(f"unknown scope {scope!r} (pair, diagonal or all)")
    if name == "random":
        seed = int(options.pop("seed", 0))
        fan_in = ci * math.prod(size)
        for o, i in pairs:
            w[o, i] = make_kernel(name, size, fan_in=fan_in, rng=np.random.default_rng([seed, o, i]), **options)
        return w
    k = make_kernel(name, size, **options)
    for o, i in pairs:
        w[o, i] = k
    return w


def identify_kernel(kernel: np.ndarray, options: dict | None = None, atol: float = 1e-6) -> str | None:
    """The preset a kernel equals (its defaults, or the given option values), else None
    ("custom": hand-edited, trained or random)."""
    k = np.asarray(kernel, np.float32)
    names = PRESETS_2D if k.ndim == 2 else PRESETS_1D
    for name in names:
        if name == "random":
            continue
        tries = [{o[0]: o[1] for o in PRESET_OPTIONS.get(name, ())}]
        if options:
            tries.append({o[0]: options.get(o[0], o[1]) for o in PRESET_OPTIONS.get(name, ())})
        for opts in tries:
            try:
                want = make_kernel(name, k.shape, **opts)
            except (PresetError, ValueError, TypeError):
                continue
            if want.shape == k.shape and np.allclose(want, k, atol=atol, rtol=0):
                return name
    return None
