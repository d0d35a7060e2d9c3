"""A short readout of the selected neuron and its receptive field."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QLabel

AXES = {2: ("y", "x"), 1: ("l",)}


def unit_text(unit) -> str:
    names = {3: ("c", "y", "x"), 2: ("c", "l"), 1: ("f",)}[len(unit)]
    return ", ".join(f"{n} {u}" for n, u in zip(names, unit))


def axis_pair(values, sep="×") -> str:
    return sep.join(str(v) for v in values)


def readout_html(layer: int, summary: str, unit, row, field, pending: str = "") -> str:
    """row: the layer's receptive-field table row (or None); field: ReceptiveField on the input (or None)."""
    lines = [f"<b>Layer {layer}</b> &nbsp;{summary}<br>unit ({unit_text(unit)})"]
    if row is not None:
        axes = AXES.get(len(row.size), tuple(f"a{i}" for i in range(len(row.size))))
        jump = "— (sees the whole map)" if row.jump is None else axis_pair(row.jump)
        lines.append(f"RF size {axis_pair(row.size)} px &nbsp; jump {jump}"
                     f" &nbsp;<span style='color:#7d838f'>({axis_pair(axes)})</span>")
    if field is not None:
        axes = AXES.get(len(field.box), ())
        box = " ".join(f"{n} [{a}, {b})" for n, (a, b) in zip(axes, field.box))
        lines.append(f"box {box}")
        lines.append(f"sees <b>{field.seen_count:,}</b> input px of {field.box_area:,} in the box"
                     + ("" if not field.empty else " <span style='color:#ff8a80'>(only padding)</span>"))
        pad = field.padding_fraction
        color = "#ff8a80" if pad > 0 else "#9aa0aa"
        lines.append(f"<span style='color:{color}'>{pad:.0%} of the box is padding "
                     f"({field.padding_count:,} px)</span>")
    if pending:
        lines.append(f"<i style='color:#9aa0aa'>{pending}</i>")
    return "<br>".join(lines)


class UnitReadout(QLabel):
    EMPTY = ("<span style='color:#9aa0aa'>Click a unit of any feature map (or a bar of an output) "
             "to see its receptive field. Arrow keys move it; PgUp/PgDn change channel; Esc clears.</span>")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("unitReadout")
        self.setTextFormat(Qt.RichText)
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        self.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.setMargin(6)
        self.setMinimumWidth(120)
        self.setText(self.EMPTY)
        self.showing = None  # (layer, unit) whose receptive field is on screen, else None
        self._later = QTimer(self)  # a delayed "computing" text (show_unit's delay_ms)
        self._later.setSingleShot(True)
        self._later.timeout.connect(self._show_later)
        self._later_text = ""

    def clear_unit(self) -> None:
        self._later.stop()
        self.showing = None
        self.setText(self.EMPTY)

    def show_unit(self, layer: int, summary: str, unit, row, field, pending: str = "", delay_ms: int = 0) -> None:
        """The unit, its field's figures and a note of what is still being computed. Without
        a field and with delay_ms, the readout keeps what it shows (this unit's last field,
        another unit's, or the hint) that long: the field usually comes sooner and is then
        written once (no flash of "computing...", no second layout of the dock), as the
        maps keep their overlays and veil late (StaleOverlay.cover)."""
        html = readout_html(layer, summary, unit, row, field, pending=pending)
        if field is None and delay_ms:
            self._later_text = html
            if not self._later.isActive():
                self._later.start(delay_ms)
            return
        self._later.stop()
        self.showing = (layer, unit) if field is not None else None
        self._write(html)

    def _show_later(self) -> None:
        self.showing = None  # what it showed is gone; it says what is being computed
        self._write(self._later_text)

    def _write(self, html: str) -> None:
        if html != self.text():  # the same text again (a second refresh): no new layout
            self.setText(html)
