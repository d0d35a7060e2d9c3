"""Turns session changes into compute requests and holds the newest results.

Views read `forward` / `field` and listen to the signals; whether a result is
current is derived by comparing it with the session, never stored twice.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from ..core.session import Session
from .compute import ComputeWorker, FieldRequest, FieldResult, ForwardRequest, ForwardResult


class ComputeController(QObject):
    forward_changed = Signal()  # a new forward result, or the current one went stale
    field_changed = Signal()  # a new receptive-field result, or the selection went away
    message = Signal(str)  # status-bar text
    failed = Signal(str)  # a compute error for the user

    def __init__(self, session: Session, worker: ComputeWorker, parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self.worker = worker
        self.forward: ForwardResult | None = None
        self.field: FieldResult | None = None
        worker.forward_done.connect(self._on_forward)
        worker.field_done.connect(self._on_field)
        worker.failed.connect(self._on_failed)
        worker.busy.connect(self._on_busy)
        session.network_changed.connect(self.request_forward)
        session.input_changed.connect(self.request_forward)
        session.selection_changed.connect(self.request_field)
        session.view_changed.connect(self._on_view_changed)
        self.request_forward()
        self.request_field()  # a selection restored with the session needs its field too

    # -- requests ------------------------------------------------------------------
    def request_forward(self) -> None:
        s = self.session
        self.worker.submit(ForwardRequest(s.network, s.input_array, s.input_token))
        self.forward_changed.emit()  # views may now show "recomputing"

    def request_field(self) -> None:
        s = self.session
        sel = s.selected_unit
        if sel is None:
            if self.field is not None:
                self.field = None
                self.field_changed.emit()
            return
        layer, unit = sel
        self.worker.submit(FieldRequest(s.network, s.input_array, s.input_token, layer, unit,
                                        effective=bool(s.view.get("show_effective"))))

    def _on_view_changed(self) -> None:
        # Only the effective field needs compute; other view settings redraw only.
        if self.field is not None and self.field.request.effective != bool(self.session.view.get("show_effective")):
            self.request_field()

    # -- derived state -------------------------------------------------------------
    def forward_is_current(self) -> bool:
        f, s = self.forward, self.session
        return f is not None and f.request.network is s.network and f.request.input_token == s.input_token

    def field_is_current(self) -> bool:
        f, s = self.field, self.session
        sel = s.selected_unit
        return (f is not None and sel is not None and f.request.network is s.network
                and f.request.input_token == s.input_token and (f.request.layer, f.request.unit) == sel)

    # -- results ---------------------------------------------------------------------
    def _on_forward(self, result: ForwardResult) -> None:
        self.forward = result
        n = len(result.outputs) - result.first_recomputed
        self.message.emit(f"computed {n} of {len(result.outputs)} layers in {result.seconds * 1000:.1f} ms")
        self.forward_changed.emit()

    def _on_field(self, result: FieldResult) -> None:
        self.field = result
        self.field_changed.emit()

    def _on_failed(self, request, message: str) -> None:
        self.failed.emit(message)

    def _on_busy(self, what: str) -> None:
        self.message.emit(what[:1].upper() + what[1:] + "..." if what else "Ready")
