"""What excites the selected unit: the top patches of the attached data set
beside the preferred input (gradient ascent), and the "Why this class"
saliency overlay on the input. All computed on the compute worker
(core/microscope), with progress and cancel; results are cached until the
network's parameters or the data set change."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QFileDialog, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QProgressBar,
                               QPushButton, QSizePolicy, QVBoxLayout, QWidget)

from ...core.microscope import class_saliency, fmt, has_classes, preferred_input, top_patches
from ...core.microscope.explain import unit_name
from ..concepts.common import WhenVisible
from .pictures import picture
from .tasks import CANCELLED, TaskRunner, listen

NO_DATASET = ("No data set is attached. Attach one in the <b>Train</b> panel (a built-in one such as "
              "<i>shapes</i>, or a folder of images) to see the 9 samples that excite this channel most.")
SEED = 0
DEBOUNCE_MS = 150
TILE = 84
CACHE = 24
SALIENCY_LABEL = "Why this class (saliency: |d score / d input|)"


class _Cache(OrderedDict):
    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > CACHE:
            self.popitem(last=False)


def _progress_bar() -> QProgressBar:
    bar = QProgressBar()
    bar.setTextVisible(False)
    bar.setFixedHeight(8)
    bar.hide()
    return bar


class ExcitesPanel(QWidget):
    def __init__(self, session, controller, input_view=None, parent=None):
        super().__init__(parent)
        self.session, self.controller = session, controller
        self.patch_cache, self.preferred_cache = _Cache(), _Cache()
        self.patches = None  # (key, [TopPatch]) shown
        self.preferred = None  # (key, PreferredInput) shown
        self.saliency = None
        self._range = (None, None)
        w = controller.worker
        self.patch_runner = TaskRunner(w, "top patches", self)
        self.pref_runner = TaskRunner(w, "preferred input", self)
        self.sal_runner = TaskRunner(w, "class saliency", self)
        for r, done in ((self.patch_runner, self._patches_done), (self.pref_runner, self._preferred_done),
                        (self.sal_runner, self._saliency_done)):
            r.done.connect(done)
        self.patch_runner.failed.connect(lambda r, m: self._failed(self.patch_note, self.patch_bar, m))
        self.pref_runner.failed.connect(lambda r, m: self._failed(self.pref_note, self.pref_bar, m))
        self.sal_runner.failed.connect(lambda r, m: self.sal_note.setText(m))
        self.patch_runner.progress.connect(lambda r, d, n: self._progress(self.patch_runner, self.patch_bar, r, d, n))
        self.pref_runner.progress.connect(lambda r, d, n: self._progress(self.pref_runner, self.pref_bar, r, d, n))

        # top patches
        self.patch_title = QLabel()
        self.patch_title.setWordWrap(True)
        self.patch_note = QLabel()
        self.patch_note.setWordWrap(True)
        self.patch_note.setTextFormat(Qt.RichText)
        self.patch_bar = _progress_bar()
        self.patch_cancel = QPushButton("Cancel")
        self.patch_cancel.setToolTip("Stop searching the data set for top patches")
        self.patch_cancel.clicked.connect(self.patch_runner.cancel)
        self.patch_cancel.hide()
        self.tiles_box = QWidget()
        self.tiles = QGridLayout(self.tiles_box)
        self.tiles.setSpacing(6)
        self.tiles.setContentsMargins(0, 0, 0, 0)
        patches_box = QGroupBox("Top patches")
        pv = QVBoxLayout(patches_box)
        pv.addWidget(self.patch_title)
        pv.addWidget(self.patch_note)
        bar_row = QHBoxLayout()
        bar_row.addWidget(self.patch_bar, 1)
        bar_row.addWidget(self.patch_cancel)
        pv.addLayout(bar_row)
        pv.addWidget(self.tiles_box)
        pv.addStretch(1)

        # preferred input
        self.pref_image = QLabel()
        self.pref_image.setAlignment(Qt.AlignCenter)
        self.pref_image.setMinimumSize(TILE * 2, TILE * 2)
        self.pref_note = QLabel()
        self.pref_note.setWordWrap(True)
        self.pref_bar = _progress_bar()
        self.pref_cancel = QPushButton("Cancel")
        self.pref_cancel.setToolTip("Stop computing the preferred input")
        self.pref_cancel.clicked.connect(self.pref_runner.cancel)
        self.pref_cancel.hide()
        self.save_button = QPushButton("Save as PNG\u2026")
        self.save_button.setEnabled(False)
        self.save_button.setToolTip("Save the preferred input as a PNG image")
        self.save_button.clicked.connect(self.save_dialog)
        pref_box = QGroupBox("Preferred input")
        rv = QVBoxLayout(pref_box)
        rv.addWidget(self.pref_image, 0, Qt.AlignHCenter)
        rv.addWidget(self.pref_note)
        row = QHBoxLayout()
        row.addWidget(self.pref_bar, 1)
        row.addWidget(self.pref_cancel)
        rv.addLayout(row)
        rv.addWidget(self.save_button, 0, Qt.AlignLeft)
        rv.addStretch(1)

        # why this class
        self.sal_box = QCheckBox(SALIENCY_LABEL)
        self.sal_box.setToolTip("Shows on the input where the predicted class score (or the class bar you "
                                "clicked in the last layer) is most sensitive to the pixels.")
        self.sal_box.toggled.connect(self._saliency_toggled)
        self.sal_note = QLabel()
        self.sal_note.setWordWrap(True)
        self.sal_note.setStyleSheet("color: #9aa0aa;")

        halves = QHBoxLayout()
        halves.addWidget(patches_box, 3)
        halves.addWidget(pref_box, 2)
        lay = QVBoxLayout(self)
        lay.addLayout(halves)
        lay.addWidget(self.sal_box)
        lay.addWidget(self.sal_note)
        lay.addStretch(1)

        self.overlay = SaliencyOverlay(input_view) if input_view is not None else None
        self.refresh_when_visible = WhenVisible(self, self.refresh)
        # a moment after the last change: training changes the parameters many times a second
        self.debounce = QTimer(self)
        self.debounce.setSingleShot(True)
        self.debounce.setInterval(DEBOUNCE_MS)
        self.debounce.timeout.connect(self.refresh_when_visible)
        listen(self, session.selection_changed, self.debounce.start)
        listen(self, session.network_changed, self.debounce.start)
        changed = getattr(session, "dataset_changed", None)
        if changed is not None:
            listen(self, changed, self.patch_cache.clear)  # the key's id() of a data set must not outlive it
            listen(self, changed, self.debounce.start)
        listen(self, session.network_changed, self.refresh_saliency)
        listen(self, session.input_changed, self.refresh_saliency)
        listen(self, session.selection_changed, self.refresh_saliency)
        self.refresh_when_visible()
        self.refresh_saliency()

    # -- the data set -------------------------------------------------------------------
    def dataset(self):
        return getattr(self.session, "dataset", None)

    def value_range(self) -> tuple[float, float]:
        """The range the preferred input may use: the data set's, else the input's (with
        [0, 1]); remembered per array (a data set's range is taken once)."""
        ds = self.dataset()
        x = ds.x if ds is not None and len(ds) else self.session.input_array
        if self._range[0] is not x:
            lo, hi = float(np.min(x)), float(np.max(x))
            if ds is None:
                lo, hi = min(lo, 0.0), max(hi, 1.0)
            self._range = (x, (lo, hi) if hi > lo else (lo, lo + 1.0))
        return self._range[1]

    # -- requests -------------------------------------------------------------------------
    def refresh(self) -> None:
        s = self.session
        sel = s.selected_unit
        if sel is None:
            self.patch_title.setText("Click a unit of a feature map.")
            self.patch_note.setText(NO_DATASET if self.dataset() is None else "")
            self._show_tiles([])
            self.pref_note.setText("Click a unit to see the input it responds to most.")
            self.pref_image.clear()
            self.save_button.setEnabled(False)
            return
        layer, unit = sel
        net = s.network
        lkey = net.layer_keys()[layer]
        what = "feature" if len(unit) == 1 else "channel"
        self.patch_title.setText(f"Layer {layer}, {what} {unit[0]}: the samples with the highest value "
                                 "(maximum over positions), cropped to the unit's field where it peaks")
        ds = self.dataset()
        if ds is None:
            self.patch_note.setText(NO_DATASET)
            self._show_tiles([])
        elif tuple(ds.sample_shape) != tuple(net.input_shape):
            self.patch_note.setText(f"The attached data set's samples are {tuple(ds.sample_shape)}, the network "
                                    f"expects {tuple(net.input_shape)}.")
            self._show_tiles([])
        else:
            key = (lkey, id(ds), layer, unit[0])
            if key in self.patch_cache:
                self._show_patches(key, self.patch_cache[key])
            elif not (self.patch_runner.pending is not None and self.patch_runner.pending.key == key):
                self._request_patches(key, ds, layer, unit[0])
        vrange = self.value_range()
        pkey = (lkey, layer, unit, SEED, vrange)
        if pkey in self.preferred_cache:
            self._show_preferred(pkey, self.preferred_cache[pkey])
        elif not (self.pref_runner.pending is not None and self.pref_runner.pending.key == pkey):
            self._request_preferred(pkey, layer, unit, vrange)

    def _request_patches(self, key, ds, layer, channel) -> None:
        s = self.session
        self.patch_note.setText(f"searching {len(ds)} samples\u2026")
        self.patch_bar.setValue(0)
        self.patch_bar.show()
        self.patch_cancel.show()

        def work(net, x, outputs, should_stop, progress):
            return top_patches(net, ds, layer, channel, k=9, progress=progress, should_stop=should_stop)
        self.patch_runner.submit(s.network, s.input_array, s.input_token, work, key)

    def _request_preferred(self, key, layer, unit, vrange) -> None:
        s = self.session
        self.pref_note.setText("optimising\u2026")
        self.pref_bar.setValue(0)
        self.pref_bar.show()
        self.pref_cancel.show()

        def work(net, x, outputs, should_stop, progress):
            return preferred_input(net, layer, unit, seed=SEED, value_range=vrange, progress=progress,
                                   should_stop=should_stop)
        self.pref_runner.submit(s.network, s.input_array, s.input_token, work, key)

    def _progress(self, runner, bar, request, done, total) -> None:
        if request is runner.pending:
            bar.setMaximum(max(total, 1))
            bar.setValue(done)

    def _failed(self, note, bar, message) -> None:
        bar.hide()
        (self.patch_cancel if note is self.patch_note else self.pref_cancel).hide()
        note.setText(message)

    # -- results --------------------------------------------------------------------------
    def _patches_done(self, request, value) -> None:
        self.patch_bar.hide()
        self.patch_cancel.hide()
        if value is CANCELLED:
            self.patch_note.setText("Cancelled. Select the unit again to search.")
            return
        self.patch_cache.put(request.key, value)
        self.refresh_when_visible()

    def _preferred_done(self, request, value) -> None:
        self.pref_bar.hide()
        self.pref_cancel.hide()
        if value is CANCELLED:
            self.pref_note.setText("Cancelled. Select the unit again to optimise.")
            return
        self.preferred_cache.put(request.key, value)
        self.refresh_when_visible()

    def _show_tiles(self, patches) -> None:
        while self.tiles.count():
            w = self.tiles.takeAt(0).widget()
            if w is not None:
                w.hide()
                w.deleteLater()
        self.tile_widgets = []
        if not patches:
            return
        classes = list(getattr(self.dataset(), "classes", []) or [])
        lo = min(float(p.crop.min()) for p in patches)
        hi = max(float(p.crop.max()) for p in patches)
        for i, p in enumerate(patches):
            tile = QWidget()
            v = QVBoxLayout(tile)
            v.setContentsMargins(0, 0, 0, 0)
            v.setSpacing(1)
            img = QLabel()
            img.setPixmap(picture(p.crop, TILE, lo, hi if hi > lo else lo + 1, p.inside))
            img.setAlignment(Qt.AlignCenter)
            label = "" if p.label is None else (classes[p.label] if p.label < len(classes) else str(p.label))
            cap = QLabel(f"<b>{fmt(p.value)}</b> {label}<br><span style='color:#9aa0aa'>#{p.sample}</span>")
            cap.setAlignment(Qt.AlignCenter)
            cap.setToolTip(f"sample {p.sample}, peaks at unit ({unit_name(p.unit)}), box {p.box}")
            v.addWidget(img)
            v.addWidget(cap)
            self.tiles.addWidget(tile, i // 3, i % 3)
            self.tile_widgets.append(tile)

    def _show_patches(self, key, patches) -> None:
        if self.patches is not None and self.patches[0] == key:
            return
        self.patches = (key, patches)
        ds = self.dataset()
        self.patch_note.setText(f"best {len(patches)} of {len(ds)} samples of \u201c{getattr(ds, 'name', '')}\u201d; "
                                "dark red: the field reaches into the padding")
        self._show_tiles(patches)

    def _show_preferred(self, key, p) -> None:
        self.preferred = (key, p)
        crop = self.preferred_crop()
        lo, hi = p.settings["value_range"]
        self.pref_image.setPixmap(picture(crop, TILE * 2, lo, hi))
        obj = "" if p.objective_layer == p.layer else f" (through layer {p.objective_layer}, before the activation)"
        self.pref_note.setText(f"value {fmt(p.start_value)} \u2192 <b>{fmt(p.value)}</b> in "
                               f"{p.settings['steps']} steps{obj}; seed {p.seed}, jitter {p.settings['jitter']} px, "
                               f"blur {fmt(p.settings['blur_sigma'])} px, decay {fmt(p.settings['decay'])}")
        self.pref_note.setTextFormat(Qt.RichText)
        self.save_button.setEnabled(True)

    def preferred_crop(self) -> np.ndarray:
        """The preferred input cut to the unit's box (clipped to the input)."""
        p = self.preferred[1]
        sl = tuple(slice(max(a, 0), min(b, n)) for (a, b), n in zip(p.box, p.image.shape[1:]))
        crop = p.image[(slice(None),) + sl]
        return crop if crop.size else p.image

    def save_png(self, path: str) -> bool:
        if self.preferred is None:
            return False
        if not path.lower().endswith(".png"):
            path += ".png"
        return self.pref_image.pixmap().save(path, "PNG")

    def save_dialog(self) -> None:
        if self.preferred is None:
            return
        p = self.preferred[1]
        name = f"preferred-layer{p.layer}-{'-'.join(map(str, p.unit))}.png"
        path, _ = QFileDialog.getSaveFileName(self, "Save preferred input as PNG", name, "PNG image (*.png)")
        if path:
            self.save_png(path)

    # -- why this class -----------------------------------------------------------------------
    def _saliency_toggled(self, on: bool) -> None:
        if not on:
            self.saliency = None
            if self.overlay is not None:
                self.overlay.show(None, "")
            self.sal_note.setText("")
        self.refresh_saliency()

    def saliency_class(self) -> int | None:
        """The clicked class bar of the last layer, else None (the predicted class)."""
        s = self.session
        sel = s.selected_unit
        if sel is not None and sel[0] == len(s.network) - 1 and len(sel[1]) == 1:
            return sel[1][0]
        return None

    def refresh_saliency(self) -> None:
        s = self.session
        net = s.network
        ok = has_classes(net) and not s.error
        self.sal_box.setEnabled(ok)
        if not ok:
            self.sal_box.setToolTip("Needs a network whose last layer gives class scores (a linear layer).")
            if self.overlay is not None:
                self.overlay.show(None, "")
            return
        if not self.sal_box.isChecked():
            return
        k = self.saliency_class()
        key = (net, s.input_token, k)
        if self.saliency is not None and self.saliency[0][0] is net and self.saliency[0][1:] == key[1:]:
            return

        def work(net_, x, outputs, should_stop, progress):
            return class_saliency(net_, x, outputs, k)
        self.sal_note.setText("computing the saliency\u2026")
        self.sal_runner.submit(net, s.input_array, s.input_token, work, key)

    def _saliency_done(self, request, value) -> None:
        if value is CANCELLED or not self.sal_box.isChecked():
            return
        self.saliency = (request.key, value)
        classes = list(self.session.output_classes() or []) if hasattr(self.session, "output_classes") else []
        k = value.class_index
        name = f"\u201c{classes[k]}\u201d (class {k})" if k < len(classes) else f"class {k}"
        how = "predicted" if k == value.predicted else "clicked"
        self.sal_note.setText(f"Why {name}, {how}, score {fmt(value.scores[k])}: the heat map on the input "
                              "is the saliency |d score / d input| (summed over the input's channels)")
        if self.overlay is not None:  # short: the label sits on the (small) input image
            short = f"\u201c{classes[k]}\u201d" if k < len(classes) else f"class {k}"
            self.overlay.show(value.map, f"saliency: why {short}")


class SaliencyOverlay:
    """The saliency as a heat map over the input image, labelled as such."""

    def __init__(self, input_view):
        self.view = input_view
        iv = getattr(input_view, "image_view", None)
        self.vb = getattr(iv, "view_box", None)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setZValue(8)
        self.image.setOpacity(0.85)
        self.label = pg.TextItem("", color="#ffd166", fill=pg.mkBrush(20, 22, 26, 200), anchor=(0, 0))
        self.label.setZValue(9)
        if self.vb is not None:
            self.vb.addItem(self.image)
            self.vb.addItem(self.label)
        self.image.hide()
        self.label.hide()
        self.map = None

    def show(self, sal, text: str) -> None:
        self.map = sal
        if self.vb is None or sal is None or np.ndim(sal) != 2:
            self.image.hide()
            self.label.hide()
            return
        from ..views import style
        top = float(np.max(sal)) or 1.0
        self.image.setImage(np.asarray(sal, np.float32), autoLevels=False, levels=(0, top), lut=style.heat_lut())
        self.image.show()
        self.label.setText(text)
        self.label.setPos(0, 0)
        self.label.show()
