"""Fitting a saved trainer state to a network (after an edit, or on restore).

A Trainer.state() keeps optimizer buffers per parameter, named by layer index
(`optimizer/<layer>/<parameter>/<buffer>`), and the names of the class scores
the network ends in. An edit can reshape, remove or move parameters and change
the number of scores; what no longer fits must go (buffers of a moved layer
follow it to its new index), or the state and the network disagree, and a file
written from that pair is refused when loaded. `fit_state` keeps what fits and
says what it dropped; it looks at shapes only, never at array data, since it
runs on every edit. `checked_state` also validates the values (on restore).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import NetworkError
from . import optim

STATE_FORMAT = "cnnplay-training"  # trainer.STATE_FORMAT (not imported: that pulls in the kernels)
_OPT = "optimizer/"


@dataclass(frozen=True)
class Fitted:
    state: dict | None  # the state that fits the network (the very same object when all of it did)
    dropped: tuple[str, ...] = ()  # what was left out, in plain words ("layer 0 (conv2d) weight, bias")

    def summary(self) -> str:
        """One phrase for the user: 'the optimizer state of layer 0 (conv2d) weight; the class names (...)'."""
        opt = [d for d in self.dropped if d.startswith(("layer ", "a layer "))]
        rest = [d for d in self.dropped if d not in opt]
        parts = ([f"the optimizer state of {'; '.join(opt)}"] if opt else []) + rest
        return "; ".join(parts)


def is_trainer_state(state) -> bool:
    return isinstance(state, dict) and state.get("format") == STATE_FORMAT


def _scores(net) -> int | None:
    """K when the network ends in K class scores (a flat vector), else None."""
    if net.error is not None or len(net) == 0:
        return None
    out = net.output_shapes[-1]
    return out[0] if len(out) == 1 else None


def _index_map(net, old):
    """old layer index -> new layer index, by layer id (an edit may move layers); by
    position when there is no old network or it has no ids."""
    if old is None or not any(lid is not None for lid in old.ids):
        return None
    new_by_id = {lid: j for j, lid in enumerate(net.ids) if lid is not None}
    return {i: new_by_id[lid] for i, lid in enumerate(old.ids) if lid in new_by_id}


def fit_state(state, net, old=None) -> Fitted:
    """The part of `state` (a Trainer.state()) that fits `net`. `old` is the network
    the state was made for (its layers are matched to `net`'s by id); without it
    layer indices are taken as they are. A parameter keeps its buffers when its
    layer still has it with the same shape and all its optimizer's buffers are there;
    class names stay while the network ends in as many scores."""
    if not is_trainer_state(state) or not isinstance(state.get("arrays"), dict):
        return Fitted(state)  # nothing this knows how to fit (checked_state refuses it on restore)
    settings = state.get("settings")
    bufs = optim.BUFFERS.get(settings.get("optimizer")) if isinstance(settings, dict) else None
    index = _index_map(net, old)
    groups: dict[tuple[int, str], dict[str, str]] = {}  # (layer, parameter) -> {buffer: key}
    arrays = {}
    for key, a in state["arrays"].items():
        parts = key.split("/") if isinstance(key, str) and key.startswith(_OPT) else None
        if parts is None or len(parts) != 4 or not parts[1].isdigit():
            arrays[key] = a  # history, or something checked_state judges
            continue
        groups.setdefault((int(parts[1]), parts[2]), {})[parts[3]] = key
    changed = False
    dropped: dict[int | None, list[str]] = {}  # new layer index (None: removed) -> parameters
    for (i, pname), keys in sorted(groups.items()):
        j = i if index is None else index.get(i)
        fits = j is not None and j < len(net) and pname in net.layer_types[j].learnable \
            and (bufs is None or set(keys) == set(bufs)) \
            and all(tuple(getattr(state["arrays"][k], "shape", ())) == tuple(net.param_shapes(j).get(pname, (None,)))
                    for k in keys.values())
        if not fits:
            dropped.setdefault(j if j is not None and j < len(net) else None, []).append(pname)
            changed = True
            continue
        for buf, k in keys.items():
            new_key = f"{_OPT}{j}/{pname}/{buf}"
            arrays[new_key] = state["arrays"][k]
            changed |= new_key != k
    words = [f"layer {j} ({net.layer_types[j].name}) {', '.join(names)}"
             for j, names in sorted((j, n) for j, n in dropped.items() if j is not None)]
    if None in dropped:
        words.append("a layer the network no longer has")
    out = dict(state, arrays=arrays) if changed else state
    classes, k = state.get("classes"), _scores(net)
    if isinstance(classes, list) and k is not None and len(classes) != k:
        out = dict(out, classes=None)
        words.append(f"the class names ({len(classes)} names, but the network now ends in {k} scores)")
    return Fitted(out, tuple(words))


def checked_state(state, net) -> Fitted:
    """`fit_state` by layer index, then the full check of Trainer.from_state (values
    included): a parameter whose buffers are refused loses only them; anything
    else wrong drops the whole trainer state. For a state read from a file."""
    if state is None:
        return Fitted(None)
    if not is_trainer_state(state):
        return Fitted(None, ("the whole optimizer state (it is not a cnnplay training state)",))
    fitted = fit_state(state, net)
    state, dropped = fitted.state, list(fitted.dropped)
    if _scores(net) is None or net.error is not None:
        return fitted  # no trainer can be made for it now; make_trainer checks again at Train
    from .trainer import Trainer
    for _ in range(len(state["arrays"]) + 1):
        try:
            Trainer.from_state(net, state)
            return Fitted(state, tuple(dropped))
        except NetworkError as e:
            field = (e.field or "").removeprefix("training.")
            why = e.reason.removeprefix("training state, ")  # ("<field>: <reason>")
            parts = field.split("/")
            if field.startswith(_OPT) and len(parts) == 4 and parts[1].isdigit():
                i, pname = int(parts[1]), parts[2]
                prefix = f"{_OPT}{i}/{pname}/"
                state = dict(state, arrays={k: a for k, a in state["arrays"].items() if not k.startswith(prefix)})
                name = net.layer_types[i].name if i < len(net) else "?"
                dropped.append(f"layer {i} ({name}) {pname} ({why.removeprefix(field + ': ')})")
                continue
            return Fitted(None, tuple(dropped) + (f"the whole optimizer state ({why})",))
    return Fitted(None, tuple(dropped) + ("the whole optimizer state",))
