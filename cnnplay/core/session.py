"""The session: the one model every view observes (Qt-free).

It holds the network description (`spec`, which may contain an invalid layer
the user is still editing), the Network built from its valid prefix, the
input, the selection and the view settings. Views write through its methods
and listen to its signals; they keep no state of their own that it lacks.

Every edit replaces state rather than mutating it, so a `State` snapshot is a
complete, cheap undo point (the app wraps edits in QUndoCommands that swap
snapshots).
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, replace

import numpy as np

from .errors import NetworkError, short_repr
from .events import Signal
from .network import Network

Unit = tuple[int, ...]


@dataclass(frozen=True)
class State:
    """Everything an undo step restores."""

    spec: dict
    network: Network
    input_array: np.ndarray
    input_source: dict
    input_notes: tuple[str, ...] = ()
    # The trainer's saved state for this network (optimizer state, history, settings;
    # `cnnplay.Trainer.state()`), or None before any training. Part of the undo point,
    # so that undoing a training run also takes back its optimizer state and curves.
    # It always fits `network` (see fit_training): a file written from the pair loads.
    training: object = None


@dataclass
class Selection:
    layer_id: object = None  # the layer selected in the stack
    unit_layer_id: object = None  # the layer of the selected neuron
    unit: Unit | None = None


DEFAULT_VIEW = {
    "levels": "layer",  # "layer": one colour scale per layer; "channel": one per channel
    "show_effective": False,  # effective (gradient) receptive field overlay
}


class Session:
    def __init__(self, spec: dict, input_array: np.ndarray, input_source: dict | None = None,
                 seed: int = 0, network: Network | None = None):
        self.network_changed = Signal()  # description or parameters changed
        self.input_changed = Signal()
        self.selection_changed = Signal()
        self.view_changed = Signal()
        self.dataset_changed = Signal()  # the attached data set (or its reference) changed
        self.training_changed = Signal()  # the training state changed (new weights come with network_changed)
        self.seed = seed
        self._dataset = None
        self._dataset_reference: dict | None = None
        self._classes: tuple[str, ...] | None = None
        self.view = dict(DEFAULT_VIEW)
        self.selection = Selection()
        self._ids = itertools.count(1)
        x = _as_input(input_array)
        spec = self._with_ids(dict(spec, input=list(x.shape)))
        net = Network.from_dict(spec, seed=seed, partial=True, reuse=network)
        self._state = State(spec, net, x, dict(input_source or {}))
        self.input_token = 0  # changes whenever the input array changes

    # -- reading --------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    @property
    def spec(self) -> dict:
        """A copy of the full description, including layers after an invalid one."""
        return copy.deepcopy(self._state.spec)

    @property
    def network(self) -> Network:
        return self._state.network

    @property
    def error(self) -> NetworkError | None:
        return self._state.network.error

    @property
    def layers(self) -> list[dict]:
        return copy.deepcopy(self._state.spec["layers"])

    @property
    def input_array(self) -> np.ndarray:
        return self._state.input_array

    @property
    def input_source(self) -> dict:
        return dict(self._state.input_source)

    @property
    def input_notes(self) -> tuple[str, ...]:
        return self._state.input_notes

    # -- the attached data set (Contract 4) -------------------------------------
    @property
    def dataset(self):
        """The attached `cnnplay.datasets.Dataset`, or None (none attached, or only its
        reference is known: a file remembers where its data came from, and a folder or
        .npz is read again only when the user asks)."""
        return self._dataset

    @property
    def dataset_reference(self) -> dict | None:
        """Where the data set comes from: {"builtin": name, "params": {...}},
        {"folder": path, ...} or {"npz": path}; kept when the data itself is not loaded."""
        return copy.deepcopy(self._dataset_reference)

    @property
    def classes(self) -> tuple[str, ...] | None:
        """The class names the network is (being) trained on, or None."""
        return self._classes

    def output_classes(self) -> tuple[str, ...] | None:
        """The class names, when the network's last layer outputs exactly one score per
        class (a flat vector of len(classes)); else None."""
        net, classes = self._state.network, self._classes
        if not classes or len(net) == 0 or net.error is not None:
            return None
        shape = net.output_shapes[-1]
        return classes if len(shape) == 1 and shape[0] == len(classes) else None

    def set_dataset(self, dataset, reference: dict | None = None) -> None:
        """Attach a data set (anything with x, y, classes and reference, i.e. a
        `cnnplay.datasets.Dataset`), or detach with None. Its classes become the
        session's class names. Not an undo step: a data set is not part of the network."""
        if dataset is None:
            new = (None, None, None)
        else:
            ref = reference if reference is not None else getattr(dataset, "reference", None)
            new = (dataset, copy.deepcopy(ref) if isinstance(ref, dict) else None,
                   tuple(str(c) for c in dataset.classes))
        if new[0] is self._dataset and new[1:] == (self._dataset_reference, self._classes):
            return
        self._dataset, self._dataset_reference, self._classes = new
        self.dataset_changed.emit()

    def set_dataset_reference(self, reference: dict | None, classes=None) -> None:
        """Remember a data set's reference and class names without its data (a file
        being reopened); the Train panel offers to load it."""
        new_ref = copy.deepcopy(reference) if isinstance(reference, dict) else None
        new_classes = tuple(str(c) for c in classes) if classes else None
        if self._dataset is None and (new_ref, new_classes) == (self._dataset_reference, self._classes):
            return
        self._dataset, self._dataset_reference, self._classes = None, new_ref, new_classes
        self.dataset_changed.emit()

    # -- training ----------------------------------------------------------------
    @property
    def training(self):
        """The trainer's saved state (see State.training), or None."""
        return self._state.training

    def set_training(self, training) -> None:
        """A new training state for the current network (not an undo step by itself);
        what of it does not fit the network is left out (fit_training)."""
        training = fit_training(training, self._state.network)
        if training is not self._state.training:
            self._state = replace(self._state, training=training)
            self.training_changed.emit()

    def set_trained(self, params: list[dict], training=None) -> None:
        """New parameter values for every valid layer from training (params[i] for
        layer i; layers beyond the list keep theirs) and the trainer state that goes
        with them; the description does not change."""
        old = self._state.network
        net = Network.from_dict(self._state.spec, seed=self.seed, partial=True, reuse=old)
        for i, arrays in enumerate(params[:len(net)]):
            if arrays:
                net.set_params(i, **arrays)
        training = fit_training(training, net)
        changed_training = training is not self._state.training
        self._replace(network=net, training=training)
        if changed_training:
            self.training_changed.emit()

    def reset_weights(self, training=None) -> None:
        """Every layer back to its initial parameters (from the session's seed, as when it
        was made), with `training` as the new training state."""
        net = Network.from_dict(self._state.spec, seed=self.seed, partial=True)
        changed_training = training is not self._state.training
        self._replace(network=net, training=training)
        if changed_training:
            self.training_changed.emit()

    def index_of(self, layer_id) -> int | None:
        for i, layer in enumerate(self._state.spec["layers"]):
            if layer.get("id") == layer_id:
                return i
        return None

    def layer_id(self, index: int):
        return self._state.spec["layers"][index].get("id")

    # -- edits ----------------------------------------------------------------
    def restore(self, state: State) -> None:
        """Go back (or forward) to a snapshot; the undo stack calls this."""
        input_changed = state.input_array is not self._state.input_array
        training_changed = state.training is not self._state.training
        self._state = state
        if input_changed:
            self.input_token += 1
        self._after_change(input_changed)
        if training_changed:
            self.training_changed.emit()

    def set_spec(self, spec: dict) -> None:
        """Replace the description; parameters of layers that keep their id and shapes stay.
        Raises NetworkError only when the input part itself is invalid."""
        spec = self._with_ids(copy.deepcopy(spec))
        spec["input"] = list(self._state.input_array.shape)
        net = Network.from_dict(spec, seed=self.seed, partial=True, reuse=self._state.network)
        self._replace(spec=spec, network=net)

    def replace(self, network: Network, input_array: np.ndarray | None = None,
                input_source: dict | None = None, spec: dict | None = None) -> None:
        """Take a whole network (e.g. from a file) and optionally a new input. The training
        state of the network it replaces goes with it (a caller with the new network's own
        state sets it afterwards)."""
        x = self._state.input_array if input_array is None else _as_input(input_array)
        spec = self._with_ids(copy.deepcopy(spec if spec is not None else network.to_dict()))
        spec["input"] = list(x.shape)
        net = Network.from_dict(spec, seed=network.seed, partial=True, reuse=network)
        trained = self._state.training is not None
        changes = {"spec": spec, "network": net, "training": None}
        if input_array is not None:
            changes.update(input_array=x, input_source=dict(input_source or {}), input_notes=())
        self._replace(**changes)
        if trained:
            self.training_changed.emit()

    def insert_layer(self, index: int, layer: dict) -> object:
        """Insert a layer dict at `index` (0..len); returns its id."""
        layers = self.layers
        index = max(0, min(index, len(layers)))
        layer = dict(layer)
        layer["id"] = self._new_id()
        layers.insert(index, layer)
        self.set_spec(dict(self._state.spec, layers=layers))
        return layer["id"]

    def remove_layer(self, index: int) -> None:
        layers = self.layers
        del layers[index]
        self.set_spec(dict(self._state.spec, layers=layers))

    def move_layer(self, src: int, dst: int) -> None:
        """Move the layer at `src` so that it ends up at index `dst`."""
        layers = self.layers
        layer = layers.pop(src)
        layers.insert(max(0, min(dst, len(layers))), layer)
        self.set_spec(dict(self._state.spec, layers=layers))

    def duplicate_layer(self, index: int) -> object:
        layer = self.layers[index]
        layer.pop("id", None)
        return self.insert_layer(index + 1, layer)

    def update_layer(self, index: int, **fields) -> None:
        """Set fields of layer `index` (raw values; an invalid one marks the layer invalid).
        A value of None removes the field so that its default applies."""
        layers = self.layers
        for name, value in fields.items():
            if value is None:
                layers[index].pop(name, None)
            else:
                layers[index][name] = value
        self.set_spec(dict(self._state.spec, layers=layers))

    def set_layer_params(self, index: int, **arrays) -> None:
        """New parameter values for a valid layer (shapes must match)."""
        old = self._state.network
        net = Network.from_dict(self._state.spec, seed=self.seed, partial=True, reuse=old)
        net.set_params(index, **arrays)
        self._replace(network=net)

    def set_input(self, array: np.ndarray, source: dict, notes=()) -> None:
        """A new input; the network's input shape (and the first layer's channels) follow it."""
        x = _as_input(array)
        spec = copy.deepcopy(self._state.spec)
        spec["input"] = list(x.shape)
        net = Network.from_dict(spec, seed=self.seed, partial=True, reuse=self._state.network)
        self._replace(spec=spec, network=net, input_array=x, input_source=dict(source),
                      input_notes=tuple(notes))

    def set_input_notes(self, notes) -> None:
        """Plain sentences about how the input was prepared (downscaled, alpha removed, ...)."""
        self._replace(input_notes=tuple(notes))

    # -- selection and view ------------------------------------------------------
    def select_layer(self, index: int | None) -> None:
        lid = None if index is None else self.layer_id(index)
        if lid != self.selection.layer_id:
            self.selection.layer_id = lid
            self.selection_changed.emit()

    @property
    def selected_layer(self) -> int | None:
        return None if self.selection.layer_id is None else self.index_of(self.selection.layer_id)

    def select_unit(self, layer: int | None, unit: Unit | None = None) -> None:
        """Select a neuron: `unit` indexes layer `layer`'s output fully, e.g. (c, y, x)."""
        if layer is None or unit is None:
            new = (None, None)
        else:
            try:
                unit = tuple(int(u) for u in unit)
            except (TypeError, ValueError, OverflowError, RecursionError):
                raise NetworkError(f"a unit is a tuple of integers, not {short_repr(unit)}") from None
            if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool):
                raise NetworkError(f"no layer {short_repr(layer)}")
            if not self._unit_exists(layer, unit):
                raise NetworkError(f"unit {short_repr(unit)} is outside layer {layer}'s output "
                                   f"{self.network.output_shapes[layer] if layer < len(self.network) else ''}")
            new = (self.layer_id(layer), unit)
        if new != (self.selection.unit_layer_id, self.selection.unit):
            self.selection.unit_layer_id, self.selection.unit = new
            self.selection_changed.emit()

    @property
    def selected_unit(self) -> tuple[int, Unit] | None:
        """(layer index, unit) of the selected neuron, if it still exists."""
        if self.selection.unit is None:
            return None
        layer = self.index_of(self.selection.unit_layer_id)
        if layer is None or not self._unit_exists(layer, self.selection.unit):
            return None
        return layer, self.selection.unit

    def set_view(self, **settings) -> None:
        changed = {k: v for k, v in settings.items() if self.view.get(k) != v}
        if changed:
            self.view.update(changed)
            self.view_changed.emit()

    # -- persistence helpers ------------------------------------------------------
    def extra(self) -> dict:
        """What an autosave stores beside the network: full spec, input, view, selection."""
        sel = self.selected_unit
        return {
            "spec": self.spec,
            "input_source": self.input_source,
            "view": dict(self.view),
            "selected_layer": self.selected_layer,
            "selected_unit": None if sel is None else [sel[0], list(sel[1])],
            "training": self._state.training.to_json() if hasattr(self._state.training, "to_json") else None,
            "dataset": None if self._dataset_reference is None and self._classes is None else {
                "reference": self.dataset_reference,
                "classes": None if self._classes is None else list(self._classes)},
        }

    # -- internals ----------------------------------------------------------------
    def _replace(self, **changes) -> None:
        old = self._state
        fitted = "network" in changes and "training" not in changes
        if fitted:
            # An edit: the training state keeps only what fits the new network (the
            # optimizer buffers of a reshaped layer go; undo brings them back).
            changes["training"] = fit_training(old.training, changes["network"], old.network)
        new = replace(old, **changes)
        input_changed = new.input_array is not old.input_array
        self._state = new
        if input_changed:
            self.input_token += 1
        self._after_change(input_changed)
        if fitted and new.training is not old.training:
            self.training_changed.emit()

    def _after_change(self, input_changed: bool) -> None:
        if input_changed:
            self.input_changed.emit()
        self.network_changed.emit()
        sel = self.selection
        if sel.layer_id is not None and self.index_of(sel.layer_id) is None:
            sel.layer_id = None
            self.selection_changed.emit()
        elif sel.unit is not None:
            self.selection_changed.emit()  # the field of the selected unit may have changed

    def _unit_exists(self, layer: int, unit: Unit) -> bool:
        net = self.network
        if not 0 <= layer < len(net):
            return False
        shape = net.output_shapes[layer]
        return len(unit) == len(shape) and all(0 <= u < n for u, n in zip(unit, shape))

    def _new_id(self) -> str:
        used = {layer.get("id") for layer in self._state.spec["layers"]} if hasattr(self, "_state") else set()
        while True:
            lid = f"L{next(self._ids)}"
            if lid not in used:
                return lid

    def _with_ids(self, spec: dict) -> dict:
        """Give every layer a unique id (ids carry parameters across edits)."""
        layers = spec.get("layers", [])
        if not isinstance(layers, list):
            return spec
        seen = set()
        for layer in layers:
            if isinstance(layer, dict):
                if layer.get("id") is None or layer.get("id") in seen or not isinstance(layer.get("id"), str):
                    layer["id"] = self._new_id_avoiding(seen, layers)
                seen.add(layer["id"])
        return spec

    def _new_id_avoiding(self, seen: set, layers: list) -> str:
        taken = seen | {layer.get("id") for layer in layers if isinstance(layer, dict)}
        while True:
            lid = f"L{next(self._ids)}"
            if lid not in taken:
                return lid


def fit_training(training, network: Network, old: Network | None = None):
    """`training` (see State.training) without what does not fit `network`: an object
    with a `for_network(network, old)` method (the app's) does it itself; a
    Trainer.state() goes through core.training.fit; anything else is kept as it is.
    `old` is the network the state was made for (layers are matched by id)."""
    if training is None or network is old:
        return training
    fit = getattr(training, "for_network", None)
    if callable(fit):
        return fit(network, old)
    if isinstance(training, dict) and training.get("format") == "cnnplay-training":
        from .training.fit import fit_state
        return fit_state(training, network, old).state
    return training


def dataset_info(extra) -> tuple[dict | None, tuple[str, ...] | None]:
    """(reference, classes) from a saved session's extra (see Session.extra), checked:
    anything malformed is ignored rather than trusted."""
    d = extra.get("dataset") if isinstance(extra, dict) else None
    if not isinstance(d, dict):
        return None, None
    ref = d.get("reference")
    ref = ref if isinstance(ref, dict) and ref and all(isinstance(k, str) for k in ref) else None
    classes = d.get("classes")
    ok = isinstance(classes, list) and 0 < len(classes) <= 100_000 and all(isinstance(c, str) for c in classes)
    return ref, tuple(classes) if ok else None


def _as_input(array) -> np.ndarray:
    x = np.ascontiguousarray(array, dtype=np.float32)
    if x.ndim not in (2, 3) or 0 in x.shape:
        raise NetworkError(f"an input must be (C, H, W) or (C, L) and non-empty, not {x.shape}", field="input")
    x.flags.writeable = False
    return x
