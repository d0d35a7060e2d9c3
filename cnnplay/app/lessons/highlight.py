"""The lesson's "try this" control: found by a dotted path from the main window and
outlined by a frame drawn over it (the control keeps its own style sheet)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QDockWidget, QScrollArea, QWidget

COLOR = QColor("#f39c12")


def resolve_target(root, path: str) -> QWidget | None:
    """'inspector.editors.kernel_size' -> root.inspector.editors['kernel_size'];
    a part that is no attribute is looked up as a mapping key, then as a child's objectName."""
    obj = root
    for part in path.split("."):
        nxt = getattr(obj, part, None) if not part[0].isdigit() else None
        if nxt is None and isinstance(obj, dict):
            nxt = obj.get(part)
        if nxt is None and isinstance(obj, QObject):
            nxt = obj.findChild(QWidget, part)
        if nxt is None:
            return None
        obj = nxt
    if isinstance(obj, QDockWidget):
        obj = obj.widget()
    return obj if isinstance(obj, QWidget) else None


class _Frame(QWidget):
    """A transparent child that paints an orange outline over its parent."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.setAttribute(Qt.WidgetAttribute.WA_NoSystemBackground)
        self.setObjectName("lessonHighlight")
        self.setGeometry(parent.rect())
        parent.installEventFilter(self)
        self.raise_()
        self.show()

    def eventFilter(self, obj, event) -> bool:
        if event.type() == QEvent.Type.Resize:
            self.setGeometry(obj.rect())
            self.raise_()
        return False

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(COLOR, 3))
        p.drawRoundedRect(QRectF(self.rect()).adjusted(1.5, 1.5, -1.5, -1.5), 4, 4)


class Highlight:
    def __init__(self):
        self.target: QWidget | None = None
        self._frame: _Frame | None = None

    def show(self, target: QWidget) -> None:
        self.clear()
        self.target = target
        self._frame = _Frame(target)
        _bring_into_view(target)
        QTimer.singleShot(0, lambda: _bring_into_view(target))  # after a dock's layout settles

    def clear(self) -> None:
        if self._frame is not None:
            try:
                self._frame.parentWidget().removeEventFilter(self._frame)
                self._frame.deleteLater()
            except RuntimeError:  # the control was rebuilt (e.g. the inspector's form)
                pass
        self._frame = None
        self.target = None


def _bring_into_view(w: QWidget) -> None:
    try:
        parent = w.parentWidget()
        while parent is not None:
            if isinstance(parent, QDockWidget):
                parent.show()
                parent.raise_()
            if isinstance(parent, QScrollArea):
                parent.ensureWidgetVisible(w)
            parent = parent.parentWidget()
    except RuntimeError:
        pass
