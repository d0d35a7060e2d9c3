"""Turns session changes into compute requests and holds the newest results.

Views read `forward` / `field` and listen to the signals; whether a result is
current is derived by comparing it with the session, never stored twice.

Cancel: a forward pass that has run for CANCEL_DELAY_MS becomes `cancellable`
(the window enables its Cancel button). `cancel()` stops it at the next layer
boundary; `forward` then holds the layers computed so far, `forward_cancelled()`
is True until the next edit, and `failed` says "cancelled" (the views mark the
layers not computed with it). `resume()` computes the rest.

A compute error is kept with the layer it happened in (`compute_error()`), so
the layer stack can show it on that layer's row.

From a request until its result is painted, the controller holds other threads'
kernel launches back (`launch.hold`, at most HOLD_SECONDS): a training run then
leaves the cores to the worker and to the painting, and the window answers as
fast as when nothing trains. `when_shown(fn)` runs fn once the results for the
session as it is now are painted: work the user does not wait for goes after the
maps.
"""

from __future__ import annotations

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt, QTimer, Signal

from ..core.kernels import launch
from ..core.session import Session
from .compute import ComputeWorker, FieldRequest, FieldResult, ForwardRequest, ForwardResult

CANCEL_DELAY_MS = 300  # a forward pass running this long can be cancelled
CANCELLED = "cancelled"  # the message the views show on layers a cancel left uncomputed
HOLD_SECONDS = 0.5  # a request holds training back at most this long (a slow pass: training goes on)
_SETTLE = QEvent.Type(QEvent.registerEventType())  # the second step of "painted" (see _settle_soon)
_LOW = int(Qt.EventPriority.LowEventPriority.value)
SHOWN_AT_LATEST_MS = 1000  # when_shown callbacks run after this long whatever happens
BUSY_DELAY_MS = 150  # the status says what is computing once it has run this long (a click's field never)


class ComputeController(QObject):
    forward_changed = Signal()  # a new forward result, or the current one went stale
    field_changed = Signal()  # a new receptive-field result, or the selection went away
    message = Signal(str)  # status-bar text
    failed = Signal(str)  # a compute error for the user (or CANCELLED)
    cancellable_changed = Signal(bool)  # a forward pass has run > CANCEL_DELAY_MS (True) / ended (False)
    cancelled = Signal()  # cancel() stopped the forward pass; `forward` holds what was computed
    error_changed = Signal()  # compute_error() may have changed

    def __init__(self, session: Session, worker: ComputeWorker, parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self.worker = worker
        self.forward: ForwardResult | None = None
        self.field: FieldResult | None = None
        self.running: ForwardRequest | None = None  # the forward pass the worker runs now
        self.cancellable = False
        self._cancelled_state = None  # (network, input_token) the user cancelled
        self._error = None  # (request, layer or None, message) of the last compute failure
        self._slow_timer = QTimer(self)
        self._slow_timer.setSingleShot(True)
        self._slow_timer.setInterval(CANCEL_DELAY_MS)
        self._slow_timer.timeout.connect(lambda: self._set_cancellable(self.running is not None))
        self._hold: launch.Hold | None = None
        self._when_shown: list = []  # callbacks waiting until the results are painted (when_shown)
        self._shown_timer = QTimer(self)  # ... but no longer than SHOWN_AT_LATEST_MS
        self._shown_timer.setSingleShot(True)
        self._shown_timer.setInterval(SHOWN_AT_LATEST_MS)
        self._shown_timer.timeout.connect(self._run_when_shown)
        self._settling = False  # a settle (two event-loop steps) is under way
        self._settle_again = False  # a result came in during it: its paint comes later
        self._field_failed = None  # the last field request that failed
        # The busy status ("Computing layers 3-11...") waits BUSY_DELAY_MS: what ends sooner
        # (a click's field, most edits) never lays the status bar out twice for nothing.
        self._busy_text = ""
        self._busy_shown = False  # a busy status is on screen: "Ready" replaces it when idle
        self._busy_timer = QTimer(self)
        self._busy_timer.setSingleShot(True)
        self._busy_timer.setInterval(BUSY_DELAY_MS)
        self._busy_timer.timeout.connect(self._show_busy)
        worker.forward_done.connect(self._on_forward)
        worker.field_done.connect(self._on_field)
        worker.failed.connect(self._on_failed)
        worker.failed_at.connect(self._on_failed_at)
        worker.busy.connect(self._on_busy)
        worker.forward_started.connect(self._on_started)
        worker.forward_ended.connect(self._on_ended)
        worker.cancelled.connect(self._on_cancelled)
        for done in (worker.forward_done, worker.field_done, worker.failed, worker.failed_at, worker.cancelled):
            done.connect(self._release_after_paint)  # after the handlers above: the views have the result
        session.network_changed.connect(self.request_forward)
        session.input_changed.connect(self.request_forward)
        session.selection_changed.connect(self.request_field)
        session.view_changed.connect(self._on_view_changed)
        self.request_forward()
        self.request_field()  # a selection restored with the session needs its field too

    # -- requests ------------------------------------------------------------------
    def request_forward(self) -> None:
        s = self.session
        self._cancelled_state = None
        self._hold_launches()
        self.worker.submit(ForwardRequest(s.network, s.input_array, s.input_token))
        self.forward_changed.emit()  # views may now show "recomputing"

    def cancel(self) -> bool:
        """Stop the running forward pass at the next layer boundary (the GUI never waits)."""
        if self.running is None:
            return False
        self._cancelled_state = (self.session.network, self.session.input_token)
        self.worker.cancel()
        self._set_cancellable(False)
        self.message.emit("Cancelling...")
        return True

    def resume(self) -> None:
        """Compute what a cancel left out (the layers already computed come from the cache)."""
        self.request_forward()

    def request_field(self) -> None:
        s = self.session
        sel = s.selected_unit
        if sel is None:
            if self.field is not None:
                self.field = None
                self.field_changed.emit()
            return
        layer, unit = sel
        self._hold_launches()
        self.worker.submit(FieldRequest(s.network, s.input_array, s.input_token, layer, unit,
                                        effective=bool(s.view.get("show_effective"))))

    def _on_view_changed(self) -> None:
        # Only the effective field needs compute; other view settings redraw only.
        if self.field is not None and self.field.request.effective != bool(self.session.view.get("show_effective")):
            self.request_field()

    # -- derived state -------------------------------------------------------------
    def forward_is_current(self) -> bool:
        """The newest result covers every layer of the session's network and input."""
        f, s = self.forward, self.session
        return (f is not None and f.request.network is s.network and f.request.input_token == s.input_token
                and len(f.outputs) == len(s.network))

    def forward_cancelled(self) -> bool:
        """The user cancelled computing the session as it is now (until the next edit)."""
        c, s = self._cancelled_state, self.session
        return c is not None and c[0] is s.network and c[1] == s.input_token and not self.forward_is_current()

    def layers_computed(self) -> int:
        """How many leading layers of the session's network the newest result holds."""
        f, s = self.forward, self.session
        if f is None or f.request.network is not s.network or f.request.input_token != s.input_token:
            return 0
        return len(f.outputs)

    def compute_error(self) -> tuple[int | None, str] | None:
        """(layer or None, message) of a compute failure of the session's current network and input."""
        e, s = self._error, self.session
        if e is None or e[0].network is not s.network or e[0].input_token != s.input_token:
            return None
        return e[1], e[2]

    def field_is_current(self) -> bool:
        f, s = self.field, self.session
        sel = s.selected_unit
        return (f is not None and sel is not None and f.request.network is s.network
                and f.request.input_token == s.input_token and (f.request.layer, f.request.unit) == sel)

    # -- results ---------------------------------------------------------------------
    def _on_forward(self, result: ForwardResult) -> None:
        # The pass is over now, not when its forward_ended arrives a moment later: the
        # Cancel button must not still be enabled while the finished maps are shown.
        self._on_ended(result.request)
        self.forward = result
        if self._error is not None and self._error[0].network is result.request.network \
                and self._error[0].input_token == result.request.input_token:
            self._error = None
            self.error_changed.emit()
        n = len(result.outputs) - result.first_recomputed
        self.message.emit(f"computed {n} of {len(result.outputs)} layers in {result.seconds * 1000:.1f} ms")
        self.forward_changed.emit()

    def _on_field(self, result: FieldResult) -> None:
        self.field = result
        self.field_changed.emit()

    def _on_failed(self, request, message: str) -> None:
        if getattr(request, "kind", None) == "field":
            self._field_failed = request
            if self.field is not None and self.field.request is request:
                self.field_changed.emit()  # its effective field failed: the views stop waiting for it
        self.failed.emit(message)

    def _on_failed_at(self, request, layer, message: str, partial) -> None:
        if getattr(request, "kind", None) != "forward":
            return
        self._error = (request, layer, message)
        s = self.session
        if partial is not None and request.network is s.network and request.input_token == s.input_token:
            self.forward = partial  # the layers before the failure are shown; `failed` marks the rest
            self.forward_changed.emit()
        self.error_changed.emit()

    def _on_started(self, request: ForwardRequest) -> None:
        self.running = request
        self._slow_timer.start()

    def _on_ended(self, request: ForwardRequest) -> None:
        if self.running is request:
            self.running = None
            self._slow_timer.stop()
            self._set_cancellable(False)

    def _on_cancelled(self, partial: ForwardResult) -> None:
        s = self.session
        req = partial.request
        if not (req.network is s.network and req.input_token == s.input_token and self.forward_cancelled()):
            return  # edited since: a new pass is on its way
        self.forward = partial  # the views show what was computed ...
        self.forward_changed.emit()
        self.message.emit(self.cancelled_text())
        self.cancelled.emit()
        self.failed.emit(CANCELLED)  # ... and mark the rest "not computed: cancelled"

    def cancelled_text(self) -> str:
        n, total = self.layers_computed(), len(self.session.network)
        return f"Cancelled: {n} of {total} layers computed"

    def _set_cancellable(self, on: bool) -> None:
        if on != self.cancellable:
            self.cancellable = on
            self.cancellable_changed.emit(on)

    # -- holding training back while the user waits --------------------------------------
    def _hold_launches(self) -> None:
        if self.worker.synchronous:
            return  # the requests run on this thread: nothing to hold back
        if self._hold is None:
            self._hold = launch.hold(HOLD_SECONDS)
        else:
            self._hold.extend(HOLD_SECONDS)

    def holding(self) -> bool:
        """Whether a request of this window holds other threads' kernels back now."""
        return self._hold is not None and self._hold.held

    def when_shown(self, fn) -> None:
        """Run fn() once the window shows the session as it is now: the forward pass and
        the selected unit's field for it are in (or failed, or were cancelled) and painted.
        For what the user does not wait for: a panel's note that lays the panel out again
        (moving, and so repainting, the curves under it) then does not delay the maps.
        Called during an edit, it waits for that edit's results (the check runs after the
        edit's handlers have made their requests)."""
        self._when_shown.append(fn)
        if not self._shown_timer.isActive():
            self._shown_timer.start()  # at the latest: whatever happens, the callbacks run
        QTimer.singleShot(0, self, self._check_shown)  # with self as context: dropped if it is deleted first

    def _check_shown(self) -> None:
        if self._when_shown and self._answered():
            self._settle_soon()  # answered already: run them once that is painted
        # else the answer's arrival settles (_release_after_paint)

    def _answered(self) -> bool:
        """The views hold the results for the session as it is now (or their failure)."""
        s = self.session
        if not (self.forward_is_current() or self.forward_cancelled() or self.compute_error() is not None):
            return False
        sel = s.selected_unit
        r = self._field_failed
        return sel is None or self.field_is_current() or (
            r is not None and r.network is s.network and r.input_token == s.input_token and (r.layer, r.unit) == sel)

    def _release_after_paint(self, *_) -> None:
        """A result arrived: release the hold and run the when_shown callbacks once what it
        changed is painted, unless more is coming."""
        if self._hold is not None or self._when_shown:
            self._settle_soon()

    def _settle_soon(self) -> None:
        """Two steps after the views took the result: a queued call (0 ms timer) runs after
        the updates the result queued (pyqtgraph's scenes report their changes with a queued
        call, which asks for the paint); it posts a low-priority event, which comes after
        the window's paint request (Qt posts those at low priority too) and so after the
        paint. A result that comes in meanwhile starts the two steps again."""
        if self._settling:
            self._settle_again = True
            return
        self._settling = True
        QTimer.singleShot(0, self, self._post_settle)  # (the window may close meanwhile)

    def _post_settle(self) -> None:
        QCoreApplication.postEvent(self, QEvent(_SETTLE), _LOW)

    def event(self, ev) -> bool:
        if ev.type() == _SETTLE:
            self._settling = False
            if self._settle_again:
                self._settle_again = False
                self._settle_soon()
            else:
                self._release()
            return True
        return super().event(ev)

    def _release(self) -> None:
        if self._hold is not None and self.worker.interactive_idle():
            self._hold.release()
            self._hold = None
        if self._when_shown and self._answered():
            self._run_when_shown()

    def _run_when_shown(self) -> None:
        self._shown_timer.stop()
        callbacks, self._when_shown = self._when_shown, []
        for fn in callbacks:
            fn()

    def _on_busy(self, what: str) -> None:
        if what:
            self._busy_text = what[:1].upper() + what[1:] + "..."
            if self._busy_shown:
                self.message.emit(self._busy_text)  # busy on screen already: say what now
            elif not self._busy_timer.isActive():
                self._busy_timer.start()
            return
        self._release_after_paint()
        self._busy_timer.stop()
        shown, self._busy_shown = self._busy_shown, False
        if self.forward_cancelled():
            self.message.emit(self.cancelled_text())
        elif shown:
            self.message.emit("Ready")

    def _show_busy(self) -> None:
        self._busy_shown = True
        self.message.emit(self._busy_text)

    def field_failed(self) -> bool:
        """Computing the field on screen failed part way (its effective field): nothing more comes."""
        f, r = self.field, self._field_failed
        return f is not None and r is f.request
