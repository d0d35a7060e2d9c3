"""The inspector: a form for the selected layer, generated from its type's fields.

int -> spin box, size -> one spin box per axis with a lock toggle ([h, w] kept
equal while locked), float -> a validated text field, bool -> check box, and a
combo box for the layer type. Every change applies live through the undo stack
(consecutive edits of one field merge into one undo step). The core's message
for an invalid layer shows under the form, and the field at fault turns red.
"""

from __future__ import annotations

from PySide6.QtCore import QLocale, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QDoubleValidator, QIcon, QPainter, QPen, QPixmap, QValidator
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QFrame, QHBoxLayout, QLabel, QLineEdit,
                               QScrollArea, QSpinBox, QToolButton, QVBoxLayout, QWidget)

from ..core.errors import NetworkError
from ..core.fields import MAX_INT, REQUIRED, Field, FieldContext, check_value
from ..core.layers import LAYER_TYPES, LayerType, describe_shape
from .commands import Editor
from .layer_stack import NEW_LAYER_DEFAULTS, format_count, format_shape
from .palette import layer_icon

ERROR_STYLE = "border: 1px solid #c0392b; background: #fdecea;"


def display_values(t: LayerType, raw: dict, index: int) -> dict:
    """The value of each field to show: the clean setting when it checks out, else
    what the user typed, else the default."""
    try:
        return t.normalize(raw, index)
    except NetworkError:
        pass
    out = {}
    dims = t.dims or 1
    ctx = FieldContext(index, t.name)
    for f in t.fields:
        v = raw.get(f.name, f.default)
        if f.derived_from():
            v = raw.get(f.name, raw.get(f.derived_from(), NEW_LAYER_DEFAULTS.get(t.name, {}).get(f.derived_from())))
        if v is REQUIRED or v is None:
            v = NEW_LAYER_DEFAULTS.get(t.name, {}).get(f.name, 1)
        try:
            v = check_value(f, v, dims, ctx)
        except NetworkError:
            pass
        out[f.name] = v
    return out


def lock_icon(locked: bool) -> QIcon:
    """A small padlock, drawn (closed: [h, w] locked together)."""
    pix = QPixmap(32, 32)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    col = QColor("#2e6da4") if locked else QColor("#888888")
    p.setPen(QPen(col, 3.2))
    p.setBrush(Qt.BrushStyle.NoBrush)
    if locked:
        p.drawArc(QRectF(9, 3, 14, 18), 0, 180 * 16)
        p.drawLine(QPointF(9, 12), QPointF(9, 16))
        p.drawLine(QPointF(23, 12), QPointF(23, 16))
    else:
        p.drawArc(QRectF(15, 1, 14, 18), 0, 180 * 16)
        p.drawLine(QPointF(29, 10), QPointF(29, 13))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(col)
    p.drawRoundedRect(QRectF(5, 15, 22, 15), 3, 3)
    p.end()
    return QIcon(pix)


class SizeEditor(QWidget):
    """[h, w] spin boxes with a lock toggle (one spin box for 1D layers)."""

    valueChanged = Signal(object)  # int, or [h, w]
    editingFinished = Signal()

    def __init__(self, field: Field, dims: int, parent=None):
        super().__init__(parent)
        self.dims = dims
        self.spins = []
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(3)
        for axis in range(dims):
            sp = QSpinBox()
            sp.setRange(int(field.minimum or 0), MAX_INT)
            sp.setMinimumWidth(48)
            sp.setToolTip(field.help + (f" ({'height' if axis == 0 else 'width'})" if dims == 2 else ""))
            sp.valueChanged.connect(lambda v, a=axis: self._on_spin(a, v))
            sp.editingFinished.connect(self.editingFinished)
            layout.addWidget(sp, 1)
            self.spins.append(sp)
            if dims == 2 and axis == 0:
                self.lock = QToolButton()
                self.lock.setCheckable(True)
                self.lock.setChecked(True)
                self.lock.setAutoRaise(True)
                self.lock.setFixedSize(QSize(22, 22))
                self.lock.setIconSize(QSize(14, 14))
                self.lock.setToolTip("Locked: height and width stay equal. Unlock to set them separately.")
                self.lock.toggled.connect(self._on_lock)
                layout.addWidget(self.lock)
        if dims != 2:
            self.lock = None
        self.same = None
        if "same" in field.words:  # conv padding: "same" keeps the map size when the kernel changes
            self.same = QCheckBox("same")
            self.same.setToolTip("Padding \"same\": as many pixels as keep the map size, whatever the kernel "
                                 "size (stride 1 and an odd kernel span, as in PyTorch)")
            self.same.toggled.connect(self._on_same)
            layout.addWidget(self.same)
        self._on_lock(True)
        self._setting = False

    def _on_lock(self, locked: bool) -> None:
        if self.lock is not None:
            self.lock.setIcon(lock_icon(locked))
            if locked and self.spins[0].value() != self.spins[1].value():
                self.spins[1].setValue(self.spins[0].value())

    def locked(self) -> bool:
        return self.lock is not None and self.lock.isChecked()

    def numbers(self):
        vals = [sp.value() for sp in self.spins]
        return vals[0] if len(set(vals)) == 1 else vals

    def value(self):
        if self.same is not None and self.same.isChecked():
            return "same"
        return self.numbers()

    def _on_same(self, on: bool) -> None:
        for sp in self.spins:
            sp.setEnabled(not on)
        if self.lock is not None:
            self.lock.setEnabled(not on)
        if not self._setting:
            self.valueChanged.emit(self.value())

    def set_same(self, on: bool) -> None:
        if self.same is not None and self.same.isChecked() != on:
            self._setting = True
            try:
                self.same.setChecked(on)
            finally:
                self._setting = False

    def set_value(self, v) -> None:
        if isinstance(v, str):
            return  # a word ("same") whose numbers are not known (the layer is invalid)
        vals = list(v) if isinstance(v, (list, tuple)) else [v] * self.dims
        if len(vals) != self.dims or not all(isinstance(x, int) for x in vals):
            return
        self._setting = True
        try:
            if self.lock is not None and len(set(vals)) > 1 and self.lock.isChecked():
                self.lock.blockSignals(True)
                self.lock.setChecked(False)
                self.lock.blockSignals(False)
                self._on_lock(False)
            for sp, x in zip(self.spins, vals):
                if sp.value() != x:
                    sp.setValue(x)
        finally:
            self._setting = False

    def _on_spin(self, axis: int, v: int) -> None:
        if self._setting or (self.same is not None and self.same.isChecked()):
            return
        if self.locked():
            for i, sp in enumerate(self.spins):
                if i != axis and sp.value() != v:
                    sp.blockSignals(True)
                    sp.setValue(v)
                    sp.blockSignals(False)
        self.valueChanged.emit(self.value())


class Inspector(QWidget):
    """Edits the selected layer; reads everything else from the session and core."""

    def __init__(self, editor: Editor, parent=None):
        super().__init__(parent)
        self.editor = editor
        self.session = editor.session
        self.editors: dict[str, QWidget] = {}
        self._built_for = None
        self._updating = False

        self.title = QLabel()
        self.title.setObjectName("inspectorTitle")
        self.help = QLabel()
        self.help.setWordWrap(True)
        self.help.setStyleSheet("color: gray;")
        self.type_combo = QComboBox()
        for t in LAYER_TYPES.values():
            self.type_combo.addItem(layer_icon(t.name), t.title, t.name)
        self.type_combo.setToolTip("Change the layer's type; settings that the new type shares are kept.")
        self.type_combo.activated.connect(self._on_type)
        self.form_host = QWidget()
        self.form = QFormLayout(self.form_host)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.facts = QLabel()
        self.facts.setWordWrap(True)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #c0392b;")
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.placeholder = QLabel("Select a layer in the stack to edit its settings.")
        self.placeholder.setWordWrap(True)
        self.placeholder.setStyleSheet("color: gray; font-style: italic;")

        head = QFormLayout()
        head.setContentsMargins(0, 0, 0, 0)
        head.addRow("Type", self.type_combo)
        self.body = QWidget()
        body = QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)
        body.addWidget(self.title)
        body.addWidget(self.help)
        body.addLayout(head)
        body.addWidget(self.form_host)
        body.addWidget(self.error)
        body.addWidget(self.facts)
        content = QWidget()
        inner = QVBoxLayout(content)
        inner.setContentsMargins(8, 8, 8, 8)
        inner.addWidget(self.placeholder)
        inner.addWidget(self.body)
        inner.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMinimumHeight(250)
        scroll.setWidget(content)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll)

        self.session.network_changed.connect(self.refresh)
        self.session.selection_changed.connect(self.refresh)
        self.refresh()

    # -- reading -------------------------------------------------------------------------
    def refresh(self) -> None:
        s = self.session
        i = s.selected_layer
        if i is None:
            self._built_for = None
            self.placeholder.show()
            self.body.hide()
            return
        raw = s.state.spec["layers"][i]
        t = LAYER_TYPES.get(raw.get("type"))
        if t is None:
            return
        self.placeholder.hide()
        self.body.show()
        key = (raw.get("id"), t.name)
        if key != self._built_for:
            self._build(t)
            self._built_for = key
        self._updating = True
        try:
            self.title.setText(f"<b>Layer {i}</b> &nbsp; {t.title}")
            self.help.setText(t.help)
            self.type_combo.setCurrentIndex(self.type_combo.findData(t.name))
            values = display_values(t, raw, i)
            for f in t.fields:
                self._set_widget_value(f, self.editors[f.name], values.get(f.name))
            err = s.error if i == len(s.network) else None
            for name, w in self.editors.items():
                w.setStyleSheet(ERROR_STYLE if err is not None and err.field == name else "")
            if err is not None:
                self.error.setText("\u26a0 " + (err.reason if err.layer == i else str(err)))
                self.error.show()
            else:
                self.error.hide()
            if i < len(s.network):
                net = s.network
                shape = net.output_shapes[i]
                self.facts.setText(f"Input {format_shape(net.input_shape_of(i))} \u2192 output "
                                   f"<b>{format_shape(shape)}</b> ({describe_shape(shape)})<br>"
                                   f"{net.parameter_counts[i]:,} parameters \u00b7 "
                                   f"{format_count(net.macs[i])} multiply-adds")
            elif err is None:
                self.facts.setText("<span style='color:gray'>Not computed: an earlier layer is invalid.</span>")
            else:
                self.facts.setText("")
        finally:
            self._updating = False

    def _build(self, t: LayerType) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        self.editors = {}
        for f in t.fields:
            w = self._make_widget(t, f)
            w.setToolTip(f.help)
            label = QLabel(f.name.replace("_", " ").capitalize())
            label.setToolTip(f.help)
            self.form.addRow(label, w)
            self.editors[f.name] = w
        if not t.fields:
            note = QLabel("This layer has no settings.")
            note.setStyleSheet("color: gray;")
            self.form.addRow(note)

    def _make_widget(self, t: LayerType, f: Field) -> QWidget:
        if f.kind == "int":
            w = QSpinBox()
            w.setRange(int(f.minimum) if f.minimum is not None else -MAX_INT, MAX_INT)
            w.setAccelerated(True)
            w.valueChanged.connect(lambda v, n=f.name: self._apply(n, v))
            w.editingFinished.connect(self.editor.break_merge)
            return w
        if f.kind == "size":
            w = SizeEditor(f, t.dims or 1)
            w.valueChanged.connect(lambda v, n=f.name: self._apply(n, v))
            w.editingFinished.connect(self.editor.break_merge)
            return w
        if f.kind == "float":
            w = QLineEdit()
            v = QDoubleValidator(w)
            v.setNotation(QDoubleValidator.Notation.ScientificNotation)
            v.setLocale(QLocale.c())
            if f.positive:
                v.setBottom(0.0)
            w.setValidator(v)
            w.textEdited.connect(lambda text, n=f.name, field=f, box=w: self._on_float(field, box, text))
            w.editingFinished.connect(self.editor.break_merge)
            return w
        if f.kind == "bool":
            w = QCheckBox()
            w.toggled.connect(lambda v, n=f.name: self._apply(n, bool(v), merge=False))
            return w
        raise AssertionError(f.kind)

    def _set_widget_value(self, f: Field, w: QWidget, v) -> None:
        if f.kind == "int" and isinstance(v, int):
            if w.value() != v:
                w.setValue(v)
        elif f.kind == "size":
            w.set_value(v)
            raw = self.session.state.spec["layers"][self.session.selected_layer]
            w.set_same(raw.get(f.name) == "same")
        elif f.kind == "float" and isinstance(v, (int, float)):
            try:
                current = float(w.text())
            except ValueError:
                current = None
            if current != v and not w.hasFocus():
                w.setText(f"{v:g}")
        elif f.kind == "bool" and isinstance(v, bool):
            if w.isChecked() != v:
                w.setChecked(v)

    # -- writing -------------------------------------------------------------------------
    def _apply(self, name: str, value, merge: bool = True) -> None:
        if self._updating:
            return
        i = self.session.selected_layer
        if i is None:
            return
        raw = self.session.state.spec["layers"][i]
        if raw.get(name) == value:
            return
        self.editor.update_layer(i, merge=merge, **{name: value})

    def _on_float(self, f: Field, box: QLineEdit, text: str) -> None:
        state = box.validator().validate(text, 0)[0]
        try:
            value = float(text)
            ok = state == QValidator.State.Acceptable and (not f.positive or value > 0)
        except ValueError:
            ok = False
        box.setStyleSheet("" if ok else ERROR_STYLE)
        box.setToolTip(f.help if ok else f"{f.help} Not a valid number yet: {text!r}")
        if ok:
            self._apply(f.name, value)

    def _on_type(self, index: int) -> None:
        if self._updating:
            return
        i = self.session.selected_layer
        name = self.type_combo.itemData(index)
        if i is None or name is None:
            return
        raw = self.session.state.spec["layers"][i]
        if raw.get("type") == name:
            return
        new_t = LAYER_TYPES[name]
        keep = {f.name for f in new_t.fields}
        changes = {k: None for k in raw if k not in keep and k not in ("type", "id")}
        for k, v in NEW_LAYER_DEFAULTS.get(name, {}).items():
            if k not in raw:
                changes[k] = v
        changes["type"] = name
        self.editor.update_layer(i, merge=False, **changes)
