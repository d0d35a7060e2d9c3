"""Microscope work on the compute worker: one helper that submits a named task,
keeps only the newest, follows its progress and lets the user cancel it.

The worker runs `fn(network, x, outputs, should_stop)` (compute.TaskRequest).
Progress comes back through a Qt signal (queued to the GUI thread). Cancel is
our own flag: the task returns CANCELLED instead of raising, so the worker
does not queue it again (it re-runs tasks that only yielded to a click).
"""

from __future__ import annotations

import threading
from functools import partial

from PySide6.QtCore import QObject, Signal

from ...core.errors import Cancelled
from ..compute import TaskRequest

CANCELLED = object()


class TaskRunner(QObject):
    done = Signal(object, object)  # request, value (CANCELLED when the user cancelled)
    failed = Signal(object, str)  # request, message
    progress = Signal(object, int, int)  # request, done, total

    def __init__(self, worker, name: str, parent=None):
        super().__init__(parent)
        self.worker, self.name = worker, name
        self.pending: TaskRequest | None = None
        self._stop = threading.Event()
        worker.task_done.connect(self._on_done)
        worker.failed.connect(self._on_failed)
        worker.task_cancelled.connect(self._on_cancelled)

    def submit(self, network, x, input_token, work, key=None) -> TaskRequest:
        """work(network, x, outputs, should_stop, progress) runs on the worker;
        `key` (what the request answers) is kept as request.key."""
        stop = self._stop = threading.Event()  # a fresh flag: cancelling this one leaves the next alone
        holder = {}

        def fn(net, xx, outputs, should_stop):
            def stopping():
                return stop.is_set() or should_stop()

            def progress(done, total):
                self.progress.emit(holder.get("request"), int(done), int(total))
            try:
                return work(net, xx, outputs, stopping, progress)
            except Cancelled:
                if stop.is_set():
                    return CANCELLED
                raise
        request = TaskRequest(network, x, input_token, self.name, fn)
        object.__setattr__(request, "key", key)  # a frozen dataclass: set once, before anyone sees it
        holder["request"] = request
        self.pending = request
        self.worker.submit(request)
        return request

    def cancel(self) -> None:
        self._stop.set()

    def busy(self) -> bool:
        return self.pending is not None

    def _on_done(self, result) -> None:
        if result.request is self.pending:
            self.pending = None
            self.done.emit(result.request, result.value)

    def _on_failed(self, request, message: str) -> None:
        if request is self.pending:
            self.pending = None
            self.failed.emit(request, message)

    def _on_cancelled(self, request) -> None:
        if request is self.pending:  # the window's Cancel dropped it
            self.pending = None
            self.done.emit(request, CANCELLED)


def listen(widget, signal, slot) -> None:
    """Connect a session signal (core/events.py) to `slot` for as long as `widget` lives."""
    signal.connect(slot)
    widget.destroyed.connect(partial(signal.disconnect, slot))
