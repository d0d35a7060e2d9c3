"""The neuron microscope in the window (issue 15): the Computation panel and
the What-excites-it panel (top patches, preferred input, why this class),
as tabs under the maps, beside Training results (the right-hand column's tabs
are the concept panels and Train; more tabs there would not leave their titles
room)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QScrollArea

from .computation import ComputationPanel
from .excites import ExcitesPanel

__all__ = ["ComputationPanel", "ExcitesPanel", "add_microscope_docks"]


def add_microscope_docks(window) -> dict:
    """Add the two panels as docks under the maps, tabified with Training results
    (or, without it, with the concept panels on the right)."""
    input_view = getattr(getattr(window, "central", None), "input_view", None)
    window.computation_panel = ComputationPanel(window.session, window.controller)
    window.excites_panel = ExcitesPanel(window.session, window.controller, input_view)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setWidget(window.excites_panel)
    docks = {}
    first = getattr(window, "train_results_dock", None)
    where = Qt.DockWidgetArea.BottomDockWidgetArea
    if first is None:
        first = next(iter(getattr(window, "concept_docks", {}).values()), None)
        where = Qt.DockWidgetArea.RightDockWidgetArea
    for title, widget, name in (("Computation", window.computation_panel, "computation"),
                                ("What excites it", area, "excites")):
        dock = window.add_dock(widget, title, where, name)
        if first is not None:
            window.tabifyDockWidget(first, dock)
        docks[title] = dock
    if first is not None:
        first.raise_()
    window.microscope_docks = docks
    return docks
