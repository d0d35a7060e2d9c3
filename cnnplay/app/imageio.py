"""Image input: any file Qt reads, as a float32 (C, H, W) array in [0, 1].

Uses QImageReader/QImage only (no widgets): call it with a QGuiApplication
or QApplication running (offscreen is fine), from any thread.

What it does, in order:
- refuses folders, empty files and non-files with a message naming the file
  (core.safe_read: FIFOs, devices and /proc files are refused before opening);
- accepts pixel formats only (ACCEPTED_FORMATS), recognised by content: SVG
  and other vector formats are refused before drawing (a 3 KB SVG of nested
  <use> elements takes minutes to draw), whatever the file's suffix. Each
  pixel format's own handler is asked in turn (PROBE_ORDER) with Qt's format
  detection off; SVG is recognised here (vector_format), never by Qt's SVG
  plugin, whose check opens a QTextStream and so takes Qt's signal-slot locks
  (see `_open_reader`: why a worker must not);
- reads the header and refuses more than `max_pixels` (default 100 megapixels)
  before decoding anything;
- decodes with EXIF orientation applied (QImageReader.setAutoTransform);
- refuses files the decoder reports as truncated (a JPEG cut short still
  "decodes" into grey), and BMPs shorter than their header says;
- converts, a band of rows at a time: 8-bit and 16-bit (kept at 16-bit
  precision), gray, gray+alpha, RGB, RGBA, palette, CMYK; alpha is composited
  on white; "gray" mode uses luma 0.299 R + 0.587 G + 0.114 B;
- downscales by exact area averaging (numpy) so the longest side is `max_side`.

Every step that changes the pixels adds a plain sentence to `notes`.
Anything wrong raises InputError (a ValueError) naming the file and the reason.
"""

from __future__ import annotations

import os
import re
import threading
import zlib
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, qInstallMessageHandler
from PySide6.QtGui import QImage, QImageIOHandler, QImageReader

from ..core.errors import InputError
from ..core.safe_read import SafeReadError, read_regular_file
from ..core.resample import area_reduce, fit_size

MAX_PIXELS = 100_000_000
MAX_FILE_BYTES = 512 << 20  # an uncompressed 100-megapixel 8-bit RGBA image is 400 MB
# Pixel (raster) formats only, decided from the content: their work is bounded by the
# pixel count, which is checked from the header before decoding.
ACCEPTED_NAMES = ("png", "jpeg", "bmp", "gif", "tiff", "webp", "tga", "ppm", "pgm", "pbm", "ico")
ACCEPTED_FORMATS = frozenset(ACCEPTED_NAMES) | {"jpg", "jfif", "tif", "cur", "wbmp", "xbm", "xpm", "icns"}
VECTOR_FORMATS = frozenset({"svg", "svgz", "pdf", "eps", "ps", "wmf", "emf"})
# The pixel formats whose handlers are asked, in this order: the strongest signatures
# first, the loosest checks (ICO's, WBMP's) last. PPM's handler reads PBM and PGM too;
# ICO's reads CUR. TGA, which has no signature, is decided before (_is_tga).
PROBE_ORDER = ("png", "jpeg", "gif", "bmp", "webp", "tiff", "icns", "ppm", "xpm", "xbm", "ico", "wbmp")
_PNM = {ord("1"): "pbm", ord("4"): "pbm", ord("2"): "pgm", ord("5"): "pgm", ord("3"): "ppm", ord("6"): "ppm"}
_SNIFF_BYTES = 4096  # what the SVG check reads (inflated, for SVGZ), as Qt's SVG plugin does
DEFAULT_MAX_SIDE = 256
LUMA = np.array([0.299, 0.587, 0.114])
_BAND_PIXELS = 1 << 20  # rows converted at a time: about 1 megapixel (32 MB of float64)

F = QImage.Format
_DEEP = {F.Format_Grayscale16, F.Format_RGBX64, F.Format_RGBA64, F.Format_RGBA64_Premultiplied,
         F.Format_RGBX16FPx4, F.Format_RGBA16FPx4, F.Format_RGBA16FPx4_Premultiplied,
         F.Format_RGBX32FPx4, F.Format_RGBA32FPx4, F.Format_RGBA32FPx4_Premultiplied,
         F.Format_BGR30, F.Format_A2BGR30_Premultiplied, F.Format_RGB30, F.Format_A2RGB30_Premultiplied}
_FLOAT = {F.Format_RGBX16FPx4, F.Format_RGBA16FPx4, F.Format_RGBA16FPx4_Premultiplied,
          F.Format_RGBX32FPx4, F.Format_RGBA32FPx4, F.Format_RGBA32FPx4_Premultiplied}
_TRANSFORMS = {
    QImageIOHandler.Transformation.TransformationMirror: "mirrored",
    QImageIOHandler.Transformation.TransformationFlip: "flipped upside down",
    QImageIOHandler.Transformation.TransformationRotate180: "rotated 180 degrees",
    QImageIOHandler.Transformation.TransformationRotate90: "rotated 90 degrees clockwise",
    QImageIOHandler.Transformation.TransformationMirrorAndRotate90: "mirrored and rotated 90 degrees",
    QImageIOHandler.Transformation.TransformationFlipAndRotate90: "flipped and rotated 90 degrees",
    QImageIOHandler.Transformation.TransformationRotate270: "rotated 90 degrees counter-clockwise",
}


@dataclass(frozen=True)
class LoadedImage:
    """A decoded input image.

    array: float32 (C, H, W) in [0, 1], C = 3 ("rgb") or 1 ("gray").
    source: the file path (or the name given to load_image_bytes).
    notes: plain sentences about what was done to the pixels, for the user.
    original_size: (width, height) as decoded (after EXIF orientation).
    format: the file format Qt detected ("png", "jpeg", ...).
    """

    array: np.ndarray
    source: str
    notes: tuple[str, ...] = ()
    original_size: tuple[int, int] = (0, 0)
    format: str = ""

    @property
    def mode(self) -> str:
        return "gray" if self.array.shape[0] == 1 else "rgb"


def load_image(path: str | os.PathLike, mode: str = "rgb", max_side: int | None = DEFAULT_MAX_SIDE,
               max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Decode the image file at `path`; see the module docstring. InputError if unusable.

    Only a regular file is read (core.safe_read: never a FIFO, a device or a
    /proc file), at most MAX_FILE_BYTES of it; the bytes are then decoded."""
    _check_args(mode, max_side)
    name = os.fspath(path)
    try:
        data = read_regular_file(name, MAX_FILE_BYTES, "image file")
    except SafeReadError as e:
        raise InputError(e.reason, name) from None
    return load_image_bytes(data, name, mode, max_side, max_pixels)


def load_image_bytes(data: bytes, name: str = "<memory>", mode: str = "rgb",
                     max_side: int | None = DEFAULT_MAX_SIDE, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Like load_image, from the bytes of an image file (`name` is used in messages
    and its suffix as a hint for formats without a signature, e.g. TGA)."""
    _check_args(mode, max_side)
    data = bytes(data)
    if not data:
        raise InputError("the file is empty (0 bytes)", name)
    vector = vector_format(data)
    if vector is not None:  # decided from the content (a .png may hold an SVG), before any decoding
        raise InputError(f"it is an {vector.upper()} image (vector graphics). Drawing one can take unbounded "
                         "time and memory, so cnnplay opens only pixel images; export it as PNG first", name)
    ba = QByteArray(data)
    buf = QBuffer(ba)
    buf.open(QIODevice.OpenModeFlag.ReadOnly)
    tga = _is_tga(data, name)
    reader = _open_reader(buf, tga)
    try:
        return _decode(reader, name, data[:64], len(data), mode, max_side, max_pixels, tga)
    finally:
        if reader is not None:
            reader.setDevice(None)
        del reader
        buf.close()


def _open_reader(buf: QBuffer, tga: bool) -> QImageReader | None:
    """A reader for the first format of PROBE_ORDER (or TGA) whose handler accepts
    the content, with Qt's format detection off; None if none does.

    Not Qt's own detection: it asks every plugin, the SVG one too, whose check
    opens a QTextStream on the data, and QTextStream connects a signal, which
    takes one of Qt's global signal-slot mutexes. PySide holds the GIL through
    QImageReader.canRead(), so a worker doing that while the GUI thread held the
    same mutex (destroying an object, here a QPropertyAnimation) and waited for
    the GIL deadlocked both: the lessons test hung (py-spy: canRead ->
    QSvgDocument::isLikelySvg -> QTextStream -> QObject::connectImpl against
    ~QObject -> Sbk_GetPyOverride). The pixel handlers only peek at the bytes."""
    for fmt in (("tga",) if tga else PROBE_ORDER):
        reader = QImageReader(buf, fmt.encode())
        reader.setAutoDetectImageFormat(False)
        if reader.canRead():
            return reader
        reader.setDevice(None)
        buf.seek(0)
    return None


def vector_format(data: bytes) -> str | None:
    """"svg" or "svgz" when the data is an SVG drawing, else None: its first element
    is <svg>, in the first 4 KB, inflated first when gzip-compressed (a gzip file
    that holds no SVG is no image at all), as Qt's SVG plugin decides. Any other
    vector format is refused too: only PROBE_ORDER's handlers are ever asked."""
    head = data[:_SNIFF_BYTES]
    kind = "svg"
    if head[:2] == b"\x1f\x8b":
        try:
            head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[:1 << 16], _SNIFF_BYTES)
        except zlib.error:
            return None
        kind = "svgz"
    text = re.sub(r"<!--.*?(-->|$)", "", head.decode("utf-8", "replace"), flags=re.S)
    first = re.search(r"<(?![?!/])\s*([A-Za-z_][\w.:-]*)", text)
    if first is None or first.group(1).rsplit(":", 1)[-1].lower() != "svg":
        return None
    return kind


_plugins_loaded = False


def load_plugins() -> None:
    """Load Qt's image-format plugins now, on the GUI thread, before a worker decodes.

    The first decode in a process loads every plugin (Qt asks each one whether it
    recognises the content) and moves each plugin object to the GUI thread, locking
    that thread's Qt mutexes. PySide holds the GIL through QImageReader.canRead(), so
    a worker doing this while the GUI thread held one of those mutexes and waited for
    the GIL (destroying a Python-subclassed object) deadlocked both: the lessons test
    hung in about one run in twelve. Loaded here, the plugins already live on the GUI
    thread and a worker's decode takes no such lock (the format checks it runs take
    none either: see _open_reader)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    junk = QByteArray(b"cnnplay: not an image\n" * 4)
    for fmt in [bytes(f.data()) for f in QImageReader.supportedImageFormats()] + [b""]:
        buf = QBuffer(junk)
        buf.open(QIODevice.OpenModeFlag.ReadOnly)
        reader = QImageReader(buf, fmt) if fmt else QImageReader(buf)  # b"": every plugin probes the content
        reader.supportsOption(QImageIOHandler.ImageOption.Size)  # makes the handler, without decoding
        reader.setDevice(None)
        buf.close()
    _plugins_loaded = True


def _check_args(mode, max_side):
    if mode not in ("rgb", "gray"):
        raise ValueError(f"mode must be 'rgb' or 'gray', not {mode!r}")
    if max_side is not None and (not isinstance(max_side, int) or max_side < 1):
        raise ValueError(f"max_side must be a positive integer or None, not {max_side!r}")


# -- decoding ---------------------------------------------------------------------

class _Messages:
    """Collect the image decoders' warnings while one image decodes (Qt reports
    a truncated JPEG only as a warning) and pass every message on."""

    _lock = threading.Lock()

    def __init__(self):
        self.seen: list[str] = []

    def __enter__(self):
        self._lock.acquire()
        self._previous = qInstallMessageHandler(self._handle)
        return self

    def __exit__(self, *exc):
        qInstallMessageHandler(self._previous)
        self._lock.release()

    def _handle(self, mode, context, message):
        category = context.category or ""
        if category.startswith(("qt.gui.imageio", "qt.imageformats")):
            self.seen.append(str(message))
            return
        if self._previous is not None:
            self._previous(mode, context, message)


def _is_tga(data: bytes, name: str) -> bool:
    """TGA has no signature at its start, and one often starts like a Windows
    cursor (00 00 02 00), which Qt's ICO reader then claims: a plausible TGA
    header that is no plausible ICO, named .tga or ending with the TGA 2.0 footer."""
    head = data[:64]
    return (_plausible_tga(head) and not _plausible_ico(head)
            and (os.path.splitext(name)[1].lower() in (".tga", ".icb", ".vda", ".vst")
                 or data.endswith(b"TRUEVISION-XFILE.\0")))


def _plausible_ico(head: bytes) -> bool:
    """An ICO/CUR header: reserved 0, type 1 or 2, at least one image whose entry's
    reserved byte is 0 and whose colour planes are 0 or 1."""
    if len(head) < 22 or head[:2] != b"\0\0" or head[2:4] not in (b"\1\0", b"\2\0"):
        return False
    count = int.from_bytes(head[4:6], "little")
    return count >= 1 and head[9] == 0 and int.from_bytes(head[10:12], "little") <= 1


def _plausible_tga(head: bytes) -> bool:
    """A TGA header (TGA has no signature at its start): colour-map type 0 or 1, a
    known image type, a known pixel depth, non-zero width and height."""
    if len(head) < 18:
        return False
    width, height = int.from_bytes(head[12:14], "little"), int.from_bytes(head[14:16], "little")
    return (head[1] in (0, 1) and head[2] in (1, 2, 3, 9, 10, 11) and head[16] in (8, 15, 16, 24, 32)
            and width > 0 and height > 0)


def _format_name(fmt: str, head: bytes, tga: bool) -> str:
    """The format to name in messages: Qt's guess, unless the content says otherwise."""
    if tga:
        return "TGA"
    if fmt in ("ico", "cur") and not _plausible_ico(head):
        return "image"
    return fmt.upper()


def _decode(reader: QImageReader | None, name: str, head: bytes, nbytes: int, mode: str,
            max_side: int | None, max_pixels: int, tga: bool = False) -> LoadedImage:
    if reader is None:
        if tga:
            raise InputError("cannot decode this TGA file: it may be damaged, or a TGA without the "
                             "TGA 2.0 footer, which the decoder needs", name)
        raise InputError(f"not an image file cnnplay can read ({_describe(head)})", name)
    reader.setAutoTransform(True)
    fmt = bytes(reader.format().data()).decode("ascii", "replace").lower()
    if fmt == "ppm" and len(head) > 1:
        fmt = _PNM.get(head[1], fmt)  # the handler of all three: the header says which
    size = reader.size()
    if size.isValid() and size.width() * size.height() > max_pixels:
        raise InputError(f"the {fmt.upper()} header says {size.width()}x{size.height()} pixels "
                         f"({size.width() * size.height() / 1e6:.0f} megapixels), above the limit of "
                         f"{max_pixels / 1e6:g} megapixels; not decoded", name)
    if head[:2] == b"BM" and len(head) >= 6:
        declared = int.from_bytes(head[2:6], "little")
        if declared > nbytes:
            raise InputError(f"the BMP file is truncated ({nbytes} of {declared} bytes)", name)

    # Qt refuses to allocate more than its limit (256 MB by default); allow what max_pixels allows.
    old_limit = QImageReader.allocationLimit()
    need_mb = max_pixels * 8 // (1 << 20) + 1
    with _Messages() as messages:
        if 0 < old_limit < need_mb:
            QImageReader.setAllocationLimit(need_mb)
        try:
            img = reader.read()
        finally:
            if 0 < old_limit < need_mb:
                QImageReader.setAllocationLimit(old_limit)
    if img.isNull():
        reason = reader.errorString()
        detail = f": {messages.seen[-1]}" if messages.seen else ""
        raise InputError(f"cannot decode this {_format_name(fmt, head, tga)} file, it may be truncated or damaged "
                         f"({reason}{detail})", name)
    truncated = [m for m in messages.seen if "premature end" in m.lower() or "truncat" in m.lower()]
    if truncated:
        raise InputError(f"the {fmt.upper()} file is truncated or damaged ({truncated[0]})", name)
    if img.width() * img.height() > max_pixels:
        raise InputError(f"the image is {img.width()}x{img.height()} pixels, above the limit of "
                         f"{max_pixels / 1e6:g} megapixels", name)

    notes: list[str] = []
    t = reader.transformation()
    if t in _TRANSFORMS:
        notes.append(f"{_TRANSFORMS[t].capitalize()} as its EXIF orientation says.")
    array, pixel_notes = _to_array(img, mode, max_side)
    notes.extend(pixel_notes)
    notes.extend(f"The decoder warned: {m}" for m in dict.fromkeys(messages.seen))
    array.flags.writeable = False
    return LoadedImage(array, name, tuple(notes), (img.width(), img.height()), fmt)


def _to_array(img: QImage, mode: str, max_side: int | None) -> tuple[np.ndarray, list[str]]:
    """(C, h, w) float32 in [0, 1] and notes; converts a band of rows at a time."""
    src = img.format()
    deep = src in _DEEP
    target = F.Format_RGBA64 if deep else F.Format_RGBA8888
    dtype, scale = (np.uint16, 65535.0) if deep else (np.uint8, 255.0)
    W, H = img.width(), img.height()
    h, w = fit_size(H, W, max_side)
    band = max(1, _BAND_PIXELS // max(W, 1))
    rows = []
    all_gray, min_alpha = True, 1.0
    for y0 in range(0, H, band):
        part = img.copy(0, y0, W, min(band, H - y0)).convertToFormat(target)
        ph = part.height()
        raw = np.frombuffer(part.constBits(), dtype=dtype, count=part.sizeInBytes() // np.dtype(dtype).itemsize)
        per_line = part.bytesPerLine() // np.dtype(dtype).itemsize
        px = raw.reshape(ph, per_line)[:, :W * 4].reshape(ph, W, 4)
        rgb = px[..., :3].astype(np.float64) / scale
        alpha = px[..., 3:4].astype(np.float64) / scale
        if all_gray:
            all_gray = bool((px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all())
        a_min = float(alpha.min()) if alpha.size else 1.0
        if a_min < 1.0:
            min_alpha = min(min_alpha, a_min)
            rgb = rgb * alpha + (1.0 - alpha)  # composite on white
        del px, raw, part
        if mode == "gray":
            rgb = rgb @ LUMA if not all_gray else rgb[..., 0]
            rgb = rgb[..., None]
        rows.append(area_reduce(rgb, w, 1) if w != W else rgb)
    out = np.concatenate(rows, axis=0)
    if h != H:
        out = area_reduce(out, h, 0)
    array = np.ascontiguousarray(np.clip(out, 0.0, 1.0).transpose(2, 0, 1), dtype=np.float32)

    notes = []
    if src == F.Format_Indexed8:
        notes.append(f"Palette image ({img.colorCount()} colours) expanded to full colour.")
    elif src in (F.Format_Mono, F.Format_MonoLSB):
        notes.append("1-bit black-and-white image.")
    elif src == F.Format_CMYK8888:
        notes.append("CMYK image converted to RGB (a plain conversion, no colour profile).")
    if src in _FLOAT:
        notes.append("Floating-point image: read at 16-bit precision, values clipped to 0..1.")
    elif deep:
        notes.append("High bit depth image (more than 8 bits per channel): read at 16-bit precision.")
    if min_alpha < 1.0:
        notes.append("Alpha composited on white (the image has transparent pixels).")
    if mode == "gray" and not all_gray:
        notes.append("Colour converted to gray (luma: 0.299 R + 0.587 G + 0.114 B).")
    elif mode == "rgb" and all_gray:
        notes.append("Grayscale image: its R, G and B channels are equal.")
    if (h, w) != (H, W):
        notes.append(f"Downscaled from {W}x{H} to {w}x{h} (area averaging).")
    return array, notes


def _describe(head: bytes) -> str:
    """A short guess at what a file that is not a readable image is."""
    if head.startswith(b"%PDF"):
        return "it is a PDF document"
    if head.startswith(b"PK\x03\x04"):
        return "it is a zip archive"
    if head.startswith(b"\x93NUMPY"):
        return "it is a NumPy array; load it as a signal"
    if head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")):
        return "its header is damaged"
    try:
        head.decode("utf-8")
        return "it looks like a text file"
    except UnicodeDecodeError:
        return "unknown or unsupported format"
