"""The app's own latencies, through the real window, offscreen (issue 7, targets 2-4).

- edit -> maps on screen: one layer setting changed in the session until the
  new maps are in the views and the window has processed its paint events
  (levels, colour mapping and item updates included); only that layer and the
  ones after it are recomputed.
- a view setting: how many forward passes it starts (should be none) and its redraw time.
- click -> field on screen: select a unit until box + mask overlays are drawn.
- start-up: a fresh process of the real app (`main()`: splash, restored session and
  layout) until live maps are on screen, with a warm kernel cache and compiled
  bytecode: the user's wait. Then the window is closed, as a user closes it (the
  autosave is written), and the time until the process has ended is given apart.
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from .forward import NETWORKS
from ._common import wait_until

TITLE = "App latencies: edit -> maps, click -> field, start-up (issue 7, targets 2-4)"
ORDER = 30
REPEATS = 15

_STARTUP_SCRIPT = r"""
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
import cnnplay.app.main as app_main

create = app_main.create_window


def create_window(*args, **kwargs):
    window = create(*args, **kwargs)

    def poll():  # live maps on screen: say so, then close the window as a user would
        if window.isVisible() and window.controller.forward_is_current():
            timer.stop()
            QApplication.processEvents()  # their paint
            print("LIVE", flush=True)
            window.close()

    timer = QTimer(window)
    timer.timeout.connect(poll)
    timer.start(1)
    return window


app_main.create_window = create_window
raise SystemExit(app_main.main(["cnnplay"]))
"""


def _wait(app, condition, timeout=30.0) -> None:
    wait_until(app, condition, timeout)


def _median_ms(ts) -> str:
    return f"{statistics.median(ts) * 1e3:7.1f} ms (min {min(ts) * 1e3:.1f}, max {max(ts) * 1e3:.1f})"


def run() -> list[str]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    home = tempfile.mkdtemp(prefix="cnnplay-bench-")
    os.environ["CNNPLAY_HOME"] = home
    from PySide6.QtWidgets import QApplication

    from ..app.main import create_window
    from ..core.session import Session

    app = QApplication.instance() or QApplication([])
    rng = np.random.default_rng(0)
    spec = NETWORKS["default-256"]
    session = Session(spec, rng.random(spec["input"], dtype=np.float32), {"kind": "bench"})
    window = create_window(session=session)
    window.resize(1600, 1000)
    window.show()
    c = window.controller
    _wait(app, lambda: c.forward_is_current(), 120)

    lines = ["network default-256 (3x256x256), window 1600x1000 offscreen"]
    forward_calls = []
    c.worker.forward_done.connect(lambda r: forward_calls.append(r))

    def edit(layer, **fields):
        t = time.perf_counter()
        session.update_layer(layer, **fields)
        _wait(app, lambda: c.forward_is_current())
        return time.perf_counter() - t

    for layer, field, values, what in ((7, "dilation", (1, 2), "conv 32->64 dilation 1<->2 (layers 7-11)"),
                                       (3, "out_channels", (24, 32), "conv 16->32 channels 24<->32 (layers 3-11)"),
                                       (9, "kernel_size", (1, 2), "avgpool kernel 1<->2 (layers 9-11)")):
        ts, firsts = [], set()
        for k in range(REPEATS):
            if field == "dilation":
                ts.append(edit(layer, dilation=values[k % 2], padding=values[k % 2]))
            else:
                ts.append(edit(layer, **{field: values[k % 2]}))
            firsts.add(c.forward.first_recomputed)
        lines.append(f"edit -> maps on screen, {what}: {_median_ms(ts)}; recomputed from layer {sorted(firsts)}")

    n_before = len(forward_calls)
    ts = []
    for k in range(REPEATS):
        t = time.perf_counter()
        session.set_view(levels="channel" if k % 2 == 0 else "layer")
        app.processEvents()
        ts.append(time.perf_counter() - t)
    app.processEvents()
    lines.append(f"view setting (levels per layer/channel): redraw {_median_ms(ts)}; "
                 f"forward passes started: {len(forward_calls) - n_before}")

    for layer, unit in ((7, (5, 20, 30)), (10, (1234,)), (11, (3,))):
        ts = []
        for k in range(REPEATS):
            u = (unit[0] + k % 2,) + unit[1:]
            t = time.perf_counter()
            session.select_unit(layer, u)
            _wait(app, c.field_is_current)
            ts.append(time.perf_counter() - t)
        lines.append(f"click -> field on screen, layer {layer} ({session.network.summaries[layer]}): {_median_ms(ts)}")
    window.close()
    gc.enable()  # the window collected on its GUI timer; the sections after this have no event loop

    # Start-up in a fresh process; the first run also warms the kernel cache and
    # writes the bytecode (as `pip install` leaves it: a machine set not to write
    # any would compile every module of the app at each start).
    env = dict(os.environ, CNNPLAY_HOME=tempfile.mkdtemp(prefix="cnnplay-bench-start-"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    live, ends = [], []
    for k in range(4):
        t = run_startup(env)
        if isinstance(t, str):
            lines.append(f"start-up run {k} failed: {t}")
        elif k > 0:
            live.append(t[0])
            ends.append(t[1])
    if live:
        lines.append(f"start-up, warm kernel cache, process start -> live maps: {_median_ms(live)}")
        lines.append(f"  then window closed (autosave written) -> process ended: {_median_ms(ends)}")
    return lines


def run_startup(env: dict) -> tuple[float, float] | str:
    """One start of the app in a fresh process: (process start -> live maps on screen,
    window closed -> process ended) in seconds, timed here; or why it failed."""
    err = tempfile.TemporaryFile()  # (a pipe could fill up while stdout is read)
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-c", _STARTUP_SCRIPT], stdout=subprocess.PIPE, stderr=err,
                         text=True, env=env)
    watchdog = threading.Timer(600, p.kill)
    watchdog.start()
    live = None
    for line in p.stdout:  # the line arrives as the maps are on screen
        if line.startswith("LIVE") and live is None:
            live = time.perf_counter() - t
    p.wait()
    end = time.perf_counter() - t
    watchdog.cancel()
    if p.returncode != 0 or live is None:
        err.seek(0)
        return err.read().decode("utf-8", "replace").strip()[-300:] or f"exit code {p.returncode}"
    return live, end - live
