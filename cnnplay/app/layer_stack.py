"""The layer stack: the network as rows, read from the session and the core.

Each row shows the layer's key settings (the core's summary, e.g.
`conv2d 3x3, 16 ch, s2, d2`), its output shape, parameter count and
multiply-adds. An invalid layer is red with the core's message; the layers
after it are greyed (they are kept but not computed). Totals at the bottom.

Edits: drop a layer type from the palette at a position, drag rows to
reorder, Del / context menu to delete, Ctrl+D to duplicate. Drops go through
`handle_drop`, a small function from MIME payload to session edit.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from PySide6.QtCore import QAbstractListModel, QMimeData, QModelIndex, QPoint, QRect, QSize, Qt
from PySide6.QtGui import QAction, QColor, QDrag, QFont, QFontMetrics, QKeySequence, QPainter, QPalette, QPen
from PySide6.QtWidgets import (QAbstractItemView, QLabel, QListView, QMenu, QStyle, QStyledItemDelegate,
                               QStyleOptionViewItem, QVBoxLayout, QWidget)

from ..core.errors import NetworkError
from ..core.layers import LAYER_TYPES, describe_shape
from ..core.session import Session
from .commands import Editor
from .palette import LAYER_MIME, _icon_pixmap, group_color

ROW_MIME = "application/x-cnnplay-layer-row"
ROW_ROLE = Qt.ItemDataRole.UserRole + 10

# Settings a new layer gets when dropped from the palette (fields without defaults, sensible sizes).
NEW_LAYER_DEFAULTS = {
    "conv2d": {"out_channels": 16, "kernel_size": 3, "padding": 1},
    "conv1d": {"out_channels": 16, "kernel_size": 5, "padding": 2},
    "maxpool2d": {"kernel_size": 2},
    "avgpool2d": {"kernel_size": 2},
    "maxpool1d": {"kernel_size": 2},
    "avgpool1d": {"kernel_size": 2},
    "linear": {"out_features": 10},
}


def new_layer(type_name: str) -> dict:
    if type_name not in LAYER_TYPES:
        raise NetworkError(f"unknown layer type {type_name!r}")
    return {"type": type_name, **NEW_LAYER_DEFAULTS.get(type_name, {})}


def format_count(n: int) -> str:
    """1234 -> '1.23k', 5_600_000 -> '5.6M'."""
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            v = n / div
            return f"{v:.3g}{suffix}" if v < 1000 else f"{v:.0f}{suffix}"
    return str(n)


def needs_fix_text(session: Session) -> str:
    """The invalid layer in words, e.g. "The first layer needs a fix: ... The 7 layers after it wait."."""
    net, n_all = session.network, len(session.state.spec["layers"])
    err = net.error
    if err is None:
        return ""
    i = len(net)
    if getattr(err, "layer", None) == i and getattr(err, "reason", None):
        reason = f"{err.field.replace('_', ' ')}: {err.reason}" if err.field else err.reason
    else:
        reason = str(err)
    who = "The first layer" if i == 0 else f"Layer {i}"
    text = f"{who} needs a fix: {reason}."
    after = n_all - i - 1
    if i > 0:
        text += f" Layers 0\u2013{i - 1} work." if i > 1 else " Layer 0 works."
    if after > 0:
        text += f" The {after} layer{'s' if after > 1 else ''} after it wait{'s' if after == 1 else ''}."
    return text.replace("..", ".")


def format_shape(shape) -> str:
    return "\u00d7".join(str(n) for n in shape)


@dataclass(frozen=True)
class Row:
    index: int
    type_name: str
    summary: str
    status: str  # "ok", "error" or "skipped"
    shape: tuple | None = None
    params: int = 0
    macs: int = 0
    message: str = ""

    def text(self) -> str:
        """The row as plain text (what the delegate draws, for tests and accessibility)."""
        head = f"{self.index}  {self.summary}"
        if self.status == "ok":
            return (f"{head}  \u2192 {format_shape(self.shape)}  |  {format_count(self.params)} params, "
                    f"{format_count(self.macs)} mult-adds")
        if self.status == "error":
            return f"{head}  |  {self.message}"
        return f"{head}  |  not computed (an earlier layer is invalid)"


def session_rows(session: Session, compute_error=None) -> list[Row]:
    """What each row shows, straight from the core. `compute_error` is (layer, message)
    of a failure while computing the current network (the controller's compute_error());
    that layer's row shows it."""
    net = session.network
    layers = session.state.spec["layers"]
    summaries, counts, macs = net.summaries, net.parameter_counts, net.macs
    err = net.error
    rows = []
    for i, raw in enumerate(layers):
        type_name = raw.get("type") if isinstance(raw, dict) else None
        t = LAYER_TYPES.get(type_name) if isinstance(type_name, str) else None
        if i < len(net):
            failed = compute_error is not None and compute_error[0] == i
            rows.append(Row(i, type_name, summaries[i], "error" if failed else "ok", net.output_shapes[i],
                            counts[i], macs[i], f"compute failed: {compute_error[1]}" if failed else ""))
            continue
        summary = str(type_name)
        if t is not None:
            try:
                summary = t.summary(t.normalize(raw, i))
            except (NetworkError, KeyError, TypeError, ValueError):
                summary = t.name
        if i == len(net) and err is not None:
            rows.append(Row(i, type_name, summary, "error", message=err.reason if err.layer == i else str(err)))
        else:
            rows.append(Row(i, type_name, summary, "skipped"))
    return rows


class LayerStackModel(QAbstractListModel):
    """Reads the session; never stores a copy of the network."""

    def __init__(self, session: Session, parent=None):
        super().__init__(parent)
        self.session = session
        self.compute_error = lambda: None  # the window points this at the controller's compute_error
        self._rows = session_rows(session)
        session.network_changed.connect(self._on_network_changed)

    def _on_network_changed(self) -> None:
        new = session_rows(self.session, self.compute_error())
        if len(new) != len(self._rows):
            self.beginResetModel()
            self._rows = new
            self.endResetModel()
        else:
            old, self._rows = self._rows, new
            # Only the rows that read differently: one range of rows repaints the whole
            # list (QAbstractItemView), one row only its own rect, and an edit of one
            # layer's settings usually changes that row alone.
            for i, (a, b) in enumerate(zip(old, new)):
                if a != b:
                    self.dataChanged.emit(self.index(i), self.index(i))

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def row(self, i: int) -> Row:
        return self._rows[i]

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        r = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return r.text()
        if role == ROW_ROLE:
            return r
        if role == Qt.ItemDataRole.ToolTipRole:
            t = LAYER_TYPES.get(r.type_name)
            tip = f"<b>{r.summary}</b>"
            if r.status == "ok":
                tip += (f"<br>output: {describe_shape(r.shape)}<br>{r.params:,} parameters<br>"
                        f"{r.macs:,} multiply-adds")
            elif r.status == "error":
                tip += f"<br><span style='color:#c0392b'>{r.message}</span>"
            else:
                tip += "<br>not computed: an earlier layer is invalid"
            if t is not None:
                tip += f"<br><i>{t.help}</i>"
            return tip
        return None

    def flags(self, index: QModelIndex):
        base = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        return base | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else Qt.ItemFlag.ItemIsDropEnabled


def _small_font(font: QFont) -> QFont:
    small = QFont(font)
    small.setPointSizeF(max(7.0, font.pointSizeF() * 0.88))
    return small


class LayerRowDelegate(QStyledItemDelegate):
    ROW_HEIGHT = 42
    TEXT_LEFT, TEXT_RIGHT = 42, 8  # the text column: after the icon, before the edge
    MAX_MESSAGE_LINES = 4  # an error row grows to show the core's whole message (tooltip beyond)

    def sizeHint(self, option, index) -> QSize:
        r: Row = index.data(ROW_ROLE)
        extra = 0
        if r is not None and r.status == "error":
            fms = QFontMetrics(_small_font(option.font))
            extra = self._message_height(fms, r, self._text_width()) - fms.height()
        return QSize(200, self.ROW_HEIGHT + extra)

    def _text_width(self) -> int:
        view = self.parent()
        return max(80, view.viewport().width() - self.TEXT_LEFT - self.TEXT_RIGHT) if view is not None else 200

    def _message_height(self, fms: QFontMetrics, r: Row, width: int) -> int:
        text = "\u26a0 " + r.message
        h = fms.boundingRect(QRect(0, 0, width, 10_000), Qt.TextFlag.TextWordWrap, text).height()
        return max(fms.height(), min(h, fms.lineSpacing() * self.MAX_MESSAGE_LINES))

    def paint(self, p: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        r: Row = index.data(ROW_ROLE)
        if r is None:
            return super().paint(p, option, index)
        p.save()
        rect = option.rect
        pal = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            p.fillRect(rect, pal.color(QPalette.ColorRole.Highlight).lighter(175))
        elif r.status == "error":
            p.fillRect(rect, QColor(253, 236, 234))
        elif index.row() % 2:
            p.fillRect(rect, pal.color(QPalette.ColorRole.AlternateBase))
        t = LAYER_TYPES.get(r.type_name)
        stripe = QColor("#c0392b") if r.status == "error" else group_color(t.group if t else "")
        if r.status == "skipped":
            stripe = QColor("#bbbbbb")
        p.fillRect(QRect(rect.left(), rect.top() + 2, 4, rect.height() - 4), stripe)
        if t is not None:
            if r.status == "skipped":
                p.setOpacity(0.35)
            p.drawPixmap(rect.left() + 10, rect.top() + (rect.height() - 24) // 2, _icon_pixmap(t.name, 24))
            p.setOpacity(1.0)
        x0 = rect.left() + self.TEXT_LEFT
        text_col = pal.color(QPalette.ColorRole.Text)
        dim = QColor(text_col)
        dim.setAlpha(140)
        grey = QColor(150, 150, 150)
        f = QFont(option.font)
        f.setBold(True)
        p.setFont(f)
        fm = QFontMetrics(f)
        top = QRect(x0, rect.top() + 4, rect.right() - x0 - self.TEXT_RIGHT, fm.height())
        shape_text = format_shape(r.shape) if r.shape is not None else ""
        f2 = QFont(option.font)
        fm2 = QFontMetrics(f2)
        shape_w = fm2.horizontalAdvance(shape_text) + 6 if shape_text else 0
        p.setPen(grey if r.status == "skipped" else (QColor("#c0392b") if r.status == "error" else text_col))
        title = f"{r.index}  {r.summary}"
        p.drawText(top.adjusted(0, 0, -shape_w, 0), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                   fm.elidedText(title, Qt.TextElideMode.ElideRight, top.width() - shape_w))
        if shape_text:
            p.setFont(f2)
            p.setPen(text_col)
            p.drawText(top, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, shape_text)
        small = _small_font(option.font)
        p.setFont(small)
        fms = QFontMetrics(small)
        bottom = QRect(x0, top.bottom() + 2, rect.right() - x0 - self.TEXT_RIGHT, fms.height())
        if r.status == "ok":
            line = f"{format_count(r.params)} params  \u00b7  {format_count(r.macs)} mult-adds"
            p.setPen(dim)
        elif r.status == "error":
            p.setPen(QColor("#c0392b"))
            bottom.setHeight(self._message_height(fms, r, bottom.width()))
            p.drawText(bottom, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap,
                       "\u26a0 " + r.message)
            line = None
        else:
            line = "not computed: an earlier layer is invalid"
            p.setPen(grey)
        if line is not None:
            p.drawText(bottom, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                       fms.elidedText(line, Qt.TextElideMode.ElideRight, bottom.width()))
        p.setPen(QPen(pal.color(QPalette.ColorRole.Mid), 0.5))
        p.drawLine(rect.left() + 6, rect.bottom(), rect.right() - 6, rect.bottom())
        p.restore()


def mime_payloads(mime: QMimeData) -> dict[str, bytes]:
    return {fmt: bytes(mime.data(fmt)) for fmt in (LAYER_MIME, ROW_MIME) if mime.hasFormat(fmt)}


def row_mime(session: Session, row: int) -> QMimeData:
    mime = QMimeData()
    mime.setData(ROW_MIME, f"{row}:{session.layer_id(row)}".encode("ascii"))
    return mime


def handle_drop(editor: Editor, payloads: dict[str, bytes], row: int) -> bool:
    """Turn a drop at insertion position `row` (0..n: before row `row`) into a session edit.

    LAYER_MIME (a layer-type id from the palette) inserts a new layer there;
    ROW_MIME ("index:id", a row of the stack) moves that layer there.
    Returns True if the payload was understood.
    """
    session = editor.session
    n = len(session.state.spec["layers"])
    row = max(0, min(int(row), n))
    if ROW_MIME in payloads:
        try:
            text = payloads[ROW_MIME].decode("ascii")
            src_text, _, lid = text.partition(":")
            src = session.index_of(lid) if lid else None
            if src is None:
                src = int(src_text)
        except (UnicodeDecodeError, ValueError):
            return False
        if not 0 <= src < n:
            return False
        dst = row - 1 if src < row else row
        if dst != src:
            editor.move_layer(src, dst)
        session.select_layer(dst)
        return True
    if LAYER_MIME in payloads:
        try:
            name = payloads[LAYER_MIME].decode("ascii").strip()
        except UnicodeDecodeError:
            return False
        if name not in LAYER_TYPES:
            return False
        lid = editor.insert_layer(row, new_layer(name))
        if lid is not None:
            session.select_layer(session.index_of(lid))
        return True
    return False


class LayerStackView(QListView):
    """The rows; accepts palette drops and internal row drags at a position."""

    def __init__(self, editor: Editor, parent=None):
        super().__init__(parent)
        self.editor = editor
        self.session = editor.session
        self.setModel(LayerStackModel(self.session, self))
        self.setItemDelegate(LayerRowDelegate(self))
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setDragEnabled(True)
        self.setAcceptDrops(True)
        self.viewport().setAcceptDrops(True)
        self.setDropIndicatorShown(False)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setUniformItemSizes(False)  # an error row grows to show its whole message
        self.setResizeMode(QListView.ResizeMode.Adjust)  # ... re-wrapped when the column's width changes
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.DefaultContextMenu)
        self._drop_row: int | None = None
        self._syncing = False
        self.selectionModel().currentChanged.connect(self._on_current_changed)
        self.model().modelReset.connect(self._sync_selection)
        self.session.selection_changed.connect(self._sync_selection)
        self._sync_selection()

        self.delete_action = QAction("Delete layer", self)
        self.delete_action.setShortcuts([QKeySequence(Qt.Key.Key_Delete), QKeySequence(Qt.Key.Key_Backspace)])
        self.delete_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.delete_action.triggered.connect(self.delete_selected)
        self.duplicate_action = QAction("Duplicate layer", self)
        self.duplicate_action.setShortcut(QKeySequence("Ctrl+D"))
        self.duplicate_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.duplicate_action.triggered.connect(self.duplicate_selected)
        self.up_action = QAction("Move up", self)
        self.up_action.setShortcut(QKeySequence("Alt+Up"))
        self.up_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.up_action.triggered.connect(lambda: self.move_selected(-1))
        self.down_action = QAction("Move down", self)
        self.down_action.setShortcut(QKeySequence("Alt+Down"))
        self.down_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.down_action.triggered.connect(lambda: self.move_selected(1))
        for a in (self.delete_action, self.duplicate_action, self.up_action, self.down_action):
            self.addAction(a)

    def dataChanged(self, top_left: QModelIndex, bottom_right: QModelIndex, roles=()) -> None:
        """Rows that read differently. QListView lays every row out again on any change and
        repaints the whole list (~3-4 ms of delegate painting per edit); when the changed
        rows keep their height (an edit of a layer's settings, almost always) repainting
        those rows is all it takes. A row that grows or shrinks (an error message comes or
        goes) gets the full layout."""
        option = QStyleOptionViewItem()
        self.initViewItemOption(option)
        delegate = self.itemDelegate()
        for row in range(top_left.row(), bottom_right.row() + 1):
            index = self.model().index(row)
            if delegate.sizeHint(option, index).height() != self.visualRect(index).height():
                super().dataChanged(top_left, bottom_right, roles)
                return
        QAbstractItemView.dataChanged(self, top_left, bottom_right, roles)

    # -- selection follows the session -------------------------------------------------
    def _on_current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        if not self._syncing:
            self.session.select_layer(current.row() if current.isValid() else None)

    def _sync_selection(self) -> None:
        i = self.session.selected_layer
        self._syncing = True
        try:
            model = self.selectionModel()
            idx = self.model().index(i) if i is not None else QModelIndex()
            if model.currentIndex() == idx and model.selectedIndexes() == ([idx] if i is not None else []):
                return  # e.g. a click on a unit: the stack's selection stays (~1 ms saved per click)
            if i is None:
                model.clearSelection()
                model.setCurrentIndex(QModelIndex(), model.SelectionFlag.Clear)
            else:
                model.setCurrentIndex(idx, model.SelectionFlag.ClearAndSelect)
                self.scrollTo(idx)
        finally:
            self._syncing = False

    # -- edits --------------------------------------------------------------------------
    def delete_selected(self) -> None:
        i = self.session.selected_layer
        if i is None:
            return
        self.editor.remove_layer(i)
        n = len(self.session.layers)
        if n:
            self.session.select_layer(min(i, n - 1))

    def duplicate_selected(self) -> None:
        i = self.session.selected_layer
        if i is not None:
            lid = self.editor.duplicate_layer(i)
            if lid is not None:
                self.session.select_layer(self.session.index_of(lid))

    def move_selected(self, delta: int) -> None:
        i = self.session.selected_layer
        if i is None:
            return
        j = i + delta
        if 0 <= j < len(self.session.layers):
            self.editor.move_layer(i, j)
            self.session.select_layer(j)

    def add_type(self, type_name: str) -> None:
        """Add a layer of this type after the selected one (or at the end)."""
        i = self.session.selected_layer
        row = len(self.session.layers) if i is None else i + 1
        handle_drop(self.editor, {LAYER_MIME: type_name.encode("ascii")}, row)

    def contextMenuEvent(self, event) -> None:
        idx = self.indexAt(event.pos())
        if idx.isValid():
            self.session.select_layer(idx.row())
        menu = QMenu(self)
        has = idx.isValid()
        for a in (self.duplicate_action, self.up_action, self.down_action):
            a.setEnabled(has)
            menu.addAction(a)
        menu.addSeparator()
        self.delete_action.setEnabled(has)
        menu.addAction(self.delete_action)
        menu.addSeparator()
        add = menu.addMenu("Add layer after" if has else "Add layer")
        from .palette import layer_icon
        for t in LAYER_TYPES.values():
            act = add.addAction(layer_icon(t.name), t.title)
            act.triggered.connect(lambda checked=False, n=t.name: self.add_type(n))
        menu.exec(event.globalPos())
        for a in (self.delete_action, self.duplicate_action, self.up_action, self.down_action):
            a.setEnabled(True)

    # -- drag and drop ----------------------------------------------------------------------
    def drop_row_at(self, pos: QPoint) -> int:
        """Insertion position for a drop at viewport position `pos`: before the row under
        the upper half, after it under the lower half, at the end below the last row."""
        idx = self.indexAt(pos)
        if not idx.isValid():
            n = self.model().rowCount()
            if n and pos.y() < self.visualRect(self.model().index(0)).top():
                return 0
            return n
        rect = self.visualRect(idx)
        return idx.row() + (1 if pos.y() > rect.center().y() else 0)

    def _accepts(self, mime: QMimeData) -> bool:
        return mime.hasFormat(LAYER_MIME) or mime.hasFormat(ROW_MIME)

    def dragEnterEvent(self, event) -> None:
        """Accept layer types (copy) and rows (move); show where the drop would land."""
        if self._accepts(event.mimeData()):
            event.setDropAction(Qt.DropAction.MoveAction if event.mimeData().hasFormat(ROW_MIME)
                                else Qt.DropAction.CopyAction)
            event.accept()
            self._set_drop_row(self.drop_row_at(event.position().toPoint()))
        else:
            event.ignore()

    dragMoveEvent = dragEnterEvent  # the same decision at every mouse move

    def dragLeaveEvent(self, event) -> None:
        self._set_drop_row(None)
        event.accept()

    def dropEvent(self, event) -> None:
        self._set_drop_row(None)
        mime = event.mimeData()
        if not self._accepts(mime):
            event.ignore()
            return
        row = self.drop_row_at(event.position().toPoint())
        if handle_drop(self.editor, mime_payloads(mime), row):
            # CopyAction: the drag source must never remove anything itself.
            event.setDropAction(Qt.DropAction.CopyAction)
            event.accept()
        else:
            event.ignore()

    def startDrag(self, actions) -> None:
        idx = self.currentIndex()
        if not idx.isValid():
            return
        drag = QDrag(self)
        drag.setMimeData(row_mime(self.session, idx.row()))
        r = self.model().row(idx.row())
        if r.type_name in LAYER_TYPES:
            drag.setPixmap(_icon_pixmap(r.type_name, 32))
        drag.exec(Qt.DropAction.MoveAction | Qt.DropAction.CopyAction, Qt.DropAction.MoveAction)

    def _set_drop_row(self, row: int | None) -> None:
        if row != self._drop_row:
            self._drop_row = row
            self.viewport().update()

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        if self._drop_row is None:
            return
        n = self.model().rowCount()
        if n == 0:
            y = 2
        elif self._drop_row < n:
            y = self.visualRect(self.model().index(self._drop_row)).top()
        else:
            y = self.visualRect(self.model().index(n - 1)).bottom()
        p = QPainter(self.viewport())
        p.setPen(QPen(self.palette().color(QPalette.ColorRole.Highlight), 3))
        p.drawLine(4, y, self.viewport().width() - 4, y)
        p.end()


class LayerStack(QWidget):
    """The stack with the input on top and running totals at the bottom."""

    def __init__(self, editor: Editor, parent=None):
        super().__init__(parent)
        self.session = editor.session
        self.view = LayerStackView(editor, self)
        self.input_label = QLabel()
        self.input_label.setObjectName("stackInput")
        self.input_label.setWordWrap(True)  # a long input description must not widen the column
        self.totals = QLabel()
        self.totals.setObjectName("stackTotals")
        self.totals.setWordWrap(True)
        self.empty_hint = QLabel("Drag layers here from the palette (or double-click one there)")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setStyleSheet("color: gray; font-style: italic;")
        for lab in (self.input_label, self.totals):
            lab.setContentsMargins(8, 4, 8, 4)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.input_label)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.empty_hint)
        layout.addWidget(self.totals)
        self.session.network_changed.connect(self.refresh)
        self.refresh()

    def show_compute_errors(self, source) -> None:
        """`source() -> (layer, message) | None`: a compute failure to show on its layer's row
        (the window passes controller.compute_error and calls refresh_rows when it changes)."""
        self.view.model().compute_error = source
        self.refresh_rows()

    def refresh_rows(self) -> None:
        self.view.model()._on_network_changed()

    def refresh(self) -> None:
        s = self.session
        net = s.network
        self.input_label.setText(f"<b>Input</b> &nbsp; {format_shape(net.input_shape)}"
                                 f" <span style='color:gray'>({describe_shape(net.input_shape)})</span>")
        n_all = len(s.state.spec["layers"])
        params, macs = sum(net.parameter_counts), sum(net.macs)
        out = format_shape(net.output_shapes[-1]) if len(net) else format_shape(net.input_shape)
        text = (f"<b>Total</b> &nbsp; {params:,} params &nbsp;\u00b7&nbsp; {format_count(macs)} mult-adds"
                f" &nbsp;\u00b7&nbsp; output {out}")
        if net.error is not None:
            text += f"<br><span style='color:#c0392b'>{html.escape(needs_fix_text(s))}</span>"
        self.totals.setText(text)
        self.empty_hint.setVisible(n_all == 0)
