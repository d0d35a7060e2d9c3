"""Cached kernels load after the app's first maps (core/kernels/loader.py): while
deferred, a cached kernel not loaded yet counts as not ready (numpy computes) and is
queued; after release() the loader thread loads it from the disk cache, never compiling."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from numba import njit

from cnnplay.core.kernels import coldstart, dense, loader


@pytest.fixture
def fresh(monkeypatch):
    """coldstart in mode auto and the loader as in a fresh process (nothing may compile)."""
    monkeypatch.setattr(coldstart, "_mode", "auto")
    monkeypatch.setattr(coldstart, "_on_disk", {})
    monkeypatch.setattr(coldstart, "_state", "idle")
    monkeypatch.setattr(coldstart, "start", lambda: pytest.fail("a cached kernel started the background compile"))
    for name, value in (("_deferring", False), ("_queue", {}), ("_tried", set()), ("_go", threading.Event()),
                        ("_thread", None)):
        monkeypatch.setattr(loader, name, value)
    yield
    loader.release()
    assert loader.wait(120)


def unloaded_linear():
    """A new dispatcher of dense._linear: the same disk-cache entry (warm from the tests'
    warm-up), nothing loaded in it yet."""
    return njit(cache=True, fastmath={"reassoc", "contract"})(dense._linear.py_func)


def never_compiled(a):
    return a * 7 + 1


def test_a_cached_kernel_waits_for_the_loader_while_deferred(fresh):
    k = unloaded_linear()
    assert coldstart._in_disk_cache(k) and not k.overloads
    assert coldstart.ready(k)  # not deferred: it loads on its first call, as before
    loader.defer()
    assert loader.deferring() and not coldstart.ready(k)  # numpy meanwhile ...
    assert list(loader._queue.values()) == [k] and not k.overloads  # ... queued, not loaded before release()
    loader.release()
    assert loader.wait(120)
    assert k.overloads and coldstart.ready(k) and not loader.deferring()
    x, w, b = np.arange(5, dtype=np.float32), np.ones((3, 5), np.float32), np.zeros(3, np.float32)
    y = np.empty(3, np.float32)
    k(x, w, b, y)
    np.testing.assert_allclose(y, w @ x)
    later = unloaded_linear()
    assert coldstart.ready(later) and not loader._queue  # after the loader: loads on its first call


def unloaded(kernel):
    """A new dispatcher of a cached kernel, with its options: nothing loaded in it yet."""
    return njit(cache=True, **{k: v for k, v in kernel.targetoptions.items() if k != "nopython"})(kernel.py_func)


def test_every_kernel_a_wrapper_asks_for_is_queued(fresh):
    """A wrapper asks for several kernels at once (conv: the source and the direct
    kernel): each one is queued, not only the first that is not ready."""
    from cnnplay.core.kernels import conv
    kernels = [unloaded(conv._make_source), unloaded(conv._direct)]
    loader.defer()
    assert not coldstart.ready(*kernels)
    assert list(loader._queue) == [coldstart.kernel_name(k) for k in kernels]


def test_the_loader_loads_only_what_the_cache_holds():
    fresh_kernel = njit(cache=True)(never_compiled)
    assert loader.load(fresh_kernel) == 0 and not fresh_kernel.overloads  # no entry: nothing compiled
    assert loader.load(unloaded_linear()) >= 1


_APP = """
import sys
from PySide6.QtWidgets import QApplication
from cnnplay.app.main import create_window
from cnnplay.core.kernels import conv, loader
app = QApplication([])
w = create_window()
w.show()
c = w.controller
seen = []
c.forward_changed.connect(lambda: c.forward_is_current() and not seen and seen.append(
    ("numba.np.arraymath" in sys.modules, bool(conv._direct.overloads), loader._go.is_set())))
while not seen:
    app.processEvents()
print("AT_FIRST_MAPS", *seen[0])
while not loader.wait(0.01):
    app.processEvents()
print("AFTER_LOADER", "numba.np.arraymath" in sys.modules, bool(conv._direct.overloads), loader.deferring())
w.close()
"""


def test_the_window_shows_its_first_maps_before_numba_sets_up_its_target(tmp_path):
    """A fresh app process with a warm kernel cache: the first maps come from the numpy
    path before numba's CPU target is set up (importing its numpy support and scipy took
    0.9 s of the start); the cached kernels load after them, on the loader thread."""
    env = dict(os.environ, CNNPLAY_HOME=str(tmp_path), QT_QPA_PLATFORM="offscreen", CNNPLAY_KERNELS="auto")
    out = subprocess.run([sys.executable, "-c", _APP], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines() if line.strip()}
    assert lines["AT_FIRST_MAPS"] == ["False", "False", "False"], out.stdout
    assert lines["AFTER_LOADER"] == ["True", "True", "False"], out.stdout
