"""Images decode on worker threads while the GUI thread destroys objects: no Qt lock
may be taken by the worker while it holds the GIL (a deadlock hung the lessons test)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("PySide6")
from PySide6.QtGui import QColor, QImageReader  # noqa: E402
from test_imageio import encode, filled  # noqa: E402

from cnnplay.app import imageio  # noqa: E402
from cnnplay.core.errors import InputError  # noqa: E402

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="5" height="5"/></svg>'


@pytest.fixture(autouse=True)
def _app(qapp):
    return qapp


def test_only_pixel_handlers_are_asked_and_never_with_qts_own_detection(monkeypatch):
    # Qt's own detection asks every plugin; the SVG plugin's check opens a QTextStream,
    # which connects a signal and so takes a global Qt mutex under the GIL
    asked = []

    class Spy(QImageReader):
        def canRead(self):
            asked.append((bytes(self.format().data()).decode(), self.autoDetectImageFormat()))
            return super().canRead()

    monkeypatch.setattr(imageio, "QImageReader", Spy)
    r = imageio.load_image_bytes(encode(filled(3, 2, QColor(10, 20, 30)), "png"), "a.png", max_side=None)
    assert r.format == "png" and r.array.shape == (3, 2, 3)
    for data, name in [(SVG, "a.png"), (gzip.compress(SVG), "b.jpg"), (b"plain text\n" * 9, "c.png"),
                       (bytes(range(256)), "d.bmp")]:
        with pytest.raises(InputError):
            imageio.load_image_bytes(data, name)
    assert asked and {fmt for fmt, _ in asked} <= set(imageio.PROBE_ORDER) | {"tga"}
    assert not any(auto for _, auto in asked)


def test_every_accepted_format_qt_offers_is_probed_under_some_name():
    offered = {bytes(f.data()).decode() for f in QImageReader.supportedImageFormats()}
    aliases = {"jpg": "jpeg", "jfif": "jpeg", "tif": "tiff", "cur": "ico", "pbm": "ppm", "pgm": "ppm", "tga": "tga"}
    for fmt in offered & imageio.ACCEPTED_FORMATS:
        assert aliases.get(fmt, fmt) in set(imageio.PROBE_ORDER) | {"tga"}, fmt


@pytest.mark.parametrize("data, expected", [
    (SVG, "svg"),
    (b'\xef\xbb\xbf<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "x">\n'
     b"<!-- <html> in a comment -->\n" + SVG, "svg"),
    (b'<svg:svg xmlns:svg="http://www.w3.org/2000/svg"/>', "svg"),
    (gzip.compress(SVG), "svgz"),
    (gzip.compress(b"just text, no drawing"), None),
    (b"<html><body><svg/></body></html>", None),  # its first element is not <svg>
    (b"\x89PNG\r\n\x1a\n" + bytes(20), None),
    (b"", None),
])
def test_vector_format_is_decided_by_the_first_element(data, expected):
    assert imageio.vector_format(data) == expected


STRESS = textwrap.dedent("""
    import os, threading, time
    from PySide6.QtCore import QObject, QPropertyAnimation, QTimer, Signal
    from PySide6.QtWidgets import QApplication
    app = QApplication([])
    from cnnplay.app import imageio
    imageio.load_plugins()

    class Anim(QPropertyAnimation):  # Python subclasses: their destructors ask for the GIL
        pass

    class Holder(QObject):
        ping = Signal()

    def churn():  # the GUI thread: objects with connections made and destroyed
        for _ in range(50):
            a, h = Anim(), Holder()
            h.ping.connect(a.start)
            a.finished.connect(h.deleteLater)
            a.deleteLater()
            h.deleteLater()

    timer = QTimer()
    timer.timeout.connect(churn)
    timer.start(0)
    inputs = [b"hello text " * 20, bytes(range(256)), b"<svg/>"]

    def decode():
        while True:
            for data in inputs:
                try:
                    imageio.load_image_bytes(data, "x.png")
                except Exception:
                    pass

    threading.Thread(target=decode, daemon=True).start()
    QTimer.singleShot(3000, lambda: os._exit(0))  # on the GUI thread: only runs if it is not stuck
    app.exec()
    os._exit(1)
""")


def test_decoding_on_a_worker_while_the_gui_thread_destroys_objects_does_not_deadlock():
    # before: canRead -> QSvgDocument::isLikelySvg -> QTextStream -> QObject::connectImpl
    # (a Qt mutex, GIL held) against ~QObject -> Sbk_GetPyOverride (that mutex held,
    # waiting for the GIL); this script hung in 3 of 3 runs before, 0 of 7 after
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    try:
        r = subprocess.run([sys.executable, "-c", STRESS], env=env, capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("decoding on a worker deadlocked with the GUI thread")
    assert r.returncode == 0, r.stderr.decode()[-2000:]
