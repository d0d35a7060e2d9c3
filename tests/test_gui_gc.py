"""Cyclic garbage is collected on the GUI thread only (cnnplay.app.gui_gc).

A collection started by the compute worker once destroyed pyqtgraph widgets of
an earlier window on the worker thread and deadlocked the test run (worker in
~QObject waiting for the GIL, GUI thread holding the GIL waiting for Qt's mutex).
Here a plain Python cycle stands in for the widgets: its finalizer records the
thread that collected it."""

import gc
import threading

from cnnplay.app.gui_gc import collect_due, collect_on_gui_thread
from cnnplay.app.main import create_window


class Recorder:
    def __init__(self, where):
        self.where = where
        self.me = self  # a cycle: only the cyclic collector frees it

    def __del__(self):
        self.where.append(threading.get_ident())


def churn_cycles(n=100_000):
    for _ in range(n):  # cyclic garbage, far past every generation's threshold
        d = {}
        d["d"] = d


def test_a_worker_thread_never_collects_and_the_gui_timer_does(qtbot):
    collect_on_gui_thread()
    assert not gc.isenabled()
    where = []
    Recorder(where)
    worker = threading.Thread(target=churn_cycles)
    worker.start()
    worker.join()
    assert where == []  # the worker allocated past every threshold and collected nothing
    qtbot.waitUntil(lambda: bool(where), timeout=5000)  # the GUI thread's timer
    assert where == [threading.get_ident()]


def test_collect_due_follows_the_interpreter_thresholds():
    collect_on_gui_thread()
    gc.collect()
    assert collect_due() is None  # nothing allocated since: nothing due
    where = []
    Recorder(where)
    churn_cycles(gc.get_threshold()[0] + 10)
    assert collect_due() is not None and where == [threading.get_ident()]


def test_every_window_turns_automatic_collection_off(qtbot, home):
    gc.enable()  # as if someone turned it back on
    w = create_window()
    qtbot.addWidget(w)
    assert not gc.isenabled()


def test_a_full_collection_waits_for_a_quarter_more_long_lived_objects():
    """CPython's rule: the oldest generation is collected only once the objects that
    reached it since its last collection are a quarter of those it held then."""
    collect_on_gui_thread()
    keep = []

    def due(generation):  # the interpreter's counts as just before a collection of `generation`
        while gc.get_count()[0] <= gc.get_threshold()[0]:
            keep.append([])
        if generation == 2:
            while gc.get_count()[2] <= gc.get_threshold()[2]:
                gc.collect(1)
                while gc.get_count()[0] <= gc.get_threshold()[0]:
                    keep.append([])

    def promote_many():  # as many new long-lived objects as the oldest generation holds
        keep.append([[] for _ in range(len(gc.get_objects(generation=2)))])
        for _ in range(gc.get_threshold()[2]):  # (the rule is asked again only that many collections later)
            gc.collect(1)

    promote_many()
    due(2)
    assert collect_due() == 2 and gc.get_count()[2] == 0
    held = len(gc.get_objects(generation=2))
    due(2)  # a few thousand new long-lived objects: far fewer than a quarter more
    assert len(gc.get_objects(generation=2)) - held < held / 4
    assert collect_due() in (0, 1) and gc.get_count()[2] > gc.get_threshold()[2]
    promote_many()
    due(2)
    assert collect_due() == 2 and gc.get_count()[2] == 0
    keep.clear()
