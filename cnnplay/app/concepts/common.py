"""Small shared pieces of the concept panels."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
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


def on_screen(widget: QWidget) -> bool:
    """Visible and not behind another tab. A tabified dock that is not in front still
    says isVisible() (Qt 6.11, on a fresh window layout), but nothing of it is exposed."""
    return widget.isVisible() and not widget.visibleRegion().isEmpty()


class WhenVisible(QObject):
    """Run `refresh` now if `widget` is on screen, else once it next comes on screen.

    Concept panels sit in tabified docks: most are behind another tab most of the
    time, and their work (charts, shifted forward passes on the worker) must not
    slow the live feature maps. Call the instance instead of `refresh`. A panel that
    comes to the front is shown or painted; either event lets it catch up.
    """

    def __init__(self, widget: QWidget, refresh):
        super().__init__(widget)
        self.widget, self.refresh, self.dirty = widget, refresh, False
        self._scheduled = False
        widget.installEventFilter(self)

    def __call__(self, *args) -> None:
        if on_screen(self.widget):
            self.dirty = False
            self.refresh()
        else:
            self.dirty = True

    def eventFilter(self, obj, event) -> bool:
        if self.dirty and event.type() in (QEvent.Type.Show, QEvent.Type.Paint):
            if event.type() == QEvent.Type.Show and on_screen(self.widget):
                self._catch_up()
            elif not self._scheduled:  # not inside a paint event: right after it
                self._scheduled = True
                QTimer.singleShot(0, self, self._catch_up)  # dropped if this object is gone
        return False

    def _catch_up(self) -> None:
        self._scheduled = False
        if self.dirty and on_screen(self.widget):
            self.dirty = False
            self.refresh()
