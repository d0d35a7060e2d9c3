"""Test helper: what events of one kind reach a widget."""

from PySide6.QtCore import QObject


class EventRecorder(QObject):
    """Installed on `widget`: appends what(event) to `seen` for every event of type `kind`
    (the event goes on to the widget as usual). remove() uninstalls it."""

    def __init__(self, widget, kind, what):
        super().__init__()
        self.widget, self.kind, self.what, self.seen = widget, kind, what, []
        widget.installEventFilter(self)

    def eventFilter(self, obj, ev) -> bool:
        if ev.type() == self.kind:
            self.seen.append(self.what(ev))
        return False

    def remove(self) -> None:
        self.widget.removeEventFilter(self)
