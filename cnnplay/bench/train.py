"""Training steps vs PyTorch CPU (issue 12), batched vs single passes, and which
convolution algorithm runs where (issue 18).

One training step = forward on the batch (batch norm with batch statistics),
softmax cross-entropy, backward, one SGD update (momentum 0.9), the same
network, parameters, batch and optimizer on both sides, float32, the same
thread count. Ours is `cnnplay.Trainer.step` when the training engine is
there, else the layer types' forward_batch / backward_batch with a plain SGD
update (inference batch norm). The other side is PyTorch CPU, or without
torch a numpy reference (sliding windows + matmul/einsum, the same layers).
Steps are timed in interleaved single runs (ours, theirs, ours, ...), and
reported as the best time of each, their ratio, and the median and quartiles
of the ratio per round (the machine is shared: the per-round ratios show the
noise).
"""

from __future__ import annotations

import time

import numpy as np

from ..core import kernels  # noqa: F401  (sets NUMBA_CACHE_DIR before numba is imported)
from .forward import paired_ms, torch_model
from ._common import torch_or_none

TITLE = "Training steps vs PyTorch CPU (issue 12), conv algorithms (issue 18)"
ORDER = 15

LR, MOMENTUM = 0.01, 0.9

WORKLOADS = {
    "digits 1x28x28, batch 32": ({"input": [1, 28, 28], "layers": [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"},
        {"type": "linear", "out_features": 10}]}, 32, 10),
    "shapes 3x32x32, batch 64, batch norm": ({"input": [3, 32, 32], "layers": [
        {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"},
        {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 32, "kernel_size": 3, "padding": 1}, {"type": "batchnorm"},
        {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "avgpool2d", "kernel_size": 2}, {"type": "flatten"},
        {"type": "linear", "out_features": 4}]}, 64, 4),
    "waveforms 1x128 conv1d, batch 32": ({"input": [1, 128], "layers": [
        {"type": "conv1d", "out_channels": 16, "kernel_size": 5, "padding": 2}, {"type": "relu"},
        {"type": "maxpool1d", "kernel_size": 2},
        {"type": "conv1d", "out_channels": 32, "kernel_size": 5, "padding": 2}, {"type": "relu"},
        {"type": "maxpool1d", "kernel_size": 2}, {"type": "flatten"},
        {"type": "linear", "out_features": 5}]}, 32, 5),
    "channels 3x32x32, 64-128 ch, batch 16": ({"input": [3, 32, 32], "layers": [  # Winograd layers
        {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "conv2d", "out_channels": 64, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 128, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "conv2d", "out_channels": 128, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"},
        {"type": "linear", "out_features": 10}]}, 16, 10),
}

# channel-heavy and 1x1 layers (issue 18): (in channels, out channels, kernel, map size[, stride,
# dilation]); the last ones are ResNet's downsampling layers and a dilated one
HEAVY = [(64, 64, 3, 56), (128, 128, 3, 28), (256, 256, 3, 14), (512, 512, 3, 14), (256, 512, 1, 14),
         (64, 128, 3, 28, 2), (128, 256, 3, 14, 2), (128, 256, 3, 28, 2), (256, 512, 1, 14, 2),
         (128, 128, 3, 14, 1, 2)]
TRAIN_BATCH = 4  # the per-layer training figures

ROUNDS = 15


def _data(net, n, k, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + net.input_shape).astype(np.float32)
    y = rng.integers(0, k, n).astype(np.int64)
    return x, y


# -- our step ------------------------------------------------------------------------

def our_step(net):
    """(step(x, y), what it is): cnnplay.Trainer when available."""
    try:
        from cnnplay import Trainer
    except ImportError:
        Trainer = None
    if Trainer is not None:
        tr = Trainer(net, optimizer="sgd", lr=LR, momentum=MOMENTUM)
        return tr.step, "cnnplay.Trainer.step"
    velocity = {}

    def step(x, y):
        acts = [x]
        for i in range(len(net)):
            acts.append(net.layer_forward_batch(i, acts[-1]))
        g = _softmax_grad(acts[-1], y)
        updates = {}
        for i in range(len(net) - 1, -1, -1):
            g, grads = net.layer_backward_batch(i, acts[i], acts[i + 1], g,
                                                param_grads=bool(net.layer_types[i].learnable),
                                                input_grad=i > 0)
            if grads:
                updates[i] = grads
        for i, grads in updates.items():
            p = net.params(i)
            new = {}
            for name, gr in grads.items():
                v = velocity.get((i, name))
                v = gr if v is None else MOMENTUM * v + gr
                velocity[(i, name)] = v
                new[name] = p[name] - LR * v
            net.set_params(i, **new)
    return step, "forward_batch + backward_batch + SGD (no Trainer on this branch)"


def _softmax_grad(z, y):
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return (p / len(y)).astype(np.float32)


# -- PyTorch -------------------------------------------------------------------------

def torch_step(torch, net):
    model = torch_model(net).train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


# -- numpy reference (without torch) -----------------------------------------------------

class NumpyStep:
    """A plain numpy training step of the same network: conv and pooling through
    sliding windows (einsum / max / mean), batch norm with batch statistics,
    SGD with momentum. Slow but independent; only used without torch."""

    def __init__(self, net):
        self.layers = [(t.name, cfg, {k: np.array(v) for k, v in net.params(i).items()})
                       for i, (t, cfg) in enumerate(zip(net.layer_types, net.configs))]
        self.velocity = {}

    @staticmethod
    def _geo(name, cfg, h):
        one = h.ndim == 3
        lift = (lambda v: (1,) + tuple(v)) if one else tuple
        k, s, p = lift(cfg["kernel_size"]), lift(cfg["stride"]), lift(cfg["padding"])
        d = lift(cfg["dilation"]) if "dilation" in cfg else (1, 1)
        if one:
            p = (0,) + tuple(cfg["padding"])
        return one, k, s, p, d

    def _windows(self, m, k, s, p, d, fill):
        from numpy.lib.stride_tricks import sliding_window_view
        mp = np.pad(m, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=fill)
        span = (d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1)
        return mp, sliding_window_view(mp, span, axis=(2, 3))[:, :, ::s[0], ::s[1], ::d[0], ::d[1]]

    def __call__(self, x, y):
        acts, caches = [x], []
        h = x
        for name, cfg, p in self.layers:
            cache = None
            if name.startswith(("conv", "maxpool", "avgpool")):
                one, k, s, pad, d = self._geo(name, cfg, h)
                m = h[:, :, None, :] if one else h
                fill = -np.inf if name.startswith("max") else 0.0
                mp, win = self._windows(m, k, s, pad, d, fill)  # N, C, Ho, Wo, kh, kw
                if name.startswith("conv"):
                    w = p["weight"][:, :, None, :] if one else p["weight"]
                    out = np.einsum("nchwij,ocij->nohw", win, w, optimize=True)
                    if "bias" in p:
                        out += p["bias"][None, :, None, None]
                elif name.startswith("max"):
                    out = win.max(axis=(4, 5))
                else:
                    out = win.mean(axis=(4, 5), dtype=np.float32)
                cache = (one, k, s, pad, d, m.shape, mp.shape, win)
                h = out[:, :, 0, :] if one else out
            elif name == "batchnorm":
                ax = (0,) + tuple(range(2, h.ndim))
                sh = (1, -1) + (1,) * (h.ndim - 2)
                mean, var = h.mean(axis=ax), h.var(axis=ax)
                xhat = (h - mean.reshape(sh)) / np.sqrt(var.reshape(sh) + cfg["eps"])
                cache = (xhat, var, ax, sh)
                h = xhat * p["weight"].reshape(sh) + p["bias"].reshape(sh)
            elif name in ("relu", "leaky_relu"):
                h = np.where(h > 0, h, h * np.float32(cfg.get("negative_slope", 0.0)))
            elif name == "flatten":
                h = h.reshape(h.shape[0], -1)
            elif name == "linear":
                h = h @ p["weight"].T + (p["bias"] if "bias" in p else 0)
            h = h.astype(np.float32, copy=False)
            acts.append(h)
            caches.append(cache)
        g = _softmax_grad(acts[-1], y)
        grads = {}
        for li in range(len(self.layers) - 1, -1, -1):
            name, cfg, p = self.layers[li]
            xin, cache = acts[li], caches[li]
            if name.startswith(("conv", "maxpool", "avgpool")):
                one, k, s, pad, d, mshape, mpshape, win = cache
                g4 = g[:, :, None, :] if one else g
                gxp = np.zeros(mpshape, np.float32)
                ho, wo = g4.shape[2:]
                if name.startswith("conv"):
                    w = p["weight"][:, :, None, :] if one else p["weight"]
                    gw = np.einsum("nohw,nchwij->ocij", g4, win, optimize=True)
                    grads[(li, "weight")] = gw.reshape(p["weight"].shape)
                    if "bias" in p:
                        grads[(li, "bias")] = g4.sum(axis=(0, 2, 3))
                    contrib = np.einsum("nohw,ocij->ncijhw", g4, w, optimize=True)
                elif name.startswith("max"):
                    flat = win.reshape(win.shape[:4] + (-1,))
                    hit = (flat == flat.max(axis=4, keepdims=True))
                    first = hit & (np.cumsum(hit, axis=4) == 1)
                    contrib = (first * g4[..., None]).reshape(win.shape).transpose(0, 1, 4, 5, 2, 3)
                else:
                    contrib = np.broadcast_to((g4 / (k[0] * k[1]))[:, :, None, None], g4.shape[:2] + k + (ho, wo))
                for i in range(k[0]):
                    for j in range(k[1]):
                        gxp[:, :, i * d[0]:i * d[0] + s[0] * (ho - 1) + 1:s[0],
                            j * d[1]:j * d[1] + s[1] * (wo - 1) + 1:s[1]] += contrib[:, :, i, j]
                gx = gxp[:, :, pad[0]:pad[0] + mshape[2], pad[1]:pad[1] + mshape[3]]
                g = gx[:, :, 0, :] if one else gx
            elif name == "batchnorm":
                xhat, var, ax, sh = cache
                m = g.size / g.shape[1]
                gb, gw = g.sum(axis=ax), (g * xhat).sum(axis=ax)
                grads[(li, "weight")], grads[(li, "bias")] = gw, gb
                g = (p["weight"] / np.sqrt(var + cfg["eps"])).reshape(sh) * (
                    g - (gb / m).reshape(sh) - xhat * (gw / m).reshape(sh))
            elif name in ("relu", "leaky_relu"):
                g = np.where(xin > 0, g, g * np.float32(cfg.get("negative_slope", 0.0)))
            elif name == "flatten":
                g = g.reshape(xin.shape)
            elif name == "linear":
                grads[(li, "weight")] = g.T @ xin
                if "bias" in p:
                    grads[(li, "bias")] = g.sum(axis=0)
                g = g @ p["weight"]
            g = g.astype(np.float32, copy=False)
        for (li, name), gr in grads.items():
            v = self.velocity.get((li, name))
            v = gr if v is None else MOMENTUM * v + gr
            self.velocity[(li, name)] = v
            self.layers[li][2][name] -= LR * v


# -- figures ------------------------------------------------------------------------

def _summary(a, b, ratios):
    q1, qm, q3 = np.percentile(ratios, [25, 50, 75])
    return f"{a.min():9.2f}{b.min():9.2f}{a.min() / b.min():7.2f}   {qm:.2f} [{q1:.2f}-{q3:.2f}]"


def _batched_forward(net, x):
    h = x
    for i in range(len(net)):
        h = net.layer_forward_batch(i, h)
    return h


def _profile(net, x, y, runs=5):
    """[(part, percent)] of one forward + backward by layer type and direction."""
    times = {}
    for r in range(runs + 1):
        acts = [x]
        for i in range(len(net)):
            t0 = time.perf_counter()
            acts.append(net.layer_forward_batch(i, acts[-1]))
            if r:
                times.setdefault((i, net.layer_types[i].name, "fwd"), []).append(time.perf_counter() - t0)
        g = _softmax_grad(acts[-1], y)
        for i in range(len(net) - 1, -1, -1):
            t0 = time.perf_counter()
            g, _ = net.layer_backward_batch(i, acts[i], acts[i + 1], g, input_grad=i > 0)
            if r:
                times.setdefault((i, net.layer_types[i].name, "bwd"), []).append(time.perf_counter() - t0)
    per = {}
    for (_, tname, d), ts in times.items():
        kind = "conv" if tname.startswith("conv") else "pool" if "pool" in tname else tname
        per[f"{kind} {d}"] = per.get(f"{kind} {d}", 0.0) + float(np.median(ts))
    total = sum(per.values())
    return sorted(((k, 100 * v / total) for k, v in per.items()), key=lambda kv: -kv[1])


def run() -> list[str]:
    from ..core import Network
    from ..core.kernels import conv, launch, tuning

    threads = launch.POLICY.threads  # all cores (numba.get_num_threads() is what the last launch on
    # this thread used: 1 after a serial kernel, which would give PyTorch one thread)
    torch = torch_or_none(threads)
    other = f"PyTorch {torch.__version__}" if torch is not None else "a numpy reference (no torch)"
    lines = [f"float32, {threads} threads each; ours vs {other}; {ROUNDS} interleaved rounds; SGD lr {LR} "
             f"momentum {MOMENTUM}"]
    lines.append("")
    lines.append(f"{'training step':<40}{'ours ms':>9}{'ref ms':>9}{'ratio':>7}   per round: median [q1-q3]")
    what = None
    for name, (spec, n, k) in WORKLOADS.items():
        net = Network.from_dict(spec, seed=0)
        x, y = _data(net, n, k)
        ours, what = our_step(net)
        if torch is not None:
            ref_net = Network.from_dict(spec, seed=0)
            theirs_step = torch_step(torch, ref_net)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)
            theirs = lambda: theirs_step(xt, yt)  # noqa: E731
        else:
            ref = NumpyStep(Network.from_dict(spec, seed=0))
            theirs = lambda: ref(x, y)  # noqa: E731
        a, b, r = paired_ms(lambda: ours(x, y), theirs, rounds=ROUNDS)
        lines.append(f"{name:<40}{_summary(a, b, r)}")
    lines.append(f"(ours: {what}; below 1 is faster)")

    # where a step's time goes (ours, forward_batch / backward_batch per layer type)
    lines.append("")
    lines.append("where our step's time goes (forward_batch / backward_batch by layer type, median of 5, "
                 "% of the layers' total):")
    for name, (spec, n, k) in WORKLOADS.items():
        net = Network.from_dict(spec, seed=0)
        x, y = _data(net, n, k)
        lines.append(f"  {name}: " + ", ".join(f"{part} {pct:.0f}%" for part, pct in _profile(net, x, y)))

    # batched forward vs N single passes (issue 12)
    lines.append("")
    lines.append(f"{'forward, inference (same network)':<40}{'batch ms':>9}{'N x 1 ms':>9}{'ratio':>7}   per round: median [q1-q3]")
    for name, (spec, n, k) in WORKLOADS.items():
        net = Network.from_dict(spec, seed=0)
        x, _ = _data(net, n, k)
        single = lambda: [net.forward(x[i]) for i in range(n)]  # noqa: E731
        a, b, r = paired_ms(lambda: _batched_forward(net, x), single, rounds=6)
        lines.append(f"{name:<40}{_summary(a, b, r)}")
    lines.append("(ratio = one batched pass / N single passes; below 1: the batch is faster)")

    # which conv algorithm runs where (issue 18)
    lines.append("")
    lines.append("conv algorithm per layer shape, forward at batch 1 and training (forward + backward) at batch "
                 f"{TRAIN_BATCH}, ours / reference, median ratio per round; rules: conv.choose_shape's choice "
                 "(the forward's), trained on: the one the first training step measured fastest (tuning.py):")
    lines.append(f"{'layer':<34}{'rules':>12}{'trained on':>12}{'fwd ms':>9}{'ratio':>7}{'train ms':>10}"
                 f"{'ratio':>7}")
    shapes = []
    for name, (spec, n, k) in WORKLOADS.items():
        net = Network.from_dict(spec, seed=0)
        for i, t in enumerate(net.layer_types):
            if t.name.startswith("conv"):
                shp = net.input_shape_of(i)
                shapes.append((shp, net.configs[i], t.name))
    for ci, co, kk, hw, *more in HEAVY:
        stride, dilation = (more + [1, 1])[:2]
        raw = {"type": "conv2d", "out_channels": co, "kernel_size": kk, "stride": stride, "dilation": dilation,
               "padding": dilation * (kk // 2)}
        net = Network.from_dict({"input": [ci, hw, hw], "layers": [raw]})
        shapes.append(((ci, hw, hw), net.configs[0], "conv2d"))
    for shp, cfg, tname in shapes:
        raw = {"type": tname, **{k2: (list(v) if isinstance(v, tuple) else v) for k2, v in cfg.items()}}
        net = Network.from_dict({"input": list(shp), "layers": [raw]}, seed=0)
        t = net.layer_types[0]
        w2 = t.window(cfg, shp).as_2d()
        plan = conv._plan(shp[0], 1 if len(shp) == 2 else shp[1], shp[-1], *w2.kernel, w2.stride, w2.padding,
                          w2.dilation)
        algo = conv.rules(plan, cfg["out_channels"], TRAIN_BATCH)  # not a measured one
        rng = np.random.default_rng(0)
        x1 = rng.standard_normal(shp).astype(np.float32)
        x8 = rng.standard_normal((TRAIN_BATCH,) + shp).astype(np.float32)
        p = net.layer_params(0)
        y8 = net.layer_forward_batch(0, x8)
        g8 = rng.standard_normal(y8.shape).astype(np.float32)

        def train8(p=p, t=t, cfg=cfg):
            yy = t.forward_batch(cfg, x8, p)
            return t.backward_batch(cfg, x8, yy, g8, p)
        if torch is not None:
            model = torch_model(net)
            layer = model[0]
            xt1 = torch.from_numpy(x1[None])
            xt8 = torch.from_numpy(x8).requires_grad_(True)
            gt8 = torch.from_numpy(g8)

            def ref1():
                with torch.no_grad():
                    return layer(xt1)

            def ref8():
                layer.zero_grad(set_to_none=True)
                xt8.grad = None
                layer(xt8).backward(gt8)
        else:
            from .forward import numpy_forward
            ref1 = lambda: numpy_forward(net, x1)  # noqa: E731
            ref8 = None
        a, b, r1 = paired_ms(lambda: net.layer_forward(0, x1), ref1, rounds=8)
        fwd = f"{a.min():9.2f}{np.median(r1):7.2f}"
        if ref8 is not None:
            a8, b8, r8 = paired_ms(train8, ref8, rounds=5)
            tr = f"{a8.min():10.2f}{np.median(r8):7.2f}"
        else:
            tr = f"{'-':>10}{'-':>7}"
        label = (f"{tname} {shp[0]}->{cfg['out_channels']} k{'x'.join(map(str, cfg['kernel_size']))} "
                 f"@{'x'.join(map(str, shp[1:]))}"
                 + "".join(f" {a}{max(cfg[key])}" for a, key in (("s", "stride"), ("d", "dilation"))
                           if max(cfg[key]) > 1))
        trained = tuning.decisions().get(tuning.key(plan, cfg["out_channels"], TRAIN_BATCH), algo)
        lines.append(f"{label:<34}{algo:>12}{trained:>12}{fwd}{tr}")
    return lines
