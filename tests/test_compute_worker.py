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


def test_a_field_comes_with_every_earlier_map_and_the_effective_field_after_it(qtbot):
    """A click's answer: the box and mask on the input and on every earlier map at once
    (what the core's receptive_field gives each); in effective-field mode those come
    first and the effective field follows in a second result with the same fields."""
    from cnnplay.app.compute import FieldRequest

    net = Network.from_dict({"input": [1, 12, 12], "layers": [
        {"type": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1}, {"type": "relu"},
        {"type": "maxpool2d", "kernel_size": 2}, {"type": "conv2d", "out_channels": 2, "kernel_size": 3}]})
    x = np.random.default_rng(0).random((1, 12, 12), dtype=np.float32)
    worker = ComputeWorker(synchronous=True)
    results = []
    worker.field_done.connect(results.append)
    worker.submit(FieldRequest(net, x, 1, 3, (1, 2, 1)))
    assert len(results) == 1 and results[0].effective is None
    r = results[0]
    assert sorted(r.on_maps) == [0, 1, 2]
    assert r.on_input.box == net.receptive_field(3, (1, 2, 1)).box
    for k, f in r.on_maps.items():
        want = net.receptive_field(3, (1, 2, 1), onto=k)
        assert f.onto == k and f.box == want.box and np.array_equal(f.mask, want.mask)

    results.clear()
    worker.submit(FieldRequest(net, x, 1, 3, (1, 2, 1), effective=True))
    assert len(results) == 2
    first, second = results
    assert first.effective is None and second.effective is not None
    assert second.on_input is first.on_input and second.on_maps == first.on_maps  # drawn once
    np.testing.assert_array_equal(second.effective, net.effective_receptive_field(x, 3, (1, 2, 1)))


def test_the_busy_status_waits_so_quick_answers_never_change_it(qtbot, monkeypatch):
    """The status says what is computing once it has run BUSY_DELAY_MS (then "Ready" when
    it is over); a click's field, answered in a few ms, never changes it."""
    from cnnplay.app.controller import BUSY_DELAY_MS, ComputeController
    from cnnplay.core.session import Session

    patch_slow_forward(monkeypatch, 0.1)  # six layers: 0.6 s
    session = Session(SPEC, np.zeros((1, 8, 8), np.float32), {"kind": "test"})
    worker = ComputeWorker()
    messages = []
    try:
        controller = ComputeController(session, worker)
        controller.message.connect(messages.append)
        qtbot.waitUntil(lambda: "Computing layers 0-5..." in messages, timeout=5000)
        qtbot.waitUntil(lambda: controller.forward_is_current() and messages[-1] == "Ready", timeout=10000)
        messages.clear()
        session.select_unit(5, (0, 1, 1))
        qtbot.waitUntil(controller.field_is_current, timeout=5000)
        qtbot.waitUntil(worker.idle, timeout=5000)
        qtbot.wait(BUSY_DELAY_MS + 100)
        assert messages == []
    finally:
        worker.shutdown()
