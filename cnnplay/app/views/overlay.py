"""The parent item of an overlay drawn by small child items (tint patches, outlines):
it draws nothing itself, takes no mouse clicks and stays out of the view's auto range."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QGraphicsItem


class Overlay(QGraphicsItem):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemHasNoContents)  # its children draw
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def boundingRect(self) -> QRectF:
        return QRectF()

    def paint(self, painter, option, widget=None) -> None:
        pass

    def dataBounds(self, axis, frac=1.0, orthoRange=None):
        return None  # not part of the view's auto range
