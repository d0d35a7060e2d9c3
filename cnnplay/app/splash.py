"""The start-up card, shown at once so that the screen is never blank.

Not a QSplashScreen: in Qt 6 its Show event waits (up to 1 s) for its window to be
exposed, which cannot happen before the show has returned to the event loop, so
every start waited the full second (offscreen, on X11 and on Wayland alike; see
FreeCAD pull request #29917). This is a frameless splash window that paints the
same picture, and `show_splash` waits only until it has painted (bounded).
"""

from __future__ import annotations

import time

from PySide6.QtCore import QCoreApplication, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPixmap
from PySide6.QtWidgets import QWidget

PAINT_WAIT_SECONDS = 0.25  # at most this long for the card's first paint


class Splash(QWidget):
    def __init__(self, pixmap: QPixmap):
        super().__init__(None, Qt.WindowType.SplashScreen | Qt.WindowType.FramelessWindowHint)
        self.pixmap = pixmap
        self.painted = False
        self.setFixedSize(pixmap.size() / max(pixmap.devicePixelRatio(), 1.0))
        screen = self.screen()
        if screen is not None:
            self.move(screen.geometry().center() - self.rect().center())

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.drawPixmap(0, 0, self.pixmap)
        p.end()
        self.painted = True

    def finish(self, window) -> None:
        """The main window is shown: the card goes."""
        self.close()


def show_splash(splash: Splash) -> None:
    """Show the card and let it paint before the window is built (no event loop yet)."""
    splash.show()
    end = time.monotonic() + PAINT_WAIT_SECONDS
    while not splash.painted and time.monotonic() < end:
        QCoreApplication.processEvents()
        if not splash.painted:
            time.sleep(0.005)


def make_splash(text: str) -> Splash:
    """A small start-up card: the layer icons, the name, one line and `text`."""
    from .palette import _icon_pixmap
    pix = QPixmap(460, 200)
    pix.fill(QColor("#f7f8fa"))
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(QColor("#c9ced6"))
    p.drawRect(0, 0, 459, 199)
    for k, name in enumerate(("conv2d", "batchnorm", "relu", "maxpool2d", "linear")):
        p.drawPixmap(28 + k * 40, 28, _icon_pixmap(name, 32))
    p.setPen(QColor("#1f2937"))
    f = QFont()
    f.setPointSize(20)
    f.setBold(True)
    p.setFont(f)
    p.drawText(QRectF(28, 76, 400, 40), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, "cnnplay")
    f.setPointSize(10)
    f.setBold(False)
    p.setFont(f)
    p.setPen(QColor("#4b5563"))
    p.drawText(QRectF(28, 116, 410, 24), Qt.AlignmentFlag.AlignLeft, "A playground for convolutional networks")
    p.setPen(QColor("#2e6da4"))
    p.drawText(QRectF(28, 150, 410, 24), Qt.AlignmentFlag.AlignLeft, text)
    p.end()
    return Splash(pix)
