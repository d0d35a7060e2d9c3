"""A checked network description: layer types, settings and shapes, no parameters.

Everything that follows from the description alone lives here: output shapes,
parameter counts, multiply-adds, connectivity (windows) and receptive fields.
It is cheap to build (nothing is allocated), so what-if analyses and shape
checks build a Layout; a Network is a Layout with parameters.
"""

from __future__ import annotations

import math
from functools import cached_property

from . import memory
from .errors import NetworkError, short_repr
from .fields import MAX_INT, FieldContext
from .layers import FLOAT_BYTES, LayerType, Shape, Window, layer_type


def check_input_shape(raw) -> Shape:
    """[C, H, W] or [C, L] of positive ints."""
    if not isinstance(raw, (list, tuple)) or len(raw) not in (2, 3):
        raise NetworkError(f"'input' must be [C, H, W] or [C, L], not {short_repr(raw)}", field="input")
    for v in raw:
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_INT:
            raise NetworkError(f"'input' sizes must be integers from 1 to {MAX_INT}, not {short_repr(raw)}",
                               field="input")
    return tuple(raw)


class Layout:
    """Build with `Layout.from_dict`; immutable."""

    def __init__(self, input_shape: Shape, types: list[LayerType], configs: list[dict], ids: list,
                 shapes: list[Shape], error: NetworkError | None):
        self.input_shape = input_shape
        self.layer_types = types
        self.configs = configs
        self.ids = ids
        self.output_shapes = shapes
        self.error = error  # the first invalid layer when built with partial=True

    @classmethod
    def from_dict(cls, spec, partial: bool = False) -> "Layout":
        """Check `spec` (shapes, fields and the memory budget, without allocating).

        partial=True keeps the valid layers before the first invalid one and
        stores that layer's NetworkError in `.error` instead of raising.
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

        types, configs, ids, shapes = [], [], [], []
        budget = memory.limit_bytes()
        used = math.prod(input_shape) * FLOAT_BYTES
        if used > budget:
            raise NetworkError(f"an input of {'x'.join(map(str, input_shape))} needs {memory.format_bytes(used)}, "
                               f"above the memory limit of {memory.format_bytes(budget)}", field="input")
        shape, error = input_shape, None
        peak_work = 0
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
                work = t.workspace_bytes(cfg, shape, out)  # this layer's kernels' temporary buffers
                if used + max(work, peak_work) > budget:
                    raise ctx.error(f"its kernels would need about {memory.format_bytes(work)} of working memory "
                                    f"(padded copies, gradients) on top of {memory.format_bytes(used)} of maps and "
                                    f"parameters, above the memory limit of {memory.format_bytes(budget)}"
                                    if work >= peak_work else
                                    f"the network would need about {memory.format_bytes(used + peak_work)} up to "
                                    f"here, above the memory limit of {memory.format_bytes(budget)}")
                peak_work = max(peak_work, work)
            except NetworkError as e:
                if not partial:
                    raise
                error = e
                break
            types.append(t)
            configs.append(cfg)
            ids.append(layer_id)
            shapes.append(out)
            shape = out
        return cls(input_shape, types, configs, ids, shapes, error)

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

    def param_shapes(self, i: int) -> dict[str, Shape]:
        return self.layer_types[i].param_shapes(self.configs[i], self.input_shape_of(i))

    @property
    def workspace_bytes(self) -> list[int]:
        """Per layer: its kernels' temporary buffers for one sample (LayerType.workspace_bytes)."""
        return [t.workspace_bytes(c, self.input_shape_of(i), self.output_shapes[i])
                for i, (t, c) in enumerate(zip(self.layer_types, self.configs))]

    def estimate_bytes(self, batch: int = 1, training: bool = False) -> int:
        """Bytes a pass over `batch` samples needs at its peak: the input and every
        layer's output for each sample (training: and their gradients), the
        parameters (training: with their gradients and two optimizer moments,
        as Adam keeps), and the largest layer's temporary buffers per sample.
        The one rule of the memory budget: from_dict checks batch 1, a trainer
        checks its batch with check_budget()."""
        maps = math.prod(self.input_shape) + sum(math.prod(s) for s in self.output_shapes)
        pars = sum(math.prod(s) for i in range(len(self)) for s in self.param_shapes(i).values())
        work = max(self.workspace_bytes, default=0)
        per_sample = maps * FLOAT_BYTES * (2 if training else 1) + work
        return batch * per_sample + pars * FLOAT_BYTES * (4 if training else 1)

    def check_budget(self, batch: int = 1, training: bool = False) -> None:
        """NetworkError when a pass over `batch` samples would not fit the memory limit."""
        need, budget = self.estimate_bytes(batch, training), memory.limit_bytes()
        if need > budget:
            what = f"{'training' if training else 'a pass'} on batches of {batch}"
            raise NetworkError(f"{what} would need about {memory.format_bytes(need)}, above the memory limit "
                               f"of {memory.format_bytes(budget)}; use a smaller batch", field="batch")

    @property
    def parameter_counts(self) -> list[int]:
        return [t.parameter_count(c, self.input_shape_of(i)) for i, (t, c) in enumerate(zip(self.layer_types, self.configs))]

    @property
    def macs(self) -> list[int]:
        return [t.macs(c, self.input_shape_of(i), self.output_shapes[i])
                for i, (t, c) in enumerate(zip(self.layer_types, self.configs))]

    # The description never changes, so what follows from it alone is worked out once
    # per layout (a click on a unit asks for the windows and summaries again and again).
    @cached_property
    def windows(self) -> tuple[Window | None, ...]:
        return tuple(t.window(c, self.input_shape_of(i)) for i, (t, c) in enumerate(zip(self.layer_types, self.configs)))

    @cached_property
    def summaries(self) -> tuple[str, ...]:
        return tuple(t.summary(c) for t, c in zip(self.layer_types, self.configs))

    # -- receptive fields (see receptive.py) ----------------------------------
    def receptive_field_table(self):
        """One receptive.FieldRow per layer: size r, jump j and start per axis (a tuple,
        worked out once per layout)."""
        return self._field_table

    @cached_property
    def _field_table(self):
        from . import receptive
        return tuple(receptive.receptive_field_table(self))

    def receptive_field(self, layer: int, unit, onto: int | None = None):
        """The exact receptive.ReceptiveField of `unit` of `layer` on the input
        (or on layer `onto`'s output map)."""
        from . import receptive
        return receptive.receptive_field(self, layer, unit, onto)

    def receptive_fields(self, layer: int, unit):
        """The exact fields of `unit` of `layer` on the input and on every earlier
        map, in one walk: (field on the input, {k: field on layer k's output})."""
        from . import receptive
        return receptive.receptive_fields(self, layer, unit)
