"""1D signal input: load CSV/NPY files or generate test signals, as float32 (C, L).

File layouts (the result is always (channels, length), as the core expects):

- CSV (also .tsv/.txt): one row per sample, one column per channel, the way a
  spreadsheet or a data logger writes it. Separators: comma, semicolon, tab or
  whitespace (detected from the first data line). An optional header row of
  channel names is skipped. A file with a single data row is read as one
  channel (a row of samples) rather than as many channels of length 1.
- NPY: a 1D array is one channel; a 2D array is (channels, length), as in
  PyTorch and the core. NPZ: the same, if it holds exactly one array.
  Loaded with allow_pickle=False; the header is checked before any data.

Anything unusable (NaN, inf, text in a number column, ragged rows, wrong
number of dimensions, empty) raises InputError naming the file, the reason and,
for CSV, the row and column (1-based, as a spreadsheet shows them).
"""

from __future__ import annotations

import io
import math
import os
import re
import zipfile

import numpy as np

from .errors import InputError, short_repr
from .safe_read import SafeReadError, read_regular_file

MAX_VALUES = 50_000_000  # 200 MB of float32: far more than a playground input
MAX_TEXT_BYTES = 512 << 20
MAX_FILE_BYTES = max(MAX_TEXT_BYTES, MAX_VALUES * 8 + (1 << 16))  # a CSV, or float64 .npy of MAX_VALUES
SIGNAL_KINDS = ("sine", "chirp", "steps", "noise")
_SEPARATORS = (",", ";", "\t")


# -- loading ----------------------------------------------------------------------

def load_signal(path: str | os.PathLike) -> np.ndarray:
    """(C, L) float32 from a CSV or NPY/NPZ file; InputError naming the file and the reason.

    Only a regular file is read (never a FIFO, a device or a /proc file), and at
    most MAX_FILE_BYTES of it."""
    name = os.fspath(path)
    try:
        data = read_regular_file(name, MAX_FILE_BYTES, "signal file")
    except SafeReadError as e:
        raise InputError(e.reason, name) from None
    return signal_from_bytes(data, name)


def signal_from_bytes(data: bytes, name: str = "<memory>") -> np.ndarray:
    """Like load_signal, from a file's bytes (the format is sniffed, then guessed from `name`)."""
    data = bytes(data)
    if not data:
        raise InputError("the file is empty (0 bytes)", name)
    ext = os.path.splitext(name)[1].lower()
    if data.startswith(b"\x93NUMPY") or ext == ".npy":
        return _finish(_read_npy(io.BytesIO(data), name), name)
    if data.startswith(b"PK\x03\x04") or ext == ".npz":
        return _finish(_read_npz(io.BytesIO(data), name), name)
    return _finish(parse_csv(data, name), name)


def _finish(a: np.ndarray, name: str) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        a = np.ascontiguousarray(a, dtype=np.float32)
    if not np.isfinite(a).all():
        # float64 values beyond float32's range become inf here
        c, i = np.argwhere(~np.isfinite(a))[0]
        raise InputError(f"channel {c + 1}, sample {i + 1}: the value does not fit in float32", name)
    return a


def _read_npy(f, name: str) -> np.ndarray:
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise InputError(f"unsupported .npy version {version[0]}.{version[1]}", name)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"not a valid .npy file ({short_repr(str(e), 120)})", name) from None
    if dtype.hasobject:
        raise InputError("the array holds Python objects, which cnnplay never loads (no pickle)", name)
    if dtype.kind not in "biuf" or dtype.shape:
        raise InputError(f"the array must hold numbers, not {_dtype_name(dtype)}", name)
    _check_shape(tuple(shape), name)
    count = math.prod(shape)
    try:
        data = f.read(count * dtype.itemsize + 1)
    except OSError as e:
        raise InputError(f"cannot read it: {e.strerror or e}", name) from None
    if len(data) != count * dtype.itemsize:
        raise InputError(f"the array data is {'truncated' if len(data) < count * dtype.itemsize else 'followed by extra bytes'} "
                         f"({len(data)} bytes, expected {count * dtype.itemsize})", name)
    a = np.frombuffer(data, dtype=dtype)
    a = a.reshape(shape[::-1]).T if fortran else a.reshape(shape)
    return _check_values(a.astype(np.float64), name)


def _read_npz(source, name: str) -> np.ndarray:
    try:
        z = zipfile.ZipFile(source)
        infos = [i for i in z.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise InputError(f"not a readable .npz archive ({short_repr(str(e), 120)})", name) from None
    with z:
        if len(infos) != 1 or not infos[0].filename.endswith(".npy"):
            names = ", ".join(short_repr(i.filename) for i in infos[:5]) or "nothing"
            raise InputError(f"an .npz signal must hold exactly one array, this one holds {names}", name)
        info = infos[0]
        if info.file_size > MAX_VALUES * 8 + 4096:
            raise InputError(f"its array is {info.file_size >> 20} MB unpacked, too large for a signal", name)
        try:
            with z.open(info) as f:
                data = f.read(info.file_size + 1)
        except Exception as e:
            raise InputError(f"damaged .npz archive ({short_repr(str(e), 120)})", name) from None
    return _read_npy(io.BytesIO(data), name)


def _check_shape(shape: tuple, name: str) -> None:
    if len(shape) not in (1, 2):
        raise InputError(f"the array has shape {shape}; a signal needs 1 dimension (one channel) "
                         "or 2 (channels, length)", name)
    if 0 in shape:
        raise InputError(f"the array is empty (shape {shape})", name)
    if math.prod(shape) > MAX_VALUES:
        raise InputError(f"the array has {math.prod(shape)} values, more than the {MAX_VALUES} cnnplay accepts", name)


def _check_values(a: np.ndarray, name: str) -> np.ndarray:
    a = a.reshape(1, -1) if a.ndim == 1 else a
    bad = ~np.isfinite(a)
    if bad.any():
        c, i = np.argwhere(bad)[0]
        raise InputError(f"channel {c + 1}, sample {i + 1} is {a[c, i]}; a signal must hold finite numbers "
                         f"({int(bad.sum())} such value(s) in all)", name)
    return a


def _dtype_name(dtype: np.dtype) -> str:
    return {"U": "text", "S": "bytes", "c": "complex numbers", "M": "dates", "m": "time spans",
            "V": "records"}.get(dtype.kind, str(dtype))


_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def parse_csv(data: bytes, name: str = "<memory>") -> np.ndarray:
    """(C, L) float64 from CSV text: rows are samples, columns channels (see the module doc)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"not a text (CSV) file: byte {e.start} is not UTF-8", name) from None
    if "\x00" in text:
        raise InputError("not a text (CSV) file (it contains NUL bytes)", name)
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise InputError("the file holds no data (only blank lines or comments)", name)
    sep = next((s for s in _SEPARATORS if s in lines[0][1]), None)

    def cells(line: str) -> list[str]:
        return line.split(sep) if sep else line.split()

    def ends_with_separator(row: list[str]) -> bool:
        return bool(sep) and len(row) > 1 and not row[-1].strip()

    first = cells(lines[0][1])
    if ends_with_separator(first):
        first = first[:-1]
    # a header row names channels: some cell is text; blank cells alone do not make a header
    if any(c.strip() and not (_NUMBER.fullmatch(c) or _special(c)) for c in first):
        lines = lines[1:]
        if not lines:
            raise InputError("the file has a header row but no data rows", name)
    width = None
    trailing = None  # rows end with a separator (as the first data row does, or not)
    values = []
    for n, line in lines:
        row = cells(line)
        if trailing is None:
            trailing = ends_with_separator(row)
        if trailing and ends_with_separator(row):
            row = row[:-1]
        if width is None:
            width = len(row)
        elif len(row) != width:
            hint = (" (this row ends with a separator, the first data row does not)"
                    if not trailing and len(row) == width + 1 and ends_with_separator(row) else "")
            raise InputError(f"has {len(row)} values but the first data row has {width} "
                             f"(every row needs one value per channel){hint}", name, row=n)
        parsed = []
        for col, cell in enumerate(row, 1):
            s = cell.strip()
            if not s:
                raise InputError("is empty; every cell needs a number", name, row=n, column=col)
            if not _NUMBER.fullmatch(s):
                what = "not a number" if not _special(s) else "not a finite number"
                raise InputError(f"{short_repr(s, 30)} is {what}", name, row=n, column=col)
            v = float(s)
            if not math.isfinite(v):
                raise InputError(f"{short_repr(s, 30)} is too large", name, row=n, column=col)
            parsed.append(v)
        values.append(parsed)
        if len(values) * width > MAX_VALUES:
            raise InputError(f"more than {MAX_VALUES} values, too large for a signal", name)
    a = np.array(values, dtype=np.float64)  # (rows, columns)
    return a.reshape(1, -1) if a.shape[0] == 1 else a.T


def _special(cell: str) -> bool:
    return cell.strip().lower().lstrip("+-") in ("nan", "inf", "infinity")


# -- generating -------------------------------------------------------------------

def generate_signal(kind: str, length: int, channels: int = 1, seed: int = 0, **params) -> np.ndarray:
    """A test signal, float32 (channels, length). Frequencies are in cycles per sample
    (0.5 is the Nyquist limit).

    - sine: amplitude=1, frequency=4/length (four periods), phase=0 (radians);
      channel c is shifted by a further 2*pi*c/channels.
    - chirp: amplitude=1, f0=0.0 to f1=0.25, a linear sweep; phase offsets as for sine.
    - steps: amplitude=1, count=8 equal-length steps, levels uniform in
      [-amplitude, amplitude] drawn from `seed` (different per channel).
    - noise: amplitude=1 (the standard deviation), distribution="gaussian" or
      "uniform" (in [-amplitude, amplitude]), from `seed`.
    Invalid arguments raise InputError.
    """
    if kind not in SIGNAL_KINDS:
        raise InputError(f"unknown signal kind {short_repr(kind)} (kinds: {', '.join(SIGNAL_KINDS)})")
    for label, v, top in (("length", length, MAX_VALUES), ("channels", channels, 4096)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not 1 <= v <= top:
            raise InputError(f"{label} must be an integer from 1 to {top}, not {short_repr(v)}")
    if int(length) * int(channels) > MAX_VALUES:
        raise InputError(f"{length} x {channels} values is more than the {MAX_VALUES} cnnplay accepts")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"seed must be a non-negative integer, not {short_repr(seed)}")
    allowed = {"sine": {"amplitude": 1.0, "frequency": 4.0 / length, "phase": 0.0},
               "chirp": {"amplitude": 1.0, "f0": 0.0, "f1": 0.25, "phase": 0.0},
               "steps": {"amplitude": 1.0, "count": min(8, length)},
               "noise": {"amplitude": 1.0, "distribution": "gaussian"}}[kind]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InputError(f"{kind} has no parameter {', '.join(map(short_repr, unknown))} "
                         f"(parameters: {', '.join(allowed)})")
    p = {**allowed, **params}
    for key, value in p.items():
        if key in ("distribution", "count"):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(value):
            raise InputError(f"{key} must be a finite number, not {short_repr(value)}")
    amp = float(p["amplitude"])
    n = np.arange(length, dtype=np.float64)
    offsets = 2 * np.pi * np.arange(channels)[:, None] / channels
    rng = np.random.default_rng(seed)
    if kind == "sine":
        out = amp * np.sin(2 * np.pi * float(p["frequency"]) * n + float(p["phase"]) + offsets)
    elif kind == "chirp":
        f0, f1 = float(p["f0"]), float(p["f1"])
        rate = (f1 - f0) / max(length - 1, 1)
        out = amp * np.sin(2 * np.pi * (f0 * n + 0.5 * rate * n * n) + float(p["phase"]) + offsets)
    elif kind == "steps":
        count = p["count"]
        if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or not 1 <= count <= length:
            raise InputError(f"count must be an integer from 1 to the length ({length}), not {short_repr(count)}")
        levels = rng.uniform(-amp, amp, size=(channels, int(count)))
        which = (n * count // length).astype(np.int64)
        out = levels[:, which]
    else:
        dist = p["distribution"]
        if dist == "gaussian":
            out = amp * rng.standard_normal((channels, length))
        elif dist == "uniform":
            out = rng.uniform(-amp, amp, size=(channels, length))
        else:
            raise InputError(f"distribution must be 'gaussian' or 'uniform', not {short_repr(dist)}")
    out = np.broadcast_to(out, (channels, length))
    return np.ascontiguousarray(out, dtype=np.float32)
