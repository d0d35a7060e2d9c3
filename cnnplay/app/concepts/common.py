"""Small shared pieces of the concept panels."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QLabel, QWidget

NOTE_STYLE = "color: #9aa0aa; font-size: 11px;"


def note(text: str) -> QLabel:
    """A short plain-language explanation shown beside a concept."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet(NOTE_STYLE)
    label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    return label


def selected_layer(session, kinds: tuple[str, ...]) -> int | None:
    """The selected layer if it is valid (built) and its type name starts with one of `kinds`."""
    i = session.selected_layer
    net = session.network
    if i is None or i >= len(net):
        return None
    return i if net.layer_types[i].name.startswith(kinds) else None


def conv_layers(net) -> list[int]:
    return [i for i, t in enumerate(net.layer_types) if t.name.startswith("conv")]


class WhenVisible(QObject):
    """Run `refresh` now if `widget` is visible, else once it is next shown.

    Concept panels sit in tabified docks: most are hidden most of the time,
    and their work (charts, shifted forward passes on the worker) must not
    slow the live feature maps. Call the instance instead of `refresh`.
    """

    def __init__(self, widget: QWidget, refresh):
        super().__init__(widget)
        self.widget, self.refresh, self.dirty = widget, refresh, False
        widget.installEventFilter(self)

    def __call__(self, *args) -> None:
        if self.widget.isVisible():
            self.dirty = False
            self.refresh()
        else:
            self.dirty = True

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.Show and self.dirty:
            self.dirty = False
            self.refresh()
        return False
