"""Checking and restoring a Trainer's state (Trainer.state() / .cnnplay files).

A state is JSON data plus float32 arrays under "arrays":
  optimizer/<layer>/<parameter>/<buffer>  (buffers of optim.BUFFERS, the parameter's shape)
  history/batch_loss, history/batch_acc   (1D, one entry per step kept)
Nothing is evaluated or unpickled; every problem is a NetworkError naming the field.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import NetworkError, short_repr
from . import optim

_KEYS = {"format", "version", "settings", "steps", "epoch", "position", "epoch_sums", "classes",
         "dataset", "test_dataset", "history", "arrays"}


def _fail(reason: str, field: str) -> NetworkError:
    return NetworkError(f"training state, {field}: {reason}", field=f"training.{field}")


def _int(state, key, lo=0):
    v = state.get(key, 0)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise _fail(f"must be an integer >= {lo}, not {short_repr(v)}", key)
    return v


def _finite_or_none(v, field):
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _fail(f"must be a number or null, not {short_repr(v)}", field)
    return float(v)


def restore(cls, net, state):
    from .trainer import STATE_FORMAT, STATE_VERSION, History
    if not isinstance(state, dict):
        raise NetworkError(f"a training state must be an object, not {type(state).__name__}", field="training")
    if state.get("format") != STATE_FORMAT:
        raise _fail(f"must be {STATE_FORMAT!r}, not {short_repr(state.get('format'))}", "format")
    version = state.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _fail(f"must be a positive integer, not {short_repr(version)}", "version")
    if version > STATE_VERSION:
        raise _fail(f"written by a newer cnnplay (version {version}); please update cnnplay", "version")
    unknown = sorted(set(state) - _KEYS)
    if unknown:
        raise _fail(f"unknown field(s) {', '.join(map(short_repr, unknown[:5]))}", unknown[0])
    s = state.get("settings")
    if not isinstance(s, dict):
        raise _fail(f"must be an object, not {short_repr(s)}", "settings")
    known = {"optimizer", "lr", "momentum", "dampening", "nesterov", "weight_decay", "betas", "eps", "schedule",
             "seed", "batch_size"}
    extra = sorted(set(s) - known)
    if extra:
        raise _fail(f"unknown setting(s) {', '.join(map(short_repr, extra[:5]))}", "settings")
    try:
        tr = cls(net, **{k: v for k, v in s.items() if k in ("optimizer", "lr", "momentum", "weight_decay",
                                                             "betas", "eps", "dampening", "nesterov",
                                                             "schedule", "seed", "batch_size")})
    except TypeError as e:
        raise _fail(f"cannot be used ({short_repr(str(e), 120)})", "settings") from None
    tr.steps = _int(state, "steps")
    tr.epoch = _int(state, "epoch")
    tr.position = _int(state, "position")
    sums = state.get("epoch_sums", [0.0, 0.0, 0])
    if not isinstance(sums, list) or len(sums) != 3 or any(_finite_or_none(v, "epoch_sums") is None for v in sums):
        raise _fail(f"must be three numbers, not {short_repr(sums)}", "epoch_sums")
    tr._epoch_sums = [float(sums[0]), float(sums[1]), int(sums[2])]
    classes = state.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise _fail(f"must be a list of names or null, not {short_repr(classes)}", "classes")
        if len(classes) != tr.num_classes:
            raise _fail(f"names {len(classes)} classes but the network ends in {tr.num_classes} scores", "classes")
    tr.classes = classes
    for key in ("dataset", "test_dataset"):
        ref = state.get(key)
        if ref is not None and not isinstance(ref, dict):
            raise _fail(f"must be an object or null, not {short_repr(ref)}", key)
        setattr(tr, key, ref)
    hist = state.get("history", {})
    if not isinstance(hist, dict) or not isinstance(hist.get("epochs", []), list):
        raise _fail("must be an object with a list 'epochs'", "history")
    h = History()
    for j, e in enumerate(hist.get("epochs", [])):
        if not isinstance(e, dict):
            raise _fail(f"epoch entry {j} must be an object", "history")
        entry = {}
        for k in History.EPOCH_KEYS:
            v = _finite_or_none(e.get(k), f"history.epochs[{j}].{k}")
            entry[k] = int(v) if k in ("epoch", "steps") and v is not None else v
        h.epochs.append(entry)
    arrays = state.get("arrays", {})
    if not isinstance(arrays, dict):
        raise _fail("must be an object of arrays", "arrays")
    bufs = optim.BUFFERS[tr.settings["optimizer"]]
    for key in ("batch_loss", "batch_acc"):
        a = arrays.get(f"history/{key}")
        if a is None:
            continue
        a = np.asarray(a)
        if a.ndim != 1 or a.dtype.kind != "f":
            raise _fail(f"must be a 1D float array, not {a.dtype} {a.shape}", f"history/{key}")
        setattr(h, key, [float(v) for v in a])
    if len(h.batch_loss) != len(h.batch_acc):
        raise _fail("batch_loss and batch_acc differ in length", "history")
    tr.history = h
    for name, a in arrays.items():
        if name.startswith("history/"):
            if name not in ("history/batch_loss", "history/batch_acc"):
                raise _fail("unknown array", name)
            continue
        parts = name.split("/")
        if len(parts) != 4 or parts[0] != "optimizer" or not parts[1].isdigit():
            raise _fail("unknown array (expected optimizer/<layer>/<parameter>/<buffer>)", name)
        i, pname, buf = int(parts[1]), parts[2], parts[3]
        if i >= len(net) or pname not in net.layer_types[i].learnable or pname not in net.param_shapes(i):
            raise _fail(f"the network has no learnable parameter {pname} in layer {i}", name)
        if buf not in bufs:
            raise _fail(f"{tr.settings['optimizer']} keeps {', '.join(bufs)}, not {buf}", name)
        a = np.asarray(a)
        want = tuple(net.param_shapes(i)[pname])
        if a.shape != want or a.dtype.kind != "f":
            raise _fail(f"must be float {want}, not {a.dtype} {a.shape}", name)
        a = np.array(a, dtype=np.float32)
        if not np.isfinite(a).all():
            raise _fail("holds NaN or infinite values", name)
        tr._opt_state.setdefault((i, pname), {})[buf] = a
    for (i, pname), st in tr._opt_state.items():
        if set(st) != set(bufs):
            raise _fail(f"layer {i} {pname} has {', '.join(sorted(st))} but needs {', '.join(bufs)}", "arrays")
    return tr
