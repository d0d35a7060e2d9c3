"""The network: a checked description, its parameters, and the forward pass."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np

from . import memory
from .errors import Cancelled, NetworkError, short_repr
from .fields import MAX_INT, FieldContext
from .layers import LayerType, Shape, Window, describe_shape, layer_type

_versions = itertools.count(1)
FLOAT_BYTES = 4


def check_input_shape(raw) -> Shape:
    """[C, H, W] or [C, L] of positive ints."""
    if not isinstance(raw, (list, tuple)) or len(raw) not in (2, 3):
        raise NetworkError(f"'input' must be [C, H, W] or [C, L], not {short_repr(raw)}", field="input")
    for v in raw:
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_INT:
            raise NetworkError(f"'input' sizes must be integers from 1 to {MAX_INT}, not {short_repr(raw)}",
                               field="input")
    return tuple(raw)


class Network:
    """A checked network description with its parameters.

    Build with `Network.from_dict`. The description is immutable; parameters
    change only through `set_params`, which bumps the layer's version so that
    caches know to recompute from that layer on.
    """

    def __init__(self, input_shape: Shape, types: list[LayerType], configs: list[dict], ids: list,
                 shapes: list[Shape], params: list[dict], versions: list[int], seed: int,
                 error: NetworkError | None):
        self.input_shape = input_shape
        self.layer_types = types
        self.configs = configs
        self.ids = ids
        self.output_shapes = shapes
        self._params = params
        self._versions = versions
        self.seed = seed
        self.error = error  # the first invalid layer when built with partial=True

    # -- construction -------------------------------------------------------
    @classmethod
    def from_dict(cls, spec, seed: int = 0, partial: bool = False,
                  reuse: "Network | None" = None) -> "Network":
        """Check `spec` and initialise parameters deterministically from `seed`.

        partial=True keeps the valid layers before the first invalid one and
        stores that layer's NetworkError in `.error` instead of raising.
        reuse: take parameters from an earlier network for layers that keep
        their id (or position, when layers have no id) and parameter shapes.
        """
        if not isinstance(spec, dict):
            raise NetworkError(f"a network description must be an object, not {type(spec).__name__}")
        unknown = set(spec) - {"input", "layers"}
        if unknown:
            raise NetworkError(f"unknown key(s) {sorted(map(str, unknown))} (expected 'input' and 'layers')")
        if "input" not in spec:
            raise NetworkError("missing 'input' ([C, H, W] or [C, L])", field="input")
        input_shape = check_input_shape(spec["input"])
        raw_layers = spec.get("layers", [])
        if not isinstance(raw_layers, list):
            raise NetworkError(f"'layers' must be a list, not {type(raw_layers).__name__}", field="layers")

        types, configs, ids, shapes, params, versions = [], [], [], [], [], []
        old = _ReusableParams(reuse)
        budget = memory.limit_bytes()
        used = math.prod(input_shape) * FLOAT_BYTES
        if used > budget:
            raise NetworkError(f"an input of {'x'.join(map(str, input_shape))} needs {memory.format_bytes(used)}, "
                               f"above the memory limit of {memory.format_bytes(budget)}", field="input")
        shape, error = input_shape, None
        for i, raw in enumerate(raw_layers):
            try:
                t = layer_type(raw, i)
                cfg = t.normalize(raw, i)
                layer_id = raw.get("id")
                ctx = FieldContext(i, t.name)
                if layer_id is not None and (not isinstance(layer_id, (str, int)) or isinstance(layer_id, bool)):
                    raise ctx.error(f"must be a string or an integer, not {short_repr(layer_id)}", "id")
                out = t.output_shape(cfg, shape, ctx)
                pshapes = t.param_shapes(cfg, shape)
                used += (math.prod(out) + sum(math.prod(s) for s in pshapes.values())) * FLOAT_BYTES
                if used > budget:
                    raise ctx.error(f"the network would need about {memory.format_bytes(used)} up to here, "
                                    f"above the memory limit of {memory.format_bytes(budget)}")
            except NetworkError as e:
                if not partial:
                    raise
                error = e
                break
            found = old.take(i, layer_id, t, cfg, pshapes)
            if found is None:
                rng = np.random.default_rng([seed, i])
                p, version = t.init_params(cfg, shape, rng), next(_versions)
            else:
                p, version = found
            types.append(t)
            configs.append(cfg)
            ids.append(layer_id)
            shapes.append(out)
            params.append(p)
            versions.append(version)
            shape = out
        return cls(input_shape, types, configs, ids, shapes, params, versions, seed, error)

    def to_dict(self) -> dict:
        return {"input": list(self.input_shape), "layers": self.layer_dicts()}

    def layer_dicts(self) -> list[dict]:
        out = []
        for t, cfg, layer_id in zip(self.layer_types, self.configs, self.ids):
            d = t.to_json(cfg)
            if layer_id is not None:
                d["id"] = layer_id
            out.append(d)
        return out

    # -- facts the views ask for -------------------------------------------
    def __len__(self) -> int:
        return len(self.layer_types)

    def input_shape_of(self, i: int) -> Shape:
        return self.input_shape if i == 0 else self.output_shapes[i - 1]

    @property
    def parameter_counts(self) -> list[int]:
        return [t.parameter_count(c, self.input_shape_of(i)) for i, (t, c) in enumerate(zip(self.layer_types, self.configs))]

    @property
    def macs(self) -> list[int]:
        return [t.macs(c, self.input_shape_of(i), self.output_shapes[i])
                for i, (t, c) in enumerate(zip(self.layer_types, self.configs))]

    @property
    def windows(self) -> list[Window | None]:
        return [t.window(c, self.input_shape_of(i)) for i, (t, c) in enumerate(zip(self.layer_types, self.configs))]

    @property
    def summaries(self) -> list[str]:
        return [t.summary(c) for t, c in zip(self.layer_types, self.configs)]

    def estimate_bytes(self) -> int:
        """Bytes of all maps plus all parameters of one forward pass."""
        maps = math.prod(self.input_shape) + sum(math.prod(s) for s in self.output_shapes)
        pars = sum(a.size for p in self._params for a in p.values())
        return (maps + pars) * FLOAT_BYTES

    # -- parameters -----------------------------------------------------------
    def params(self, i: int) -> dict[str, np.ndarray]:
        """Layer i's parameters (PyTorch names and layouts), as read-only arrays."""
        out = {}
        for name, a in self._params[self._index(i)].items():
            v = a.view()
            v.flags.writeable = False
            out[name] = v
        return out

    def set_params(self, i: int, **arrays) -> None:
        """Replace some of layer i's parameters; shapes must match exactly."""
        i = self._index(i)
        t = self.layer_types[i]
        current = self._params[i]
        new = dict(current)
        for name, value in arrays.items():
            if name not in current:
                names = ", ".join(current) or "none"
                raise NetworkError(f"has no parameter '{name}' (it has: {names})", i, name, t.name)
            a = np.asarray(value)
            if a.shape != current[name].shape:
                raise NetworkError(f"expects shape {current[name].shape}, not {a.shape}", i, name, t.name)
            if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
                raise NetworkError(f"must hold numbers, not {a.dtype}", i, name, t.name)
            a = np.ascontiguousarray(a, dtype=np.float32)
            if not np.isfinite(a).all():
                raise NetworkError("contains NaN or infinite values", i, name, t.name)
            if name == "running_var" and (a < 0).any():
                raise NetworkError("a variance cannot be negative", i, name, t.name)
            new[name] = a.copy()
        self._params[i] = new
        self._versions[i] = next(_versions)

    def _index(self, i: int) -> int:
        if not isinstance(i, (int, np.integer)) or not 0 <= i < len(self):
            raise NetworkError(f"no layer {i!r}: the network has {len(self)} layers")
        return int(i)

    # -- compute --------------------------------------------------------------
    def layer_keys(self) -> list[tuple]:
        """One hashable key per layer that changes when its output could change,
        given the same input to the network (description and parameters so far)."""
        keys, chain = [], (self.input_shape,)
        for t, cfg, v in zip(self.layer_types, self.configs, self._versions):
            chain = (chain, t.name, json.dumps(t.to_json(cfg), sort_keys=True), v)
            keys.append(chain)
        return keys

    def check_input(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.shape != self.input_shape:
            raise NetworkError(f"the input is {x.shape} but the network expects {self.input_shape} "
                               f"({describe_shape(self.input_shape)})", field="input")
        return np.ascontiguousarray(x, dtype=np.float32)

    def layer_forward(self, i: int, x: np.ndarray) -> np.ndarray:
        return self.layer_types[i].forward(self.configs[i], x, self._params[i])

    def layer_backward(self, i: int, x: np.ndarray, y: np.ndarray, gy: np.ndarray, param_grads: bool = True):
        """(gradient w.r.t. layer i's input, gradients w.r.t. its parameters);
        param_grads=False computes only the input gradient (the dict is empty)."""
        return self.layer_types[i].backward(self.configs[i], x, y, gy, self._params[i], param_grads=param_grads)

    def forward(self, x, start: int = 0, previous: list[np.ndarray] | None = None,
                should_stop=None) -> list[np.ndarray]:
        """Each layer's output for input x.

        With `previous` (outputs of layers before `start`, e.g. from a cache)
        only layers `start` onwards are computed. `should_stop()` is asked
        between layers; when it says so, Cancelled is raised.
        """
        x = self.check_input(x)
        outputs = list(previous[:start]) if previous is not None else []
        if len(outputs) != start:
            raise ValueError("forward: need the outputs of every layer before start")
        h = outputs[-1] if outputs else x
        for i in range(start, len(self)):
            if should_stop is not None and should_stop():
                raise Cancelled()
            h = self.layer_forward(i, h)
            outputs.append(h)
        return outputs

    # -- receptive fields (see receptive.py) ----------------------------------
    def receptive_field_table(self):
        """One receptive.FieldRow per layer: size r, jump j and start per axis."""
        from . import receptive
        return receptive.receptive_field_table(self)

    def receptive_field(self, layer: int, unit, onto: int | None = None):
        """The exact receptive.ReceptiveField of `unit` of `layer` on the input
        (or on layer `onto`'s output map)."""
        from . import receptive
        return receptive.receptive_field(self, layer, unit, onto)

    def effective_receptive_field(self, x, layer: int, unit, outputs: list[np.ndarray] | None = None) -> np.ndarray:
        """|d unit / d input| summed over input channels, of the input's spatial shape."""
        from . import receptive
        return receptive.effective_receptive_field(self, x, layer, unit, outputs)


class _ReusableParams:
    """Parameters of an earlier network, matched to new layers by id or position."""

    def __init__(self, old: Network | None):
        self.by_id, self.by_pos = {}, {}
        if old is None:
            return
        for i, (t, cfg, lid) in enumerate(zip(old.layer_types, old.configs, old.ids)):
            entry = (t, cfg, old._params[i], old._versions[i])
            if lid is not None:
                self.by_id[_hashable(lid)] = entry
            else:
                self.by_pos[i] = entry

    def take(self, i, layer_id, t, cfg, pshapes):
        entry = self.by_id.get(_hashable(layer_id)) if layer_id is not None else self.by_pos.get(i)
        if entry is None:
            return None
        old_t, old_cfg, p, version = entry
        if old_t is not t or {k: a.shape for k, a in p.items()} != pshapes:
            return None
        # Same parameters; the version also stands for the settings, so a
        # changed setting (stride, eps, ...) gets a fresh version.
        return p, (version if old_cfg == cfg else next(_versions))


def _hashable(v):
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v
