"""Reliability of the app, through the real widgets (issue 8): a long compute can be
cancelled while the GUI stays responsive; memory refusals and compute failures show
on the layer's row or as a message; failed saves, stale temporary files, unexpected
exceptions and huge images never lose work."""

from __future__ import annotations

import os
import struct
import sys
import threading
import time
import zlib

import numpy as np
import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from cnnplay import Network
from cnnplay.app import main as main_module
from cnnplay.app.autosave import clean_stale_temp
from cnnplay.app.layer_stack import session_rows
from cnnplay.app.main import create_window
from cnnplay.core import memory
from cnnplay.core.errors import NetworkError
from cnnplay.core.fileformat import load_bundle
from cnnplay.core.session import Session

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

RELU_SPEC = {"input": [1, 8, 8], "layers": [{"type": "relu"}] * 6}
SPEC = {"input": [1, 32, 32], "layers": [
    {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel_size": 2},
    {"type": "flatten"},
    {"type": "linear", "out_features": 3},
]}
SOURCE = {"kind": "image", "sample": "camera.png", "mode": "gray", "max_side": 32}


def make_window(qtbot, spec=SPEC):
    shape = spec["input"]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    w = create_window(session=Session(spec, x, SOURCE))
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    qtbot.waitUntil(w.controller.forward_is_current, timeout=20000)
    return w


@pytest.fixture
def window(qtbot, home):
    return make_window(qtbot)


class SlowLayers:
    """Network.layer_forward replaced: each layer takes `seconds` (a stand-in for a heavy
    layer, like tests/test_compute_worker.py) and records which layer ran on which thread."""

    def __init__(self, monkeypatch, seconds=0.0):
        self.seconds = seconds
        self.calls = []
        original = Network.layer_forward

        def layer_forward(net, i, x):
            self.calls.append((threading.get_ident(), i))
            if self.seconds:
                time.sleep(self.seconds)
            return original(net, i, x)

        monkeypatch.setattr(Network, "layer_forward", layer_forward)


def row_texts(w):
    m = w.stack.view.model()
    return [m.data(m.index(i)) for i in range(m.rowCount())]


def rows(w):
    m = w.stack.view.model()
    return [m.row(i) for i in range(m.rowCount())]


def card_veil(w, i) -> str | None:
    """The word a layer's card shows over its maps (None: the maps are shown)."""
    stale = w.central.card(i).stale
    return stale.text() if stale.isVisibleTo(w) else None


# === Cancel ==============================================================================

def test_cancel_a_long_forward_pass_while_the_gui_keeps_running(qtbot, home, monkeypatch):
    slow = SlowLayers(monkeypatch)
    w = make_window(qtbot, RELU_SPEC)
    assert not w.cancel_button.isEnabled() and not w.resume_button.isVisibleTo(w)

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    slow.seconds = 0.25
    slow.calls.clear()
    t0 = time.perf_counter()
    w.editor.update_layer(0, type="leaky_relu")  # every layer must be computed again
    assert not w.cancel_button.isEnabled()  # not for a short compute
    qtbot.waitUntil(w.cancel_button.isEnabled, timeout=5000)
    assert time.perf_counter() - t0 >= 0.3 * 0.9  # only after ~0.3 s
    with qtbot.waitSignal(w.controller.cancelled, timeout=5000):
        qtbot.mouseClick(w.cancel_button, Qt.MouseButton.LeftButton)
    t1 = time.perf_counter()
    timer.stop()

    # The GUI thread kept handling events while the worker computed.
    during = [t for t in ticks if t0 <= t <= t1]
    assert len(during) >= 10 and max(np.diff([t0] + during + [t1])) < 0.2
    assert {tid for tid, _ in slow.calls} == {w.worker._thread.ident} != {threading.get_ident()}

    # Stopped at a layer boundary: the layers computed are shown, the rest say "cancelled".
    qtbot.waitUntil(w.worker.idle, timeout=5000)
    n = w.controller.layers_computed()
    assert 1 <= n < 6 and len(slow.calls) == n
    assert not w.controller.forward_is_current() and w.controller.forward_cancelled()
    for i in range(6):
        veil = card_veil(w, i)
        assert veil is None if i < n else "cancelled" in veil
    assert f"Cancelled: {n} of 6 layers computed" in w.busy_label.text()
    assert w.time_label.text().startswith("Updated layer 0 in" if n == 1 else f"Updated layers 0\u2013{n - 1} in")
    assert not w.cancel_button.isEnabled() and w.resume_button.isVisibleTo(w)
    assert "Traceback" not in w.banner.label.text() and "cancelled" not in w.error_label.text().lower()

    # Compute resumes from the cache: only the layers not computed run.
    slow.seconds = 0
    slow.calls.clear()
    qtbot.mouseClick(w.resume_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(w.controller.forward_is_current, timeout=5000)
    # (a concept panel on screen may then compute passes of its own)
    assert [i for _, i in slow.calls][:6 - n] == list(range(n, 6))
    assert all(card_veil(w, i) is None for i in range(6))
    assert not w.resume_button.isVisibleTo(w) and not w.controller.forward_cancelled()


def test_escape_cancels_unless_typing(qtbot, home, monkeypatch):
    slow = SlowLayers(monkeypatch)
    w = make_window(qtbot, RELU_SPEC)
    w.activateWindow()
    qtbot.waitActive(w)
    slow.seconds = 0.25
    w.editor.update_layer(0, type="leaky_relu")
    qtbot.waitUntil(w.cancel_button.isEnabled, timeout=5000)

    # In a text field Esc is the field's: nothing is cancelled.
    spin = w.input_panel.length_spin
    spin.setFocus()
    qtbot.waitUntil(spin.hasFocus, timeout=2000)
    QTest.keyClick(spin, Qt.Key.Key_Escape)
    assert w.cancel_button.isEnabled() and not w.controller.forward_cancelled()

    # Anywhere else it cancels at the next layer boundary.
    w.stack.view.setFocus()
    qtbot.waitUntil(w.stack.view.hasFocus, timeout=2000)
    with qtbot.waitSignal(w.controller.cancelled, timeout=5000):
        QTest.keyClick(w.stack.view, Qt.Key.Key_Escape)
    assert w.controller.layers_computed() < 6 and w.controller.forward_cancelled()

    # An edit computes again (from the cache) and the "cancelled" state goes away.
    slow.seconds = 0
    w.editor.update_layer(5, type="leaky_relu")
    qtbot.waitUntil(w.controller.forward_is_current, timeout=5000)
    assert not w.controller.forward_cancelled() and not w.resume_button.isVisibleTo(w)
    assert all(card_veil(w, i) is None for i in range(6))


# === Errors on the layer's row ===========================================================

@pytest.fixture
def limit():
    yield memory.set_limit
    memory.set_limit(None)


def test_memory_budget_refusal_shows_on_the_row(window, qtbot, limit):
    net = window.session.network
    limit(net.estimate_bytes() + 20_000)  # room for the network, not for a 16-channel 32x32 conv
    window.session.select_layer(1)
    window.stack.view.add_type("conv2d")  # what double-clicking the palette does
    r = rows(window)
    assert [x.status for x in r] == ["ok", "ok", "error", "skipped", "skipped", "skipped"]
    assert "memory limit" in r[2].message and "KB" in r[2].message
    assert r[2].message in row_texts(window)[2] and "Traceback" not in row_texts(window)[2]
    # The layers before it are still computed and shown.
    qtbot.waitUntil(window.controller.forward_is_current, timeout=5000)
    assert all(card_veil(window, i) is None for i in range(2))

    # An input the budget cannot hold is refused with a message; the input stays.
    before = window.session.input_array
    limit(1000)
    with qtbot.waitSignal(window.message, timeout=5000):
        assert not window.input_panel.set_sample("camera.png")
    assert window.session.input_array is before
    assert "memory limit" in window.banner.label.text() and "Traceback" not in window.banner.label.text()


@pytest.mark.parametrize("failure", ["network_error", "out_of_memory", "bug"])
def test_a_compute_failure_shows_on_its_row_and_as_a_message(window, qtbot, monkeypatch, failure, home):
    """A failure while computing layer 2 (not in its description): its row says so, the
    layers before it stay shown, the later ones say why they are not computed."""
    original = Network.layer_forward

    def failing(net, i, x):
        if i == 2:
            if failure == "network_error":
                raise NetworkError("the kernel refused this geometry")
            if failure == "out_of_memory":
                raise MemoryError()
            raise ZeroDivisionError("a bug in a kernel")
        return original(net, i, x)

    monkeypatch.setattr(Network, "layer_forward", failing)
    with qtbot.waitSignal(window.controller.failed, timeout=5000):
        window.editor.update_layer(0, out_channels=5)
    expected = {"network_error": "the kernel refused this geometry",
                "out_of_memory": "out of memory while computing",
                "bug": "internal error while computing (ZeroDivisionError: a bug in a kernel)"}[failure]
    qtbot.waitUntil(lambda: rows(window)[2].status == "error", timeout=5000)
    r = rows(window)
    assert [x.status for x in r] == ["ok", "ok", "error", "ok", "ok"]
    assert expected in r[2].message and r[2].message.startswith("compute failed")
    assert expected in window.banner.label.text() and window.banner.isVisibleTo(window)
    for text in (window.banner.label.text(), *row_texts(window)):
        assert "Traceback" not in text
    for i in (0, 1):  # computed before the failure: shown
        assert card_veil(window, i) is None
    for i in (2, 3, 4):
        assert expected in card_veil(window, i)
    assert QApplication.activeModalWidget() is None

    # Fixed (here: the layer computes again): the row is back to normal.
    monkeypatch.setattr(Network, "layer_forward", original)
    window.editor.update_layer(0, out_channels=6)
    qtbot.waitUntil(window.controller.forward_is_current, timeout=5000)
    assert [x.status for x in rows(window)] == ["ok"] * 5
    assert window.controller.compute_error() is None


# === Never lose work =====================================================================

def test_a_failed_save_says_so_and_keeps_the_previous_file(window, qtbot, tmp_path, monkeypatch):
    path = tmp_path / "net.cnnplay"
    assert window.save_to(path)
    old = path.read_bytes()
    window.editor.update_layer(0, out_channels=7)
    assert window.windowTitle().startswith("net.cnnplay *")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(os, "replace", refuse)  # a read-only folder, as far as the save can tell
    with qtbot.waitSignal(window.message, timeout=2000):
        assert not window.save_to(path)
    monkeypatch.undo()
    text = window.banner.label.text()
    assert "Not saved" in text and "Permission denied" in text and "previous file is unchanged" in text
    assert path.read_bytes() == old and load_bundle(path)[0].configs[0]["out_channels"] == 4
    assert window.windowTitle().startswith("net.cnnplay *")  # still unsaved
    assert sorted(os.listdir(tmp_path)) == ["home", "net.cnnplay"]  # no temporary file left

    # A folder that cannot exist (a path under a file).
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with qtbot.waitSignal(window.message, timeout=2000):
        assert not window.save_to(blocker / "net.cnnplay")
    assert "Not saved" in window.banner.label.text() and "Traceback" not in window.banner.label.text()
    assert window.path == path and window.windowTitle().startswith("net.cnnplay *")


def _age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_stale_temporary_files_are_removed_at_start_and_before_saving(qtbot, home, tmp_path):
    home.mkdir(parents=True)
    stale = [home / ".autosave.cnnplay.k3j_x9a2.tmp", home / ".autosave-input.npy.abcdefgh.tmp"]
    fresh = home / ".autosave.cnnplay.zzzzzzzz.tmp"  # a save in progress (another instance)
    others = [home / ".autosave.cnnplay.tmp", home / "notes.tmp", home / ".autosave.cnnplay.abcdefgh.tmp.keep",
              home / ".other.cnnplay.abcdefgh.tmp"]
    for p in stale + [fresh] + others:
        p.write_bytes(b"half a file")
    folder = home / ".autosave.cnnplay.dddddddd.tmp"
    folder.mkdir()
    for p in stale + others + [folder]:
        _age(p, 3600)

    w = create_window()  # the start: restores (here: nothing) and autosaves
    qtbot.addWidget(w)
    assert w.autosaver.flush(10)
    for p in stale:
        assert not p.exists()
    for p in [fresh, folder] + others:
        assert p.exists()
    assert (home / "autosave.cnnplay").exists()

    # Beside a file the user saves, too.
    target = tmp_path / "mine.cnnplay"
    left = tmp_path / ".mine.cnnplay.a1b2c3d4.tmp"
    left.write_bytes(b"killed mid-save")
    _age(left, 120)
    assert w.save_to(target)
    assert not left.exists() and load_bundle(target)[0] is not None
    assert clean_stale_temp(target) == []


def test_temporary_files_of_a_killed_autosave_are_cleaned(tmp_path):
    """A real SIGKILL in the middle of atomic_write, then the start-up cleanup."""
    import signal
    import subprocess
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs SIGKILL")
    target = tmp_path / "autosave.cnnplay"
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, os\n"
        "from cnnplay.core import fileformat\n"
        "real = os.replace\n"
        "def hang(src, dst):\n"
        "    print('written', flush=True)\n"
        "    sys.stdin.read()\n"  # killed here: the data is in the temporary file, not renamed
        "os.replace = hang\n"
        "fileformat.atomic_write(sys.argv[1], b'x' * 100000)\n"), str(target)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "written"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        child.stdin.close()
    left = [p for p in tmp_path.iterdir() if p.name.startswith(".autosave.cnnplay.")]
    assert len(left) == 1 and not target.exists()
    assert clean_stale_temp(target) == []  # young: might be a save in progress
    _age(left[0], 61)
    assert clean_stale_temp(target) == left and not left[0].exists()


@pytest.mark.qt_no_exception_capture
def test_an_exception_in_a_real_slot_is_logged_and_shown(window, qtbot, monkeypatch, app_log):
    from cnnplay.app import input_panel

    main_module.install_excepthook(window)
    real = input_panel.load_input

    def broken(source):
        raise RuntimeError("boom in a loader")

    monkeypatch.setattr(input_panel, "load_input", broken)
    before = window.session.state
    with qtbot.waitSignal(window.message, timeout=5000):
        qtbot.mouseClick(window.input_panel.generate_button, Qt.MouseButton.LeftButton)  # a real slot
    text = window.banner.label.text()
    assert "Unexpected error (RuntimeError: boom in a loader)" in text and "keeps running" in text
    assert "Traceback" not in text and window.banner.isVisibleTo(window)
    assert QApplication.activeModalWidget() is None and window.session.state is before

    # The app keeps running: the same button works once the bug is gone.
    monkeypatch.setattr(input_panel, "load_input", real)
    window.input_panel.length_spin.setValue(64)
    qtbot.mouseClick(window.input_panel.generate_button, Qt.MouseButton.LeftButton)
    assert window.session.input_array.shape == (1, 64)
    qtbot.waitUntil(window.controller.forward_is_current, timeout=5000)
    log = app_log()
    assert "RuntimeError: boom in a loader" in log and "Traceback" in log and "generate_from_form" in log


def test_an_exception_in_the_worker_is_logged_and_shown(window, qtbot, monkeypatch, app_log):
    original = Network.layer_forward

    def broken(net, i, x):
        raise KeyError("bug in the worker")

    monkeypatch.setattr(Network, "layer_forward", broken)
    with qtbot.waitSignal(window.message, timeout=5000):
        window.editor.update_layer(1, type="leaky_relu")
    assert "internal error while computing (KeyError" in window.banner.label.text()
    assert "details are in the log file" in window.banner.label.text()
    monkeypatch.setattr(Network, "layer_forward", original)
    window.editor.update_layer(1, type="relu")  # the worker is still alive
    qtbot.waitUntil(window.controller.forward_is_current, timeout=5000)
    log = app_log()
    assert "KeyError: 'bug in the worker'" in log and "Traceback" in log


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (no pixel data worth decoding)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_a_huge_image_is_refused_before_decoding_and_the_input_stays(window, qtbot, tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(20000, 15000))  # 300 megapixels, says the header
    before = window.session.state
    t0 = time.perf_counter()
    with qtbot.waitSignal(window.message, timeout=5000):
        assert not window.open_any(str(path))  # the window's open path (drop, command line)
    assert time.perf_counter() - t0 < 2  # refused from the header, nothing decoded
    text = window.banner.label.text()
    assert "huge.png" in text and "300 megapixels" in text and "100 megapixels" in text
    assert window.session.state is before and window.undo_stack.count() == 0
    assert session_rows(window.session) == rows(window)


def test_an_input_error_in_the_worker_blames_no_layer(qtbot):
    from cnnplay.app.compute import ComputeWorker, ForwardRequest

    worker = ComputeWorker(synchronous=True)
    net = Network.from_dict({"input": [1, 4, 4], "layers": [{"type": "relu"}]})
    with qtbot.waitSignal(worker.failed_at, timeout=1000) as blocker:
        worker.submit(ForwardRequest(net, np.zeros((2, 4, 4), np.float32), 0))
    request, layer, message, partial = blocker.args
    assert layer is None and "the network expects (1, 4, 4)" in message and partial.outputs == []
