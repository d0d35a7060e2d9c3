"""cnnplay -> PyTorch: one readable .py file and the weights beside it in an .npz.

The file defines the network as an `nn.Sequential` with one module per cnnplay
layer, in order (state-dict keys "0.weight", "3.running_mean", ...), a
`ChannelLayerNorm` module when the network has a layer norm (cnnplay
normalizes across channels at each position: `nn.LayerNorm(C)` on the tensor
with channels moved last, biased variance, as cnnplay's kernel computes), and
`load_model()`, which returns the model in eval mode with the weights and the
batch-norm running statistics loaded. Run as a script, it loads the model,
runs one forward pass on a random input and prints a summary. With training
settings it also has `train(model, loader, epochs)`: cross-entropy on the raw
scores and the same optimizer and hyperparameters, on CUDA when available.

Why .npz for the weights: numpy's format loads with `allow_pickle=False`, so
nothing in the file can run code, and it needs no package beyond numpy, which
PyTorch already depends on (safetensors would be one more install).

Nothing here imports PyTorch: the file is generated as text; the tests run it.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np

from ..fileformat import atomic_write
from ..network import Network
from .common import check_exportable
from .errors import InteropError

OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW"}
_TRAINING_KEYS = ("optimizer", "lr", "momentum", "dampening", "nesterov", "weight_decay", "betas", "eps",
                  "schedule", "epochs", "batch_size")

LAYER_NORM_CLASS = '''

class ChannelLayerNorm(nn.LayerNorm):
    """cnnplay's layer norm: normalizes across the channels (dim 1) at each position."""

    def forward(self, x):
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)
'''


LINE = 88  # black's line length: the file reads as formatted code


def wrap_call(indent: int, head: str, args: list[str], tail: str = "") -> str:
    """`head(args)tail` on one line when it fits in LINE, else black's layout
    (the arguments on their own line, or one per line)."""
    pad = " " * indent
    one = f"{pad}{head}({', '.join(args)}){tail}"
    if len(one) <= LINE:
        return one
    inner = f"{pad}    {', '.join(args)}"
    if len(inner) <= LINE:
        return f"{pad}{head}(\n{inner}\n{pad}){tail}"
    return f"{pad}{head}(\n" + "".join(f"{pad}    {a},\n" for a in args) + f"{pad}){tail}"


def _size(v: tuple[int, ...]) -> str:
    return str(v[0]) if len(set(v)) == 1 else repr(tuple(v))


def _float(v: float) -> str:
    return repr(float(v))


def _conv(t, cfg, in_shape):
    args = [str(in_shape[0]), str(cfg["out_channels"]), f"kernel_size={_size(cfg['kernel_size'])}"]
    for name, default in (("stride", 1), ("padding", 0), ("dilation", 1)):
        if any(v != default for v in cfg[name]):
            args.append(f"{name}={_size(cfg[name])}")
    if not cfg["bias"]:
        args.append("bias=False")
    return f"nn.Conv{t.dims}d", args


def _pool(t, cfg, in_shape):
    kind = "MaxPool" if t.mode == "max" else "AvgPool"
    args = [f"kernel_size={_size(cfg['kernel_size'])}"]
    if cfg["stride"] != cfg["kernel_size"]:
        args.append(f"stride={_size(cfg['stride'])}")
    if any(cfg["padding"]):
        args.append(f"padding={_size(cfg['padding'])}")
    return f"nn.{kind}{t.dims}d", args


def _norm_args(cfg, in_shape) -> list[str]:
    return [str(in_shape[0])] + ([] if cfg["eps"] == 1e-5 else [f"eps={_float(cfg['eps'])}"])


def _batchnorm(t, cfg, in_shape):
    return f"nn.BatchNorm{1 if len(in_shape) < 3 else 2}d", _norm_args(cfg, in_shape)


def _layernorm(t, cfg, in_shape):
    return "ChannelLayerNorm", _norm_args(cfg, in_shape)


def _activation(t, cfg, in_shape):
    if not t.leaky:
        return "nn.ReLU", []
    slope = cfg["negative_slope"]
    return "nn.LeakyReLU", [] if slope == 0.01 else [_float(slope)]


def _flatten(t, cfg, in_shape):
    return "nn.Flatten", []


def _linear(t, cfg, in_shape):
    return "nn.Linear", [str(in_shape[0]), str(cfg["out_features"])] + ([] if cfg["bias"] else ["bias=False"])


MODULES = {"conv1d": _conv, "conv2d": _conv, "maxpool1d": _pool, "maxpool2d": _pool, "avgpool1d": _pool,
           "avgpool2d": _pool, "batchnorm": _batchnorm, "layernorm": _layernorm, "relu": _activation,
           "leaky_relu": _activation, "flatten": _flatten, "linear": _linear}


def training_settings(training) -> dict | None:
    """Checked optimizer settings from a dict (Trainer's keyword names: optimizer, lr,
    momentum, weight_decay, betas, eps; epochs and batch_size are used as defaults),
    or from an object with a `settings` dict or a `state()` dict holding them."""
    if training is None:
        return None
    if not isinstance(training, dict):
        src = getattr(training, "settings", None)
        if callable(src):
            src = src()
        if not isinstance(src, dict) and callable(getattr(training, "state", None)):
            src = training.state()
        training = src if isinstance(src, dict) else None
        if training is None:
            raise InteropError("training: expected a dict of optimizer settings or a Trainer")
    for key in ("settings", "hyperparameters", "config"):
        if isinstance(training.get(key), dict) and "optimizer" not in training:
            training = training[key]
    s = {k: training[k] for k in _TRAINING_KEYS if k in training}
    opt = str(s.get("optimizer", "sgd")).lower()
    if opt not in OPTIMIZERS:
        raise InteropError(f"training: unknown optimizer {opt!r} (known: {', '.join(OPTIMIZERS)})")
    out = {"optimizer": opt}
    checks = {"lr": (0.01, lambda v: v > 0), "momentum": (0.0, lambda v: v >= 0), "dampening": (0.0, lambda v: v >= 0),
              "weight_decay": (0.0, lambda v: v >= 0), "eps": (1e-8, lambda v: v > 0)}
    for key, (default, ok) in checks.items():
        v = s.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
            raise InteropError(f"training: {key} must be a valid number, not {v!r}")
        out[key] = float(v)
    betas = s.get("betas", (0.9, 0.999))
    if (not isinstance(betas, (list, tuple)) or len(betas) != 2
            or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas)):
        raise InteropError(f"training: betas must be two numbers in [0, 1), not {betas!r}")
    out["betas"] = (float(betas[0]), float(betas[1]))
    out["nesterov"] = bool(s.get("nesterov", False))
    for key in ("epochs", "batch_size"):
        v = s.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            out[key] = v
    out["schedule"] = _schedule(s.get("schedule"))
    return out


def _schedule(sch) -> dict | None:
    """Trainer's per-epoch learning-rate schedule: {"kind": "step", "step_size", "gamma"}
    (torch's StepLR) or {"kind": "cosine", "epochs", "min_lr"} (CosineAnnealingLR)."""
    if sch is None:
        return None
    def count(v):
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    def number(v, ok):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and ok(v)

    if isinstance(sch, dict) and sch.get("kind") == "step" and count(sch.get("step_size")) \
            and number(sch.get("gamma", 0.1), lambda v: 0 < v <= 1):
        return {"kind": "step", "step_size": sch["step_size"], "gamma": float(sch.get("gamma", 0.1))}
    if isinstance(sch, dict) and sch.get("kind") == "cosine" and count(sch.get("epochs")) \
            and number(sch.get("min_lr", 0.0), lambda v: v >= 0):
        return {"kind": "cosine", "epochs": sch["epochs"], "min_lr": float(sch.get("min_lr", 0.0))}
    raise InteropError(f"training: unknown schedule {sch!r} (step with step_size and gamma, or cosine with "
                       "epochs and min_lr)")


def _optimizer_call(s: dict) -> str:
    """The line that makes the optimizer, inside train()."""
    args = [f"lr={_float(s['lr'])}"]
    if s["optimizer"] == "sgd":
        if s["momentum"]:
            args.append(f"momentum={_float(s['momentum'])}")
        if s["dampening"]:
            args.append(f"dampening={_float(s['dampening'])}")
        if s["nesterov"]:
            args.append("nesterov=True")
    else:
        args += [f"betas=({_float(s['betas'][0])}, {_float(s['betas'][1])})", f"eps={_float(s['eps'])}"]
    if s["weight_decay"] or s["optimizer"] == "adamw":  # AdamW's default decay is 0.01, cnnplay's 0
        args.append(f"weight_decay={_float(s['weight_decay'])}")
    return wrap_call(4, f"optimizer = torch.optim.{OPTIMIZERS[s['optimizer']]}", ["model.parameters()"] + args)


def _scheduler_lines(s: dict) -> tuple[str, str]:
    """(the line making the scheduler, the line stepping it after each epoch), or blanks."""
    sch = s["schedule"]
    if sch is None:
        return "", ""
    if sch["kind"] == "step":
        args = [f"step_size={sch['step_size']}", f"gamma={_float(sch['gamma'])}"]
        head = "scheduler = torch.optim.lr_scheduler.StepLR"
    else:
        args = [f"T_max={sch['epochs']}", f"eta_min={_float(sch['min_lr'])}"]
        head = "scheduler = torch.optim.lr_scheduler.CosineAnnealingLR"
    return "\n" + wrap_call(4, head, ["optimizer"] + args), "\n        scheduler.step()"


def _train_source(s: dict) -> str:
    call = _optimizer_call(s)
    make_scheduler, step_scheduler = _scheduler_lines(s)
    batch = f"\n    cnnplay trained on batches of {s['batch_size']}." if "batch_size" in s else ""
    return f'''

def train(model, loader, epochs={s.get("epochs", 1)}):
    """Train with cnnplay's settings: cross-entropy on the raw scores, {OPTIMIZERS[s["optimizer"]]}.

    `loader` yields (inputs, class indices) batches, e.g. a DataLoader.{batch}
    Runs on the GPU when there is one; returns the model in eval mode.
    """
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    loss_fn = nn.CrossEntropyLoss()
{call}{make_scheduler}
    for epoch in range(epochs):
        model.train()
        total, count = 0.0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            count += len(y){step_scheduler}
        print(f"epoch {{epoch + 1}}/{{epochs}}: mean loss {{total / max(count, 1):.4f}}")
    return model.eval()
'''


def pytorch_source(net: Network, name: str = "model", training=None) -> str:
    """The text of the exported .py file (its weights file is `<name>.npz`)."""
    check_exportable(net)
    settings = training_settings(training)
    lines = []
    for i, (t, cfg) in enumerate(zip(net.layer_types, net.configs)):
        module = MODULES.get(t.name)
        if module is None:
            raise InteropError(f"has no PyTorch form yet (PyTorch export knows: {', '.join(MODULES)})",
                               layer=i, layer_type=t.name)
        callee, args = module(t, cfg, net.input_shape_of(i))
        lines.append(f"        # {i}: {net.summaries[i]} -> {tuple(net.output_shapes[i])}")
        lines.append(wrap_call(8, callee, args, ","))
    sequential = "    return nn.Sequential(\n" + "\n".join(lines) + "\n    )" if lines else "    return nn.Sequential()"
    shape_text = ", ".join(map(str, net.input_shape))
    axes = "channels, height, width" if len(net.input_shape) == 3 else "channels, length"
    uses_norm = "layernorm" in {t.name for t in net.layer_types}
    from ... import __version__
    doc = (f'"""{name}: a network exported from cnnplay {__version__}, for PyTorch.\n\n'
           f"Input: ({shape_text}) per sample ({axes}); {len(net)} layers, "
           f"{sum(net.parameter_counts)} parameters.\n"
           f"The weights are in {name}.npz beside this file\n"
           "(numpy's format: loads without pickles).\n\n"
           f"    from {name} import load_model\n"
           f"    model = load_model()  # eval mode, weights loaded\n"
           f"    scores = model(torch.randn(8, {shape_text}))\n"
           + ("    train(model, loader, epochs)  # cnnplay's loss, optimizer and hyperparameters\n"
              if settings else "")
           + '"""')
    return f'''{doc}

from pathlib import Path

import numpy as np
import torch
from torch import nn

INPUT_SHAPE = {tuple(net.input_shape)!r}
WEIGHTS = Path(__file__).with_suffix(".npz")
{LAYER_NORM_CLASS if uses_norm else ""}

def build_model():
    """The network with freshly initialized weights."""
{sequential}


def load_model(weights=WEIGHTS):
    """The network with cnnplay's weights (and batch-norm statistics), in eval mode."""
    model = build_model()
    with np.load(weights, allow_pickle=False) as arrays:
        state = {{key: torch.from_numpy(arrays[key]) for key in arrays.files}}
    model.load_state_dict(state)
    return model.eval()
{_train_source(settings) if settings else ""}

if __name__ == "__main__":
    model = load_model()
    x = torch.randn(1, *INPUT_SHAPE)
    with torch.no_grad():
        y = model(x)
    print(model)
    n = sum(p.numel() for p in model.parameters())
    print(f"{{n}} parameters; input {{tuple(x.shape)}} -> output {{tuple(y.shape)}}")
'''.replace("\n\n\n\n", "\n\n\n")


def state_arrays(net: Network) -> dict[str, np.ndarray]:
    """The exported model's state dict as numpy arrays ("<layer index>.<parameter name>")."""
    arrays = {}
    for i, t in enumerate(net.layer_types):
        for name, a in net.params(i).items():
            arrays[f"{i}.{name}"] = np.ascontiguousarray(a, dtype=np.float32)
        if t.name == "batchnorm":  # part of nn.BatchNorm's state dict
            arrays[f"{i}.num_batches_tracked"] = np.array(0, dtype=np.int64)
    return arrays


def export_pytorch(net: Network, path: str | os.PathLike, training=None) -> tuple[Path, Path]:
    """Write `path` (a .py file) and the weights beside it (same name, .npz); both atomically.

    training: optimizer settings (a dict with Trainer's keyword names, or a
    Trainer-like object) for a `train(model, loader, epochs)` in the file;
    None: no train function. Returns (code path, weights path).
    """
    code = Path(path)
    if code.suffix != ".py":
        code = code.with_name(code.name + ".py")
    weights = code.with_suffix(".npz")
    check_exportable(net, code)
    try:
        source = pytorch_source(net, code.stem, training)
    except InteropError as e:
        raise InteropError(e.reason, os.fspath(code), layer=e.layer, layer_type=e.layer_type) from None
    buf = io.BytesIO()
    np.savez(buf, **state_arrays(net))
    try:
        atomic_write(weights, buf.getvalue())
        atomic_write(code, source.encode("utf-8"))
    except OSError as e:
        raise InteropError(f"cannot save: {e.strerror or e}", os.fspath(code)) from None
    return code, weights
