"""The real app's start and end (cnnplay.app.main.main): the splash card, and a quit that
ends the process right after the autosave is on disk, without the interpreter's teardown."""

import os
import subprocess
import sys

from PySide6.QtWidgets import QSplashScreen

_APP = """
import atexit, os, sys
from PySide6.QtCore import QTimer
import cnnplay.app.main as app_main


class Teardown:  # module globals are cleared in the interpreter's teardown, and this says so
    def __del__(self, write=os.write):  # (os itself may be gone by then)
        write(1, b"TEARDOWN\\n")


keep = Teardown()
atexit.register(lambda: os.write(1, b"ATEXIT\\n"))
create = app_main.create_window


def create_window(*args, **kwargs):
    window = create(*args, **kwargs)

    def edit_and_quit():  # an edit, then a quit before its debounced autosave is due
        if window.isVisible() and window.controller.forward_is_current():
            timer.stop()
            window.editor.update_layer(1, eps=0.001)  # the start-up network's batchnorm
            assert window.autosaver.pending()
            window.close()

    timer = QTimer(window)
    timer.timeout.connect(edit_and_quit)
    timer.start(5)
    return window


app_main.create_window = create_window
code = app_main.main(["cnnplay"])
os.write(1, b"MAIN RETURNED\\n")
raise SystemExit(code)
"""


def test_a_quit_saves_the_session_then_ends_the_process_without_the_teardown(tmp_path):
    """Closing the window writes the autosave (the edit made just before is in it) and
    runs the atexit handlers; the teardown of the interpreter's ~170,000 objects (0.4-0.6 s
    of full collections) is skipped: the process ends with os._exit."""
    env = dict(os.environ, CNNPLAY_HOME=str(tmp_path), QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", _APP], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["ATEXIT"], out.stdout  # neither MAIN RETURNED nor TEARDOWN
    from cnnplay.app.autosave import restore
    restored = restore(tmp_path / "autosave.cnnplay", tmp_path / "autosave-input.npy")
    assert restored.session is not None and restored.session.layers[1]["eps"] == 0.001


def test_the_splash_card_paints_without_waiting_for_the_window_system(qapp):
    """QSplashScreen's Show event waits up to 1 s for an exposure that cannot come before
    the show returns (every start waited the full second): the card is a plain splash
    window, shown once it has painted."""
    from cnnplay.app.splash import make_splash, show_splash
    splash = make_splash("Starting...")
    assert not isinstance(splash, QSplashScreen)
    show_splash(splash)
    assert splash.painted and splash.isVisible()
    splash.finish(None)
    assert not splash.isVisible()


def test_the_sample_thumbnails_are_read_when_first_seen(qtbot, home):
    """Decoding every bundled photo for its 28 px thumbnail took 45 ms of each start: only
    the current sample's is read with the window, the others when the list opens."""
    import numpy as np

    from cnnplay.app.main import create_window
    from cnnplay.core.session import Session
    spec = {"input": [1, 32, 32], "layers": [{"type": "relu"}]}
    x = np.zeros((1, 32, 32), np.float32)
    w = create_window(session=Session(spec, x, {"kind": "image", "sample": "camera.png", "mode": "gray",
                                                "max_side": 32}))
    qtbot.addWidget(w)
    combo = w.input_panel.sample_combo
    shown = combo.currentIndex()
    assert combo.itemData(shown) == "camera.png" and not combo.itemIcon(shown).isNull()
    others = [i for i in range(1, combo.count()) if i != shown]
    assert others and all(combo.itemIcon(i).isNull() for i in others)
    combo.showPopup()
    assert all(not combo.itemIcon(i).isNull() for i in range(1, combo.count()))
    combo.hidePopup()
