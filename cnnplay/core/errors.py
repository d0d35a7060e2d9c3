"""The one error type the core raises for anything a user can get wrong."""

from __future__ import annotations


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
