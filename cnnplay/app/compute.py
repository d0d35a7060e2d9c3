"""The one compute worker: every forward pass and receptive field runs here.

Requests are immutable snapshots (the Network object and input array are
never mutated once made). Per kind, only the newest pending request is kept;
a forward pass in progress stops at the next layer boundary when a newer one
arrives (what it computed stays in the cache), or when the user cancels it
(`cancel()`: it then reports the layers it did compute in `cancelled`). Results come back as Qt
signals, queued to the GUI thread. `synchronous=True` runs requests in the
caller's thread, for tests that need exact ordering.

One thread only: numba's default threading layer is not safe for concurrent
parallel calls. Forward passes and fields run under `launch.priority()`: a
training run on its own thread pauses between kernels while they compute.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from dataclasses import dataclass, field, replace

import numpy as np
from PySide6.QtCore import QObject, Signal

from ..core.cache import Cancelled, ForwardCache
from ..core.errors import NetworkError
from ..core.kernels import launch
from ..core.network import Network
from .lingering import keep_until_finished

log = logging.getLogger(__name__)


def _PRIORITY(kind: str) -> int:
    return {"forward": 0, "field": 1}.get(kind, 2)


@dataclass(frozen=True)
class ForwardRequest:
    network: Network
    x: np.ndarray
    input_token: object
    kind = "forward"


@dataclass(frozen=True)
class FieldRequest:
    """The receptive field of one unit, on the input and on every earlier map."""

    network: Network
    x: np.ndarray
    input_token: object
    layer: int
    unit: tuple
    effective: bool = False
    kind = "field"


@dataclass(frozen=True)
class TaskRequest:
    """Any other computation on a network snapshot (e.g. the concept views):
    `fn(network, x, outputs, should_stop)` runs on the worker with the forward
    outputs for x (from the cache when current) and its return value comes
    back in a TaskResult. Newest wins per `name`. Tasks come after forward
    passes and fields: a running task should pass `should_stop` to the
    forward passes it runs (Network.forward); it then yields to an edit or a
    click and runs again afterwards."""

    network: Network
    x: np.ndarray
    input_token: object
    name: str
    fn: object  # Callable[[Network, np.ndarray, list], object]

    @property
    def kind(self) -> str:
        return "task:" + self.name


@dataclass(frozen=True)
class TaskResult:
    request: TaskRequest
    value: object
    seconds: float


@dataclass(frozen=True)
class ForwardResult:
    request: ForwardRequest
    outputs: list
    first_recomputed: int  # layers before it came from the cache
    seconds: float


@dataclass(frozen=True)
class FieldResult:
    request: FieldRequest
    on_input: object  # the core's receptive-field object for the input
    on_maps: dict = field(default_factory=dict)  # layer k -> field on layer k's output (k < layer)
    effective: np.ndarray | None = None  # |d unit / d input| summed over channels (None: not yet, or not asked)
    seconds: float = 0.0


class ComputeWorker(QObject):
    forward_done = Signal(object)  # ForwardResult
    field_done = Signal(object)  # FieldResult
    task_done = Signal(object)  # TaskResult
    failed = Signal(object, str)  # request, message for the user
    # request, layer index that failed (or None), message, and for a forward pass a
    # ForwardResult with the layers computed before the failure (else None)
    failed_at = Signal(object, object, str, object)
    busy = Signal(str)  # what is being computed now; "" when idle
    forward_started = Signal(object)  # ForwardRequest now running (some layers to compute)
    forward_ended = Signal(object)  # that ForwardRequest stopped running (done, failed or cancelled)
    cancelled = Signal(object)  # ForwardResult with only the layers computed before cancel()
    task_cancelled = Signal(object)  # TaskRequest that cancel() dropped or stopped

    def __init__(self, synchronous: bool = False, parent: QObject | None = None):
        super().__init__(parent)
        self.synchronous = synchronous
        self._cache = ForwardCache()
        self._pending: dict[str, object] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._running = False
        self._current = None  # the request running now
        self._cancel = None  # the request cancel() stopped (checked between layers)
        self._started = (None, 0, 0.0)  # (forward request, first layer computed, start time)
        self._thread = None
        if not synchronous:
            self._thread = threading.Thread(target=self._loop, name="cnnplay-compute", daemon=True)
            self._thread.start()

    # -- called from the GUI thread ---------------------------------------------
    def submit(self, request) -> None:
        """Queue a request; it replaces any pending request of the same kind."""
        if self.synchronous:
            self._run(request)
            return
        with self._cond:
            self._pending[request.kind] = request
            self._cond.notify()

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._pending.clear()
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            keep_until_finished(self, self._thread)  # still in a long kernel: outlive the window

    def cancel(self) -> bool:
        """Stop the running forward pass (or task) at the next layer boundary and drop
        pending forward passes and tasks. What was computed stays in the cache and
        comes back in `cancelled`; tasks dropped or stopped come back in
        `task_cancelled`. True if something was running or pending."""
        with self._cond:
            dropped = [self._pending.pop(k) for k in list(self._pending) if k == "forward" or k.startswith("task:")]
            running = self._current is not None and self._current.kind != "field"
            if running:
                self._cancel = self._current
        for request in dropped:
            if request.kind.startswith("task:"):
                self.task_cancelled.emit(request)  # its panel says so instead of "computing..."
        return running or bool(dropped)

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._running

    # -- the worker thread ------------------------------------------------------------
    def _loop(self) -> None:
        launch.exempt()  # the GUI's holds wait for this thread's results, never the reverse
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                # Forward passes first (a field may need their outputs), then fields, then tasks.
                kind = min(self._pending, key=_PRIORITY)
                request = self._pending.pop(kind)
                self._running = True
                self._current = request
            try:
                self._run(request)
            finally:
                with self._cond:
                    self._running = False
                    self._current = None
                    self._cancel = None
                    idle = not self._pending
                if idle:
                    self.busy.emit("")

    def _cancelled(self) -> bool:
        return self._cancel is not None and self._cancel is self._current

    def _newer_forward_waiting(self) -> bool:
        return self._cancelled() or (not self.synchronous and ("forward" in self._pending or self._stopping))

    def interactive_idle(self) -> bool:
        """No forward pass or field is running or waiting (background tasks may be)."""
        with self._cond:
            busy = self._running and self._current is not None and not self._current.kind.startswith("task:")
            return not busy and "forward" not in self._pending and "field" not in self._pending

    def _interactive_waiting(self) -> bool:
        """A forward pass or a field is waiting: background tasks step aside."""
        return self._cancelled() or (not self.synchronous and (
            "forward" in self._pending or "field" in self._pending or self._stopping))

    def _run(self, request) -> None:
        try:
            if request.kind.startswith("task:"):
                self._task(request)  # background work: takes turns with training
            else:
                # what the user waits for (new maps, a clicked unit's field): a running
                # training pauses between its kernels until this is done
                with launch.priority():
                    if request.kind == "forward":
                        self._forward(request)
                    else:
                        self._field(request)
        except Cancelled:
            if self._cancelled():
                if request.kind == "forward":
                    self.cancelled.emit(self._partial(request))
                else:
                    self.task_cancelled.emit(request)
            elif request.kind.startswith("task:"):
                with self._cond:
                    # A click interrupted it: run it again afterwards (unless a newer one
                    # replaced it). After an edit its network is stale; the view asks anew.
                    if not self._stopping and "forward" not in self._pending:
                        self._pending.setdefault(request.kind, request)
        except NetworkError as e:  # an input problem is no layer's fault
            self._fail(request, str(e), e.layer, locate=e.layer is None and e.field != "input")
        except MemoryError:
            self._fail(request, "out of memory while computing; try a smaller input or network")
        except Exception as e:  # a bug: log it, tell the user, keep running
            log.error("compute failed:\n%s", traceback.format_exc())
            self._fail(request, f"internal error while computing ({type(e).__name__}: {e}); "
                                "details are in the log file")

    def _fail(self, request, message: str, layer: int | None = None, locate: bool = True) -> None:
        partial = None
        if request.kind == "forward":
            partial = self._partial(request)
            if not isinstance(layer, int):
                layer = None
            if layer is None and locate:
                # The forward pass stopped at the first layer the cache does not hold.
                n = len(partial.outputs)
                layer = n if n < len(request.network) else None
        self.failed_at.emit(request, layer, message, partial)
        self.failed.emit(request, message)

    def _partial(self, request: "ForwardRequest") -> "ForwardResult":
        """The layers of `request` computed before it stopped (they stay in the cache)."""
        outputs = self._cache.computed(request.network, request.input_token)
        n = len(outputs)
        req, start, t0 = self._started
        if req is not request:
            start, t0 = n, time.perf_counter()
        return ForwardResult(request, outputs, min(start, n), time.perf_counter() - t0)

    def _forward(self, request: ForwardRequest) -> None:
        net = request.network
        start_at = self._cache.reusable(net, request.input_token)
        if start_at >= len(net):  # all cached: nothing to wait for
            outputs, first = self._cache.run(net, request.x, request.input_token)
            self.forward_done.emit(ForwardResult(request, outputs, first, 0.0))
            return
        self.busy.emit(f"computing layers {start_at}-{len(net) - 1}")
        self.forward_started.emit(request)
        t0 = time.perf_counter()
        self._started = (request, start_at, t0)
        try:
            outputs, first = self._cache.run(net, request.x, request.input_token, self._newer_forward_waiting)
            self.forward_done.emit(ForwardResult(request, outputs, first, time.perf_counter() - t0))
        finally:
            self.forward_ended.emit(request)

    def _field(self, request: FieldRequest) -> None:
        net = request.network
        self.busy.emit(f"receptive field of layer {request.layer} unit {request.unit}")
        t0 = time.perf_counter()
        on_input, on_maps = net.receptive_fields(request.layer, request.unit)  # one walk, every map
        first = FieldResult(request, on_input, on_maps, None, time.perf_counter() - t0)
        self.field_done.emit(first)  # box and masks now; with the effective field, that comes after
        if request.effective:
            outputs, _ = self._cache.run(net, request.x, request.input_token)
            effective = net.effective_receptive_field(request.x, request.layer, request.unit, outputs=outputs)
            self.field_done.emit(replace(first, effective=effective, seconds=time.perf_counter() - t0))

    def _task(self, request: TaskRequest) -> None:
        self.busy.emit(request.name)
        t0 = time.perf_counter()
        outputs, _ = self._cache.run(request.network, request.x, request.input_token, self._interactive_waiting)
        value = request.fn(request.network, request.x, outputs, self._interactive_waiting)
        self.task_done.emit(TaskResult(request, value, time.perf_counter() - t0))
