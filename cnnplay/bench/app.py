"""The app's own latencies, through the real window, offscreen (issue 7, targets 2-4).

- edit -> maps on screen: one layer setting changed in the session until the
  new maps are in the views and the window has processed its paint events
  (levels, colour mapping and item updates included); only that layer and the
  ones after it are recomputed.
- a view setting: how many forward passes it starts (should be none) and its redraw time.
- click -> field on screen: select a unit until box + mask overlays are drawn.
- start-up: a fresh process until live maps are on screen, with a warm kernel cache
  and compiled bytecode.
"""

from __future__ import annotations

import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from .forward import NETWORKS
from ._common import wait_until

TITLE = "App latencies: edit -> maps, click -> field, start-up (issue 7, targets 2-4)"
ORDER = 30
REPEATS = 15

_STARTUP_SCRIPT = r"""
import time
t0 = time.perf_counter()
from PySide6.QtWidgets import QApplication
from cnnplay.app.main import create_window
app = QApplication([])
window = create_window()
window.show()
c = window.controller
while not (c.forward_is_current()):
    app.processEvents()
    time.sleep(0.001)
app.processEvents()
print(f"LIVE {time.perf_counter() - t0:.4f}", flush=True)
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
    times = []
    for k in range(4):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", _STARTUP_SCRIPT], capture_output=True, text=True, env=env,
                             timeout=600)
        wall = time.perf_counter() - t
        inner = [line for line in out.stdout.splitlines() if line.startswith("LIVE")]
        if out.returncode != 0 or not inner:
            lines.append(f"start-up run {k} failed: {out.stderr.strip()[-300:]}")
            continue
        if k > 0:
            times.append(wall)
    if times:
        lines.append(f"start-up, warm kernel cache, process start -> live maps: {_median_ms(times)}")
    return lines
