"""What the app remembers about training (Qt-free, immutable, JSON-able).

`Training` is what `Session.training` holds: the settings of the Train panel,
the progress record (position in the epochs, the per-batch losses, the
per-epoch losses and accuracies, the newest confusion matrix) and the
trainer's own state (`cnnplay.Trainer.state()`: optimizer state and the like),
plus the newest test-set evaluation (for the gallery; not saved, made again).
Every change makes a new object, so a session State stays a true undo point.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

OPTIMIZERS = ("sgd", "adam")
MAX_BATCH_POINTS = 20_000  # the per-batch curve keeps at most this many points (halved when full)


def _num(d: dict, key: str, default, lo, hi, kind=float):
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return default
    v = kind(v)
    return min(max(v, lo), hi)


@dataclass(frozen=True)
class Settings:
    optimizer: str = "adam"
    lr: float = 0.003
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 32
    epochs: int = 5
    test_fraction: float = 0.2
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d) -> "Settings":
        """Settings from saved JSON; anything missing or out of range takes its default."""
        if not isinstance(d, dict):
            return cls()
        base = cls()
        opt = d.get("optimizer")
        return cls(optimizer=opt if opt in OPTIMIZERS else base.optimizer,
                   lr=_num(d, "lr", base.lr, 1e-6, 10.0),
                   momentum=_num(d, "momentum", base.momentum, 0.0, 0.999),
                   weight_decay=_num(d, "weight_decay", base.weight_decay, 0.0, 1.0),
                   batch_size=_num(d, "batch_size", base.batch_size, 1, 4096, int),
                   epochs=_num(d, "epochs", base.epochs, 1, 10_000, int),
                   test_fraction=_num(d, "test_fraction", base.test_fraction, 0.05, 0.9),
                   seed=_num(d, "seed", base.seed, 0, 2**31 - 1, int))


@dataclass(frozen=True)
class Progress:
    """Where training stands and what it measured so far."""

    epoch: int = 0  # epochs completed
    batch: int = 0  # batches done in the current epoch
    batches_per_epoch: int = 0
    steps: int = 0  # updates made in all
    seconds: float = 0.0  # training time so far
    batch_losses: tuple = ()  # (step, loss) per batch (thinned when very long)
    epochs_log: tuple = ()  # per epoch: {"epoch", "train_loss", "train_acc", "test_loss", "test_acc"}
    confusion: tuple | None = None  # newest test confusion matrix, rows = true class, columns = predicted
    confusion_at: float | None = None  # the epoch position it was measured at (epoch + batch fraction)

    def to_json(self) -> dict:
        d = asdict(self)
        d["batch_losses"] = [list(p) for p in self.batch_losses]
        d["epochs_log"] = [dict(e) for e in self.epochs_log]
        d["confusion"] = None if self.confusion is None else [list(r) for r in self.confusion]
        return d

    @classmethod
    def from_json(cls, d) -> "Progress":
        if not isinstance(d, dict):
            return cls()

        def ints(key):
            v = d.get(key, 0)
            return int(v) if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**62 else 0

        losses = []
        for p in d.get("batch_losses") or []:
            if isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p):
                losses.append((int(p[0]), float(p[1])))
        log = []
        for e in d.get("epochs_log") or []:
            if isinstance(e, dict):
                log.append({k: float(v) for k, v in e.items()
                            if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)})
        conf = d.get("confusion")
        if not (isinstance(conf, list) and conf and all(isinstance(r, list) and len(r) == len(conf)
                                                         and all(isinstance(v, int) for v in r) for r in conf)):
            conf = None
        at = d.get("confusion_at")
        return cls(epoch=ints("epoch"), batch=ints("batch"), batches_per_epoch=ints("batches_per_epoch"),
                   steps=ints("steps"), seconds=_num(d, "seconds", 0.0, 0.0, 1e9),
                   batch_losses=tuple(losses), epochs_log=tuple(log),
                   confusion=None if conf is None else tuple(tuple(r) for r in conf),
                   confusion_at=float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) else None)

    def with_batches(self, new: list[tuple[int, float]]) -> tuple:
        pts = self.batch_losses + tuple(new)
        while len(pts) > MAX_BATCH_POINTS:
            pts = pts[::2]
        return pts


@dataclass(frozen=True)
class Evaluation:
    """The newest test-set predictions (for the gallery and the confusion matrix)."""

    predicted: np.ndarray  # (N,) int64
    confidence: np.ndarray  # (N,) float32: the predicted class's probability
    probs: np.ndarray | None = None  # (N, K) float32


@dataclass(frozen=True)
class Training:
    settings: Settings = field(default_factory=Settings)
    progress: Progress = field(default_factory=Progress)
    trainer: dict | None = None  # cnnplay.Trainer.state()
    evaluation: Evaluation | None = None
    reset_note: str = ""  # which layers an edit reset (shown by the panel)

    def with_settings(self, **changes) -> "Training":
        return replace(self, settings=replace(self.settings, **changes))

    def for_network(self, network, old=None) -> "Training":
        """This training for `network` after an edit of `old` (Session.fit_training): the
        trainer state keeps only what fits (core.training.fit); the panel's next run
        names what was dropped. Itself when everything fits."""
        if self.trainer is None:
            return self
        from ...core.training.fit import fit_state
        fitted = fit_state(self.trainer, network, old)
        if fitted.state is self.trainer and not fitted.dropped:
            return self
        note = self.reset_note
        if fitted.dropped:
            said = f"Dropped what no longer fit the network: {fitted.summary()}; training starts it afresh."
            note = said if not note or said in note else f"{note} {said}"
        return replace(self, trainer=fitted.state, reset_note=note)

    def to_json(self) -> dict:
        """Settings and progress as JSON; the trainer's state goes into the .cnnplay file
        beside it (core/fileformat.py: network_bytes(..., training=trainer))."""
        return {"settings": self.settings.to_json(), "progress": self.progress.to_json()}

    @classmethod
    def from_json(cls, d, trainer: dict | None = None) -> "Training":
        """Training from saved JSON (anything malformed takes its default) and the
        file's trainer state (checked by Trainer.from_state when training goes on)."""
        if not isinstance(d, dict):
            return cls(trainer=trainer)
        return cls(Settings.from_json(d.get("settings")), Progress.from_json(d.get("progress")), trainer)


def training_from_extra(extra, trainer: dict | None = None) -> "Training | None":
    """The Training a saved session's extra holds (see Session.extra) with the file's
    trainer state, or None."""
    d = extra.get("training") if isinstance(extra, dict) else None
    if not isinstance(d, dict):
        return None if trainer is None else Training(trainer=trainer)
    return Training.from_json(d, trainer if isinstance(trainer, dict) else None)


def restored_training(extra, trainer: dict | None, network, problem: str | None = None,
                      lead: str = "Your network is restored"):
    """(Training or None, a message or None) for a saved session (see training_from_extra)
    on `network`, the network restored from the same file: a trainer state that does not
    fit it, wholly or in part, is left out (core.training.fit.checked_state) and the
    message, starting with `lead`, says what and why. `problem` is why the file's trainer
    state could not even be read (fileformat.load_keeping_network). Settings and curves
    are always kept."""
    from ...core.training.fit import checked_state
    training = training_from_extra(extra, trainer)
    lost = [f"the whole optimizer state ({problem})"] if problem else []
    if training is not None and training.trainer is not None:
        fitted = checked_state(training.trainer, network)
        if fitted.dropped:
            lost.append(fitted.summary())
            training = replace(training, trainer=fitted.state)
    if not lost:
        return training, None
    return training, (f"{lead}, but its saved training state did not fit it, so this was "
                      f"left out: {'; '.join(lost)}. Train starts that afresh; the training settings and "
                      "curves are kept.")


def trainer_state(training) -> dict | None:
    """What the .cnnplay file stores as the training state (Trainer.state()), or None."""
    return getattr(training, "trainer", None)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> tuple:
    m = np.zeros((k, k), np.int64)
    np.add.at(m, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return tuple(tuple(int(v) for v in row) for row in m)


def gallery_order(y_true: np.ndarray, predicted: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Test-sample indices, misclassified first (most confidently wrong first), then the
    correct ones from the least confident up."""
    wrong = predicted != y_true
    idx = np.arange(len(y_true))
    w = idx[wrong][np.argsort(-confidence[wrong], kind="stable")]
    r = idx[~wrong][np.argsort(confidence[~wrong], kind="stable")]
    return np.concatenate([w, r])
