"""The network: a checked description (Layout) with its parameters, and the forward pass."""

from __future__ import annotations

import itertools
import json
import math
import threading
import weakref

import numpy as np

from . import memory
from .errors import Cancelled, NetworkError, short_repr
from .layers import LayerType, Params, describe_shape
from .layout import FLOAT_BYTES, Layout

_versions = itertools.count(1)
MAX_SEED = 2**63 - 1  # what a file stores and numpy's generators take


def check_seed(seed) -> int:
    """A seed as an int from 0 to MAX_SEED; NetworkError (field 'seed') otherwise."""
    if isinstance(seed, np.integer):
        seed = int(seed)
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise NetworkError(f"the seed must be an integer from 0 to 2**63-1, not {short_repr(seed)}", field="seed")
    return seed


class Network(Layout):
    """A checked network description with its parameters.

    Build with `Network.from_dict`. The description is immutable; parameters
    change only through `set_params`, which bumps the layer's version so that
    caches know to recompute from that layer on.
    """

    def __init__(self, layout: Layout, params: list[dict], versions: list[int], seed: int):
        super().__init__(layout.input_shape, layout.layer_types, layout.configs, layout.ids,
                         layout.output_shapes, layout.error)
        self._params = params
        self._versions = versions
        self.seed = seed

    @classmethod
    def from_dict(cls, spec, seed: int = 0, partial: bool = False,
                  reuse: "Network | None" = None) -> "Network":
        """Check `spec` (Layout.from_dict) and initialise parameters deterministically from `seed`.

        partial=True keeps the valid layers before the first invalid one and
        stores that layer's NetworkError in `.error` instead of raising.
        reuse: take parameters from an earlier network for layers that keep
        their id (or position, when layers have no id) and parameter shapes.
        """
        seed = check_seed(seed)
        layout = Layout.from_dict(spec, partial=partial)
        old = _ReusableParams(reuse)
        params, versions = [], []
        for i, (t, cfg, layer_id) in enumerate(zip(layout.layer_types, layout.configs, layout.ids)):
            found = old.take(i, layer_id, t, cfg, layout.param_shapes(i))
            if found is None:  # made on first use (the worker's forward pass, not the GUI thread)
                p, version = _Initial.of(t, cfg, layout.input_shape_of(i), seed, i), next(_versions)
            else:
                p, version = found
            params.append(p)
            versions.append(version)
        return cls(layout, params, versions, seed)

    # -- parameters -----------------------------------------------------------
    def params(self, i: int) -> dict[str, np.ndarray]:
        """Layer i's parameters (PyTorch names and layouts), as read-only arrays
        (a dict that also carries their version, so the layer types' compute
        keeps its packed weights when given it)."""
        i = self._index(i)
        out = {}
        for name, a in self._layer_params(i).items():
            v = a.view()
            v.flags.writeable = False
            out[name] = v
        return Params(out, self._versions[i])

    def set_params(self, i: int, **arrays) -> None:
        """Replace some of layer i's parameters; shapes must match exactly."""
        i = self._index(i)
        t = self.layer_types[i]
        current = self._layer_params(i)
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

    def reset_parameters(self, seed: int | None = None) -> None:
        """Every layer's parameters back to their initial values for `seed`
        (default: the network's seed), with new versions (caches recompute).

        The initial values are PyTorch's default initialisation per layer type
        (see LayerType.init_params: conv/linear U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
        norms weight 1, bias 0, running mean 0, running variance 1), drawn from
        numpy.random.default_rng([seed, layer index]): the same as a fresh
        Network.from_dict(spec, seed)."""
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
                raise NetworkError(f"the seed must be an integer from 0 to 2**63-1, not {seed!r}", field="seed")
            self.seed = int(seed)
        for i, (t, cfg) in enumerate(zip(self.layer_types, self.configs)):
            self._params[i] = _Initial.of(t, cfg, self.input_shape_of(i), self.seed, i)
            self._versions[i] = next(_versions)

    def _layer_params(self, i: int) -> dict[str, np.ndarray]:
        p = self._params[i]
        return p.get() if isinstance(p, _Initial) else p

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

    def sample_bytes(self) -> int:
        """Bytes of one sample's maps in a forward pass (the input and every layer's output)."""
        return (math.prod(self.input_shape) + sum(math.prod(s) for s in self.output_shapes)) * FLOAT_BYTES

    def params_bytes(self) -> int:
        return sum(math.prod(s) for i in range(len(self)) for s in self.param_shapes(i).values()) * FLOAT_BYTES

    def max_batch(self, maps_factor: float = 1.0) -> int:
        """The largest batch whose maps (times `maps_factor`, e.g. 2 for training,
        which also holds gradients) plus the parameters fit the memory budget; 0 if none."""
        room = memory.limit_bytes() - self.params_bytes()
        return max(int(room // max(self.sample_bytes() * maps_factor, 1)), 0)

    def check_batch_memory(self, n: int, maps_factor: float = 1.0, what: str = "a forward pass") -> None:
        """NetworkError, before anything is allocated, if a batch of n does not fit the budget."""
        need = int(n * self.sample_bytes() * maps_factor) + self.params_bytes()
        budget = memory.limit_bytes()
        if need > budget:
            fit = self.max_batch(maps_factor)
            hint = (f"a batch of at most {fit} fits" if fit else
                    "not even one sample fits: make the network or its input smaller")
            raise NetworkError(f"{what} on a batch of {n} needs about {memory.format_bytes(need)}, above the "
                               f"memory limit of {memory.format_bytes(budget)}; {hint}", field="input")

    def check_batch(self, x) -> np.ndarray:
        """A batch (N, *input_shape) as C-contiguous float32; NetworkError if its shape is wrong."""
        x = np.asarray(x)
        if x.ndim != len(self.input_shape) + 1 or x.shape[1:] != self.input_shape or x.shape[0] < 1:
            raise NetworkError(f"a batch must be (N, {', '.join(map(str, self.input_shape))}) with N >= 1 "
                               f"(N samples of {describe_shape(self.input_shape)}), not {x.shape}", field="input")
        if x.dtype.kind not in "fiu":
            raise NetworkError(f"the input must hold real numbers, not {x.dtype}", field="input")
        return np.ascontiguousarray(x, dtype=np.float32)

    def check_input(self, x) -> np.ndarray:
        x = _as_array(x)
        if x.dtype.kind not in "biuf":
            what = {"O": "Python objects", "U": "text", "S": "bytes", "c": "complex numbers",
                    "V": "records", "M": "dates", "m": "time spans"}.get(x.dtype.kind, str(x.dtype))
            raise NetworkError(f"the input must hold real numbers, not {what} (dtype {x.dtype})", field="input")
        if x.shape != self.input_shape:
            raise NetworkError(f"the input is {x.shape} but the network expects {self.input_shape} "
                               f"({describe_shape(self.input_shape)})", field="input")
        return np.ascontiguousarray(x, dtype=np.float32)

    def layer_params(self, i: int) -> Params:
        """Layer i's parameter arrays as the layer types' compute takes them, with
        their version (what the kernels derive from them, e.g. packed conv
        weights, is kept until the version changes). Do not modify them."""
        return Params(self._layer_params(i), self._versions[i])

    def layer_forward(self, i: int, x: np.ndarray) -> np.ndarray:
        return self.layer_types[i].forward(self.configs[i], x, self.layer_params(i))

    def layer_backward(self, i: int, x: np.ndarray, y: np.ndarray, gy: np.ndarray, param_grads: bool = True):
        """(gradient w.r.t. layer i's input, gradients w.r.t. its parameters);
        param_grads=False computes only the input gradient (the dict is empty)."""
        return self.layer_types[i].backward(self.configs[i], x, y, gy, self.layer_params(i),
                                            param_grads=param_grads)

    def layer_forward_batch(self, i: int, x: np.ndarray) -> np.ndarray:
        """Layer i on a batch x (N, *its input shape), inference semantics."""
        return self.layer_types[i].forward_batch(self.configs[i], x, self.layer_params(i))

    def layer_backward_batch(self, i: int, x: np.ndarray, y: np.ndarray, gy: np.ndarray,
                             param_grads: bool = True, input_grad: bool = True):
        """layer_backward on a batch; parameter gradients summed over it
        (input_grad=False: gx may be None, e.g. for layer 0)."""
        return self.layer_types[i].backward_batch(self.configs[i], x, y, gy, self.layer_params(i),
                                                  param_grads=param_grads, input_grad=input_grad)

    def forward(self, x, start: int = 0, previous: list[np.ndarray] | None = None,
                should_stop=None) -> list[np.ndarray]:
        """Each layer's output for input x.

        x is one sample (input_shape) or a batch (N, *input_shape); a batch
        gives every output with the leading N, in inference mode (batch norm
        uses its running statistics), the same values as N single passes. A
        batch whose maps would exceed the memory budget is refused before
        anything is allocated, with the batch size that would fit.
        With `previous` (outputs of layers before `start`, e.g. from a cache)
        only layers `start` onwards are computed. `should_stop()` is asked
        between layers; when it says so, Cancelled is raised.
        """
        x = _as_array(x)
        batch = x.ndim == len(self.input_shape) + 1
        if batch:
            x = self.check_batch(x)
            self.check_batch_memory(x.shape[0])
        else:
            x = self.check_input(x)
        outputs = list(previous[:start]) if previous is not None else []
        if len(outputs) != start:
            raise ValueError("forward: need the outputs of every layer before start")
        h = outputs[-1] if outputs else x
        for i in range(start, len(self)):
            if should_stop is not None and should_stop():
                raise Cancelled()
            h = self.layer_forward_batch(i, h) if batch else self.layer_forward(i, h)
            outputs.append(h)
        return outputs

    # -- receptive fields: box and mask come from Layout; the effective field needs parameters
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
        if old_t is not t or _shapes_of(p) != pshapes:
            return None
        # Same parameters; the version also stands for the settings, so a
        # changed setting (stride, eps, ...) gets a fresh version.
        return p, (version if old_cfg == cfg else next(_versions))


class _Initial:
    """A layer's initial parameters, made on first use. The values depend only
    on the seed and the layer's index when it was created, so they are the
    same whenever (and on whichever thread) they are made; networks that reuse
    the layer share the object.

    `_Initial.of` also gives back the object an earlier network made for the same
    layer (type, settings, input shape, seed and index) while any network still
    holds it (the undo history, a result on screen): an edit that changes a layer's
    input shape and one that changes it back (an avgpool's kernel 2 -> 1 -> 2 before
    a linear layer) then share the values drawn the first time instead of drawing
    them again. For a linear layer after large maps those were 10 MB of random
    numbers, 36-48 ms on the worker when the memory was new to the process."""

    __slots__ = ("shapes", "_make", "_value", "_lock", "__weakref__")
    _alive: "weakref.WeakValueDictionary[tuple, _Initial]" = weakref.WeakValueDictionary()
    _alive_lock = threading.Lock()

    @classmethod
    def of(cls, t: LayerType, cfg: dict, in_shape: tuple, seed: int, index: int) -> "_Initial":
        key = (t.name, json.dumps(cfg, sort_keys=True, default=repr), tuple(in_shape), seed, index)
        with cls._alive_lock:
            p = cls._alive.get(key)
            if p is None:
                p = cls._alive[key] = cls(t, cfg, in_shape, seed, index)
            return p

    def __init__(self, t: LayerType, cfg: dict, in_shape: tuple, seed: int, index: int):
        self.shapes = t.param_shapes(cfg, in_shape)
        self._make = lambda: t.init_params(cfg, in_shape, np.random.default_rng([seed, index]))
        self._value = None
        self._lock = threading.Lock()

    def get(self) -> dict[str, np.ndarray]:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._make()
        return self._value


def _shapes_of(p) -> dict[str, tuple]:
    return dict(p.shapes) if isinstance(p, _Initial) else {k: a.shape for k, a in p.items()}


def _hashable(v):
    return json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v


def _as_array(x) -> np.ndarray:
    """np.asarray, with NetworkError naming the input for what numpy cannot make an array of."""
    try:
        return np.asarray(x)
    except (ValueError, TypeError, OverflowError, RecursionError) as e:  # ragged nesting, huge ints
        raise NetworkError(f"the input is not an array of numbers ({short_repr(str(e), 120)})",
                           field="input") from None
