"""A data set from a folder of images: one sub-folder per class.

    dataset, report = load_image_folder("/data/pets", (1, 32, 32))

Every regular, non-hidden file in a class folder is decoded with Qt
(cnnplay.app.imageio: any format Qt reads, EXIF orientation applied, alpha on
white), converted to gray (C=1) or RGB (C=3) and resized to H x W (area
averaging when shrinking, linear interpolation when growing; the aspect ratio is
not kept). Runs in any thread (no widgets); the Train panel runs it off the GUI
thread. Files that cannot be decoded are skipped and listed in the report; a
class folder with no usable image is left out and named; fewer than two classes
with images, or no folder at all, is a DatasetError saying so.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...core import memory
from ...core.errors import InputError
from ...core.resample import resize
from ..imageio import load_image

MAX_FILES = 200_000


def _dataset_error():
    from ...datasets import DatasetError
    return DatasetError


@dataclass
class FolderReport:
    """What loading a folder found: images per class, files skipped and why, classes left out."""

    folder: str
    counts: dict[str, int] = field(default_factory=dict)  # class -> images used
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    empty: list[str] = field(default_factory=list)  # class folders without a usable image (left out)
    ignored_folders: list[str] = field(default_factory=list)  # folders inside a class folder

    def messages(self) -> list[str]:
        """Plain sentences for the user (empty when everything was used)."""
        out = []
        if self.empty:
            out.append(f"Class folder(s) without a usable image, left out: {', '.join(self.empty)}.")
        if self.skipped:
            shown = "; ".join(f"{name}: {reason}" for name, reason in self.skipped[:8])
            more = f"; and {len(self.skipped) - 8} more" if len(self.skipped) > 8 else ""
            out.append(f"{len(self.skipped)} file(s) could not be read and were skipped ({shown}{more}).")
        if self.ignored_folders:
            out.append(f"Folders inside class folders are not read: {', '.join(self.ignored_folders[:5])}"
                       + (" ..." if len(self.ignored_folders) > 5 else "") + ".")
        return out

    def summary(self) -> str:
        counts = ", ".join(f"{c} {n}" for c, n in self.counts.items())
        return f"{sum(self.counts.values())} images in {len(self.counts)} classes ({counts})"


def folder_reference(folder, shape) -> dict:
    return {"folder": os.fspath(folder), "shape": [int(s) for s in shape]}


def _class_files(folder: Path, report: FolderReport) -> dict[str, list[Path]]:
    DatasetError = _dataset_error()
    try:
        st = os.stat(folder)
    except OSError as e:
        raise DatasetError(f"cannot open the folder: {e.strerror or e}", os.fspath(folder)) from None
    if not stat.S_ISDIR(st.st_mode):
        raise DatasetError("is not a folder: choose a folder with one sub-folder of images per class",
                           os.fspath(folder))
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        raise DatasetError(f"cannot list the folder: {e.strerror or e}", os.fspath(folder)) from None
    classes: dict[str, list[Path]] = {}
    total = 0
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=True):
            continue
        files = []
        try:
            inner = sorted(os.scandir(entry.path), key=lambda e: e.name)
        except OSError as e:
            report.skipped.append((entry.name + "/", f"cannot list it: {e.strerror or e}"))
            inner = []
        for f in inner:
            if f.name.startswith("."):
                continue
            if f.is_dir(follow_symlinks=True):
                report.ignored_folders.append(f"{entry.name}/{f.name}")
            elif f.is_file(follow_symlinks=True):
                files.append(Path(f.path))
        total += len(files)
        if total > MAX_FILES:
            raise DatasetError(f"holds more than {MAX_FILES:,} files; choose a smaller data set",
                               os.fspath(folder))
        classes[entry.name] = files
    if not classes:
        raise DatasetError("has no sub-folders: put the images of each class in a sub-folder named "
                           "after the class (e.g. cats/, dogs/)", os.fspath(folder))
    return classes


def load_image_folder(folder, shape, should_stop=None, progress=None):
    """(Dataset, FolderReport) from `folder` (one sub-folder per class) at sample shape
    `shape` = (C, H, W) with C 1 (gray) or 3 (RGB). `progress(done, total)` is called
    as files are decoded; `should_stop()` aborts (returns None). DatasetError when
    no usable data set results."""
    from ...datasets import Dataset
    DatasetError = _dataset_error()
    folder = Path(folder)
    c, h, w = (int(s) for s in shape)
    if c not in (1, 3):
        raise DatasetError(f"images give 1 (gray) or 3 (RGB) channels, not {c}", os.fspath(folder))
    report = FolderReport(os.fspath(folder))
    classes = _class_files(folder, report)
    total = sum(len(v) for v in classes.values())
    need = total * c * h * w * 4
    if need > memory.limit_bytes():
        raise DatasetError(f"{total:,} images of {c}x{h}x{w} need {memory.format_bytes(need)}, above the "
                           f"memory limit of {memory.format_bytes(memory.limit_bytes())}; choose a smaller "
                           "size or fewer images", os.fspath(folder))
    mode = "gray" if c == 1 else "rgb"
    max_side = 4 * max(h, w)  # area-average huge photos early; the exact size comes after
    xs, ys, names = [], [], []
    done = 0
    for name, files in classes.items():
        kept = 0
        for path in files:
            if should_stop is not None and should_stop():
                return None
            try:
                img = load_image(path, mode=mode, max_side=max_side)
                a = resize(img.array, (h, w), (1, 2)).astype(np.float32)
            except InputError as e:
                report.skipped.append((f"{name}/{path.name}", e.reason))
            except (OSError, MemoryError) as e:
                report.skipped.append((f"{name}/{path.name}", f"cannot read it ({e})"))
            else:
                xs.append(a)
                ys.append(len(names))
                kept += 1
            done += 1
            if progress is not None:
                progress(done, total)
        if kept:
            names.append(name)
            report.counts[name] = kept
        else:
            report.empty.append(name)
    if len(names) < 2:
        found = f"only class {names[0]!r} has images" if names else "no class folder has a readable image"
        extra = " " + " ".join(report.messages()) if report.messages() else ""
        raise DatasetError(f"{found}; training needs at least two classes (one sub-folder of images "
                           f"each).{extra}", os.fspath(folder))
    x = np.stack(xs).astype(np.float32, copy=False)
    y = np.asarray(ys, np.int64)
    ds = Dataset(x, y, names, name=folder.name or "images", reference=folder_reference(folder, shape))
    return ds, report
