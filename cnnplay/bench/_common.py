"""Pieces the bench sections share (a leading underscore: not a section itself)."""

from __future__ import annotations

import time


def torch_or_none(threads: int):
    """PyTorch using `threads` threads, or None where it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def wait_until(app, condition, timeout: float = 30.0) -> None:
    """Run the Qt event loop until condition() holds; TimeoutError after `timeout` s."""
    end = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > end:
            raise TimeoutError("the app did not answer in time")
        app.processEvents()
        time.sleep(0.0002)
    app.processEvents()  # paint what changed
