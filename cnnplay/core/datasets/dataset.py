"""A labelled data set: samples, integer labels and class names, checked on creation.

    ds = Dataset(x, y, classes, name="shapes", reference={"builtin": "shapes", "params": {...}})

- `x`: float32 `(N, C, H, W)` (images) or `(N, C, L)` (1D signals); any real
  numeric dtype is converted to float32; every value must be finite.
- `y`: integer labels `(N,)` in `[0, K)`, stored as int64.
- `classes`: K >= 2 distinct, non-empty names; every class has at least one
  sample (unless `allow_empty_classes=True`, e.g. a small test split).
- `reference`: how to make the data again (JSON-able dict or None), e.g.
  `{"builtin": "shapes", "params": {...}}` or `{"file": "/path/set.npz"}`; a
  training state stores it instead of the samples.

Arrays are kept read-only. Every problem raises DatasetError (an InputError,
a ValueError) saying what is wrong and where.

`.npz` files hold `x` (float32), `y` (int64), `classes` (a unicode array) and
`meta` (a unicode 0-d array of JSON: name and reference): no pickles. Loading
reads only regular files, checks every member's size against the memory
budget before inflating it, and parses arrays with allow_pickle=False.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile

import numpy as np

from .. import memory
from ..errors import InputError, short_repr
from ..safe_read import SafeReadError, read_regular_file

__all__ = ["Dataset", "DatasetError"]

MAX_CLASSES = 1000
MAX_NAME = 200
_MEMBERS = ("x.npy", "y.npy", "classes.npy", "meta.npy")
_MAX_NPY_HEADER = 4096


class DatasetError(InputError):
    """A data set cnnplay cannot use; str(e) names the file (if any) and the problem."""


class Dataset:
    """Samples x (N, C, H, W) or (N, C, L), labels y (N,), class names; see the module doc."""

    def __init__(self, x, y, classes, name: str = "data set", reference: dict | None = None,
                 allow_empty_classes: bool = False, _source: str | None = None):
        fail = lambda reason: DatasetError(reason, _source)  # noqa: E731
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise fail(f"the name must be a non-empty text of at most {MAX_NAME} characters, not {short_repr(name)}")
        classes = _check_classes(classes, fail)
        x = _check_x(x, fail)
        y = _check_y(y, x.shape[0], len(classes), fail)
        if not allow_empty_classes:
            counts = np.bincount(y, minlength=len(classes))
            empty = [classes[k] for k in np.flatnonzero(counts == 0)]
            if empty:
                shown = ", ".join(repr(c) for c in empty[:5]) + (" ..." if len(empty) > 5 else "")
                raise fail(f"class(es) {shown} have no samples; every class needs at least one")
        if reference is not None:
            try:
                reference = json.loads(json.dumps(reference))
            except (TypeError, ValueError) as e:
                raise fail(f"the reference must be plain JSON data ({short_repr(str(e), 100)})") from None
            if not isinstance(reference, dict):
                raise fail(f"the reference must be an object, not {short_repr(reference)}")
        x.flags.writeable = False
        y.flags.writeable = False
        self._x, self._y, self._classes = x, y, tuple(classes)
        self.name = name
        self.reference = reference

    # -- facts ---------------------------------------------------------------
    @property
    def x(self) -> np.ndarray:
        return self._x

    @property
    def y(self) -> np.ndarray:
        return self._y

    @property
    def classes(self) -> list[str]:
        return list(self._classes)

    @property
    def num_classes(self) -> int:
        return len(self._classes)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample: (C, H, W) or (C, L), what the network's input must be."""
        return tuple(self._x.shape[1:])

    def __len__(self) -> int:
        return self._x.shape[0]

    def class_counts(self) -> np.ndarray:
        return np.bincount(self._y, minlength=self.num_classes)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, {len(self)} samples of {self.sample_shape}, "
                f"{self.num_classes} classes)")

    # -- subsets -------------------------------------------------------------
    def subset(self, indices, name: str | None = None, allow_empty_classes: bool = True) -> "Dataset":
        """The samples at `indices` (in that order), same classes and reference."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise DatasetError(f"subset: indices must be in [0, {len(self)})")
        return Dataset(self._x[idx], self._y[idx], self.classes, name or self.name, self.reference,
                       allow_empty_classes=allow_empty_classes)

    def split(self, test_fraction: float = 0.2, seed: int = 0) -> tuple["Dataset", "Dataset"]:
        """(train, test), stratified: each class puts round(n * test_fraction)
        of its n samples in test, but at least 1 and at most n - 1 (a class
        with 1 sample stays in train); the choice is random from `seed`, and
        each part keeps the original order. The train part has every class."""
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
                or not 0 < test_fraction < 1:
            raise DatasetError(f"split: test_fraction must be a number between 0 and 1 (exclusive), "
                               f"not {short_repr(test_fraction)}")
        rng = np.random.default_rng(_check_seed(seed, "split"))
        test_mask = np.zeros(len(self), bool)
        for k in range(self.num_classes):
            members = np.flatnonzero(self._y == k)
            n = members.size
            if n < 2:
                continue
            n_test = min(max(int(round(n * test_fraction)), 1), n - 1)
            test_mask[rng.choice(members, n_test, replace=False)] = True
        if not test_mask.any():
            raise DatasetError(f"split: '{self.name}' has too few samples to split ({len(self)})")
        train = self.subset(np.flatnonzero(~test_mask), f"{self.name} (train)", allow_empty_classes=False)
        test = self.subset(np.flatnonzero(test_mask), f"{self.name} (test)")
        return train, test

    # -- files ---------------------------------------------------------------
    def save_npz(self, path) -> None:
        """Write an .npz (no pickles) atomically; DatasetError on failure."""
        from ..fileformat import atomic_write
        meta = json.dumps({"format": "cnnplay-dataset", "version": 1, "name": self.name,
                           "reference": self.reference})
        buf = io.BytesIO()
        np.savez_compressed(buf, x=self._x, y=self._y, classes=np.array(self._classes, dtype=str),
                            meta=np.array(meta))
        try:
            atomic_write(path, buf.getvalue())
        except OSError as e:
            raise DatasetError(f"cannot save: {e.strerror or e}", os.fspath(path)) from None

    @classmethod
    def load_npz(cls, path) -> "Dataset":
        """A data set from an .npz written by save_npz (or any .npz with arrays x, y
        and classes); regular files only, sizes checked before inflating, no pickles."""
        name = os.fspath(path)
        limit = memory.limit_bytes()
        try:
            data = read_regular_file(name, limit, what="data set")
        except SafeReadError as e:
            raise DatasetError(e.reason, e.path) from None
        try:
            return _from_npz_bytes(data, name, limit)
        except DatasetError:
            raise
        except MemoryError:
            raise DatasetError("not enough memory to load it", name) from None
        except Exception as e:  # a last guard: nothing but a DatasetError leaves the loader
            raise DatasetError(f"cannot be read ({type(e).__name__}: {short_repr(str(e), 200)})", name) from None


# -- checks ---------------------------------------------------------------------

def _check_seed(seed, what: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise DatasetError(f"{what}: the seed must be an integer from 0 to 2**63-1, not {short_repr(seed)}")
    return int(seed)


def _check_classes(classes, fail) -> list[str]:
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__len__"):
        raise fail(f"classes must be a list of names, not {short_repr(classes)}")
    classes = list(classes)
    if not 2 <= len(classes) <= MAX_CLASSES:
        raise fail(f"needs from 2 to {MAX_CLASSES} classes, not {len(classes)}")
    out = []
    for i, c in enumerate(classes):
        if isinstance(c, np.str_):
            c = str(c)
        if not isinstance(c, str) or not c.strip() or len(c) > MAX_NAME:
            raise fail(f"class {i}: a name must be a non-empty text of at most {MAX_NAME} characters, "
                       f"not {short_repr(c)}")
        out.append(c)
    dupes = sorted({c for c in out if out.count(c) > 1})
    if dupes:
        raise fail(f"class names must differ; repeated: {', '.join(map(repr, dupes[:5]))}")
    return out


def _check_x(x, fail) -> np.ndarray:
    try:
        a = np.asarray(x)
    except Exception as e:
        raise fail(f"x is not an array ({short_repr(str(e), 100)})") from None
    if a.dtype.kind not in "fiu":
        raise fail(f"x must hold real numbers, not {a.dtype}")
    if a.ndim not in (3, 4):
        raise fail(f"x must be (N, C, H, W) images or (N, C, L) signals, not shape {a.shape}")
    if a.shape[0] < 1:
        raise fail("x holds no samples (N = 0)")
    if any(n < 1 for n in a.shape[1:]):
        raise fail(f"x has an empty axis: shape {a.shape}")
    if a.nbytes // max(a.itemsize, 1) * 4 > memory.limit_bytes():
        raise fail(f"x needs {memory.format_bytes(a.size * 4)}, above the memory limit of "
                   f"{memory.format_bytes(memory.limit_bytes())}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.array(a, dtype=np.float32, order="C", copy=True)
    bad = ~np.isfinite(out)
    if bad.any():
        where = tuple(int(v) for v in np.argwhere(bad)[0])
        kind = "NaN" if np.isnan(out[where]) else "an infinite value (or one too large for float32)"
        raise fail(f"x holds {kind} at {where} ({int(bad.sum())} bad value(s) in all)")
    return out


def _check_y(y, n: int, k: int, fail) -> np.ndarray:
    try:
        a = np.asarray(y)
    except Exception as e:
        raise fail(f"y is not an array ({short_repr(str(e), 100)})") from None
    if a.ndim != 1:
        raise fail(f"y must be one label per sample, shape ({n},), not {a.shape}")
    if a.shape[0] != n:
        raise fail(f"y has {a.shape[0]} labels but x has {n} samples")
    if a.dtype.kind not in "iu":
        raise fail(f"labels must be integers (class indices), not {a.dtype}")
    bad = (a < 0) | (a >= k)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise fail(f"label {int(a[i])} of sample {i} is outside [0, {k}) ({k} classes)")
    return np.array(a, dtype=np.int64, copy=True)


# -- .npz reading ------------------------------------------------------------------

def _from_npz_bytes(data: bytes, name: str, limit: int) -> Dataset:
    fail = lambda reason: DatasetError(reason, name)  # noqa: E731
    if not data:
        raise fail("the file is empty (0 bytes)")
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, IndexError, KeyError):
        raise fail("not an .npz data set (not a zip archive)") from None
    with z:
        infos = {i.filename: i for i in z.infolist()}
        missing = [m[:-4] for m in _MEMBERS[:3] if m not in infos]
        if missing:
            raise fail(f"missing array(s) {', '.join(missing)} (a data set holds x, y and classes)")
        unexpected = sorted(set(infos) - set(_MEMBERS))
        if unexpected:
            raise fail(f"unexpected member(s) {', '.join(short_repr(u) for u in unexpected[:5])}")
        total = 0
        for info in infos.values():
            if info.flag_bits & 0x1:
                raise fail(f"{info.filename} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise fail(f"{info.filename} uses an unsupported compression method ({info.compress_type})")
            total += info.file_size
        if total > limit:
            raise fail(f"its arrays claim {memory.format_bytes(total)} unpacked, above the memory limit of "
                       f"{memory.format_bytes(limit)}: refused")
        arrays = {}
        for member, info in infos.items():
            try:
                with z.open(info) as f:
                    raw = f.read(info.file_size + 1)
            except Exception as e:
                raise fail(f"{member}: damaged zip data ({short_repr(str(e), 120)})") from None
            if len(raw) > info.file_size:
                raise fail(f"{member} unpacks to more than it claims: refused")
            try:
                arrays[member[:-4]] = np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False,
                                                               max_header_size=_MAX_NPY_HEADER)
            except ValueError as e:
                text = str(e)
                if "pickle" in text.lower() or "object" in text.lower():
                    raise fail(f"array {member[:-4]} holds Python objects; cnnplay never unpickles") from None
                raise fail(f"array {member[:-4]} is not a valid .npy array ({short_repr(text, 120)})") from None
            except Exception as e:
                raise fail(f"array {member[:-4]} is not a valid .npy array ({short_repr(str(e), 120)})") from None
    classes = arrays["classes"]
    if classes.dtype.kind not in "U" or classes.ndim != 1:
        raise fail(f"classes must be a 1D array of texts, not {classes.dtype} of shape {classes.shape}")
    meta = {}
    if "meta" in arrays:
        m = arrays["meta"]
        try:
            meta = json.loads(str(m[()])) if m.dtype.kind == "U" and m.ndim == 0 else None
        except (ValueError, RecursionError):
            meta = None
        if not isinstance(meta, dict):
            raise fail("meta must be a text holding a JSON object")
    ds_name = meta.get("name")
    if not isinstance(ds_name, str) or not ds_name.strip():
        ds_name = os.path.splitext(os.path.basename(name))[0] or "data set"
    reference = meta.get("reference")
    if not isinstance(reference, dict) or not reference:
        reference = {"file": os.path.abspath(name)}
    return Dataset(arrays["x"], arrays["y"], [str(c) for c in classes], ds_name[:MAX_NAME], reference,
                   _source=name)
