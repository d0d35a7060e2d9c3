import faulthandler
import os
import sys

import pytest

# Never open real windows in tests; keep app data in a per-run folder.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Test under numba's workqueue threading layer, the one every machine has (OpenMP
# is used only where libgomp happens to be installed): it is the one that is not
# thread-safe, so a concurrent kernel launch aborts here instead of in the field.
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

from cnnplay.app.gui_gc import collect_due, collect_on_gui_thread  # noqa: E402 (after the environment)

# A test that hangs (a modal dialog offscreen, a deadlock between threads) must fail
# the run with every thread's stack, not sit until CI's own limit kills it silently.
HANG_SECONDS = float(os.environ.get("CNNPLAY_TEST_HANG_SECONDS", "240"))


@pytest.fixture(scope="session", autouse=True)
def _collect_garbage_on_the_main_thread(qapp):
    """As in the app, from the first test on: a cyclic collection started by a
    worker thread would destroy Qt objects of earlier tests on that thread."""
    collect_on_gui_thread()


@pytest.fixture(autouse=True)
def _fail_hung_test():
    faulthandler.dump_traceback_later(HANG_SECONDS, exit=True, file=sys.__stderr__)
    try:
        yield
        collect_due()  # on the main thread, as the app's timer would
    finally:
        faulthandler.cancel_dump_traceback_later()
