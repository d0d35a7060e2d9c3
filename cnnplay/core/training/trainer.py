"""The Trainer: one network, one optimizer, epochs over a data set, a history.

    tr = Trainer(net, optimizer="sgd", lr=0.01, momentum=0.0, weight_decay=0.0,
                 betas=(0.9, 0.999), eps=1e-8)
    loss = tr.step(x, y)             # one update; the batch's mean loss before it
    loss, acc = tr.evaluate(x, y)    # inference mode, no update
    probs = tr.predict(x)            # softmax probabilities (N, K), inference mode
    result = tr.run_epoch(train, batch_size=32, test=test, on_batch=f, should_stop=g)
    tr.history.epochs[-1]            # {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "steps"}
    state = tr.state(); Trainer.from_state(net, state)

Semantics (PyTorch's, float32):
- training mode: batch norm normalises with the batch's statistics and updates
  its running statistics (see batchnorm.py); every other layer runs as in
  inference, through the layer types' forward_batch / backward_batch;
- loss: softmax cross-entropy, mean over the batch (nn.CrossEntropyLoss()) on
  the last layer's output, which must be a flat vector of K >= 2 scores;
- optimizers: see optim.py ("sgd", "adam" = torch.optim.Adam with L2 added to
  the gradient, NOT AdamW; "adamw" = torch.optim.AdamW), optional per-epoch
  learning-rate schedule.

After `step`, `net.params(i)` holds the new values (running statistics
included) and every changed layer's version is bumped (Network.set_params), so
caches recompute. A step is all or nothing: bad input (shapes, dtypes, labels,
NaN), a network that cannot be trained, or a loss that turns NaN/infinite
raises NetworkError before anything in the network or the optimizer changes.

Epochs shuffle with numpy.random.default_rng([seed, epoch]), so an epoch's
order depends only on the seed and its number; a paused epoch (should_stop
between batches) resumes where it stopped, also after state()/from_state().

The trainer is not thread-safe: drive it from one thread (the app's training
thread); other threads may read net.params(i) at any time (each layer's
parameters are replaced as a whole).
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..errors import Cancelled, NetworkError, short_repr
from ..kernels.reuse import reuse_sources
from ..layers import BatchNorm, describe_shape
from . import optim
from .batchnorm import BatchNormTrain
from .loss import correct, cross_entropy, softmax

__all__ = ["Trainer", "History", "EpochResult", "STATE_FORMAT"]

STATE_FORMAT = "cnnplay-training"
STATE_VERSION = 1
TRAIN_MAPS_FACTOR = 3.0  # a step holds every map, a gradient per map and some temporaries
MAX_BATCH_HISTORY = 1_000_000  # per-batch entries kept (the oldest are dropped beyond this)
_EVAL_BATCH = 256


_INPUT_GRAD: dict[type, bool] = {}


def _check(cancel) -> None:
    if cancel is not None and cancel():
        raise Cancelled()


def relu_then_maxpool(layer_types) -> set[int]:
    """Indices i of the ReLU layers (not leaky) followed by a max pool at i + 1.

    max(relu(a), relu(b)) == relu(max(a, b)) exactly, so the pair's output is
    the pool of the ReLU's input, rectified; its gradient reaches the same
    position of each window with the same value: where a window's maximum is
    positive it is the first maximum either way, and where it is not, the
    ReLU's gradient is zero either way (as -0.0 for a negative gradient, at the
    window's first pixel or at its maximum). A training step rectifies the
    pooled map instead of the full one, forward and backward."""
    return {i for i in range(len(layer_types) - 1)
            if getattr(layer_types[i], "name", None) == "relu"
            and getattr(layer_types[i + 1], "name", "").startswith("maxpool")}


def _takes_input_grad(t) -> bool:
    """Whether t.backward_batch can skip the input gradient (input_grad=False)."""
    cls = type(t)
    if cls not in _INPUT_GRAD:
        import inspect
        _INPUT_GRAD[cls] = "input_grad" in inspect.signature(t.backward_batch).parameters
    return _INPUT_GRAD[cls]


class History:
    """What training did: `epochs` (one dict per finished epoch) and, per
    optimizer step, `batch_loss` and `batch_acc` (training mode, before the update)."""

    EPOCH_KEYS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "steps", "seconds")

    def __init__(self):
        self.epochs: list[dict] = []
        self.batch_loss: list[float] = []
        self.batch_acc: list[float] = []

    def add_batch(self, loss: float, acc: float) -> None:
        self.batch_loss.append(loss)
        self.batch_acc.append(acc)
        if len(self.batch_loss) > MAX_BATCH_HISTORY:
            del self.batch_loss[0], self.batch_acc[0]

    def series(self, key: str) -> list:
        """One value per epoch, e.g. series("test_acc") (None where not measured)."""
        return [e.get(key) for e in self.epochs]


class EpochResult(dict):
    """run_epoch's answer: the epoch's entry in History.epochs when it finished
    (finished=True), or {"finished": False, "epoch", "batch", "batches"} when paused."""


def _settings(optimizer, lr, momentum, weight_decay, betas, eps, dampening, nesterov, schedule,
              seed, batch_size) -> dict:
    def num(name, v, lo=0.0, hi=math.inf, lo_open=False):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
            raise NetworkError(f"{name} must be a number, not {short_repr(v)}", field=name)
        v = float(v)
        if v < lo or (lo_open and v == lo) or v > hi:
            rng = f"{'above' if lo_open else 'at least'} {lo:g}" + (f" and at most {hi:g}" if hi < math.inf else "")
            raise NetworkError(f"{name} must be {rng}, not {v:g}", field=name)
        return v

    def integer(name, v, lo, hi=2**63 - 1):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
            raise NetworkError(f"{name} must be an integer from {lo} to {hi}, not {short_repr(v)}", field=name)
        return int(v)

    if optimizer not in optim.OPTIMIZERS:
        raise NetworkError(f"unknown optimizer {short_repr(optimizer)} (known: {', '.join(optim.OPTIMIZERS)})",
                           field="optimizer")
    s = {"optimizer": optimizer,
         "lr": num("lr", lr, 0.0, 1e3, lo_open=True),
         "momentum": num("momentum", momentum, 0.0, 1.0),
         "dampening": num("dampening", dampening, 0.0, 1.0),
         "nesterov": bool(nesterov),
         "weight_decay": num("weight_decay", weight_decay, 0.0, 1e3),
         "eps": num("eps", eps, 0.0, 1.0, lo_open=True),
         "seed": integer("seed", seed, 0),
         "batch_size": integer("batch_size", batch_size, 1, 1 << 20)}
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise NetworkError(f"betas must be a pair of numbers, not {short_repr(betas)}", field="betas") from None
    s["betas"] = [num("betas[0]", b1, 0.0, 1.0), num("betas[1]", b2, 0.0, 1.0)]
    if s["betas"][0] >= 1 or s["betas"][1] >= 1:
        raise NetworkError(f"betas must be below 1, not {s['betas']}", field="betas")
    if nesterov and (s["momentum"] == 0 or s["dampening"] != 0):
        raise NetworkError("nesterov momentum needs a momentum above 0 and no dampening", field="nesterov")
    s["schedule"] = _check_schedule(schedule)
    return s


def _check_schedule(sch):
    if sch is None:
        return None
    if not isinstance(sch, dict) or sch.get("kind") not in ("step", "cosine"):
        raise NetworkError("schedule must be None, {'kind': 'step', 'step_size': n, 'gamma': g} or "
                           f"{{'kind': 'cosine', 'epochs': n, 'min_lr': m}}, not {short_repr(sch, 120)}",
                           field="schedule")
    if sch["kind"] == "step":
        allowed = {"kind", "step_size", "gamma"}
        n, g = sch.get("step_size"), sch.get("gamma", 0.1)
        ok = isinstance(n, int) and not isinstance(n, bool) and n >= 1 and isinstance(g, (int, float)) \
            and not isinstance(g, bool) and 0 < g <= 1
        out = {"kind": "step", "step_size": n, "gamma": float(g) if ok else g}
    else:
        allowed = {"kind", "epochs", "min_lr"}
        n, m = sch.get("epochs"), sch.get("min_lr", 0.0)
        ok = isinstance(n, int) and not isinstance(n, bool) and n >= 1 and isinstance(m, (int, float)) \
            and not isinstance(m, bool) and m >= 0 and math.isfinite(m)
        out = {"kind": "cosine", "epochs": n, "min_lr": float(m) if ok else m}
    if not ok or set(sch) - allowed:
        raise NetworkError(f"bad schedule {short_repr(sch, 120)}: step needs an integer step_size >= 1 and "
                           "0 < gamma <= 1; cosine an integer epochs >= 1 and min_lr >= 0", field="schedule")
    return out


class Trainer:
    """See the module doc. `classes` names the K outputs (default: those of the
    first data set run_epoch sees); `dataset` is that data set's reference."""

    def __init__(self, net, optimizer: str = "sgd", lr: float = 0.01, momentum: float = 0.0,
                 weight_decay: float = 0.0, betas=(0.9, 0.999), eps: float = 1e-8, *,
                 dampening: float = 0.0, nesterov: bool = False, schedule: dict | None = None,
                 seed: int = 0, batch_size: int = 32, classes: list[str] | None = None):
        self.settings = _settings(optimizer, lr, momentum, weight_decay, betas, eps, dampening, nesterov,
                                  schedule, seed, batch_size)
        self.net = net
        self.num_classes = self.check_network(net)
        self.steps = 0  # optimizer steps taken
        self.epoch = 0  # epochs finished
        self.position = 0  # batches done in the current (unfinished) epoch
        self.history = History()
        self.classes = None if classes is None else list(classes)
        self.dataset = None  # the training data set's reference
        self.test_dataset = None
        self._opt_state: dict[tuple[int, str], dict[str, np.ndarray]] = {}
        self._epoch_sums = [0.0, 0.0, 0]  # loss * n, correct, n of the current epoch so far
        self._epoch_started = None

    # -- checks ------------------------------------------------------------------
    @staticmethod
    def check_network(net) -> int:
        """K, the number of class scores the network ends in; NetworkError saying
        what to add when it cannot be trained."""
        if getattr(net, "error", None) is not None:
            raise NetworkError(f"fix the network first: {net.error}", net.error.layer, net.error.field,
                               net.error.layer_type)
        if len(net) == 0:
            raise NetworkError("the network has no layers; training needs K class scores: add flatten + linear "
                               "with K outputs")
        out = net.output_shapes[-1]
        last = len(net) - 1
        if len(out) != 1:
            shape = "x".join(map(str, out))
            what = "map" if len(out) == 3 else "signal"
            raise NetworkError(f"the network ends in a {shape} {what}; training needs K class scores: "
                               "add flatten + linear with K outputs", last, layer_type=net.layer_types[-1].name)
        if out[0] < 2:
            raise NetworkError(f"the network ends in {out[0]} score; training needs K >= 2 class scores "
                               "(one per class): give the last linear layer K outputs", last,
                               layer_type=net.layer_types[-1].name)
        return out[0]

    def _check_net_unchanged(self) -> None:
        k = self.check_network(self.net)
        if k != self.num_classes:
            self.num_classes = k

    def check_batch(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """(x float32 (N, *input_shape), y int64 (N,)) or NetworkError naming the problem."""
        net, k = self.net, self.num_classes
        x = np.asarray(x)
        if x.ndim != len(net.input_shape) + 1 or x.shape[1:] != net.input_shape:
            raise NetworkError(f"a training batch must be (N, {', '.join(map(str, net.input_shape))}): N samples "
                               f"of {describe_shape(net.input_shape)}, not {x.shape}", field="input")
        if x.shape[0] < 1:
            raise NetworkError("the batch is empty (N = 0)", field="input")
        if x.dtype.kind not in "fiu":
            raise NetworkError(f"the input must hold real numbers, not {x.dtype}", field="input")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise NetworkError("the input holds NaN or infinite values", field="input")
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise NetworkError(f"labels must be one integer per sample, shape ({x.shape[0]},), not {y.shape}",
                               field="labels")
        if y.dtype.kind not in "iu":
            raise NetworkError(f"labels must be integers (class indices), not {y.dtype}", field="labels")
        bad = (y < 0) | (y >= k)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise NetworkError(f"label {int(y[i])} of sample {i} is outside [0, {k}): the network has {k} "
                               "class scores", field="labels")
        return x, y.astype(np.int64)

    def check_dataset(self, ds, what: str = "the data set") -> None:
        net, k = self.net, self.num_classes
        if tuple(ds.sample_shape) != tuple(net.input_shape):
            raise NetworkError(f"{what} '{ds.name}' has samples of {describe_shape(ds.sample_shape)} but the "
                               f"network's input is {describe_shape(net.input_shape)}", field="input")
        if ds.num_classes != k:
            raise NetworkError(f"{what} '{ds.name}' has {ds.num_classes} classes but the network ends in {k} "
                               f"scores: give the last linear layer {ds.num_classes} outputs",
                               len(net) - 1, layer_type=net.layer_types[-1].name)

    # -- one step -------------------------------------------------------------------
    def lr(self) -> float:
        """The learning rate of the current epoch (after the schedule)."""
        return optim.scheduled_lr(self.settings, self.epoch)

    def gradients(self, x, y, cancel=None):
        """(loss, correct, grads, new running stats) of one training-mode pass; changes nothing.

        grads: {(layer, name): float32 gradient of the batch's mean loss};
        running: {layer: {"running_mean", "running_var"}} for batch-norm layers.
        cancel: None or a callable asked between layers; when it returns True the
        pass stops with `Cancelled` (the app's Pause does not wait for the batch)."""
        self._check_net_unchanged()
        x, y = self.check_batch(x, y)
        net = self.net
        n = x.shape[0]
        net.check_batch_memory(n, TRAIN_MAPS_FACTOR, "a training step")
        # non-finite results are refused below; each conv input's source serves forward and backward
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), reuse_sources():
            return self._gradients(x, y, cancel)

    def _gradients(self, x, y, cancel=None):
        net, n = self.net, x.shape[0]
        acts, bn, running = [x], {}, {}
        h = x
        pooled_first = relu_then_maxpool(net.layer_types)
        for i, t in enumerate(net.layer_types):
            _check(cancel)
            p = net.params(i)
            if i - 1 in pooled_first:  # computed with the ReLU before it
                acts.append(h)
                continue
            if i in pooled_first:
                # ReLU then max pool = max pool then ReLU, exactly: the ReLU runs on the
                # pooled map (a quarter of it for 2x2 windows), and acts[i + 1] holds the
                # pooled map before the ReLU instead of the ReLU's full-size output
                pool = net.layer_types[i + 1]
                h = pool.forward_batch(net.configs[i + 1], h, net.params(i + 1))
                acts.append(h)
                h = t.forward_batch(net.configs[i], h, p)
                continue
            if isinstance(t, BatchNorm):
                positions = math.prod(h.shape[2:])
                if n * positions < 2:
                    raise NetworkError("batch norm in training needs more than one value per channel: use a "
                                       "batch of 2 or more samples", i, layer_type=t.name)
                bn[i] = BatchNormTrain(h, p, net.configs[i]["eps"])
                h = bn[i].y
                running[i] = {"running_mean": bn[i].running_mean, "running_var": bn[i].running_var}
            else:
                h = t.forward_batch(net.configs[i], h, p)
            acts.append(h)
        logits = acts[-1]
        if not np.isfinite(logits).all():
            raise NetworkError("the network's scores became NaN or infinite: lower the learning rate (or "
                               "reset the weights)")
        loss, g = cross_entropy(logits, y)
        hits = correct(logits, y)
        grads = {}
        for i in range(len(net) - 1, -1, -1):
            _check(cancel)
            t = net.layer_types[i]
            need_gx = i > 0
            if i in pooled_first:  # its gradient went through the max pool after it
                continue
            if i - 1 in pooled_first:
                # the pair's gradient: the ReLU's on the pooled map, then the pool's,
                # routed to the maxima of the ReLU's input (see the forward pass)
                if i - 1 == 0:  # what is left is the input's gradient, not needed
                    break
                relu, cfg = net.layer_types[i - 1], net.configs[i - 1]
                g, _ = relu.backward_batch(cfg, acts[i], acts[i + 1], g, {})
                g, _ = t.backward_batch(net.configs[i], acts[i - 1], acts[i], g, net.params(i))
                continue
            if i in bn:
                g_in, pg = bn[i].backward(g, input_grad=need_gx)
            else:
                kw = {} if need_gx or not _takes_input_grad(t) else {"input_grad": False}
                g_in, pg = t.backward_batch(net.configs[i], acts[i], acts[i + 1], g, net.params(i),
                                            param_grads=bool(t.learnable), **kw)
            for name, a in pg.items():
                if name in t.learnable:
                    grads[(i, name)] = np.asarray(a, dtype=np.float32)
            g = g_in
        for (i, name), a in grads.items():
            if not np.isfinite(a).all():
                raise NetworkError(f"the gradient of {name} became NaN or infinite: lower the learning rate "
                                   "(or reset the weights)", i, name, net.layer_types[i].name)
        return loss, hits, grads, running

    def step(self, x, y, cancel=None) -> float:
        """One optimizer update on batch x (N, *input_shape) with labels y (N,);
        the batch's mean loss before the update. All or nothing (see the module doc):
        a `cancel` that returns True between two layers (see `gradients`) raises
        `Cancelled` and nothing changes."""
        loss, hits, grads, running = self.gradients(x, y, cancel)
        n = np.asarray(y).shape[0]
        self._apply(grads, running)
        self.history.add_batch(loss, hits / n)
        self._epoch_sums[0] += loss * n
        self._epoch_sums[1] += hits
        self._epoch_sums[2] += n
        return loss

    def _apply(self, grads, running) -> None:
        net, s = self.net, self.settings
        step = self.steps + 1
        lr = self.lr()
        new_params: dict[int, dict[str, np.ndarray]] = {}
        new_state = {}
        for (i, name), g in grads.items():
            p = net.params(i)[name]
            state = self._opt_state.get((i, name), {})
            if any(b.shape != p.shape for b in state.values()):
                state = {}  # the layer changed shape since: start its buffers afresh
            p_new, st = optim.update(s, p, g, state, step, lr)
            if not np.isfinite(p_new).all():
                raise NetworkError(f"the update of {name} would make it NaN or infinite: lower the learning rate",
                                   i, name, net.layer_types[i].name)
            new_params.setdefault(i, {})[name] = p_new
            new_state[(i, name)] = st
        for i, stats in running.items():
            for name, a in stats.items():
                if not np.isfinite(a).all():
                    raise NetworkError(f"the batch's statistics make {name} NaN or infinite: the values reaching "
                                       "this layer are too large (lower the learning rate or rescale the input)",
                                       i, name, net.layer_types[i].name)
            new_params.setdefault(i, {}).update(stats)
        # commit: nothing above changed the network or the optimizer
        for i, arrays in new_params.items():
            net.set_params(i, **arrays)
        self._opt_state.update(new_state)
        self.steps = step

    # -- inference ---------------------------------------------------------------------
    def scores(self, x, batch_size: int = _EVAL_BATCH) -> np.ndarray:
        """The last layer's outputs (N, K) in inference mode, computed in chunks."""
        self._check_net_unchanged()
        x = self.net.check_batch(x)
        chunk = max(1, min(batch_size, self.net.max_batch()))
        self.net.check_batch_memory(min(chunk, x.shape[0]))
        out = [self.net.forward(x[a:a + chunk])[-1] for a in range(0, x.shape[0], chunk)]
        return np.concatenate(out)

    def predict(self, x, batch_size: int = _EVAL_BATCH) -> np.ndarray:
        """Softmax probabilities (N, K), float32, inference mode."""
        return softmax(self.scores(x, batch_size)).astype(np.float32)

    def evaluate(self, x, y, batch_size: int = _EVAL_BATCH) -> tuple[float, float]:
        """(mean loss, accuracy) in inference mode; nothing changes."""
        x, y = self.check_batch(x, y)
        z = self.scores(x, batch_size)
        loss, _ = cross_entropy(z, y, grad=False)
        return loss, correct(z, y) / len(y)

    def evaluate_dataset(self, ds, batch_size: int = _EVAL_BATCH) -> tuple[float, float]:
        self.check_dataset(ds)
        return self.evaluate(ds.x, ds.y, batch_size)

    def confusion(self, ds, batch_size: int = _EVAL_BATCH) -> np.ndarray:
        """(K, K) counts: row = true class, column = predicted class, inference mode."""
        self.check_dataset(ds)
        pred = np.argmax(self.scores(ds.x, batch_size), axis=1)
        k = self.num_classes
        return np.bincount(ds.y * k + pred, minlength=k * k).reshape(k, k)

    # -- epochs --------------------------------------------------------------------------
    def order(self, n: int, epoch: int | None = None) -> np.ndarray:
        """The shuffled sample order of epoch `epoch` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        return np.random.default_rng([self.settings["seed"], epoch]).permutation(n)

    def batches_per_epoch(self, n: int, batch_size: int | None = None) -> int:
        bs = batch_size or self.settings["batch_size"]
        return -(-n // bs)

    def run_epoch(self, train, batch_size: int | None = None, test=None, on_batch=None,
                  should_stop=None) -> EpochResult:
        """Train on every sample of `train` (a Dataset) once, in the epoch's
        seeded order, in batches of `batch_size` (default: the setting; the
        last batch holds the rest; a last batch of 1 with batch norm is
        skipped, like drop_last for that case only).

        on_batch(info) after each step: info = {"epoch", "batch", "batches",
        "loss", "acc", "steps", "lr"}. should_stop() is asked before each batch;
        when it says so, returns EpochResult(finished=False, ...) and the next
        call continues this epoch from that batch. On finishing, the test set
        (if any) is evaluated and the epoch's entry is added to the history."""
        self.check_dataset(train, "the training set")
        if test is not None:
            self.check_dataset(test, "the test set")
        bs = batch_size or self.settings["batch_size"]
        if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
            raise NetworkError(f"batch_size must be a positive integer, not {short_repr(bs)}", field="batch_size")
        bs = int(bs)
        self.net.check_batch_memory(min(bs, len(train)), TRAIN_MAPS_FACTOR, "a training step")
        if self.classes is None:
            self.classes = train.classes
        if train.reference is not None:
            self.dataset = train.reference
        if test is not None and test.reference is not None:
            self.test_dataset = test.reference
        n = len(train)
        if self.position and (n, bs) != getattr(self, "_epoch_shape", (n, bs)):
            self.position = 0  # a paused epoch over other data (or batch size) starts again
        self._epoch_shape = (n, bs)
        order = self.order(n)
        batches = self.batches_per_epoch(n, bs)
        has_bn = any(isinstance(t, BatchNorm) for t in self.net.layer_types)
        if self.position == 0 or self._epoch_started is None:
            self._epoch_started = time.perf_counter()
        if self.position == 0:
            self._epoch_sums = [0.0, 0.0, 0]
        while self.position < batches:
            if should_stop is not None and should_stop():
                return EpochResult(finished=False, epoch=self.epoch + 1, batch=self.position, batches=batches)
            idx = order[self.position * bs:(self.position + 1) * bs]
            if not (has_bn and len(idx) == 1 and self.position > 0):
                loss = self.step(train.x[idx], train.y[idx])
                if on_batch is not None:
                    on_batch({"epoch": self.epoch + 1, "batch": self.position + 1, "batches": batches,
                              "loss": loss, "acc": self.history.batch_acc[-1], "steps": self.steps,
                              "lr": self.lr()})
            self.position += 1
        total, hits, count = self._epoch_sums
        entry = {"epoch": self.epoch + 1, "train_loss": total / max(count, 1), "train_acc": hits / max(count, 1),
                 "test_loss": None, "test_acc": None, "lr": self.lr(), "steps": self.steps,
                 "seconds": time.perf_counter() - self._epoch_started}
        if test is not None:
            entry["test_loss"], entry["test_acc"] = self.evaluate(test.x, test.y)
        self.history.epochs.append(entry)
        self.epoch += 1
        self.position = 0
        self._epoch_sums = [0.0, 0.0, 0]
        self._epoch_started = None
        return EpochResult(entry, finished=True)

    def fit(self, train, epochs: int, batch_size: int | None = None, test=None, on_batch=None,
            on_epoch=None, should_stop=None) -> list[dict]:
        """run_epoch `epochs` times (fewer if stopped); the finished epochs' entries."""
        done = []
        for _ in range(epochs):
            r = self.run_epoch(train, batch_size, test, on_batch, should_stop)
            if not r["finished"]:
                break
            done.append(dict(r))
            if on_epoch is not None:
                on_epoch(dict(r))
        return done

    def attach(self, net) -> None:
        """Go on training `net` instead (e.g. the network after an edit in the app):
        settings, history and progress stay; optimizer buffers stay for the
        parameters that still exist with the same shape at the same layer index,
        the others start afresh. NetworkError (and no change) if `net` cannot be trained."""
        k = self.check_network(net)
        keep = {}
        for (i, name), st in self._opt_state.items():
            if i < len(net) and name in net.layer_types[i].learnable and \
                    tuple(net.param_shapes(i).get(name, ())) == next(iter(st.values())).shape:
                keep[(i, name)] = st
        if self.classes is not None and len(self.classes) != k:
            self.classes = None
        self.net, self.num_classes, self._opt_state = net, k, keep

    def reset(self, seed: int | None = None) -> None:
        """Start again: the network's weights back to their initial values
        (Network.reset_parameters(seed)), optimizer state and history cleared."""
        self.net.reset_parameters(seed)
        self._opt_state.clear()
        self.steps = self.epoch = self.position = 0
        self.history = History()
        self._epoch_sums = [0.0, 0.0, 0]
        self._epoch_started = None

    # -- state ---------------------------------------------------------------------------
    def state(self) -> dict:
        """Everything needed to resume, as JSON data plus float32 arrays under
        "arrays" ({name: array}); no Python objects. See from_state."""
        arrays = {}
        for (i, name), st in sorted(self._opt_state.items()):
            for buf, a in st.items():
                arrays[f"optimizer/{i}/{name}/{buf}"] = np.array(a, dtype=np.float32)
        arrays["history/batch_loss"] = np.array(self.history.batch_loss, dtype=np.float32)
        arrays["history/batch_acc"] = np.array(self.history.batch_acc, dtype=np.float32)
        return {"format": STATE_FORMAT, "version": STATE_VERSION, "settings": dict(self.settings),
                "steps": self.steps, "epoch": self.epoch, "position": self.position,
                "epoch_sums": list(self._epoch_sums), "classes": self.classes,
                "dataset": self.dataset, "test_dataset": self.test_dataset,
                "history": {"epochs": [dict(e) for e in self.history.epochs]},
                "arrays": arrays}

    @classmethod
    def from_state(cls, net, state: dict) -> "Trainer":
        """A trainer for `net` resuming `state` (from state() or a .cnnplay file).
        NetworkError naming the field when the state is malformed or does not fit
        the network (optimizer buffers of a different shape are refused)."""
        from .state import restore
        return restore(cls, net, state)
