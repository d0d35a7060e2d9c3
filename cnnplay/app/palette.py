"""The palette: every layer type, grouped, with a drawn icon and its one-line help.

Dragging an entry carries a tiny MIME payload, the layer-type id (e.g. b"conv2d"),
which the layer stack turns into an insert. Double-click (or Enter) appends the
type after the selected layer.
"""

from __future__ import annotations

import math
from functools import lru_cache

from PySide6.QtCore import QMimeData, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QDrag, QFont, QIcon, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QTreeWidget, QTreeWidgetItem

from ..core.layers import LAYER_TYPES

LAYER_MIME = "application/x-cnnplay-layer-type"
GROUP_ORDER = ("Convolution", "Pooling", "Normalization", "Activation", "Dense")
GROUP_COLORS = {
    "Convolution": "#3b7dd8",
    "Pooling": "#2f9e6e",
    "Normalization": "#9b59b6",
    "Activation": "#e08a1e",
    "Dense": "#c0504d",
}
TYPE_ROLE = Qt.ItemDataRole.UserRole + 1


def group_color(group: str) -> QColor:
    return QColor(GROUP_COLORS.get(group, "#777777"))


@lru_cache(maxsize=None)
def _icon_pixmap(name: str, size: int) -> QPixmap:
    t = LAYER_TYPES[name]
    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = size / 32.0
    p.scale(s, s)
    col = group_color(t.group)
    light = QColor(col).lighter(170)
    p.setPen(QPen(col.darker(120), 1.2))
    p.setBrush(QBrush(light))
    p.drawRoundedRect(QRectF(1.5, 1.5, 29, 29), 5, 5)
    pen = QPen(col.darker(140), 1.6)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    p.setPen(pen)
    one_d = name.endswith("1d")
    if name.startswith("conv"):
        p.setBrush(QBrush(col.lighter(130)))
        if one_d:
            for i in range(5):
                p.drawRect(QRectF(5 + i * 4.5, 13, 4.5, 6))
            p.setBrush(QBrush(col.darker(110)))
            p.drawRect(QRectF(9.5, 13, 13.5, 6))
        else:
            for i in range(3):
                for j in range(3):
                    p.drawRect(QRectF(7 + i * 6, 7 + j * 6, 6, 6))
            p.setBrush(QBrush(col.darker(115)))
            p.drawRect(QRectF(13, 13, 6, 6))
    elif "pool" in name:
        big = 5 if one_d else 16
        p.setBrush(QBrush(col.lighter(130)))
        if one_d:
            for i in range(4):
                p.drawRect(QRectF(4 + i * 4, 13, 4, 6))
            p.setBrush(QBrush(col.darker(110)))
            p.drawRect(QRectF(22, 13, 6, 6))
        else:
            for i in range(2):
                for j in range(2):
                    p.drawRect(QRectF(4 + i * 7, 9 + j * 7, 7, 7))
            p.setBrush(QBrush(col.darker(110)))
            p.drawRect(QRectF(21, 12.5, 7, 7))
        p.drawLine(QPointF(18.5 if not one_d else 20.5, 16), QPointF(20 if not one_d else 21.5, 16))
        _ = big
        p.setFont(QFont("Sans", 6, QFont.Weight.Bold))
        p.drawText(QRectF(2, 24, 28, 7), Qt.AlignmentFlag.AlignCenter, "max" if name.startswith("max") else "avg")
    elif "norm" in name:
        path = QPainterPath()
        for i in range(41):
            x = 4 + i * 0.6
            y = 25 - 16 * math.exp(-((i - 20) / 7.0) ** 2)
            path.moveTo(x, y) if i == 0 else path.lineTo(x, y)
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawPath(path)
        p.drawLine(QPointF(16, 6), QPointF(16, 26))
        p.setFont(QFont("Sans", 6, QFont.Weight.Bold))
        p.drawText(QRectF(18, 3, 13, 8), Qt.AlignmentFlag.AlignLeft, "B" if name.startswith("batch") else "L")
    elif name in ("relu", "leaky_relu"):
        p.setPen(QPen(col.darker(110).lighter(120), 0.8, Qt.PenStyle.DotLine))
        p.drawLine(QPointF(4, 20), QPointF(28, 20))
        p.drawLine(QPointF(16, 4), QPointF(16, 28))
        p.setPen(QPen(col.darker(150), 2.2))
        y0 = 23 if name == "leaky_relu" else 20
        p.drawLine(QPointF(4, y0), QPointF(16, 20))
        p.drawLine(QPointF(16, 20), QPointF(27, 7))
    elif name == "flatten":
        p.setBrush(QBrush(col.lighter(130)))
        for k in range(3):
            p.drawRect(QRectF(4 + k * 2, 6 + k * 2, 9, 9))
        p.drawLine(QPointF(17, 13), QPointF(20, 13))
        for k in range(6):
            p.drawRect(QRectF(22, 4 + k * 4, 5, 4))
    elif name == "linear":
        left = [QPointF(7, 8 + k * 8) for k in range(3)]
        right = [QPointF(25, 11 + k * 10) for k in range(2)]
        p.setPen(QPen(col.darker(130), 0.9))
        for a in left:
            for b in right:
                p.drawLine(a, b)
        p.setPen(QPen(col.darker(150), 1.2))
        p.setBrush(QBrush(QColor("white")))
        for c in left + right:
            p.drawEllipse(c, 3, 3)
    p.end()
    return pix


def layer_icon(name: str, size: int = 32) -> QIcon:
    """The drawn icon of a layer type (pixmaps cached per size)."""
    icon = QIcon()
    for s in (16, 24, 32, 48):
        icon.addPixmap(_icon_pixmap(name, s))
    return icon


def layer_mime(type_name: str) -> QMimeData:
    mime = QMimeData()
    mime.setData(LAYER_MIME, type_name.encode("ascii"))
    mime.setText(type_name)
    return mime


class Palette(QTreeWidget):
    """The layer types, grouped; drag one onto the layer stack."""

    activated_type = Signal(str)  # double-click / Enter: add this type

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setHeaderHidden(True)
        self.setRootIsDecorated(False)
        self.setIndentation(8)
        self.setIconSize(QSize(20, 20))
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setUniformRowHeights(False)
        self.setStyleSheet("QTreeWidget { border: none; } QTreeWidget::item { padding: 1px 2px; }")
        self.items: dict[str, QTreeWidgetItem] = {}
        groups: dict[str, list] = {}
        for t in LAYER_TYPES.values():
            groups.setdefault(t.group, []).append(t)
        order = list(GROUP_ORDER) + [g for g in groups if g not in GROUP_ORDER]
        for g in order:
            if g not in groups:
                continue
            head = QTreeWidgetItem([g])
            head.setFlags(Qt.ItemFlag.ItemIsEnabled)
            f = head.font(0)
            f.setBold(True)
            f.setPointSizeF(f.pointSizeF() * 0.9)
            head.setFont(0, f)
            head.setForeground(0, QBrush(group_color(g).darker(130)))
            self.addTopLevelItem(head)
            for t in groups[g]:
                item = QTreeWidgetItem(head, [t.title])
                item.setIcon(0, layer_icon(t.name))
                item.setToolTip(0, f"<b>{t.title}</b> ({t.name})<br>{t.help}<br><i>Drag into the layer stack, "
                                   "or double-click to add after the selected layer.</i>")
                item.setStatusTip(0, t.help)
                item.setData(0, TYPE_ROLE, t.name)
                item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDragEnabled)
                self.items[t.name] = item
            head.setExpanded(True)
        self.itemActivated.connect(self._on_activated)
        self.setMinimumHeight(self.content_height())  # every layer type stays in view

    def content_height(self) -> int:
        rows, item = 0, self.topLevelItem(0)
        while item is not None:
            rows += self.visualItemRect(item).height() or self.sizeHintForRow(0)
            item = self.itemBelow(item)
        return rows + 2 * self.frameWidth() + 4

    def _on_activated(self, item: QTreeWidgetItem, column: int) -> None:
        name = item.data(0, TYPE_ROLE)
        if name:
            self.activated_type.emit(name)

    def mimeTypes(self):
        return [LAYER_MIME]

    def mimeData(self, items):
        names = [i.data(0, TYPE_ROLE) for i in items if i.data(0, TYPE_ROLE)]
        return layer_mime(names[0]) if names else QMimeData()

    def startDrag(self, actions) -> None:
        item = self.currentItem()
        name = item.data(0, TYPE_ROLE) if item is not None else None
        if not name:
            return
        drag = QDrag(self)
        drag.setMimeData(layer_mime(name))
        drag.setPixmap(_icon_pixmap(name, 32))
        drag.exec(Qt.DropAction.CopyAction)
