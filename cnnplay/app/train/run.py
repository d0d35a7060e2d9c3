"""One training run on a thread of its own (Qt-free).

Why a thread of its own and not the one compute worker: training is one long
job, not a newest-wins request. On the compute worker it would hold the queue
for a whole batch at a time, so a click's receptive field or an edit's maps
would wait behind it. On its own thread the worker keeps answering at once;
the two never run parallel kernels at the same moment because every kernel
launch holds the process-wide lock (README, thread rule 2), so they interleave
kernel by kernel. The other two rules hold too: the training modules are
imported on the GUI thread before the first run starts (rule 3), and the
thread never collects garbage (automatic collection is off while the app runs;
rule 1).

The run trains its own copy of the network (the session's Network objects are
immutable snapshots that the worker and the views share). It publishes a
`Snapshot` (copies of the parameters, the progress, the trainer state) at most
every `publish_interval` seconds, at the end of every epoch and when it stops; the Train
panel puts it into the session on the GUI thread.

How often: the panel adapts `publish_interval` (`refresh_interval`) so that
what the window spends on showing the snapshots (the GUI thread's CPU time, the
compute worker's passes, during which training waits) stays within
REFRESH_BUDGET of the time: from 4 times a second down to once every 2 s on a
slow machine or a big network.

Publishing goes through a gate (`Gate`): after `close()` returns, the run never
calls `publish` again, so its owner may delete the Qt object that publish emits
from (the window closed while a batch was running). The GUI never waits for the
thread; only the process's exit does (`join_all_at_exit`), so that no kernel is
still running while the interpreter shuts down.

The order of the samples is fixed by the settings' seed and the epoch
(a permutation per epoch), so a run that was paused, saved and reopened
continues with exactly the batches it would have had.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import traceback
import weakref
from dataclasses import dataclass, replace

import numpy as np

from ...core.errors import Cancelled, InputError, NetworkError
from ...core.kernels import launch
from ...core.network import Network
from .state import Evaluation, Progress, Settings, Training, confusion_matrix

log = logging.getLogger(__name__)
PUBLISH_SECONDS = 0.25  # parameters reach the session (and the maps) at most 4 times a second
PUBLISH_SECONDS_MAX = 2.0  # ... and, however slow the refresh, at least every 2 s
REFRESH_BUDGET = 0.05  # the share of the time the live refresh may take from training
TRAIN_ACCURACY_SAMPLES = 1000  # the train accuracy of an epoch is measured on at most this many
EXIT_JOIN_SECONDS = 5.0  # at the process's exit, how long the running batches may take to end


def refresh_interval(current: float, cost: float, wall: float, budget: float = REFRESH_BUDGET) -> float:
    """The next publish interval, from what the last `wall` seconds of refreshes cost
    (`cost` seconds: GUI CPU time plus compute-worker time): the interval at which
    that cost would be `budget` of the time, moved halfway there (the geometric
    mean of the two: one noisy measurement does not swing it), within
    [PUBLISH_SECONDS, PUBLISH_SECONDS_MAX]."""
    if wall <= 0 or cost < 0:
        return current
    wanted = cost / wall * current / budget  # cost per refresh / budget
    nxt = (current * wanted) ** 0.5
    return min(max(nxt, PUBLISH_SECONDS), PUBLISH_SECONDS_MAX)


class Gate:
    """Calls that stop for good at close(): once close() has returned, call() calls nothing.

    The lock is held only while a call runs (a queued Qt emit: microseconds), so
    close() on the GUI thread never waits for a batch."""

    def __init__(self):
        self._lock = threading.Lock()
        self._open = True

    def call(self, fn, *args) -> bool:
        with self._lock:
            if not self._open:
                return False
            fn(*args)
            return True

    def close(self) -> None:
        with self._lock:
            self._open = False

    @property
    def closed(self) -> bool:
        return not self._open


_live: "weakref.WeakSet[TrainingRun]" = weakref.WeakSet()


@atexit.register
def join_all_at_exit(timeout: float = EXIT_JOIN_SECONDS) -> None:
    """The process ends: every run stops publishing and stops; wait (bounded) for the batches."""
    runs = list(_live)
    for r in runs:
        r.close()
    end = time.monotonic() + timeout
    for r in runs:
        r.thread.join(max(0.0, end - time.monotonic()))


@dataclass(frozen=True)
class Snapshot:
    params: list  # per layer: {name: array copy}
    training: Training
    final: bool = False  # the run has ended (finished, paused or failed)
    finished: bool = False  # all epochs are done
    error: str | None = None
    rate: float = 0.0  # batches per second in this run


def copy_network(net: Network) -> Network:
    """A private copy whose parameters the trainer may change (no array is shared)."""
    copy = Network.from_dict(net.to_dict(), seed=net.seed)
    for i in range(len(net)):
        p = net.params(i)
        if p:
            copy.set_params(i, **{k: np.array(v, np.float32) for k, v in p.items()})
    return copy


def make_trainer(net: Network, settings: Settings, state: dict | None, classes=None):
    """A cnnplay.Trainer for `net` with `settings`, continuing from `state` when it fits
    (the panel's settings win over the saved ones: the user may change them between
    runs). Returns (trainer, note): the note says when the optimizer state was dropped."""
    from ...core.training import Trainer
    kw = dict(optimizer=settings.optimizer, lr=settings.lr, momentum=settings.momentum,
              weight_decay=settings.weight_decay)
    note = ""
    if state is not None:
        st = dict(state)
        # Optimizer buffers of parameters that an edit removed or reshaped start afresh.
        arrays = dict(st.get("arrays") or {})
        for key in [k for k in arrays if k.startswith("optimizer/")]:
            parts = key.split("/")
            try:
                i, name = int(parts[1]), parts[2]
                ok = i < len(net) and tuple(net.param_shapes(i).get(name, ())) == tuple(np.shape(arrays[key]))
            except (ValueError, IndexError):
                ok = False
            if not ok:
                del arrays[key]
                note = "the optimizer state of the changed layers starts afresh"
        st["arrays"] = arrays
        st["settings"] = dict(state.get("settings") or {}, **kw, batch_size=settings.batch_size, seed=settings.seed)
        try:
            return Trainer.from_state(net, st), note
        except (NetworkError, InputError, ValueError, KeyError, TypeError) as e:
            # e.g. another optimizer, or layers whose shapes changed: keep the rest, drop the buffers
            st["arrays"] = {k: v for k, v in (st.get("arrays") or {}).items() if not k.startswith("optimizer/")}
            try:
                return Trainer.from_state(net, st), "the optimizer starts afresh"
            except (NetworkError, InputError, ValueError, KeyError, TypeError):
                note = f"the optimizer starts afresh ({e})"
    return Trainer(net, seed=settings.seed, batch_size=settings.batch_size, classes=classes, **kw), note


def evaluate(tr, x: np.ndarray, y: np.ndarray, k: int) -> tuple[float, float, Evaluation]:
    """(mean loss, accuracy, predictions) of the trainer's network on (x, y), inference mode."""
    probs = np.asarray(tr.predict(x), np.float32)
    pred = probs.argmax(axis=1).astype(np.int64)
    p_true = probs[np.arange(len(y)), y]
    loss = float(-np.log(np.maximum(p_true.astype(np.float64), 1e-12)).mean()) if len(y) else 0.0
    acc = float((pred == y).mean()) if len(y) else 0.0
    return loss, acc, Evaluation(pred, probs[np.arange(len(y)), pred], probs)


def batch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The sample order of one epoch: the same for the same seed and epoch, always."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


class TrainingRun:
    """Train `net` (a private copy) on `train` from `training`'s position; evaluate on `test`.

    max_batches: stop after that many updates (Step = 1); None: to the last epoch.
    publish(snapshot) is called on the training thread (the panel queues it to the GUI),
    never after close() has returned.
    """

    def __init__(self, net: Network, training: Training, train, test, publish, max_batches: int | None = None,
                 evaluate_only: bool = False):
        self.net = net
        self.training = training
        self.train, self.test = train, test
        self.publish = publish
        self.max_batches = max_batches
        self.evaluate_only = evaluate_only
        self._stop = threading.Event()
        self._gate = Gate()
        self.publish_interval = PUBLISH_SECONDS  # the panel adapts it (refresh_interval)
        self.thread = threading.Thread(target=self._main, name="cnnplay-train", daemon=True)

    def start(self) -> None:
        _live.add(self)
        self.thread.start()

    def stop(self) -> None:
        """Ask the run to stop: the batch in progress is dropped at its next layer (the
        weights stay as the last finished batch left them; the GUI never waits). Its
        kernels stop waiting for the window's holds: a hold on (a click's field not
        painted yet) would keep the layer in progress from reaching that point."""
        self._stop.set()
        launch.excuse(self.thread)

    def close(self) -> None:
        """Stop, and publish nothing more from now on (the receiver is going away)."""
        self.stop()
        self._gate.close()

    @property
    def closed(self) -> bool:
        return self._gate.closed

    def _publish(self, snap: Snapshot) -> None:
        self._gate.call(self.publish, snap)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    # -- the training thread --------------------------------------------------------
    def _main(self) -> None:
        try:
            self._train()
        except Exception as e:  # never a traceback in the user's face; the log has it
            if self._gate.closed:
                return  # nobody listens any more (and the error may be the receiver going away)
            if isinstance(e, (NetworkError, InputError, ValueError, MemoryError)):
                msg = str(e) if not isinstance(e, MemoryError) else "out of memory; try a smaller batch"
            else:
                log.error("training failed:\n%s", traceback.format_exc())
                msg = f"internal error while training ({type(e).__name__}: {e}); details are in the log file"
            self._publish(Snapshot(self._params(), self.training, final=True, error=msg))

    def _params(self) -> list:
        return [{k: np.array(v) for k, v in self.net.params(i).items()} for i in range(len(self.net))]

    def _train(self) -> None:
        t = self.training
        s = t.settings
        tr, note = make_trainer(self.net, s, t.trainer, self.train.classes)
        if note:
            t = replace(t, reset_note=(t.reset_note + " " if t.reset_note else "") + note[0].upper() + note[1:] + ".")
        k = len(self.train.classes)
        xs, ys = self.train.x, self.train.y
        n = len(ys)
        bs = max(1, min(s.batch_size, n))
        per_epoch = -(-n // bs)
        p = t.progress
        if p.batches_per_epoch != per_epoch:  # the data or the batch size changed: start the epoch afresh
            p = replace(p, batch=0, batches_per_epoch=per_epoch)
        if self.evaluate_only:
            t = replace(t, progress=p)
            self.training = self._evaluated(tr, t, k)
            self._publish(Snapshot(self._params(), self.training, final=True))
            return
        t0 = time.perf_counter()
        last = t0
        base_seconds = p.seconds
        done = 0
        pending: list[tuple[int, float]] = []
        # this epoch's batch losses so far (a resumed epoch's first part is in the curve)
        self._epoch_losses = [l for (_, l) in p.batch_losses[-p.batch:]] if p.batch else []
        finished = False
        while True:
            if p.epoch >= s.epochs:
                finished = True
                break
            if self._stop.is_set() or (self.max_batches is not None and done >= self.max_batches):
                break
            order = batch_order(n, s.seed, p.epoch)
            idx = order[p.batch * bs:(p.batch + 1) * bs]
            try:  # Pause stops within the batch (between two layers): the batch is not counted
                loss = float(tr.step(xs[idx], ys[idx], cancel=self._stop.is_set))
            except Cancelled:
                break
            done += 1
            pending.append((p.steps, loss))
            self._epoch_losses.append(loss)
            p = replace(p, batch=p.batch + 1, steps=p.steps + 1)
            now = time.perf_counter()
            epoch_end = p.batch >= per_epoch
            if epoch_end:
                p = self._epoch_done(tr, p, pending, k)
            if epoch_end or now - last >= self.publish_interval:
                p = replace(p, batch_losses=p.with_batches(pending), seconds=base_seconds + now - t0)
                pending = []
                t = replace(t, progress=p, trainer=tr.state())
                if epoch_end:
                    t = self._evaluated(tr, t, k)
                    p = t.progress
                self.training = t
                self._publish(Snapshot(self._params(), t, rate=done / max(now - t0, 1e-9)))
                last = now
        now = time.perf_counter()
        p = replace(p, batch_losses=p.with_batches(pending), seconds=base_seconds + now - t0)
        t = replace(t, progress=p, trainer=tr.state())
        if self.max_batches is not None and done and not self._stop.is_set() and len(self.test.y) <= 5000:
            t = self._evaluated(tr, t, k)  # a Step shows its effect on the test set at once
            p = t.progress
        self.training = t
        self._publish(Snapshot(self._params(), t, final=True, finished=finished,
                              rate=done / max(now - t0, 1e-9)))

    def _epoch_done(self, tr, p: Progress, pending, k: int) -> Progress:
        """The epoch's record: mean batch loss, train accuracy (on a sample), test loss and accuracy."""
        xs, ys = self.train.x, self.train.y
        m = min(len(ys), TRAIN_ACCURACY_SAMPLES)
        sel = np.random.default_rng([self.training.settings.seed, p.epoch, 1]).choice(len(ys), m, replace=False) \
            if m < len(ys) else np.arange(len(ys))
        _, train_acc, _ = evaluate(tr, xs[sel], ys[sel], k)
        losses, self._epoch_losses = self._epoch_losses, []
        test_loss, test_acc, ev = evaluate(tr, self.test.x, self.test.y, k)
        entry = {"epoch": float(p.epoch + 1), "train_loss": float(np.mean(losses)) if losses else float("nan"),
                 "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc}
        self._last_eval = ev
        return replace(p, epoch=p.epoch + 1, batch=0, epochs_log=p.epochs_log + (entry,))

    def _evaluated(self, tr, t: Training, k: int) -> Training:
        ev = getattr(self, "_last_eval", None)
        if ev is None:
            _, _, ev = evaluate(tr, self.test.x, self.test.y, k)
        self._last_eval = None
        p = t.progress
        at = p.epoch + (p.batch / p.batches_per_epoch if p.batches_per_epoch else 0.0)
        p = replace(p, confusion=confusion_matrix(self.test.y, ev.predicted, k), confusion_at=at)
        return replace(t, progress=p, evaluation=ev)
