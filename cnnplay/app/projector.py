"""The projector preset (View menu): larger text everywhere and larger map tiles,
for a room watching a projected screen. Turning it off restores both."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication

from .views import grid as g

FONT_FACTOR = 1.4
TILE_FACTOR = 2.0


class Projector:
    def __init__(self, session):
        self.session = session
        self.on = False
        self._saved = None  # (font, tile size) before it was turned on

    def set(self, on: bool) -> None:
        app = QApplication.instance()
        if on == self.on or app is None:
            return
        self.on = on
        if on:
            font = app.font()
            tile = int(self.session.view.get("tile_size", g.DEFAULT_TILE))
            self._saved = (font, tile)
            big = type(font)(font)
            if big.pointSizeF() > 0:
                big.setPointSizeF(font.pointSizeF() * FONT_FACTOR)
            else:
                big.setPixelSize(round(font.pixelSize() * FONT_FACTOR))
            app.setFont(big)
            self.session.set_view(tile_size=int(min(max(tile * TILE_FACTOR, 192), g.MAX_TILE)))
        else:
            font, tile = self._saved
            app.setFont(font)
            self.session.set_view(tile_size=tile)
