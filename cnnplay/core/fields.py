"""Field declarations and the checks that turn raw JSON values into clean settings."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import NetworkError, short_repr

MAX_INT = 2**31 - 1  # no size, count or stride above this (the kernels take C ints)

REQUIRED = object()


@dataclass(frozen=True)
class Field:
    """One setting of a layer type.

    kind: "int", "size" (an int, or one int per spatial axis), "float" or "bool".
    default: a value, REQUIRED, or the name of another field to copy (e.g. a
    pooling stride defaults to its kernel size).
    """

    name: str
    kind: str
    default: object = REQUIRED
    minimum: float | None = None
    positive: bool = False  # for floats: strictly greater than zero
    help: str = ""
    words: tuple[str, ...] = ()  # for sizes: words allowed instead of numbers (padding "same")

    def derived_from(self) -> str | None:
        return self.default if isinstance(self.default, str) else None


class FieldContext:
    """Where a value comes from, so every complaint names the layer and field."""

    def __init__(self, index: int | None, layer_type: str | None):
        self.index = index
        self.layer_type = layer_type

    def error(self, reason: str, field: str | None = None) -> NetworkError:
        return NetworkError(reason, self.index, field, self.layer_type)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_value(field: Field, value, dims: int, ctx: FieldContext):
    """Return the clean value of `field`, or raise NetworkError naming it."""
    if field.kind == "bool":
        if not isinstance(value, bool):
            raise ctx.error(f"must be true or false, not {short_repr(value)}", field.name)
        return value
    if field.kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ctx.error(f"must be a number, not {short_repr(value)}", field.name)
        try:
            value = float(value)
        except OverflowError:
            raise ctx.error(f"must be finite, not {short_repr(value)}", field.name) from None
        if not math.isfinite(value):
            raise ctx.error(f"must be finite, not {value}", field.name)
        if field.positive and value <= 0:
            raise ctx.error(f"must be greater than 0, not {value:g}", field.name)
        return value
    if field.kind == "int":
        return _check_int(field, value, ctx)
    if field.kind == "size":
        if isinstance(value, str) and value in field.words:
            return value
        if _is_int(value):
            return (_check_int(field, value, ctx),) * dims
        if isinstance(value, (list, tuple)):
            if len(value) != dims:
                axes = "[h, w]" if dims == 2 else "one value"
                raise ctx.error(f"needs {axes} for a {dims}D layer, not {short_repr(list(value))}", field.name)
            return tuple(_check_int(field, v, ctx) for v in value)
        words = "".join(f" or {w!r}" for w in field.words)
        raise ctx.error(f"must be an integer or a list of {dims} integers{words}, not {short_repr(value)}",
                        field.name)
    raise AssertionError(f"unknown field kind {field.kind}")


def _check_int(field: Field, value, ctx: FieldContext) -> int:
    if not _is_int(value):
        raise ctx.error(f"must be an integer, not {short_repr(value)}", field.name)
    if field.minimum is not None and value < field.minimum:
        raise ctx.error(f"must be at least {field.minimum:g}, not {short_repr(value)}", field.name)
    if value > MAX_INT:
        raise ctx.error(f"must be at most {MAX_INT}, not {short_repr(value)}", field.name)
    return value


def format_size(t: tuple[int, ...]) -> str:
    """(3, 3) -> '3x3'; (5,) -> '5'."""
    return "x".join(str(v) for v in t)


def compact_size(t: tuple[int, ...]):
    """The JSON form of a size: an int when all axes agree, else a list."""
    return t[0] if len(set(t)) == 1 else list(t)
