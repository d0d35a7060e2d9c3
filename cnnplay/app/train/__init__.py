"""The Train panel: data sets, training off the GUI thread, live curves, confusion matrix, gallery."""

from __future__ import annotations


def add_train_dock(window):
    """A "Train" dock, a tab beside the concept panels (or under the inspector); returns it."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QScrollArea

    from .panel import TrainPanel
    panel = TrainPanel(window.session, window.editor, window)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setWidget(panel)
    dock = window.add_dock(area, "Train", Qt.DockWidgetArea.RightDockWidgetArea, "train")
    concept = next(iter(getattr(window, "concept_docks", {}).values()), None)
    if concept is not None:
        window.tabifyDockWidget(concept, dock)
        concept.raise_()  # the first concept tab in front; Train's tab stays in view
    elif getattr(window, "inspector_dock", None) is not None:
        window.splitDockWidget(window.inspector_dock, dock, Qt.Orientation.Vertical)
    results = QScrollArea()
    results.setWidgetResizable(True)
    results.setWidget(panel.results)
    window.train_results_dock = window.add_dock(results, "Training results", Qt.DockWidgetArea.BottomDockWidgetArea,
                                                "train_results")
    window.train_panel = panel
    return dock
