"""Issue 19: files are opened off the GUI thread, which keeps running; an open can be
cancelled (Esc, the Cancel button), is replaced by a newer one, and has a time limit."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QImage

from cnnplay import Network
from cnnplay.app import background, input_panel
from cnnplay.app import window as window_module
from cnnplay.app.input_panel import image_source, set_input_from
from cnnplay.app.main import create_window
from cnnplay.core.fileformat import save_network
from cnnplay.core.session import Session

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SPEC = {"input": [1, 16, 16], "layers": [{"type": "relu"}]}


@pytest.fixture
def window(qtbot, home):
    x = np.random.default_rng(0).random(SPEC["input"], dtype=np.float32)
    w = create_window(session=Session(SPEC, x, {"kind": "image", "sample": "camera.png", "mode": "gray",
                                                "max_side": 16}))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    return w


class Gate:
    """load_input replaced: records its thread, then waits until released."""

    def __init__(self, monkeypatch):
        self.release = threading.Event()
        self.threads = []
        self.real = input_panel.load_input
        monkeypatch.setattr(input_panel, "load_input", self)

    def __call__(self, source):
        self.threads.append(threading.get_ident())
        self.release.wait(30)
        return self.real(source)


def png(path, w=20, h=10):
    img = QImage(w, h, QImage.Format.Format_RGB32)
    img.fill(QColor(0, 255, 0))
    assert img.save(str(path))
    return path


def test_an_image_opens_off_the_gui_thread_while_the_gui_keeps_running(window, tmp_path, monkeypatch):
    gate = Gate(monkeypatch)
    ticks, seen = [], []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    QTimer.singleShot(200, lambda: (seen.append(window.busy_label.text()), gate.release.set()))
    ok = window.input_panel.load_file(png(tmp_path / "green.png"))
    timer.stop()
    assert ok and window.session.input_array.shape == (1, 8, 16)  # the working size of 16 is kept
    assert gate.threads and gate.threads[0] != threading.get_ident()  # decoded on another thread
    assert len(ticks) >= 3  # the GUI thread's own timers ran during the open
    assert seen and "Opening green.png" in seen[0] and "Esc" in seen[0]  # the window said what it does
    assert not background.busy() and "Opening" not in window.busy_label.text()


@pytest.mark.parametrize("how", ["button", "escape"])
def test_an_open_can_be_cancelled(window, qtbot, tmp_path, monkeypatch, how):
    gate = Gate(monkeypatch)
    before = window.session.input_array

    def cancel():
        assert window.cancel_button.isEnabled()
        if how == "button":
            qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
        else:
            window.stack.view.setFocus()
            qtbot.keyClick(window.stack.view, Qt.Key.Key_Escape)

    QTimer.singleShot(100, cancel)
    try:
        assert not window.input_panel.load_file(png(tmp_path / "green.png"))
    finally:
        gate.release.set()
    assert window.session.input_array is before  # nothing changed
    assert "cancelled" in window.banner.label.text() and "green.png" in window.banner.label.text()


def test_an_open_over_its_time_limit_stops_with_a_message(window, tmp_path, monkeypatch):
    gate = Gate(monkeypatch)
    monkeypatch.setattr(background, "TIME_LIMIT", 0.3)
    before = window.session.input_array
    try:
        assert not window.input_panel.load_file(png(tmp_path / "green.png"))
    finally:
        gate.release.set()
    assert window.session.input_array is before
    assert "took longer than 0.3 s" in window.banner.label.text()


def test_a_newer_open_replaces_an_older_one(window, tmp_path, monkeypatch):
    gate = Gate(monkeypatch)
    first, second = png(tmp_path / "first.png", 20, 10), png(tmp_path / "second.png", 12, 8)
    results = []

    def newer():
        gate.release.set()  # the newer one goes through
        results.append(set_input_from(window.editor, image_source(second, "gray", 64)))

    QTimer.singleShot(100, newer)
    results.insert(0, window.input_panel.load_file(first))
    assert results == [False, True]
    assert window.session.input_source["path"] == str(second) and window.session.input_array.shape == (1, 8, 12)


def test_file_open_reads_the_network_off_the_gui_thread(window, tmp_path, monkeypatch):
    path = tmp_path / "net.cnnplay"
    save_network(Network.from_dict({"input": [1, 16, 16], "layers": [{"type": "relu"}, {"type": "relu"}]}), path)
    threads = []
    real = window_module.load_keeping_network
    monkeypatch.setattr(window_module, "load_keeping_network",
                        lambda p: threads.append(threading.get_ident()) or real(p))
    assert window.open_file(path)
    assert threads and threads[0] != threading.get_ident()
    assert len(window.session.network) == 2


def test_off_the_gui_thread_the_work_simply_runs():
    out = []
    t = threading.Thread(target=lambda: out.append(background.run_off_gui_thread(lambda: 42, "x")))
    t.start()
    t.join(10)
    assert out == [42]


_FIRST_DECODE = """
import json, os, sys, threading
from PySide6.QtCore import qInstallMessageHandler
loads = []  # (thread, plugin file) for each image-format plugin Qt loads


def handler(mode, context, message):
    if "imageformats" in message and "loaded library" in message:
        loads.append((threading.current_thread().name, message.split("/")[-1].split('"')[0]))


qInstallMessageHandler(handler)
from PySide6.QtWidgets import QApplication
import numpy as np
app = QApplication([])
from cnnplay.app.input_panel import load_input
from cnnplay.app.main import create_window
from cnnplay.core.session import Session
window = create_window(synchronous=True, session=Session({"input": [1, 8, 8], "layers": [{"type": "relu"}]},
                                                         np.zeros((1, 8, 8), np.float32)))
from cnnplay.app.background import run_off_gui_thread
x, source, notes = run_off_gui_thread(
    lambda: load_input({"kind": "image", "sample": "camera.png", "mode": "gray", "max_side": 8}), "Opening")
print(json.dumps({"shape": list(x.shape), "loads": loads}))
sys.stdout.flush()
os._exit(0)
"""


def test_the_image_plugins_load_on_the_gui_thread_before_a_worker_decodes(tmp_path):
    """A worker's first decode used to load Qt's image plugins, moving each to the GUI
    thread under Qt's locks while PySide held the GIL: with the GUI thread waiting for
    the GIL under one of those locks, both hung (the lessons test, one run in twelve).
    In a fresh process, the window's start loads them all on the GUI thread."""
    import json
    import os
    import subprocess
    import sys
    env = dict(os.environ, CNNPLAY_HOME=str(tmp_path), QT_QPA_PLATFORM="offscreen", QT_DEBUG_PLUGINS="1")
    out = subprocess.run([sys.executable, "-c", _FIRST_DECODE], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["shape"] == [1, 8, 8]  # the worker decoded the image
    assert len(result["loads"]) >= 2  # Qt's wheels bring several (jpeg, gif, webp, ...)
    assert {thread for thread, _ in result["loads"]} == {"MainThread"}, result["loads"]
