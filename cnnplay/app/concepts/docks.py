"""Building the concept panels and adding them to the main window as tabified docks."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QScrollArea, QWidget

from .blocks_panel import BlocksPanel
from .invariance_view import InvarianceView
from .presets_panel import KernelPresetPanel, WeightSharingBox
from .rf_growth_view import GrowthView


def _scrolled(w: QWidget) -> QScrollArea:
    """A panel that scrolls up and down, never sideways: its text wraps to the dock's
    width (combo boxes give up their long texts' width to make that possible)."""
    for box in w.findChildren(QComboBox):
        box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        box.setMinimumContentsLength(6)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    area.setWidget(w)
    return area


def concept_panels(session, controller, editor) -> dict[str, QWidget]:
    """Title -> panel; the caller wraps them in docks."""
    return {
        "Kernels": KernelPresetPanel(session, editor),
        "Sharing": WeightSharingBox(session),
        "RF growth": GrowthView(session),
        "Shift": InvarianceView(session, controller),
        "Blocks/BN": BlocksPanel(session, editor, controller),
    }


def add_concept_docks(window) -> dict:
    """Add the concept panels to the main window: tabified docks under the
    layer inspector on the right. Returns title -> QDockWidget."""
    from PySide6.QtCore import Qt
    panels = concept_panels(window.session, window.controller, window.editor)
    docks = {}
    first = None
    for title, panel in panels.items():
        wrapped = _scrolled(panel)
        dock = window.add_dock(wrapped, title, Qt.DockWidgetArea.RightDockWidgetArea,
                               "concept_" + title.lower().replace(" ", "_").replace("/", "_"))
        if first is None:
            first = dock
            inspector = getattr(window, "inspector_dock", None)
            if inspector is not None:
                window.splitDockWidget(inspector, dock, Qt.Orientation.Vertical)
        else:
            window.tabifyDockWidget(first, dock)
        docks[title] = dock
    if first is not None:
        first.raise_()
    window.concept_panels = panels
    from .highlight import attach_to_window
    window.field_highlight = attach_to_window(window)
    return docks
