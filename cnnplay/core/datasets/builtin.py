"""The built-in data sets: three generated ones and one real, bundled one.

    make_builtin("shapes", size=32, count=1000, noise=0.1, seed=0, channels=1)
    make_builtin("orientations", size=32, count=1000, noise=0.1, seed=0, channels=1, angles=4)
    make_builtin("waveforms", length=128, count=1000, noise=0.1, seed=0, channels=1)
    make_builtin("digits", size=8, count=None, noise=0.0, seed=0)

`BUILTIN[name]` describes each (title, help, parameters with defaults and
ranges) so the app can build its form from it. The same name and parameters
always give the same data, bit for bit; the Dataset's `reference` is
`{"builtin": name, "params": {...all parameters...}}`, and
`from_reference(ref)` makes it again.

digits: the UCI "Optical Recognition of Handwritten Digits" set (1797 8x8
images of pixel counts 0..16, 10 classes; CC BY 4.0, see
resources/datasets/SOURCES.md), as float32 in [0, 1] (count / 16), shape
(N, 1, size, size): resized bilinearly (up) or by area averaging (down) when
`size` is not 8. `count` takes a seeded random subset of that many samples, balanced
over the classes (None: all, in the file's order); `noise` adds clipped Gaussian noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import memory
from ..errors import short_repr
from . import generated
from .dataset import Dataset, DatasetError

__all__ = ["BUILTIN", "BuiltinSet", "Param", "make_builtin", "from_reference"]

MAX_COUNT = 200_000


@dataclass(frozen=True)
class Param:
    name: str
    default: object
    minimum: float | None = None
    maximum: float | None = None
    kind: str = "int"  # "int", "float", "choice", "int_or_none"
    choices: tuple = ()
    help: str = ""


@dataclass(frozen=True)
class BuiltinSet:
    name: str
    title: str
    help: str
    params: tuple[Param, ...]
    kind: str  # "image" or "signal"

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}


def _common(size_name: str, size_default: int, size_min: int, size_max: int) -> tuple[Param, ...]:
    return (
        Param(size_name, size_default, size_min, size_max,
              help="Side of each image in pixels." if size_name == "size" else "Samples per signal."),
        Param("count", 1000, 1, MAX_COUNT, help="Number of samples."),
        Param("noise", 0.1, 0.0, 1.0, kind="float", help="Standard deviation of added Gaussian noise."),
        Param("seed", 0, 0, 2**63 - 1, help="The same seed always gives the same data."),
    )


_CHANNELS = Param("channels", 1, kind="choice", choices=(1, 3), help="1: gray, 3: RGB colours.")

BUILTIN: dict[str, BuiltinSet] = {
    "shapes": BuiltinSet(
        "shapes", "Shapes",
        "Circles, squares, triangles and crosses at random positions, sizes, rotations and contrasts.",
        _common("size", 32, 8, 512) + (_CHANNELS, Param(
            "polarity", "light", kind="choice", choices=("light", "dark", "both"),
            help="light: shapes brighter than the background; dark: darker; both: either (harder).")),
        "image"),
    "orientations": BuiltinSet(
        "orientations", "Orientations",
        "Gratings and bars at several angles: first-layer kernels become oriented edge detectors.",
        _common("size", 32, 8, 512) + (_CHANNELS, Param("angles", 4, 2, 12, help="Number of orientation classes.")),
        "image"),
    "waveforms": BuiltinSet(
        "waveforms", "Waveforms (1D)",
        "Sine, square, sawtooth, triangle and chirp signals with random frequency, phase and noise.",
        _common("length", 128, 16, 65536) + (Param("channels", 1, 1, 16, help="Channels (same wave, own noise)."),),
        "signal"),
    "digits": BuiltinSet(
        "digits", "Handwritten digits (real, 8x8)",
        "1797 real handwritten digits 0-9 (UCI optdigits, CC BY 4.0), 8x8 pixels, resizable.",
        (Param("size", 8, 4, 64, help="Side of each image in pixels (8 is the original)."),
         Param("count", None, 10, 1797, kind="int_or_none", help="A random subset of this many, balanced over the classes (None: all 1797)."),
         Param("noise", 0.0, 0.0, 1.0, kind="float", help="Standard deviation of added Gaussian noise."),
         Param("seed", 0, 0, 2**63 - 1, help="Chooses the subset and the noise.")),
        "image"),
}


def _check_params(spec: BuiltinSet, given: dict) -> dict:
    known = {p.name for p in spec.params}
    unknown = sorted(set(given) - known)
    if unknown:
        raise DatasetError(f"{spec.name}: unknown parameter(s) {', '.join(map(str, unknown))} "
                           f"(parameters: {', '.join(p.name for p in spec.params)})")
    out = {}
    for p in spec.params:
        v = given.get(p.name, p.default)
        where = f"{spec.name}, {p.name}"
        if p.kind == "int_or_none" and v is None:
            out[p.name] = None
            continue
        if p.kind == "choice" and not all(isinstance(c, int) for c in p.choices):
            if v not in p.choices:
                raise DatasetError(f"{where}: must be one of {', '.join(map(str, p.choices))}, not {short_repr(v)}")
            out[p.name] = v
            continue
        if p.kind == "float":
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                raise DatasetError(f"{where}: must be a number, not {short_repr(v)}")
            v = float(v)
        else:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise DatasetError(f"{where}: must be an integer, not {short_repr(v)}")
            v = int(v)
        if p.kind == "choice" and v not in p.choices:
            raise DatasetError(f"{where}: must be one of {', '.join(map(str, p.choices))}, not {v}")
        if p.minimum is not None and v < p.minimum or p.maximum is not None and v > p.maximum:
            raise DatasetError(f"{where}: must be from {p.minimum:g} to {p.maximum:g}, not {v:g}")
        out[p.name] = v
    return out


def make_builtin(name: str, **params) -> Dataset:
    """The built-in data set `name` with `params` (see BUILTIN[name].params); DatasetError if unknown."""
    if name not in BUILTIN:
        raise DatasetError(f"no built-in data set {short_repr(name)} (built-in: {', '.join(BUILTIN)})")
    spec = BUILTIN[name]
    p = _check_params(spec, params)
    size = p.get("size", p.get("length"))
    per_sample = p.get("channels", 1) * (size * size if spec.kind == "image" else size)
    count = p["count"] if p["count"] is not None else 1797
    need = count * per_sample * 4 * 2  # the samples and one float64-ish temporary
    if need > memory.limit_bytes():
        raise DatasetError(f"{name}: {count} samples of that size need about {memory.format_bytes(need)}, "
                           f"above the memory limit of {memory.format_bytes(memory.limit_bytes())}; "
                           "use fewer or smaller samples")
    if name == "digits":
        x, y, classes = _digits(**p)
    else:
        x, y, classes = getattr(generated, name)(**p)
    return Dataset(x, y, classes, name=name, reference={"builtin": name, "params": p})


def from_reference(reference: dict) -> Dataset:
    """The data set a Dataset.reference describes: a built-in one made again, or an .npz file loaded."""
    if not isinstance(reference, dict):
        raise DatasetError(f"a data-set reference must be an object, not {short_repr(reference)}")
    if "builtin" in reference:
        params = reference.get("params", {})
        if not isinstance(params, dict):
            raise DatasetError(f"a data-set reference's params must be an object, not {short_repr(params)}")
        return make_builtin(reference["builtin"], **params)
    if "file" in reference and isinstance(reference["file"], str):
        return Dataset.load_npz(reference["file"])
    raise DatasetError(f"cannot make a data set from the reference {short_repr(reference, 120)}")


# -- digits ---------------------------------------------------------------------------

_DIGITS_CACHE: list = []


def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    if not _DIGITS_CACHE:
        from ...bundled import resource
        path = resource("datasets", "digits.npz")
        try:
            with np.load(path, allow_pickle=False) as z:
                images, labels = z["images"], z["labels"]
        except (OSError, ValueError, KeyError) as e:
            raise DatasetError(f"the bundled digits are missing or damaged ({short_repr(str(e), 120)})",
                               str(path)) from None
        _DIGITS_CACHE.append((images, labels))
    return _DIGITS_CACHE[0]


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of bilinear resampling with pixel centres aligned
    (PyTorch's align_corners=False), edges clamped."""
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    pos = np.clip(pos, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = pos - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1 - frac
    m[np.arange(n_out), hi] += frac
    return m


def _digits(size: int = 8, count: int | None = None, noise: float = 0.0, seed: int = 0):
    images, labels = _digits_raw()
    rng = np.random.default_rng(seed)
    if count is None:
        idx = np.arange(len(labels))
    else:  # a balanced random subset: classes take turns in a seeded random order
        perm = rng.permutation(len(labels))
        rank = np.empty(len(perm), np.int64)
        seen = np.zeros(10, np.int64)
        for j, i in enumerate(perm):
            rank[j] = seen[labels[i]]
            seen[labels[i]] += 1
        idx = np.sort(perm[np.lexsort((np.arange(len(perm)), rank))[:count]])
    x = images[idx].astype(np.float64) / 16.0
    if size > 8:
        m = _resize_matrix(8, size)
        x = np.einsum("ij,njk,lk->nil", m, x, m)
    elif size < 8:
        from ..resample import area_reduce
        x = area_reduce(area_reduce(x, size, 1), size, 2)
    if noise > 0:
        x = np.clip(x + rng.normal(0.0, noise, x.shape), 0.0, 1.0)
    return x[:, None].astype(np.float32), labels[idx].astype(np.int64), [str(d) for d in range(10)]
