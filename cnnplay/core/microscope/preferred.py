"""Preferred input: an input optimised by gradient ascent to excite one unit
(or a class score, which is a unit of the last layer).

Plain gradient ascent on a unit turns the input into high-frequency noise that
excites the unit but shows nothing a person can read. The regularisation here
is the one of Yosinski et al., "Understanding Neural Networks Through Deep
Visualization" (2015), which keeps the result an image:

- **jitter**: each step looks at the input shifted by a random offset of up to
  `jitter` pixels per axis (np.roll); a pattern must then excite the unit at
  several neighbouring positions, not only at one exact pixel grid;
- **blur**: every `blur_every` steps a Gaussian blur of `blur_sigma` pixels
  (per channel, spatial axes only) removes the highest frequencies, which the
  gradient keeps re-adding and which carry no readable structure;
- **decay**: after each step the input is pulled toward the middle of its
  value range by a fraction `decay` (an L2 penalty), so that pixels the unit
  does not care about fade to grey instead of keeping their noise;
- the input is clipped to `value_range` (the range of the data, [0, 1] for
  cnnplay's images).

A unit of a ReLU or LeakyReLU layer is optimised through the value that goes
into the activation (`objective_layer`, the same unit one or more layers
earlier): the activation is monotone, so maximising its input maximises the
unit, and a ReLU's zero gradient below 0 would stall the ascent of a unit that
starts out inactive.

The step is the gradient divided by its root mean square, times `lr` times the
width of the value range: its size does not depend on how large the unit's
gradient happens to be. The gradient is receptive.input_gradient (the cropped
reverse pass of the input-gradient kernels), the forward pass runs only up to
the unit's layer. Everything random comes from `numpy.random.default_rng(seed)`
(the starting noise and the jitter), so a seed gives the same image every time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import Cancelled, NetworkError
from ..layers import LeakyReLU
from ..receptive import _check_layer, _check_unit, input_gradient

STEPS = 96


@dataclass(frozen=True, eq=False)
class PreferredInput:
    layer: int
    unit: tuple[int, ...]
    objective_layer: int  # the layer whose unit the ascent maximises (before trailing activations)
    image: np.ndarray  # float32 of the input's shape
    box: tuple[tuple[int, int], ...]  # the unit's receptive-field box on the input (unclipped)
    history: np.ndarray  # float64 (steps,): the objective at each step (on the jittered input)
    start_value: float  # the objective for the starting noise
    value: float  # the objective for `image`
    unit_value: float  # the unit itself (after its activation) for `image`
    seed: int
    settings: dict


def _gaussian(sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of every channel of x (C, ...) along its spatial axes
    (borders: reflected)."""
    if sigma <= 0:
        return x
    k = _gaussian(sigma)
    r = len(k) // 2
    out = x
    for axis in range(1, x.ndim):
        n = out.shape[axis]
        if n < 2:
            continue
        pad = [(0, 0)] * x.ndim
        pad[axis] = (min(r, n - 1), min(r, n - 1))
        p = np.pad(out, pad, mode="reflect")
        if pad[axis][0] < r:  # a tiny axis: pad the rest with edge values
            extra = [(0, 0)] * x.ndim
            extra[axis] = (r - pad[axis][0], r - pad[axis][0])
            p = np.pad(p, extra, mode="edge")
        acc = np.zeros_like(out)
        for t in range(len(k)):
            sl = [slice(None)] * x.ndim
            sl[axis] = slice(t, t + n)
            acc += k[t] * p[tuple(sl)]
        out = acc
    return out


def _value(net, x, layer, unit) -> tuple[float, list]:
    outs, h = [], x
    for i in range(layer + 1):
        h = net.layer_forward(i, h)
        outs.append(h)
    return float(outs[layer][unit]), outs


def objective_layer(net, layer: int) -> int:
    """`layer` without the activations it ends with (see the module docstring)."""
    i = layer
    while i > 0 and isinstance(net.layer_types[i], LeakyReLU):
        i -= 1
    return i


def auto_settings(net, layer: int, unit) -> dict:
    """Jitter and blur scaled to the unit's field: a 3x3 field has no room for
    either (its best input is a pixel pattern), a 30x30 field gets a few pixels."""
    box = net.receptive_field(layer, unit).box
    r = min(min(b - a, n) for (a, b), n in zip(box, net.input_shape[1:]))
    return {"jitter": int(min(2, r // 12)), "blur_sigma": 0.0 if r < 8 else float(min(0.8, r / 40))}


def preferred_input(net, layer, unit, steps: int = STEPS, seed: int = 0, lr: float = 0.05,
                    jitter: int | None = None, blur_every: int = 4, blur_sigma: float | None = None,
                    decay: float = 0.01, value_range: tuple[float, float] = (0.0, 1.0), progress=None,
                    should_stop=None) -> PreferredInput:
    """Gradient ascent on the input to maximise `unit` of `layer` (see the
    module docstring). jitter/blur_sigma None: scaled to the unit's field
    (`auto_settings`). The step size and the blur fall linearly to a tenth
    over the steps, so the image settles. progress(step, steps) after each
    step; should_stop() is asked before each step (then Cancelled is raised)."""
    layer = _check_layer(net, layer)
    unit = _check_unit(net, layer, unit)
    lo, hi = (float(v) for v in value_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise NetworkError(f"value_range must be two finite numbers, low < high, not {value_range!r}")
    if steps < 1:
        raise NetworkError(f"steps must be at least 1, not {steps}")
    target = objective_layer(net, layer)
    auto = auto_settings(net, layer, unit)
    jitter = auto["jitter"] if jitter is None else int(jitter)
    blur_sigma = auto["blur_sigma"] if blur_sigma is None else float(blur_sigma)
    settings = dict(steps=steps, lr=lr, jitter=jitter, blur_every=blur_every, blur_sigma=blur_sigma,
                    decay=decay, value_range=(lo, hi))
    rng = np.random.default_rng(seed)
    mid, width = (lo + hi) / 2, hi - lo
    x = (mid + 0.02 * width * rng.standard_normal(net.input_shape)).astype(np.float32)
    np.clip(x, lo, hi, out=x)
    start_value, _ = _value(net, x, target, unit)
    dims = len(net.input_shape) - 1
    axes = tuple(range(1, dims + 1))
    history = np.zeros(steps)
    for t in range(steps):
        if should_stop is not None and should_stop():
            raise Cancelled()
        anneal = 1.0 - 0.9 * t / max(steps - 1, 1)  # 1 -> 0.1
        shift = tuple(int(v) for v in rng.integers(-jitter, jitter + 1, dims)) if jitter > 0 else (0,) * dims
        xs = np.roll(x, shift, axis=axes) if any(shift) else x
        history[t], outs = _value(net, xs, target, unit)
        g = input_gradient(net, xs, target, unit, outputs=outs)
        if any(shift):
            g = np.roll(g, tuple(-s for s in shift), axis=axes)
        rms = float(np.sqrt(np.mean(np.square(g, dtype=np.float64))))
        if rms > 0:
            x += np.float32(lr * width * anneal / rms) * g
        if decay > 0:
            x -= np.float32(decay * anneal) * (x - np.float32(mid))
        if blur_sigma > 0 and blur_every > 0 and (t + 1) % blur_every == 0:
            x = blur(x, blur_sigma * anneal).astype(np.float32)
        np.clip(x, lo, hi, out=x)
        if progress is not None:
            progress(t + 1, steps)
    unit_value, outs = _value(net, x, layer, unit)
    box = net.receptive_field(layer, unit).box
    x.flags.writeable = False
    return PreferredInput(layer, unit, target, x, box, history, start_value, float(outs[target][unit]),
                          unit_value, int(seed), settings)
