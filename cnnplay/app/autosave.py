"""Autosave: the session is written shortly after every change, and restored on start.

Writes are debounced (~300 ms after the last change), atomic (temporary file,
fsync, rename) and run on a small background thread of their own, never on the
GUI thread and never on the compute worker. The network goes into a regular
.cnnplay file whose `extra` holds the full description (including a layer the
user is still editing), the input source, view settings and selection; the input
array itself is kept beside it as an .npy file, rewritten only when it changes.

A corrupt autosave is moved aside (kept, renamed) and reported, never a crash;
one whose only fault is its training state (optimizer buffers that no longer fit
the network) is restored without what does not fit, and the message says what.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import stat
import threading
import time
import traceback
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal

from ..core.errors import InputError, NetworkError
from ..core.fileformat import atomic_write, load_keeping_network, network_bytes
from ..core.safe_read import read_regular_file
from ..core.session import Session, dataset_info
from . import paths
from .input_panel import source_path
from .lingering import keep_until_finished

log = logging.getLogger(__name__)
DELAY_MS = 300
MAX_WAIT_S = 2.0  # continuous changes are saved at least this often
STALE_TEMP_SECONDS = 60  # a temporary file this old is not being written any more


def clean_stale_temp(target: str | os.PathLike, max_age: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete the temporary files a killed save of `target` left beside it.

    Only our own pattern (`.<name>.<8 random chars>.tmp`, what atomic_write creates),
    only regular files, only those untouched for `max_age` seconds (a save in
    progress, e.g. by another instance, is younger). Never raises; returns what
    was removed."""
    target = Path(target)
    pattern = re.compile(r"\." + re.escape(target.name) + r"\.[A-Za-z0-9_]{8}\.tmp")
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return removed
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < max_age:
                continue
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    if removed:
        log.info("removed %d stale temporary file(s) of %s", len(removed), target)
    return removed


class Autosaver(QObject):
    saved = Signal(str)  # path written
    failed = Signal(str)  # message for the user

    def __init__(self, session: Session, path: str | os.PathLike | None = None,
                 input_path: str | os.PathLike | None = None, delay_ms: int = DELAY_MS,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self.path = Path(path) if path is not None else paths.autosave_path()
        self.input_path = Path(input_path) if input_path is not None else paths.autosave_input_path()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self.save_now)
        self._written_input = None  # the input array last written (by identity)
        self._pending_since = 0.0
        self._job = None
        self._busy = False
        self._stopping = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="cnnplay-autosave", daemon=True)
        self._thread.start()
        self._last_error = None
        self._cleaned_at = 0.0  # when stale temporary files were last removed (writer thread)
        for sig in self._signals():
            sig.connect(self.schedule)

    # -- GUI thread ------------------------------------------------------------------
    def schedule(self, *args) -> None:
        """Something changed: save ~300 ms from now (restarting the countdown), but never
        later than MAX_WAIT_S after the first unsaved change: a session that changes all
        the time (training publishes new weights a few times a second) is still saved."""
        if self._stopping:
            return
        now = time.monotonic()
        if not self._timer.isActive():
            self._pending_since = now
        elif now - self._pending_since >= MAX_WAIT_S:
            return  # let the running countdown fire
        self._timer.start()

    def pending(self) -> bool:
        return self._timer.isActive()

    def save_now(self) -> None:
        """Snapshot the session (cheap: immutable objects) and hand it to the writer."""
        self._timer.stop()
        s = self.session
        x = s.input_array
        extra = s.extra()
        extra["input_shape"] = list(x.shape)
        extra["saved_at"] = time.time()
        from .train.state import trainer_state
        job = (s.network, extra, None if x is self._written_input else x, trainer_state(s.training))
        self._written_input = x
        with self._cond:
            if self._job is not None and job[2] is None:
                job = job[:2] + (self._job[2],) + job[3:]  # keep an input not yet written
            self._job = job
            self._cond.notify()

    def flush(self, timeout: float = 5.0) -> bool:
        """Write anything pending now and wait until it is on disk (e.g. on quit)."""
        if self._timer.isActive():
            self.save_now()
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._job is not None or self._busy) and time.monotonic() < deadline:
                self._cond.wait(0.05)
            return self._job is None and not self._busy

    def shutdown(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        self._stopping = True
        with self._cond:
            self._cond.notify()
        self._thread.join(timeout)
        keep_until_finished(self, self._thread)  # a write still running: outlive the window
        for sig in self._signals():
            sig.disconnect(self.schedule)

    def _signals(self):
        s = self.session
        return (s.network_changed, s.input_changed, s.view_changed, s.selection_changed,
                s.dataset_changed, s.training_changed)

    # -- writer thread -----------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._stopping:
                    self._cond.wait()
                if self._job is None and self._stopping:
                    return
                job, self._job = self._job, None
                self._busy = True
            try:
                self._write(*job)
            except Exception as e:  # never let the writer die
                msg = f"autosave failed: {e.strerror if isinstance(e, OSError) and e.strerror else e}"
                if msg != self._last_error:
                    log.error("autosave failed:\n%s", traceback.format_exc())
                    self.failed.emit(msg)
                self._last_error = msg
            else:
                self._last_error = None
                self.saved.emit(str(self.path))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, network, extra, x, training=None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if time.monotonic() - self._cleaned_at > STALE_TEMP_SECONDS or not self._cleaned_at:
            # The first autosave after the start, then once a minute: what a kill left behind.
            self._cleaned_at = time.monotonic()
            for target in (self.path, self.input_path):
                clean_stale_temp(target)
        if x is not None:
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(x, dtype=np.float32), allow_pickle=False)
            atomic_write(self.input_path, buf.getvalue())
        atomic_write(self.path, network_bytes(network, extra, training))


class Restored:
    """What restoring the autosave gave: a session (or None) and messages for the user."""

    def __init__(self, session: Session | None = None, messages: list[str] | None = None,
                 moved_to: Path | None = None, offer: dict | None = None):
        self.session = session
        self.messages = messages or []
        self.moved_to = moved_to
        self.offer = offer  # an input source naming a file: loaded only if the user asks


def restore(path: str | os.PathLike | None = None, input_path: str | os.PathLike | None = None,
            load_input=None) -> Restored:
    """Rebuild the last session from the autosave, if there is one.

    `load_input(source) -> (array, source, notes)` reloads an input from its
    source when the saved input array is missing. A corrupt autosave is renamed
    to autosave.corrupt-<time>.cnnplay and reported.
    """
    path = Path(path) if path is not None else paths.autosave_path()
    input_path = Path(input_path) if input_path is not None else paths.autosave_input_path()
    for target in (path, input_path):
        clean_stale_temp(target)  # a kill during an autosave leaves these
    if not path.exists():
        return Restored()
    try:
        session, notes, offer = _session_from(path, input_path, load_input)
        return Restored(session, notes, offer=offer)
    except Exception as e:  # anything at all: the file is unusable, keep it aside
        if not isinstance(e, (NetworkError, InputError)):
            log.error("autosave unreadable:\n%s", traceback.format_exc())
        moved = _move_aside(path)
        where = f"; it was kept as {moved}" if moved else ""
        return Restored(None, [f"The autosaved session could not be restored ({e}){where}. "
                               "Starting with the default network."], moved)


def _session_from(path: Path, input_path: Path, load_input):
    # A training state that does not fit costs only itself: the network is what matters.
    net, extra, trainer, training_problem = load_keeping_network(path)
    extra = extra or {}
    spec = extra.get("spec")
    if not isinstance(spec, dict):
        spec = net.to_dict()
    source = extra.get("input_source") if isinstance(extra.get("input_source"), dict) else {}
    notes = []
    x = None
    offer = None
    want = math.prod(net.input_shape) * 4 + 4096  # the array and its .npy header
    try:
        data = read_regular_file(input_path, want, "autosaved input") if input_path.exists() else None
        a = np.load(io.BytesIO(data), allow_pickle=False) if data else None
        if a is not None and list(a.shape) == list(net.input_shape) and a.dtype == np.float32 \
                and np.isfinite(a).all():
            x = a
    except Exception:  # unreadable, damaged, the wrong shape: the input is rebuilt below
        x = None
    input_notes = ()
    if x is None and load_input is not None and source:
        if source_path(source) is not None:
            # a path named inside a file is never read unasked: offer it to the user
            offer = source
        else:
            try:
                x, source, input_notes = load_input(source)
            except (InputError, NetworkError, OSError) as e:
                notes.append(f"The last input could not be made again ({e}).")
                x = None
    if x is not None and tuple(x.shape) != tuple(net.input_shape):
        x = None
    if x is None:  # keep the network; give it an input of the same kind
        from .examples import input_for_shape
        x, source, input_notes = input_for_shape(net.input_shape)
        shown = source.get("sample") or source.get("generate") or "a bundled input"
        if offer is None:  # (with an offer, the window says it and offers to load the file)
            notes.append(f"The last input was not found; showing {shown} instead. Your network is restored.")
    try:
        session = Session(spec, x, source, seed=net.seed, network=net)
    except (NetworkError, TypeError, ValueError):  # a bad edited description costs only itself
        session = Session(net.to_dict(), x, source, seed=net.seed, network=net)
        notes.append("The layer being edited could not be restored; the saved network is.")
    session.set_input_notes(input_notes)
    session.set_dataset_reference(*dataset_info(extra))
    from .train.state import restored_training
    try:
        training, said = restored_training(extra, trainer, session.network, training_problem)
    except Exception as e:  # a training state is not worth losing a network over
        log.error("autosaved training state unusable:\n%s", traceback.format_exc())
        training, said = None, f"Your network is restored, but its saved training state could not be ({e})."
    session.set_training(training)
    if said:
        notes.append(said)
    view = extra.get("view")
    if isinstance(view, dict):
        try:
            session.set_view(**{k: v for k, v in view.items() if isinstance(k, str)})
        except (NetworkError, TypeError, ValueError):
            pass  # the view settings are not worth losing a network over
    sel = extra.get("selected_layer")
    if isinstance(sel, int) and not isinstance(sel, bool) and 0 <= sel < len(session.layers):
        session.select_layer(sel)
    unit = extra.get("selected_unit")
    if isinstance(unit, list) and len(unit) == 2 and isinstance(unit[1], list):
        try:
            session.select_unit(int(unit[0]), tuple(int(u) for u in unit[1]))
        except (NetworkError, TypeError, ValueError):
            pass
    return session, notes, offer


def _move_aside(path: Path) -> Path | None:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.stem}.corrupt-{stamp}{path.suffix}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.stem}.corrupt-{stamp}-{n}{path.suffix}")
        n += 1
    try:
        os.replace(path, target)
        return target
    except OSError:
        return None
