"""Cold start: a fresh process with an empty kernel cache (issue 18).

Each figure comes from a fresh Python process with an empty NUMBA_CACHE_DIR
(a temporary folder):

- core: `Network.from_dict(default-256).forward(x)` returns (numpy path),
  then how long until the background processes have compiled every kernel,
  and the agreement of the numpy-path maps with the numba maps afterwards;
- the same with the cache that run filled (a warm start);
- the app: process start until live maps are in the window (offscreen);
- before: the same forward pass compiling its kernels in the process (what
  a first start waited for until issue 18).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

TITLE = "Cold start with an empty kernel cache (issue 18)"
ORDER = 12

_CORE = r"""
import time
t0 = time.perf_counter()
import numpy as np
from cnnplay import Network
from cnnplay.bench.forward import NETWORKS
from cnnplay.core.kernels import coldstart
net = Network.from_dict(NETWORKS["default-256"], seed=0)
x = np.random.default_rng(1).standard_normal(net.input_shape).astype(np.float32)
first = net.forward(x)
print(f"FIRST {time.perf_counter() - t0:.3f}", flush=True)
coldstart.wait()
print(f"COMPILED {time.perf_counter() - t0:.3f} {coldstart.progress() or ''}", flush=True)
print(f"STATE {coldstart._state} {len(coldstart._done)}", flush=True)
net.forward(x)  # loads the kernels
t = time.perf_counter()
again = net.forward(x)
print(f"AGAIN {time.perf_counter() - t:.4f}", flush=True)
err = max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)) for a, b in zip(first, again))
print(f"ERR {err:.2e}", flush=True)
"""

_APP = r"""
import time
t0 = time.perf_counter()
from PySide6.QtWidgets import QApplication
from cnnplay.app.main import create_window
from cnnplay.core.kernels import coldstart
app = QApplication([])
window = create_window()
window.show()
c = window.controller
while not c.forward_is_current():
    app.processEvents()
    time.sleep(0.001)
app.processEvents()
print(f"LIVE {time.perf_counter() - t0:.3f}", flush=True)
coldstart.wait()  # the background compile owns the temporary cache folder
print(f"COMPILED {time.perf_counter() - t0:.3f}", flush=True)
"""


def _run(code: str, cache: str, mode: str, home: str | None = None) -> dict[str, list[str]]:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, CNNPLAY_KERNELS=mode, QT_QPA_PLATFORM="offscreen")
    if home:
        env["CNNPLAY_HOME"] = home
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"cold-start child failed:\n{r.stderr[-3000:]}")
    out = {}
    for line in r.stdout.splitlines():
        word, *rest = line.split()
        out[word] = rest
    return out


def run() -> list[str]:
    lines = ["fresh processes, empty NUMBA_CACHE_DIR; default-256 (issue 7's default network)"]
    with tempfile.TemporaryDirectory() as cache:
        cold = _run(_CORE, cache, "auto")
        warm = _run(_CORE, cache, "auto")
    first, compiled = float(cold["FIRST"][0]), float(cold["COMPILED"][0])
    lines.append(f"core, first forward returned (numpy path):        {first:6.2f} s   (target <= 5 s)")
    lines.append(f"core, every kernel compiled (2 background processes): {compiled:6.2f} s   "
                 f"({cold['STATE'][1]} kernels, {cold['STATE'][0]})")
    lines.append(f"core, forward on the numba kernels afterwards:   {float(cold['AGAIN'][0]) * 1e3:6.1f} ms; "
                 f"numpy-path maps vs numba maps: max rel err {cold['ERR'][0]}")
    lines.append(f"core, warm start (the cache that run filled), first forward: {float(warm['FIRST'][0]):6.2f} s")
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as home:
        app = _run(_APP, cache, "auto", home)
    lines.append(f"app, process start -> live maps in the window:   {float(app['LIVE'][0]):6.2f} s   (target <= 5 s)")
    lines.append(f"app, every kernel compiled:                      {float(app['COMPILED'][0]):6.2f} s")
    with tempfile.TemporaryDirectory() as cache:
        before = _run(_CORE, cache, "numba")
    lines.append(f"before (kernels compiled in the process first), first forward: {float(before['FIRST'][0]):6.2f} s")
    lines.append("(the machine is shared: these single timings move with its load; see the README)")
    return lines
