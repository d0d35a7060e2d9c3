"""What a student watches while a network trains: loss and accuracy curves,
the test set's confusion matrix and a gallery of test samples.

Views only: they draw what the session's Training holds and never compute
anything but the smoothing of a curve.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from ..views import style

TRAIN = "#4e9af1"
TEST = "#f39c12"
RAW = "#4e9af155"


def smooth(values: np.ndarray, alpha: float = 0.1) -> np.ndarray:
    """Exponential moving average (bias-corrected, like TensorBoard's smoothing)."""
    out = np.empty(len(values), np.float64)
    m, w = 0.0, 0.0
    for i, v in enumerate(values):
        m = (1 - alpha) * m + alpha * v
        w = (1 - alpha) * w + alpha
        out[i] = m / w
    return out


class Curves(QWidget):
    """Loss (per batch raw and smoothed, per epoch train and test) and accuracy (per epoch)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=True)
        self.loss_plot = pg.PlotWidget(viewBox=style.ZoomViewBox())
        self.acc_plot = pg.PlotWidget(viewBox=style.ZoomViewBox())
        for plot, title in ((self.loss_plot, "loss"), (self.acc_plot, "accuracy")):
            plot.setBackground("#1f2227")
            pi = plot.getPlotItem()
            style.own_menu(pi.getViewBox(), plot, f"training-{title}", chart=pi)
            pi.showGrid(x=True, y=True, alpha=0.15)
            pi.setLabel("left", title)
            pi.setLabel("bottom", "epoch")
            pi.hideButtons()
            plot.setMinimumHeight(140)
            plot.setMouseEnabled(x=False, y=False)
        legend = self.loss_plot.getPlotItem().addLegend(offset=(-4, 4), labelTextSize="7pt")
        self.batch_raw = self.loss_plot.plot(pen=pg.mkPen(RAW, width=1))
        self.batch_smooth = self.loss_plot.plot(pen=pg.mkPen(TRAIN, width=2), name="train (batches)")
        self.train_loss = self.loss_plot.plot(pen=None, symbol="o", symbolSize=6, symbolBrush=TRAIN,
                                              symbolPen=None, name="train (epoch)")
        self.test_loss = self.loss_plot.plot(pen=pg.mkPen(TEST, width=2), symbol="o", symbolSize=6,
                                             symbolBrush=TEST, symbolPen=None, name="test (epoch)")
        legend.setVisible(True)
        alegend = self.acc_plot.getPlotItem().addLegend(offset=(-4, -4), labelTextSize="7pt")
        self.train_acc = self.acc_plot.plot(pen=pg.mkPen(TRAIN, width=2), symbol="o", symbolSize=6,
                                            symbolBrush=TRAIN, symbolPen=None, name="train")
        self.test_acc = self.acc_plot.plot(pen=pg.mkPen(TEST, width=2), symbol="o", symbolSize=6,
                                           symbolBrush=TEST, symbolPen=None, name="test")
        alegend.setVisible(True)
        self.acc_plot.setYRange(0, 1, padding=0.02)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.loss_plot)
        lay.addWidget(self.acc_plot)
        self._shown = None

    def show_progress(self, progress) -> None:
        if progress is self._shown:
            return
        self._shown = progress
        per_epoch = max(progress.batches_per_epoch, 1)
        if progress.batch_losses:
            a = np.asarray(progress.batch_losses, np.float64)
            x = (a[:, 0] + 1) / per_epoch
            self.batch_raw.setData(x, a[:, 1])
            self.batch_smooth.setData(x, smooth(a[:, 1], alpha=min(0.3, 10.0 / per_epoch + 0.02)))
        else:
            self.batch_raw.setData([], [])
            self.batch_smooth.setData([], [])
        log = progress.epochs_log
        ep = np.array([e.get("epoch", i + 1) for i, e in enumerate(log)], np.float64)

        def col(key):
            return np.array([e.get(key, np.nan) for e in log], np.float64)

        self.train_loss.setData(ep, col("train_loss"))
        self.test_loss.setData(ep, col("test_loss"))
        self.train_acc.setData(ep, col("train_acc"))
        self.test_acc.setData(ep, col("test_acc"))

    def point_counts(self) -> dict[str, int]:
        """How many points each curve holds (for tests and the bench)."""
        def n(item):
            return 0 if item.xData is None else len(item.xData)
        return {"batch": n(self.batch_smooth), "train_loss": n(self.train_loss), "test_loss": n(self.test_loss),
                "train_acc": n(self.train_acc), "test_acc": n(self.test_acc)}


class ConfusionMatrix(QWidget):
    """Rows: the true class; columns: the predicted class; each cell its count, shaded."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.matrix: np.ndarray | None = None
        self.classes: list[str] = []
        self.note = ""
        self.setMinimumHeight(160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def set_matrix(self, matrix, classes, note: str = "") -> None:
        self.matrix = None if matrix is None else np.asarray(matrix, np.int64)
        self.classes = list(classes or [])
        self.note = note
        k = 0 if self.matrix is None else len(self.matrix)
        self.setMinimumHeight(max(160, min(76 + 22 * k, 436)))
        self.update()

    def sizeHint(self) -> QSize:
        k = 0 if self.matrix is None else len(self.matrix)
        return QSize(320, max(160, min(76 + 22 * k, 436)))

    def paintEvent(self, ev) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#1f2227"))
        p.setPen(QColor("#9aa0aa"))
        m = self.matrix
        if m is None or m.size == 0:
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "The confusion matrix appears after\n"
                       "the first epoch (or a Step).")
            return
        k = len(m)
        f = QFont(self.font())
        f.setPointSizeF(7.5)
        p.setFont(f)
        fm = p.fontMetrics()
        names = [self._name(i) for i in range(k)]
        label_w = min(max(fm.horizontalAdvance(n) for n in names) + 8, 110)
        top = 30
        avail_w = self.width() - label_w - 8
        avail_h = self.height() - top - 22
        cell = max(6.0, min(avail_w / k, avail_h / k, 40.0))
        p.drawText(QRectF(label_w, 0, cell * k, 14), Qt.AlignmentFlag.AlignCenter, "predicted \u2192")
        p.drawText(QRectF(0, 0, label_w, top), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop,
                   "true \u2193")
        row_max = np.maximum(m.sum(axis=1, keepdims=True), 1)
        frac = m / row_max
        for i in range(k):
            y = top + i * cell
            p.setPen(QColor("#c5c9d0"))
            p.drawText(QRectF(0, y, label_w - 4, cell), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                       fm.elidedText(names[i], Qt.TextElideMode.ElideRight, label_w - 6))
            for j in range(k):
                x = label_w + j * cell
                v = float(frac[i, j])
                base = QColor("#2e7d32") if i == j else QColor("#c0392b")
                c = QColor(base)
                c.setAlphaF(0.12 + 0.88 * v if m[i, j] else 0.0)
                p.fillRect(QRectF(x, y, cell - 1, cell - 1), c if m[i, j] else QColor("#262a30"))
                if cell >= 16 and m[i, j]:
                    p.setPen(QColor("#ffffff"))
                    p.drawText(QRectF(x, y, cell - 1, cell - 1), Qt.AlignmentFlag.AlignCenter, str(int(m[i, j])))
        if cell >= 12:
            p.setPen(QColor("#9aa0aa"))
            for j in range(k):
                p.drawText(QRectF(label_w + j * cell, top - 14, cell, 14), Qt.AlignmentFlag.AlignCenter,
                           fm.elidedText(names[j], Qt.TextElideMode.ElideRight, int(cell)))
        p.setPen(QPen(QColor("#3a3f47")))
        p.drawRect(QRectF(label_w, top, cell * k - 1, cell * k - 1))
        if self.note:
            p.setPen(QColor("#9aa0aa"))
            p.drawText(QRectF(label_w, top + cell * k + 2, max(cell * k, 120), 16), Qt.AlignmentFlag.AlignLeft,
                       self.note)

    def _name(self, i: int) -> str:
        return self.classes[i] if i < len(self.classes) else str(i)


def sample_pixmap(sample: np.ndarray, side: int = 56) -> QPixmap:
    """A small picture of one sample: (C, H, W) as an image, (C, L) as a curve."""
    a = np.asarray(sample, np.float32)
    if a.ndim == 3:
        lo, hi = float(a.min()), float(a.max())
        v = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        img8 = np.ascontiguousarray((np.clip(v, 0, 1) * 255).astype(np.uint8))
        if a.shape[0] == 3:
            rgb = np.ascontiguousarray(img8.transpose(1, 2, 0))
            h, w = rgb.shape[:2]
            q = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
        else:
            g = np.ascontiguousarray(img8[0])
            h, w = g.shape
            q = QImage(g.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
        return QPixmap.fromImage(q).scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.FastTransformation)
    pix = QPixmap(side, side)
    pix.fill(QColor("#17191d"))
    sig = a.reshape(a.shape[0], -1)[0] if a.ndim >= 1 else a
    if len(sig) >= 2:
        lo, hi = float(sig.min()), float(sig.max())
        ys = (sig - lo) / (hi - lo) if hi > lo else np.full_like(sig, 0.5)
        p = QPainter(pix)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(QColor("#8ab4f8"), 1))
        n = len(sig)
        pts = [((i / (n - 1)) * (side - 2) + 1, (1 - float(ys[i])) * (side - 4) + 2) for i in range(0, n, max(1, n // side))]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            p.drawLine(int(x0), int(y0), int(x1), int(y1))
        p.end()
    return pix


class Gallery(QWidget):
    """Test samples with predicted and true labels, misclassified first; a click picks one."""

    picked = Signal(int)  # index into the test set
    COUNT = 24
    COLUMNS = 5

    def __init__(self, parent=None):
        super().__init__(parent)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(3)
        self.buttons: list[QToolButton] = []
        self.shown: list[tuple[int, int, int]] = []  # (test index, predicted, true)
        self.empty = QLabel("Test samples with their predicted labels appear after the first epoch (or a Step).")
        self.empty.setWordWrap(True)
        self.empty.setStyleSheet("color: #9aa0aa;")
        self.grid.addWidget(self.empty, 0, 0, 1, self.COLUMNS)

    def set_samples(self, x, y_true, evaluation, classes, order) -> None:
        """Show the first COUNT samples of `order` (test indices)."""
        if evaluation is None or x is None or len(order) == 0:
            self.shown = []
            for b in self.buttons:
                b.hide()
            self.empty.show()
            return
        self.empty.hide()
        self.shown = []
        for slot, i in enumerate(order[:self.COUNT]):
            i = int(i)
            if slot >= len(self.buttons):
                b = QToolButton()
                b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
                b.setIconSize(QSize(56, 56))
                b.setAutoRaise(True)
                b.setMinimumWidth(70)
                b.clicked.connect(lambda _=False, s=slot: self._clicked(s))
                self.grid.addWidget(b, 1 + slot // self.COLUMNS, slot % self.COLUMNS)
                self.buttons.append(b)
            b = self.buttons[slot]
            pred, true = int(evaluation.predicted[i]), int(y_true[i])
            ok = pred == true
            name = lambda c: classes[c] if c < len(classes) else str(c)  # noqa: E731
            b.setIcon(sample_pixmap(x[i]))
            b.setText(f"{name(pred)} {evaluation.confidence[i]:.0%}" + ("" if ok else f"\n(true: {name(true)})"))
            b.setToolTip(f"Test sample {i}: predicted {name(pred)} ({evaluation.confidence[i]:.1%}), "
                         f"true {name(true)}. Click to make it the network's input.")
            b.setStyleSheet("QToolButton { color: %s; font-size: 8pt; }" % ("#2e7d32" if ok else "#c0392b"))
            b.show()
            self.shown.append((i, pred, true))
        for b in self.buttons[len(self.shown):]:
            b.hide()

    def _clicked(self, slot: int) -> None:
        if slot < len(self.shown):
            self.picked.emit(self.shown[slot][0])
