"""The single compute worker: runs off the GUI thread, newest request wins, cancels stale work."""

import threading
import time

import numpy as np

from cnnplay import Network
from cnnplay.app.compute import ComputeWorker, ForwardRequest

SPEC = {"input": [1, 8, 8], "layers": [{"type": "relu"}] * 6}


def patch_slow_forward(monkeypatch, seconds=0.02):
    """Each layer takes `seconds` and records the thread and input it ran on."""
    record = []

    def slow(net, i, x):
        record.append((threading.get_ident(), i))
        time.sleep(seconds)  # stands in for a heavy layer
        return np.asarray(x) + 1

    monkeypatch.setattr(Network, "layer_forward", slow)
    return record


def test_forward_runs_on_the_worker_thread(qtbot, monkeypatch):
    record = patch_slow_forward(monkeypatch, 0)
    worker = ComputeWorker()
    try:
        net = Network.from_dict(SPEC)
        x = np.zeros((1, 8, 8), np.float32)
        with qtbot.waitSignal(worker.forward_done, timeout=5000) as blocker:
            worker.submit(ForwardRequest(net, x, 1))
        result = blocker.args[0]
        assert [o[0, 0, 0] for o in result.outputs] == [1, 2, 3, 4, 5, 6]
        assert {tid for tid, _ in record} == {worker._thread.ident} != {threading.get_ident()}
    finally:
        worker.shutdown()


def test_newest_request_wins_and_stale_passes_stop_early(qtbot, monkeypatch):
    record = patch_slow_forward(monkeypatch, 0.02)
    worker = ComputeWorker()
    results = []
    worker.forward_done.connect(results.append)
    try:
        x = np.zeros((1, 8, 8), np.float32)
        for token in range(10):  # ten inputs in quick succession
            worker.submit(ForwardRequest(Network.from_dict(SPEC), x + token, token))
        qtbot.waitUntil(lambda: bool(results) and results[-1].request.input_token == 9, timeout=5000)
        qtbot.waitUntil(worker.idle, timeout=5000)
        # The last one is complete and correct; the ones superseded never finished.
        assert results[-1].outputs[-1][0, 0, 0] == 9 + 6
        assert all(r.request.input_token in (0, 9) for r in results)
        assert len(record) < 10 * 6 / 2  # most stale work was skipped
    finally:
        worker.shutdown()


def test_errors_come_back_as_messages(qtbot):
    worker = ComputeWorker(synchronous=True)
    net = Network.from_dict({"input": [1, 4, 4], "layers": []})
    with qtbot.waitSignal(worker.failed, timeout=1000) as blocker:
        worker.submit(ForwardRequest(net, np.zeros((2, 4, 4), np.float32), 0))
    assert "the input is (2, 4, 4) but the network expects (1, 4, 4)" in blocker.args[1]


def test_controller_receives_results_on_the_gui_thread(qtbot, monkeypatch):
    from cnnplay.app.controller import ComputeController
    from cnnplay.core.session import Session

    patch_slow_forward(monkeypatch, 0)
    seen = []
    original = ComputeController._on_forward

    def spy(self, result):
        seen.append(threading.get_ident())
        original(self, result)

    monkeypatch.setattr(ComputeController, "_on_forward", spy)
    session = Session(SPEC, np.zeros((1, 8, 8), np.float32))
    worker = ComputeWorker()
    try:
        controller = ComputeController(session, worker)
        qtbot.waitUntil(controller.forward_is_current, timeout=5000)
        assert seen and set(seen) == {threading.get_ident()}
        session.update_layer(5, type="leaky_relu")
        assert not controller.forward_is_current()  # stale until the worker answers
        qtbot.waitUntil(controller.forward_is_current, timeout=5000)
        assert len(controller.forward.outputs) == 6
    finally:
        worker.shutdown()


def _long_task(net, x, outputs, should_stop):
    for _ in range(20):  # twenty more forward passes, like the shift-invariance chart
        net.forward(x, should_stop=should_stop)
    return "task finished for input %d" % int(x[0, 0, 0])


def test_background_tasks_yield_to_edits_and_clicks(qtbot, monkeypatch):
    from cnnplay.app.compute import FieldRequest, TaskRequest

    record = patch_slow_forward(monkeypatch, 0.02)
    worker = ComputeWorker()
    order = []
    worker.forward_done.connect(lambda r: order.append(("forward", r.request.input_token)))
    worker.field_done.connect(lambda r: order.append(("field", r.request.unit)))
    worker.task_done.connect(lambda r: order.append(("task", r.value)))
    try:
        net = Network.from_dict(SPEC)
        x = np.zeros((1, 8, 8), np.float32)
        with qtbot.waitSignal(worker.forward_done, timeout=5000):
            worker.submit(ForwardRequest(net, x, 1))
        order.clear()

        # A click while the task runs: the field comes first, then the task resumes and finishes.
        worker.submit(TaskRequest(net, x, 1, "slow", _long_task))
        qtbot.waitUntil(lambda: len(record) > 6 + 3, timeout=5000)
        worker.submit(FieldRequest(net, x, 1, 5, (0, 1, 1)))
        qtbot.waitUntil(lambda: ("task", "task finished for input 0") in order, timeout=20000)
        assert order == [("field", (0, 1, 1)), ("task", "task finished for input 0")]
        order.clear()

        # An edit while the task runs: the stale task is dropped, the maps come at once,
        # and the task the view asks for on the new network runs after them.
        worker.submit(TaskRequest(net, x, 1, "slow", _long_task))
        n = len(record)
        qtbot.waitUntil(lambda: len(record) > n + 3, timeout=5000)
        worker.submit(ForwardRequest(net, x + 1, 2))
        worker.submit(TaskRequest(net, x + 1, 2, "slow", _long_task))
        qtbot.waitUntil(lambda: ("task", "task finished for input 1") in order, timeout=20000)
        assert order == [("forward", 2), ("task", "task finished for input 1")]
    finally:
        worker.shutdown()


def test_a_worker_still_computing_outlives_its_closed_window(qtbot, monkeypatch):
    """The window (its parent) is deleted while a layer still runs: the worker is
    kept until its thread ends, so nothing is emitted from a deleted object."""
    from PySide6.QtCore import QObject
    from shiboken6 import isValid

    from cnnplay.app import lingering

    inside, release = threading.Event(), threading.Event()
    errors = []

    def blocking(net, i, x):
        inside.set()
        release.wait(10)  # stands in for a first-start kernel compile
        return np.asarray(x) + 1

    monkeypatch.setattr(Network, "layer_forward", blocking)
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    window = QObject()
    worker = ComputeWorker(parent=window)
    worker.submit(ForwardRequest(Network.from_dict(SPEC), np.zeros((1, 8, 8), np.float32), 1))
    assert inside.wait(5)
    worker.shutdown(timeout=0.05)  # what closing the window does, but the layer goes on
    assert worker in lingering.kept() and worker.parent() is None
    window.deleteLater()
    qtbot.waitUntil(lambda: not isValid(window))
    assert isValid(worker)
    thread = worker._thread
    release.set()
    thread.join(5)
    qtbot.waitUntil(lambda: worker not in lingering.kept())
    assert not thread.is_alive() and errors == []
