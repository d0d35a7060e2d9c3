import subprocess
import sys


def test_import_cnnplay_loads_no_qt():
    code = ("import sys, cnnplay, cnnplay.core; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6')]; "
            "print(bad); assert not bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout


def test_the_window_does_its_big_imports_before_any_thread_starts(tmp_path):
    """A fresh install once crashed at start (KeyError: 'colorama'): the worker thread's
    first numba import met pyqtgraph's first import on the GUI thread. In a fresh
    interpreter, everything the threads need is imported before the first one starts."""
    code = """
import sys, threading
from PySide6.QtWidgets import QApplication
app = QApplication([])
seen = []
original = threading.Thread.start
def start(self):
    seen.append((self.name, [m for m in ("numba", "colorama", "pyqtgraph", "cnnplay.core.kernels.grad",
                                         "cnnplay.core.receptive") if m not in sys.modules]))
    original(self)
threading.Thread.start = start
from cnnplay.app.main import create_window
w = create_window()
print(seen)
assert seen and all(missing == [] for _, missing in seen), seen
w.close()
"""
    env = dict(__import__("os").environ, CNNPLAY_HOME=str(tmp_path), QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:] + out.stdout
    assert "cnnplay-compute" in out.stdout and "cnnplay-autosave" in out.stdout


_NUMPY_SEES = """
import os, sys
seen = []
class Watch:  # records the variable when numpy (which loads OpenBLAS) is first imported
    def find_spec(self, name, path=None, target=None):
        if name == "numpy" and not seen:
            seen.append(os.environ.get("OPENBLAS_THREAD_TIMEOUT"))
sys.meta_path.insert(0, Watch())
import cnnplay
print(seen[0])
"""


def test_openblas_threads_sleep_soon_unless_the_user_set_it():
    """OpenBLAS reads OPENBLAS_THREAD_TIMEOUT once, when numpy loads it: `import cnnplay`
    sets it before numpy is imported, and keeps a value the user set."""
    import os
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    out = subprocess.run([sys.executable, "-c", _NUMPY_SEES], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.split() == ["12"], out.stderr + out.stdout
    out = subprocess.run([sys.executable, "-c", _NUMPY_SEES], capture_output=True, text=True,
                         env=dict(env, OPENBLAS_THREAD_TIMEOUT="20"))
    assert out.returncode == 0 and out.stdout.split() == ["20"], out.stderr + out.stdout
