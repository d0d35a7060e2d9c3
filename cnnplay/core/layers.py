"""Layer types: their fields, shape rules, parameters, geometry and compute.

This module is the one source of truth for what a layer does to a shape, how
many parameters it has and how it connects its input to its output. The GUI,
the receptive-field code and the tests all ask it.

Shapes are tuples: (C, H, W) for images, (C, L) for 1D signals and (F,) for a
flat vector. Kernels work on 2D spatial maps; a 1D signal is computed as a map
of height 1, so every windowed layer shares one mechanism.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import short_repr
from .fields import REQUIRED, Field, FieldContext, check_value, compact_size, format_size
from .geometry import same_padding, window_output, window_span

Shape = tuple[int, ...]
FLOAT_BYTES = 4
MAX_SLOPE = 1000.0  # |negative_slope| of leaky_relu


@dataclass(frozen=True)
class Window:
    """How a layer connects input to output along each spatial axis."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]

    @property
    def span(self) -> tuple[int, ...]:
        """Extent of one kernel application in input pixels (d(k-1)+1)."""
        return tuple(window_span(k, d) for k, d in zip(self.kernel, self.dilation))

    @staticmethod
    def identity(dims: int) -> "Window":
        return Window((1,) * dims, (1,) * dims, (0,) * dims, (1,) * dims)

    def as_2d(self) -> "Window":
        """A 1D window as the height-1 2D window the kernels run."""
        if len(self.kernel) == 2:
            return self
        return Window((1,) + self.kernel, (1,) + self.stride, (0,) + self.padding, (1,) + self.dilation)


def describe_shape(shape: Shape) -> str:
    if len(shape) == 1:
        return f"a flat vector of {shape[0]} features"
    if len(shape) == 2:
        return f"a 1D signal of {shape[0]} channels x {shape[1]}"
    return f"a {shape[0]}-channel {shape[1]}x{shape[2]} map"


def as_maps(x: np.ndarray) -> np.ndarray:
    """View (C, L) as (C, 1, L); (C, H, W) unchanged."""
    return x[:, None, :] if x.ndim == 2 else x


def as_batch_maps(x: np.ndarray) -> np.ndarray:
    """View a batch (N, C, L) as (N, C, 1, L); (N, C, H, W) unchanged."""
    return x[:, :, None, :] if x.ndim == 3 else x


class Params(dict):
    """A layer's parameters with the network's version of them: kernels keep
    what they derive from the parameters (packed weights) per version. Any
    change to the dict drops the version (nothing is kept for it then)."""

    __slots__ = ("version",)

    def __init__(self, arrays, version=None):
        super().__init__(arrays)
        self.version = version

    def _changed(self, method, *args, **kwargs):
        self.version = None
        return getattr(super(), method)(*args, **kwargs)

    def __setitem__(self, key, value):
        self._changed("__setitem__", key, value)

    def __delitem__(self, key):
        self._changed("__delitem__", key)

    def update(self, *args, **kwargs):
        self._changed("update", *args, **kwargs)

    def pop(self, *args):
        return self._changed("pop", *args)

    def setdefault(self, *args):
        return self._changed("setdefault", *args)

    def popitem(self):
        return self._changed("popitem")

    def clear(self):
        self._changed("clear")


def params_version(params) -> object:
    """The parameter version a Params carries (None for a plain dict: nothing is kept)."""
    return getattr(params, "version", None)


class LayerType:
    """Base of all layer types. Subclasses set the class attributes and
    override the shape, parameter and compute hooks they need."""

    name: str = ""
    title: str = ""
    help: str = ""  # one line for tooltips
    group: str = ""  # palette section
    fields: tuple[Field, ...] = ()
    dims: int | None = None  # spatial axes the layer needs; None: any shape
    learnable: tuple[str, ...] = ()  # parameters counted in parameter_counts

    # -- description -----------------------------------------------------
    def normalize(self, raw: dict, index: int | None) -> dict:
        """Check every field of a raw layer dict; return clean settings."""
        ctx = FieldContext(index, self.name)
        known = {f.name for f in self.fields} | {"type", "id"}
        for key in raw:
            if key not in known:
                names = ", ".join(f.name for f in self.fields) or "none"
                key = key if isinstance(key, str) else short_repr(key)
                raise ctx.error(f"unknown field {short_repr(key)} (fields of {self.name}: {names})", key[:60])
        cfg = {}
        dims = self.dims or 1
        for f in self.fields:
            if f.name in raw:
                cfg[f.name] = check_value(f, raw[f.name], dims, ctx)
            elif f.derived_from():
                pass  # filled below, once its source is known
            elif f.default is REQUIRED:
                raise ctx.error("is required", f.name)
            else:
                cfg[f.name] = check_value(f, f.default, dims, ctx)
        for f in self.fields:
            if f.name not in cfg:
                cfg[f.name] = cfg[f.derived_from()]
        return cfg

    def to_json(self, cfg: dict) -> dict:
        out = {"type": self.name}
        for f in self.fields:
            v = cfg[f.name]
            out[f.name] = compact_size(v) if f.kind == "size" else v
        return out

    def summary(self, cfg: dict) -> str:
        """Key settings in a few characters, for a layer-stack row."""
        return self.name

    # -- shapes and parameters ------------------------------------------
    def check_input(self, cfg: dict, in_shape: Shape, ctx: FieldContext) -> None:
        if self.dims is not None and len(in_shape) != self.dims + 1:
            want = {1: "a 1D signal (C, L)", 2: "an image-like map (C, H, W)"}[self.dims]
            hint = ""
            if len(in_shape) == 3 and self.dims == 1:
                hint = f"; use {self.name.replace('1d', '2d')}"
            elif len(in_shape) == 2 and self.dims == 2:
                hint = f"; use {self.name.replace('2d', '1d')}"
            raise ctx.error(f"needs {want} but gets {describe_shape(in_shape)}{hint}")

    def output_shape(self, cfg: dict, in_shape: Shape, ctx: FieldContext) -> Shape:
        return in_shape

    def param_shapes(self, cfg: dict, in_shape: Shape) -> dict[str, Shape]:
        return {}

    def init_params(self, cfg: dict, in_shape: Shape, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {}

    def parameter_count(self, cfg: dict, in_shape: Shape) -> int:
        shapes = self.param_shapes(cfg, in_shape)
        return sum(math.prod(shapes[n]) for n in self.learnable if n in shapes)

    def macs(self, cfg: dict, in_shape: Shape, out_shape: Shape) -> int:
        """Multiply-accumulates of one forward pass (0 for non-arithmetic layers)."""
        return 0

    def window(self, cfg: dict, in_shape: Shape) -> Window | None:
        """Spatial connectivity; None for flatten and linear (they mix everything)."""
        return Window.identity(len(in_shape) - 1)

    def field_bounds(self, values: dict, name: str) -> tuple[tuple[float, float], ...]:
        """(lowest, highest) value of field `name` the core accepts, given the layer's
        other settings `values` (clean or as typed; malformed ones are ignored):
        one pair per spatial axis for a size field, one pair otherwise. The
        inspector's editors take their ranges from here, so they never offer a
        value the core refuses for a reason it can tell from the layer alone."""
        f = next(f for f in self.fields if f.name == name)
        n = (self.dims or 1) if f.kind == "size" else 1
        return (f.bounds(),) * n

    def workspace_bytes(self, cfg: dict, in_shape: Shape, out_shape: Shape) -> int:
        """Peak bytes of the temporary buffers one sample's forward OR backward pass
        of this layer allocates besides its input map, its output map and its
        parameters (the larger of the two passes), computed from the shapes alone.

        The memory budget (Layout.estimate_bytes) adds the largest of these to the
        maps and parameters, so a geometry whose buffers would not fit (padding
        10000 on an 8x8 map) is refused before anything is allocated. Whoever
        changes a kernel keeps this an upper bound of what it allocates:
        tests/test_memory_budget.py measures every layer type's peak against it.
        Default: the backward pass's input and output gradients and parameter
        gradients."""
        pars = sum(math.prod(sh) for sh in self.param_shapes(cfg, in_shape).values())
        return FLOAT_BYTES * (math.prod(in_shape) + math.prod(out_shape) + pars)

    # -- compute ----------------------------------------------------------
    def forward(self, cfg: dict, x: np.ndarray, params: dict) -> np.ndarray:
        raise NotImplementedError

    def backward(self, cfg: dict, x: np.ndarray, y: np.ndarray, gy: np.ndarray,
                 params: dict, param_grads: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Vector-Jacobian product: gradient w.r.t. the input and the parameters.

        param_grads=False: only the input gradient (the dict is empty), e.g. for
        the effective receptive field; the input gradient is the same."""
        raise NotImplementedError

    # -- batches (contract 1): x is (N, *in_shape), inference semantics -------------
    def forward_batch(self, cfg: dict, x: np.ndarray, params: dict) -> np.ndarray:
        """Outputs of a batch x (N, *in_shape) as (N, *out_shape); the same values
        as N single `forward` passes (batch norm uses its running statistics)."""
        x = _check_batch(self, x)
        return np.stack([self.forward(cfg, x[i], params) for i in range(x.shape[0])])

    def backward_batch(self, cfg: dict, x: np.ndarray, y: np.ndarray, gy: np.ndarray,
                       params: dict, param_grads: bool = True,
                       input_grad: bool = True) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        """`backward` for a batch: gx like x, parameter gradients summed over the batch
        (PyTorch names and layouts); param_grads=False leaves the dict empty.
        input_grad=False: the input gradient is not needed (the network's first
        layer); a layer may then skip it and return None (conv does)."""
        x, gy = _check_grad_batch(self, x, gy)
        gx = np.empty(x.shape, np.float32)
        total: dict[str, np.ndarray] = {}
        for i in range(x.shape[0]):
            gx[i], grads = self.backward(cfg, x[i], None if y is None else y[i], gy[i], params,
                                         param_grads=param_grads)
            for name, g in grads.items():
                if name in total:
                    total[name] += g
                else:
                    total[name] = np.array(g, dtype=np.float32)
        return gx, total


def _check_batch(t: LayerType, x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"{t.name}: a batch must be (N, *in_shape) with N >= 1, not {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def _check_grad_batch(t: LayerType, x, gy) -> tuple[np.ndarray, np.ndarray]:
    """A batch x and the gradient gy of its outputs, with one sample each."""
    x = _check_batch(t, x)
    gy = np.ascontiguousarray(gy, dtype=np.float32)
    if gy.ndim < 1 or gy.shape[0] != x.shape[0]:
        raise ValueError(f"{t.name}: the gradient's batch {gy.shape[:1]} does not match the input's batch "
                         f"of {x.shape[0]}")
    return x, gy


# ---------------------------------------------------------------------------
# Windowed layers: convolution and pooling share shape rules and geometry.

class WindowedLayer(LayerType):
    has_dilation = True
    pad_value = 0.0  # what the padding holds (a cropped backward pads explicitly with it)

    def window(self, cfg, in_shape):
        dil = cfg["dilation"] if self.has_dilation else (1,) * self.dims
        return Window(cfg["kernel_size"], cfg["stride"], cfg["padding"], dil)

    def output_shape(self, cfg, in_shape, ctx):
        self.check_input(cfg, in_shape, ctx)
        w = self.window(cfg, in_shape)
        spatial = in_shape[1:]
        padded = tuple(n + 2 * p for n, p in zip(spatial, w.padding))
        if any(s > n for s, n in zip(w.span, padded)):
            dil = f" with dilation {format_size(compact_tuple(w.dilation))}" if any(d > 1 for d in w.dilation) else ""
            span = str(w.span[0]) if len(set(w.span)) == 1 else format_size(w.span)
            raise ctx.error(f"kernel {format_size(w.kernel)}{dil} spans {span} px but its input is "
                            f"{format_size(padded)} after padding", "kernel_size")
        out = tuple(window_output(n, k, st, p, d) for n, k, st, p, d in
                    zip(spatial, w.kernel, w.stride, w.padding, w.dilation))
        return (self.out_channels(cfg, in_shape),) + out

    def out_channels(self, cfg, in_shape) -> int:
        return in_shape[0]

    def _extras(self, cfg, stride_default) -> list[str]:
        extras = []
        if cfg["stride"] != stride_default:
            extras.append("s" + format_size(compact_tuple(cfg["stride"])))
        if cfg.get("padding_same"):
            extras.append("same")
        elif any(cfg["padding"]):
            extras.append("p" + format_size(compact_tuple(cfg["padding"])))
        if self.has_dilation and any(d > 1 for d in cfg["dilation"]):
            extras.append("d" + format_size(compact_tuple(cfg["dilation"])))
        return extras


def compact_tuple(t: tuple[int, ...]) -> tuple[int, ...]:
    return t[:1] if len(set(t)) == 1 else t


def _size_fields(stride_default, same: bool = False) -> tuple[Field, ...]:
    padding = Field("padding", "size", 0, minimum=0, help="Pixels added on each border.")
    if same:
        padding = Field("padding", "size", 0, minimum=0, words=("same",),
                        help="Pixels added on each border, or \"same\": as many as keep the map size "
                             "(stride 1, as PyTorch's padding=\"same\").")
    return (
        Field("kernel_size", "size", minimum=1, help="Window size per axis."),
        Field("stride", "size", stride_default, minimum=1, help="Step between neighbouring windows."),
        padding,
    )


class Conv(WindowedLayer):
    group = "Convolution"
    learnable = ("weight", "bias")

    def __init__(self, dims: int):
        self.dims = dims
        self.name = f"conv{dims}d"
        self.title = f"Conv {dims}D"
        self.help = (f"Slides learned {'k x k' if dims == 2 else 'length-k'} filters over the input: "
                     "every output pixel mixes a local window of all input channels, same weights everywhere.")
        self.fields = (
            Field("out_channels", "int", minimum=1, help="Number of filters (output channels)."),
            *_size_fields(1, same=True),
            Field("dilation", "size", 1, minimum=1, help="Spacing between kernel taps (holes)."),
            Field("bias", "bool", True, help="Add a learned offset per output channel."),
        )

    def normalize(self, raw, index):
        """Padding "same" becomes the numbers it stands for (cfg["padding_same"] remembers
        the word): PyTorch's rule, stride 1 only; cnnplay pads both sides equally, so the
        kernel's span must be odd."""
        cfg = super().normalize(raw, index)
        if cfg["padding"] != "same":
            return cfg
        ctx = FieldContext(index, self.name)
        if any(st != 1 for st in cfg["stride"]):
            raise ctx.error(f"\"same\" padding keeps the map size only at stride 1 (PyTorch's rule), but the "
                            f"stride is {format_size(compact_tuple(cfg['stride']))}: set the padding in pixels "
                            f"instead", "padding")
        pads = []
        for k, d in zip(cfg["kernel_size"], cfg["dilation"]):
            before, after = same_padding(k, d)
            if before != after:
                dil = f" with dilation {d}" if d > 1 else ""
                raise ctx.error(f"\"same\" padding for kernel {k}{dil} (spanning {window_span(k, d)} px) needs "
                                f"{before} px on one side and {after} on the other, and cnnplay pads both sides "
                                f"equally: use an odd kernel size or set the padding in pixels", "padding")
            pads.append(before)
        cfg["padding"] = tuple(pads)
        cfg["padding_same"] = True
        return cfg

    def to_json(self, cfg):
        out = super().to_json(cfg)
        if cfg.get("padding_same"):
            out["padding"] = "same"
        return out

    def out_channels(self, cfg, in_shape):
        return cfg["out_channels"]

    def summary(self, cfg):
        parts = [f"{self.name} {format_size(cfg['kernel_size'])}", f"{cfg['out_channels']} ch"]
        return ", ".join(parts + self._extras(cfg, (1,) * self.dims))

    def param_shapes(self, cfg, in_shape):
        shapes = {"weight": (cfg["out_channels"], in_shape[0]) + cfg["kernel_size"]}
        if cfg["bias"]:
            shapes["bias"] = (cfg["out_channels"],)
        return shapes

    def init_params(self, cfg, in_shape, rng):
        # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
        fan_in = in_shape[0] * math.prod(cfg["kernel_size"])
        return _uniform_init(self.param_shapes(cfg, in_shape), fan_in, rng)

    def macs(self, cfg, in_shape, out_shape):
        return math.prod(out_shape) * in_shape[0] * math.prod(cfg["kernel_size"])

    def workspace_bytes(self, cfg, in_shape, out_shape):
        """kernels/conv.py and kernels/grad.py split the zero-padded input by stride
        phase: sh*sw phase images of ceil(Hp/sh) x ceil(Wp/sw) per input channel
        (about the padded input, however large the padding), plus packed weights
        and tap offsets; the backward pass adds the padded output gradient, the
        phase-split input gradient and, for stride 1, a padded copy of the output
        gradient for its forward-convolution path. Per sample: the batch kernels
        lay a batch's samples side by side in the same buffers. A training step may
        measure another algorithm than the rules' faster (kernels/tuning.py): the
        rule is the largest of the candidates'."""
        from .kernels import conv, winograd_s2
        w = self.window(cfg, in_shape).as_2d()
        ci, co = in_shape[0], cfg["out_channels"]
        ho, wo = out_shape[1:] if len(out_shape) == 3 else (1, out_shape[1])
        taps = math.prod(w.kernel)
        spill = winograd_s2.spill(ho, wo) if winograd_s2.applies(w.kernel, w.stride, w.dilation) else None
        wgeom = conv.winograd_geometry(*w.kernel, w.stride, w.dilation, w.padding)
        rules = conv.choose_shape(ci, co, wgeom, taps, math.prod(w.stride), None, tuple(w.dilation) != (1, 1),
                                  spill)  # as conv.choose, any batch
        return max(self._algorithm_workspace(algo, cfg, in_shape, out_shape)
                   for algo in dict.fromkeys((rules, *conv.alternatives(ci, co, wgeom, taps, spill))))

    def _algorithm_workspace(self, algo, cfg, in_shape, out_shape):
        """workspace_bytes when the layer runs on `algo`."""
        w = self.window(cfg, in_shape).as_2d()
        ci, co = in_shape[0], cfg["out_channels"]
        h, wd = (1,) + in_shape[1:] if len(in_shape) == 2 else in_shape[1:]
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = w.kernel, w.stride, w.padding, w.dilation
        ho, wo = out_shape[1:] if len(out_shape) == 3 else (1, out_shape[1])
        # conv._Plan's geometry, or a little more (with stride 1 across its rows share a
        # padding column), without its per-tap arrays: a huge layer is refused before
        # anything of its size is allocated
        hq, wq = -(-(h + 2 * ph) // sh), -(-(wd + 2 * pw) // sw)
        maxoff = ((kh - 1) * dh // sh) * wq + (kw - 1) * dw // sw
        length = max(hq * wq, maxoff + ho * wq)
        phases, taps = sh * sw, kh * kw
        from .kernels import atrous, conv, grad, winograd, winograd_s2
        kp, co8, ci4 = conv.padded_taps(ci * taps), -(-co // 8) * 8, -(-ci // 4) * 4
        if algo in winograd.NAMES and (dh, dw) != (1, 1):
            # the undilated layer on dh*dw phase sub-images per sample (kernels/atrous.py),
            # counted as one map of those sub-images side by side, each with a tile's
            # margin (the tiles' rounding per sub-image) and the layer's padding around
            # them all: every area term of the rule grows, its fixed terms count once.
            # Plus the copies in and out: the input's sub-images, the output's (or its
            # gradient's), and the input gradient put back
            hs, ws = atrous.sub_size(h, wd, w.dilation)
            hos, wos = atrous.sub_output_size(h, wd, w.padding, w.dilation)
            side_h, side_w = dh * (hs + 4), dw * (ws + 4)
            sub = self.workspace_bytes(dict(cfg, dilation=(1, 1)), (ci, side_h, side_w),
                                       (co, side_h + 2 * ph - 2, side_w + 2 * pw - 2))
            return sub + 4 * (dh * dw * (ci * hs * ws + co * hos * wos) + ci * h * wd)
        # im2col + BLAS: a block of columns and the products (conv.gemm_workspace_bytes);
        # a Winograd layer's weight gradient takes it while its own kernels compile
        block = conv.gemm_workspace_bytes(ci * taps, taps, ho * wq, co, 4 * co * ho * wo)
        gemm = block if algo in ("gemm", winograd_s2.NAME) or algo in winograd.NAMES else 0
        if algo == winograd_s2.NAME:  # its channels-last copies, transformed tiles and products
            gemm += winograd_s2.workspace_bytes(ci, co, ho, wo)
        flipped_gx = conv.flipped_input_grad(ci, w.kernel, w.stride, w.padding, w.dilation)
        # a scattered input gradient by BLAS takes a block of columns too
        gemm_gx = block if not flipped_gx and conv.choose_input_grad(ci, co) == "gemm" else 0
        wino_grad = 0  # the Winograd weight gradient's buffers (backward only)
        scheme = winograd.SCHEMES.get(algo)
        if scheme is not None:  # the forward and both gradients in its scheme
            gemm += winograd.workspace_bytes(ci, co, ho, wo, scheme)
            wino_grad = winograd.weight_grad_bytes(ci, co, ho, wo, scheme)
        forward = 4 * (phases * ci * length + kp * co8 + co8) + 8 * (3 * kp + 4 * taps) + gemm
        flipped = 4 * co * (ho + 2 * max(dh * (kh - 1) - ph, 0)) * (wo + 2 * max(dw * (kw - 1) - pw, 0))
        backward = (4 * (co * (maxoff + length) + 2 * phases * ci * length + taps * co * ci4 + ci * h * wd
                         + co * ci * taps + co) + 8 * (3 * taps * co + 4 * ci * taps + 6 * taps)
                    + 8 * 3 * (phases + 1)  # per-phase counts and starts of the input gradient
                    + (flipped + 4 * (ci * taps + co) if flipped_gx else 0) + max(gemm, gemm_gx) + wino_grad
                    + (4 * co * ho * wo if gemm or gemm_gx else 0)  # gy channel-major for BLAS
                    + (8 * grad.GW_RANGES_JOBS * co * ci * taps  # the weight gradient's partial sums
                       if algo == "direct" and co * ci * taps <= grad.GW_RANGES_PARTS else 0))
        return max(forward, backward)

    def _weight_2d(self, params):
        weight = params["weight"]
        return weight[:, :, None, :] if self.dims == 1 else weight

    def forward(self, cfg, x, params):
        return self.forward_batch(cfg, np.asarray(x)[None], params)[0]

    def forward_batch(self, cfg, x, params):
        from .kernels import conv
        x = _check_batch(self, x)
        w = self.window(cfg, x.shape[1:]).as_2d()
        y = conv.conv2d_batch(as_batch_maps(x), self._weight_2d(params), params.get("bias"), w.stride,
                              w.padding, w.dilation, version=params_version(params))
        return y.reshape(y.shape[:2] + y.shape[3:]) if self.dims == 1 else y

    def backward(self, cfg, x, y, gy, params, param_grads=True):
        gx, grads = self.backward_batch(cfg, np.asarray(x)[None], None, np.asarray(gy)[None], params, param_grads)
        return gx[0], grads

    def backward_batch(self, cfg, x, y, gy, params, param_grads=True, input_grad=True):
        from .kernels import grad
        x, gy = _check_grad_batch(self, x, gy)
        w = self.window(cfg, x.shape[1:]).as_2d()
        gx, gw, gb = grad.conv2d_backward_batch(as_batch_maps(x), self._weight_2d(params), as_batch_maps(gy),
                                                w.stride, w.padding, w.dilation, param_grads=param_grads,
                                                input_grad=input_grad, version=params_version(params))
        grads = _weight_bias_grads(params, gw.reshape(params["weight"].shape), gb) if param_grads else {}
        return (None if gx is None else gx.reshape(x.shape)), grads


class Pool(WindowedLayer):
    group = "Pooling"
    has_dilation = False

    def __init__(self, dims: int, mode: str):
        self.dims = dims
        self.mode = mode
        self.pad_value = -np.inf if mode == "max" else 0.0
        self.name = f"{mode}pool{dims}d"
        self.title = f"{'Max' if mode == 'max' else 'Avg'} pool {dims}D"
        what = "the largest value" if mode == "max" else "the average"
        self.help = f"Keeps {what} of each window per channel: shrinks the map, no parameters."
        self.fields = _size_fields("kernel_size")

    def field_bounds(self, values, name):
        bounds = super().field_bounds(values, name)
        kernel = values.get("kernel_size") if isinstance(values, dict) else None
        kernel = (kernel,) * len(bounds) if isinstance(kernel, int) and not isinstance(kernel, bool) else kernel
        if name != "padding" or not isinstance(kernel, (list, tuple)) or len(kernel) != len(bounds) \
                or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in kernel):
            return bounds
        # a window must not lie entirely in padding (output_shape's rule)
        return tuple((lo, min(hi, k // 2)) for (lo, hi), k in zip(bounds, kernel))

    def output_shape(self, cfg, in_shape, ctx):
        self.check_input(cfg, in_shape, ctx)
        for (_, top), p, k in zip(self.field_bounds(cfg, "padding"), cfg["padding"], cfg["kernel_size"]):
            if p > top:
                raise ctx.error(f"padding {p} is more than half the kernel size {k} "
                                "(a window could lie entirely in padding)", "padding")
        return super().output_shape(cfg, in_shape, ctx)

    def summary(self, cfg):
        return ", ".join([f"{self.name} {format_size(cfg['kernel_size'])}"] + self._extras(cfg, cfg["kernel_size"]))

    def forward(self, cfg, x, params):
        return self.forward_batch(cfg, np.asarray(x)[None], params)[0]

    def forward_batch(self, cfg, x, params):
        # pooling works channel by channel: a batch is N*C channels
        from .kernels import pool
        x = _check_batch(self, x)
        w = self.window(cfg, x.shape[1:]).as_2d()
        fn = pool.maxpool2d if self.mode == "max" else pool.avgpool2d
        m = as_batch_maps(x)
        y = fn(m.reshape((-1,) + m.shape[2:]), w.kernel, w.stride, w.padding)
        return y.reshape(x.shape[:2] + y.shape[1 if self.dims == 2 else 2:])

    def backward(self, cfg, x, y, gy, params, param_grads=True):
        gx, grads = self.backward_batch(cfg, np.asarray(x)[None], None, np.asarray(gy)[None], params, param_grads)
        return gx[0], grads

    def backward_batch(self, cfg, x, y, gy, params, param_grads=True, input_grad=True):
        from .kernels import grad
        x, gy = _check_grad_batch(self, x, gy)
        w = self.window(cfg, x.shape[1:]).as_2d()
        m = as_batch_maps(x)
        m = m.reshape((-1,) + m.shape[2:])
        g = as_batch_maps(np.asarray(gy))
        g = g.reshape((-1,) + g.shape[2:])
        if self.mode == "max":
            gx = grad.maxpool2d_backward(m, g, w.kernel, w.stride, w.padding)
        else:
            gx = grad.avgpool2d_backward(g, m.shape, w.kernel, w.stride, w.padding)
        return gx.reshape(x.shape), {}


# ---------------------------------------------------------------------------
# Pointwise layers: shape unchanged, a 1x1 window.

class ChannelNorm(LayerType):
    """Normalize, then scale and shift per channel: the mechanism batch norm and
    layer norm share. Both work on the (C, N) view of any input shape (a flat
    vector is C channels at one position); subclasses name their kernels."""

    group = "Normalization"
    fields = (Field("eps", "float", 1e-5, positive=True, help="Added to the variance to avoid division by 0."),)
    learnable = ("weight", "bias")
    statistics: tuple[str, ...] = ()  # running statistics, not learned
    _ONES = ("weight", "running_var")  # the identity transform at start

    def param_shapes(self, cfg, in_shape):
        return {name: (in_shape[0],) for name in self.learnable + self.statistics}

    def init_params(self, cfg, in_shape, rng):
        return {name: (np.ones if name in self._ONES else np.zeros)(shape, np.float32)
                for name, shape in self.param_shapes(cfg, in_shape).items()}

    def forward(self, cfg, x, params):
        return self.forward_batch(cfg, np.asarray(x)[None], params)[0]

    def forward_batch(self, cfg, x, params):
        x = _check_batch(self, x)
        return self._forward(x.reshape(x.shape[0], x.shape[1], -1), params, cfg["eps"]).reshape(x.shape)

    def backward(self, cfg, x, y, gy, params, param_grads=True):
        gx, grads = self.backward_batch(cfg, np.asarray(x)[None], None, np.asarray(gy)[None], params, param_grads)
        return gx[0], grads

    def backward_batch(self, cfg, x, y, gy, params, param_grads=True, input_grad=True):
        x, gy = _check_grad_batch(self, x, gy)
        n, c = x.shape[:2]
        gx, gw, gb = self._backward(x.reshape(n, c, -1), np.asarray(gy).reshape(n, c, -1), params, cfg["eps"])
        return gx.reshape(x.shape), ({"weight": gw, "bias": gb} if param_grads else {})


class BatchNorm(ChannelNorm):
    name, title = "batchnorm", "Batch norm"
    help = "Per channel: subtract a running mean, divide by a running std, then scale and shift."
    statistics = ("running_mean", "running_var")

    def _forward(self, x3, p, eps):
        from .kernels import norm
        return norm.batchnorm_batch(x3, p["weight"], p["bias"], p["running_mean"], p["running_var"], eps)

    def _backward(self, x3, g3, p, eps):
        from .kernels import grad
        return grad.batchnorm_backward_batch(x3, g3, p["weight"], p["running_mean"], p["running_var"], eps)


class LayerNorm(ChannelNorm):
    name, title = "layernorm", "Layer norm"
    help = "At each position: normalize across channels to mean 0, variance 1, then scale and shift."

    def workspace_bytes(self, cfg, in_shape, out_shape):
        # the backward pass keeps five float64 statistics per position
        return super().workspace_bytes(cfg, in_shape, out_shape) + 5 * 8 * math.prod(in_shape[1:])

    def _forward(self, x3, p, eps):
        from .kernels import norm
        return norm.layernorm_batch(x3, p["weight"], p["bias"], eps)

    def _backward(self, x3, g3, p, eps):
        from .kernels import grad
        return grad.layernorm_backward_batch(x3, g3, p["weight"], eps)


class LeakyReLU(LayerType):
    group = "Activation"

    def __init__(self, leaky: bool):
        self.leaky = leaky
        self.name = "leaky_relu" if leaky else "relu"
        self.title = "LeakyReLU" if leaky else "ReLU"
        self.help = ("Keeps positive values, scales negative ones by a small slope." if leaky
                     else "Keeps positive values, sets negative ones to zero.")
        # bounded so that outputs stay finite (a slope of 1e300 made every negative value -inf)
        self.fields = (Field("negative_slope", "float", 0.01, minimum=-MAX_SLOPE, maximum=MAX_SLOPE,
                             help=f"Factor applied to negative inputs (from -{MAX_SLOPE:g} to {MAX_SLOPE:g})."),) \
            if leaky else ()

    def slope(self, cfg) -> float:
        return cfg["negative_slope"] if self.leaky else 0.0

    def summary(self, cfg):
        return f"leaky_relu {cfg['negative_slope']:g}" if self.leaky else "relu"

    def forward(self, cfg, x, params):
        from .kernels import pointwise
        return pointwise.leaky_relu(x, self.slope(cfg))

    def backward(self, cfg, x, y, gy, params, param_grads=True):
        from .kernels import grad
        return grad.leaky_relu_backward(x, gy, self.slope(cfg)), {}

    def forward_batch(self, cfg, x, params):  # element-wise: a batch is one bigger array
        return self.forward(cfg, _check_batch(self, x), params)

    def backward_batch(self, cfg, x, y, gy, params, param_grads=True, input_grad=True):
        x, gy = _check_grad_batch(self, x, gy)
        return self.backward(cfg, x, y, gy, params, param_grads)


# ---------------------------------------------------------------------------
# Flatten and linear: the end of the spatial part of a network.

class Flatten(LayerType):
    name, title, group = "flatten", "Flatten", "Dense"
    help = "Stacks all channels and positions into one vector (C, H, W order) for linear layers."

    def output_shape(self, cfg, in_shape, ctx):
        return (math.prod(in_shape),)

    def window(self, cfg, in_shape):
        return None

    def forward(self, cfg, x, params):
        return x.reshape(-1)

    def backward(self, cfg, x, y, gy, params, param_grads=True):
        return gy.reshape(x.shape), {}

    def forward_batch(self, cfg, x, params):
        x = _check_batch(self, x)
        return x.reshape(x.shape[0], -1)

    def backward_batch(self, cfg, x, y, gy, params, param_grads=True, input_grad=True):
        x, gy = _check_grad_batch(self, x, gy)
        return gy.reshape(x.shape), {}


class Linear(LayerType):
    name, title, group = "linear", "Linear", "Dense"
    help = "Fully connected: every output is a weighted sum of every input feature (needs flatten first)."
    fields = (
        Field("out_features", "int", minimum=1, help="Number of outputs."),
        Field("bias", "bool", True, help="Add a learned offset per output."),
    )
    learnable = ("weight", "bias")

    def summary(self, cfg):
        return f"linear {cfg['out_features']}"

    def output_shape(self, cfg, in_shape, ctx):
        if len(in_shape) != 1:
            raise ctx.error(f"needs a flat input but gets {describe_shape(in_shape)}; "
                            "add a flatten layer before it")
        return (cfg["out_features"],)

    def window(self, cfg, in_shape):
        return None

    def param_shapes(self, cfg, in_shape):
        shapes = {"weight": (cfg["out_features"], in_shape[0])}
        if cfg["bias"]:
            shapes["bias"] = (cfg["out_features"],)
        return shapes

    def init_params(self, cfg, in_shape, rng):
        return _uniform_init(self.param_shapes(cfg, in_shape), in_shape[0], rng)

    def macs(self, cfg, in_shape, out_shape):
        return in_shape[0] * cfg["out_features"]

    def forward(self, cfg, x, params):
        from .kernels import dense
        return dense.linear(x, params["weight"], params.get("bias"))

    def backward(self, cfg, x, y, gy, params, param_grads=True):
        from .kernels import grad
        gx, gw, gb = grad.linear_backward(x, params["weight"], gy, param_grads=param_grads)
        return gx, (_weight_bias_grads(params, gw, gb) if param_grads else {})

    def forward_batch(self, cfg, x, params):
        from .kernels import dense
        return dense.linear_batch(_check_batch(self, x), params["weight"], params.get("bias"))

    def backward_batch(self, cfg, x, y, gy, params, param_grads=True, input_grad=True):
        from .kernels import grad
        x, gy = _check_grad_batch(self, x, gy)
        gx, gw, gb = grad.linear_backward_batch(x, params["weight"], gy,
                                                param_grads=param_grads)
        return gx, (_weight_bias_grads(params, gw, gb) if param_grads else {})


def _uniform_init(shapes: dict[str, Shape], fan_in: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    bound = np.float32(1.0 / math.sqrt(fan_in))
    out = {}
    for name, shape in shapes.items():  # float32 draws: a large linear layer inits in a few ms
        a = rng.random(shape, dtype=np.float32)
        a *= 2 * bound
        a -= bound
        out[name] = a
    return out


LAYER_TYPES: dict[str, LayerType] = {t.name: t for t in (
    Conv(1), Conv(2),
    Pool(1, "max"), Pool(2, "max"), Pool(1, "avg"), Pool(2, "avg"),
    BatchNorm(), LayerNorm(), LeakyReLU(False), LeakyReLU(True),
    Flatten(), Linear(),
)}


def layer_type(raw, index: int | None) -> LayerType:
    """The LayerType a raw layer dict names, or a NetworkError saying why not."""
    ctx = FieldContext(index, None)
    if not isinstance(raw, dict):
        raise ctx.error(f"must be an object with a 'type', not {type(raw).__name__}")
    name = raw.get("type")
    if not isinstance(name, str) or name not in LAYER_TYPES:
        known = ", ".join(LAYER_TYPES)
        raise ctx.error(f"unknown layer type {short_repr(name)} (known: {known})", "type")
    return LAYER_TYPES[name]


def _weight_bias_grads(params: dict, gw, gb) -> dict:
    """The gradient dict of a layer with a weight and an optional bias (conv, linear)."""
    return {"weight": gw, "bias": gb} if "bias" in params else {"weight": gw}
