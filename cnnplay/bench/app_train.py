"""Training in the window (issue 13): what the live refresh costs, and how the window answers.

- slowdown: the same training (same network, data, batches) run alone on its thread
  (nothing listens) and in the window with everything live (weights published to the
  session a few times a second, feature maps, kernels, curves redrawn), alternately,
  ROUNDS rounds; the median of the per-round ratios (alone / live batches per
  second of two neighbouring runs: a shared machine's speed drifts by 2x within a
  minute, a ratio of separate medians mixes those states). Goal: <= 1.10.
  While the live run trains, the GUI thread runs Qt's own event loop, idle between
  events as in the app (a loop that polls processEvents() would take the GIL from the
  training thread thousands of times a second, a cost the app does not have). A run
  is long enough (about a second alone) for several refreshes; the panel's refresh
  interval carries over from run to run, as in the app, where it adapts to what a
  refresh costs (app/train/run.py, refresh_interval).
- while training runs: a click on a unit until its receptive field is on screen, an
  edit until the new maps are on screen (the edit pauses training; it is restarted
  after each), and Pause until the training thread has stopped. Goal: <= 50 ms.
"""

from __future__ import annotations

import gc
import os
import statistics
import tempfile
import threading
import time

from ._common import wait_until

TITLE = "Training in the window: live-refresh cost and responsiveness (issue 13)"
ORDER = 31
BATCHES = 150
ROUNDS = 5
REPEATS = 8

SPEC = {"input": [1, 24, 24], "layers": [
    {"type": "conv2d", "out_channels": 8, "kernel_size": 5, "padding": 2}, {"type": "batchnorm"},
    {"type": "relu"}, {"type": "maxpool2d", "kernel_size": 2},
    {"type": "conv2d", "out_channels": 16, "kernel_size": 3, "padding": 1}, {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 2}, {"type": "flatten"}, {"type": "linear", "out_features": 4}]}


def _wait(app, condition, timeout=120.0) -> None:
    wait_until(app, condition, timeout)


def _serve_until(panel, condition, timeout: float) -> None:
    """Run Qt's event loop (idle between events, like the app's) until condition() holds
    after a training snapshot has been handled; TimeoutError after `timeout` s."""
    from PySide6.QtCore import QEventLoop, QTimer
    loop = QEventLoop()
    check = lambda *_: loop.quit() if condition() else None  # noqa: E731
    panel.bridge.snapshot.connect(check)  # after the panel's own slot, connected first
    timer = QTimer(singleShot=True, interval=int(timeout * 1000))
    timer.timeout.connect(loop.quit)
    timer.start()
    try:
        if not condition():
            loop.exec()
    finally:
        panel.bridge.snapshot.disconnect(check)
        timer.stop()
    if not condition():
        raise TimeoutError("the training run did not end in time")


def _ms(ts) -> str:
    return f"{statistics.median(ts) * 1e3:6.1f} ms (max {max(ts) * 1e3:.1f})"


def run() -> list[str]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["CNNPLAY_HOME"] = tempfile.mkdtemp(prefix="cnnplay-bench-train-")
    import numpy as np
    from PySide6.QtWidgets import QApplication

    from ..app.main import create_window
    from ..app.train.run import TrainingRun, copy_network
    from ..app.train.state import Settings, Training
    from ..core.session import Session
    from ..datasets import make_builtin

    app = QApplication.instance() or QApplication([])
    ds = make_builtin("shapes", size=24, count=BATCHES * 32 * 5 // 4 + 64, noise=0.05, seed=0)
    x0 = np.array(ds.x[0], np.float32)
    window = create_window(session=Session(SPEC, x0, {"kind": "bench"}))
    window.resize(1600, 1000)
    window.show()
    window.train_dock.raise_()
    c = window.controller
    _wait(app, c.forward_is_current)
    p = window.train_panel
    s = window.session
    s.set_dataset(ds)
    settings = Settings(optimizer="sgd", lr=0.01, momentum=0.9, batch_size=32, epochs=1000, seed=0)
    p.set_setting(**settings.to_json())
    train, test = p.split()
    batches = min(BATCHES, -(-len(train) // 32))

    def alone() -> float:
        _wait(app, lambda: c.forward_is_current() and not c.holding())  # the window is done
        out = []
        r = TrainingRun(copy_network(s.network), Training(settings=settings), train, test, out.append,
                        max_batches=batches)
        t = time.perf_counter()
        r.start()
        r.thread.join()
        return batches / (time.perf_counter() - t)

    def live() -> float:
        window.editor.edit("reset", lambda ses: ses.reset_weights(Training(settings=settings)))
        _wait(app, c.forward_is_current)  # the reset's own maps are not part of the run
        app.processEvents()
        p._start(batches)
        t = time.perf_counter()
        # the training thread's time, as alone() (a waiter notes when it ends; the
        # panel's handling of the last snapshot comes after, outside the run)
        ended = []
        waiter = threading.Thread(target=lambda run=p.run: (run.thread.join(), ended.append(time.perf_counter())))
        waiter.start()
        _serve_until(p, lambda: not p.running(), 600)
        waiter.join()
        return batches / (ended[0] - t)

    alone()  # warm-up: kernels for these shapes, the refresh interval for this machine
    live()
    a, b = [], []
    for _ in range(ROUNDS):
        a.append(alone())
        b.append(live())
    ratios = sorted(x / y for x, y in zip(a, b))
    lines = [f"network 1x24x24 shapes classifier (2 conv, batch norm), batch 32, SGD; {batches} batches per run, "
             f"{ROUNDS} rounds alternating",
             f"training alone: {statistics.median(a):6.1f} batches/s; in the window, everything live: "
             f"{statistics.median(b):6.1f} batches/s (refreshed every {p._publish_interval:.2f} s); slowdown "
             f"{statistics.median(ratios):.3f}x [{ratios[1]:.2f}-{ratios[-2]:.2f}] (goal <= 1.10)"]

    clicks, edits, pauses, shown = [], [], [], []
    for k in range(REPEATS):
        p.set_setting(epochs=1000)
        p.train()
        _wait(app, lambda: s.training.progress.steps > 0 and p.running())
        t = time.perf_counter()
        s.select_unit(4, (k % 16, 3 + k % 3, 4))
        _wait(app, c.field_is_current)
        clicks.append(time.perf_counter() - t)
        run = p.run
        t = time.perf_counter()
        p.pause()
        _wait(app, lambda: not run.is_alive())
        pauses.append(time.perf_counter() - t)
        _wait(app, lambda: not p.running())
        shown.append(time.perf_counter() - t)
        p.train()
        _wait(app, lambda: p.running())
        # A real change every time: dilation 2, 1, 2, ... (the network starts at 1; setting the
        # value it already has changes nothing, so training would rightly go on and never pause).
        d = 2 - k % 2
        keys = s.network.layer_keys()
        t = time.perf_counter()
        window.editor.update_layer(4, merge=False, dilation=d, padding=d)
        _wait(app, c.forward_is_current)
        edits.append(time.perf_counter() - t)
        if s.network.layer_keys() == keys:
            raise RuntimeError(f"edit {k} did not change the network (dilation {d})")
        _wait(app, lambda: not p.running())
    lines.append(f"while training: click -> field on screen {_ms(clicks)}; edit -> maps on screen (pauses "
                 f"training) {_ms(edits)}; Pause -> training stopped {_ms(pauses)} (goal <= 50 ms), "
                 f"-> the panel shows it paused {_ms(shown)}")
    p.shutdown()
    window.close()
    gc.enable()
    return lines
