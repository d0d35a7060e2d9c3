"""Small shared pieces of the concept panels."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

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
