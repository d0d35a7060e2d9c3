"""Optimizers, float32, update for update like torch.optim (single-tensor form).

For each parameter p with gradient g (the gradient of the batch's mean loss):

"sgd" (torch.optim.SGD):
    g = g + weight_decay * p
    if momentum: buf = g on the first step, else buf = momentum * buf + (1 - dampening) * g
                 g = g + momentum * buf if nesterov else buf
    p = p - lr * g

"adam" (torch.optim.Adam; weight decay is L2 added to the gradient: this is
NOT AdamW, the decay is scaled by Adam's per-parameter step like any gradient):
    t += 1
    g = g + weight_decay * p
    m = lerp(m, g, 1 - beta1)            (m + (1 - beta1) * (g - m))
    v = beta2 * v + (1 - beta2) * g * g
    p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

"adamw" (torch.optim.AdamW: decoupled decay):
    p = p * (1 - lr * weight_decay), then the Adam step above without weight decay.

Every parameter listed in a layer type's `learnable` is optimized (biases and
norm weights included, decay too, like torch's default single parameter
group); running statistics are not. `update` returns new arrays and new state
and changes nothing itself, so a refused step can leave everything as it was.
"""

from __future__ import annotations

import math

import numpy as np

OPTIMIZERS = ("sgd", "adam", "adamw")

# per optimizer: the state buffers of each parameter (PyTorch's state names)
BUFFERS = {"sgd": ("momentum_buffer",), "adam": ("exp_avg", "exp_avg_sq"), "adamw": ("exp_avg", "exp_avg_sq")}


def _lerp(start: np.ndarray, end: np.ndarray, weight: float) -> np.ndarray:
    """torch.lerp for float32 tensors and a scalar weight."""
    w = np.float32(weight)
    if weight < 0.5:
        return start + w * (end - start)
    return end - (end - start) * (np.float32(1.0) - w)


def update(settings: dict, p: np.ndarray, g: np.ndarray, state: dict, step: int, lr: float):
    """(new p, new state) for one parameter; `step` counts this update (1 on the first).

    `state` maps buffer names (BUFFERS) to float32 arrays; a missing buffer is
    a fresh one (the first step)."""
    kind = settings["optimizer"]
    wd = settings["weight_decay"]
    p = p.astype(np.float32, copy=False)
    g = g.astype(np.float32, copy=False)
    if kind == "sgd":
        if wd:
            g = g + np.float32(wd) * p
        new_state = {}
        mom = settings["momentum"]
        if mom:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = g.copy()
            else:
                buf = np.float32(mom) * buf + np.float32(1.0 - settings["dampening"]) * g
            new_state["momentum_buffer"] = buf
            g = g + np.float32(mom) * buf if settings["nesterov"] else buf
        return (p - np.float32(lr) * g).astype(np.float32), new_state
    beta1, beta2 = settings["betas"]
    if kind == "adamw":
        p = p * np.float32(1.0 - lr * wd)
    elif wd:
        g = g + np.float32(wd) * p
    m = state.get("exp_avg")
    v = state.get("exp_avg_sq")
    m = np.zeros_like(p) if m is None else m
    v = np.zeros_like(p) if v is None else v
    m = _lerp(m, g, 1.0 - beta1)
    v = np.float32(beta2) * v + np.float32(1.0 - beta2) * (g * g)
    bc1 = 1.0 - beta1 ** step
    bc2_sqrt = math.sqrt(1.0 - beta2 ** step)
    denom = np.sqrt(v) / np.float32(bc2_sqrt) + np.float32(settings["eps"])
    p = p - np.float32(lr / bc1) * (m / denom)
    return p.astype(np.float32), {"exp_avg": m.astype(np.float32), "exp_avg_sq": v.astype(np.float32)}


def scheduled_lr(settings: dict, epoch: int) -> float:
    """The learning rate for epoch `epoch` (0-based) under settings["schedule"]:
    None: constant; {"kind": "step", "step_size": s, "gamma": g}: lr * g**(epoch // s)
    (torch StepLR); {"kind": "cosine", "epochs": T, "min_lr": m}: m + (lr - m) *
    (1 + cos(pi * min(epoch, T) / T)) / 2 (torch CosineAnnealingLR, eta_min=m)."""
    lr, sch = settings["lr"], settings.get("schedule")
    if not sch:
        return lr
    if sch["kind"] == "step":
        return lr * sch["gamma"] ** (epoch // sch["step_size"])
    t = min(epoch, sch["epochs"])
    lo = sch.get("min_lr", 0.0)
    return lo + (lr - lo) * (1 + math.cos(math.pi * t / sch["epochs"])) / 2
