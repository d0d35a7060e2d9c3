"""Softmax cross-entropy, mean over the batch: torch.nn.CrossEntropyLoss() on raw scores.

    loss = mean_n( logsumexp(z_n) - z_n[y_n] )
    d loss / d z = (softmax(z) - onehot(y)) / N

Computed stably (the row maximum is subtracted before exp) in float64 from
float32 scores; the gradient is returned as float32.
"""

from __future__ import annotations

import numpy as np


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of (N, K) scores, float64."""
    z = np.asarray(z, dtype=np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax probabilities of (N, K) scores, float64."""
    return np.exp(log_softmax(z))


def cross_entropy(z: np.ndarray, y: np.ndarray, grad: bool = True) -> tuple[float, np.ndarray | None]:
    """(mean loss, gradient w.r.t. z as float32 or None) for scores z (N, K) and labels y (N,)."""
    logp = log_softmax(z)
    n = z.shape[0]
    rows = np.arange(n)
    loss = float(-logp[rows, y].mean())
    if not grad:
        return loss, None
    g = np.exp(logp)
    g[rows, y] -= 1.0
    g /= n
    return loss, g.astype(np.float32)


def correct(z: np.ndarray, y: np.ndarray) -> int:
    """How many rows' largest score (the first one on ties, like torch.argmax) is the label."""
    return int((np.argmax(z, axis=1) == y).sum())
