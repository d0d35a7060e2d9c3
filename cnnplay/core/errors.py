"""The one error type the core raises for anything a user can get wrong."""

from __future__ import annotations


class Cancelled(Exception):
    """A computation stopped early because newer work superseded it (not an error)."""


class NetworkError(ValueError):
    """An invalid network description, parameter array or file.

    `layer` is the index of the layer at fault (None for the input or the whole
    network), `field` the offending field, `reason` the plain explanation.
    """

    def __init__(self, reason: str, layer: int | None = None, field: str | None = None,
                 layer_type: str | None = None):
        self.reason = reason
        self.layer = layer
        self.field = field
        self.layer_type = layer_type
        super().__init__(self._format())

    def _format(self) -> str:
        if self.layer is None:
            where = "network"
        else:
            where = f"layer {self.layer}"
            if self.layer_type:
                where += f" ({self.layer_type})"
        if self.field:
            where += f", {self.field}"
        return f"{where}: {self.reason}"


class InputError(ValueError):
    """An input file (image, signal) or generated input that cnnplay cannot use.

    `path` names the file (None for generated input), `reason` says what is
    wrong in plain words; `row` and `column` (1-based) locate a bad value in a
    table when known. str(error) is the whole message, ready for the user.
    """

    def __init__(self, reason: str, path: str | None = None, row: int | None = None,
                 column: int | None = None):
        self.reason = reason
        self.path = path
        self.row = row
        self.column = column
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column}")
        text = (", ".join(where) + ": " if where else "") + self.reason
        return f"{self.path}: {text}" if self.path else text


def short_repr(value, limit: int = 60) -> str:
    """repr() for messages: never fails, never huge (deep nesting, 10**5000, long lists)."""
    try:
        text = repr(value)
    except (RecursionError, ValueError, MemoryError):
        text = f"<{type(value).__name__}>"
    except Exception:  # a garbage object whose __repr__ raises
        text = f"<{type(value).__name__}>"
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return text
