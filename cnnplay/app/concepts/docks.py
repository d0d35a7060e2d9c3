"""Building the concept panels and adding them to the main window as tabified docks."""

from __future__ import annotations

from PySide6.QtWidgets import QScrollArea, QWidget

from .blocks_panel import BlocksPanel
from .invariance_view import InvarianceView
from .presets_panel import KernelPresetPanel, WeightSharingBox
from .rf_growth_view import GrowthView


def _scrolled(w: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setWidget(w)
    return area


def concept_panels(session, controller, editor) -> dict[str, QWidget]:
    """Title -> panel; the caller wraps them in docks."""
    return {
        "Kernels": KernelPresetPanel(session, editor),
        "Weight sharing": WeightSharingBox(session),
        "Field growth": GrowthView(session),
        "Shift invariance": InvarianceView(session, controller),
        "Blocks & batch norm": BlocksPanel(session, editor, controller),
    }
