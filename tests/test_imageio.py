"""The image loader on generated images of every format, and on broken files."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

pytest.importorskip("PySide6")
from PySide6.QtCore import QBuffer, QByteArray, QIODevice  # noqa: E402
from PySide6.QtGui import QColor, QImage  # noqa: E402

from cnnplay.app import imageio  # noqa: E402
from cnnplay.app.imageio import LoadedImage, load_image, load_image_bytes  # noqa: E402
from cnnplay.core.errors import InputError  # noqa: E402


@pytest.fixture(autouse=True)
def _app(qapp):
    return qapp


def encode(img: QImage, fmt: str, quality: int = -1) -> bytes:
    ba = QByteArray()
    buf = QBuffer(ba)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    assert img.save(buf, fmt, quality), f"Qt cannot write {fmt} from {img.format()}"
    buf.close()
    return bytes(ba)


def filled(w, h, color: QColor, fmt=QImage.Format.Format_ARGB32) -> QImage:
    img = QImage(w, h, fmt)
    img.fill(color)
    return img


def from_array(a: np.ndarray) -> QImage:
    """(H, W, 4) uint8 RGBA -> QImage."""
    h, w, _ = a.shape
    a = np.ascontiguousarray(a)
    return QImage(a.data, w, h, w * 4, QImage.Format.Format_RGBA8888).copy()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def make_png(pixels: np.ndarray, color_type: int, depth: int, extra_chunks=()) -> bytes:
    """A PNG written by hand (for layouts Qt does not write: gray+alpha, 16-bit gray...)."""
    h, w = pixels.shape[:2]
    raw = pixels.astype(">u2" if depth == 16 else np.uint8).reshape(h, -1).tobytes()
    row = len(raw) // h
    scan = b"".join(b"\x00" + raw[y * row:(y + 1) * row] for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + b"".join(extra_chunks)
            + png_chunk(b"IDAT", zlib.compress(scan)) + png_chunk(b"IEND", b""))


def exif_segment(orientation: int) -> bytes:
    tiff = (b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1)
            + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + b"\x00\x00\x00\x00")
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


def with_exif(jpeg: bytes, orientation: int) -> bytes:
    assert jpeg[:2] == b"\xff\xd8"
    return jpeg[:2] + exif_segment(orientation) + jpeg[2:]


ORANGE = QColor(200, 100, 50)
ORANGE_RGB = np.array([200, 100, 50]) / 255


# -- formats ---------------------------------------------------------------------

@pytest.mark.parametrize("ext", ["png", "bmp", "tiff", "ppm"])
def test_lossless_rgb(tmp_path, ext):
    path = tmp_path / f"orange.{ext}"
    path.write_bytes(encode(filled(40, 30, ORANGE, QImage.Format.Format_RGB32), ext.upper(), 100))
    r = load_image(path)
    assert isinstance(r, LoadedImage) and r.source == str(path)
    assert r.array.dtype == np.float32 and r.array.shape == (3, 30, 40)
    assert np.allclose(r.array, ORANGE_RGB[:, None, None], atol=1 / 255)
    assert r.original_size == (40, 30) and r.notes == () and r.mode == "rgb"


def test_jpeg(tmp_path):
    path = tmp_path / "o.jpg"
    path.write_bytes(encode(filled(40, 30, ORANGE, QImage.Format.Format_RGB32), "JPEG", 95))
    r = load_image(path)
    assert r.format == "jpeg" and np.allclose(r.array, ORANGE_RGB[:, None, None], atol=4 / 255)


def test_webp(tmp_path):
    # lossy: this Qt build writes lossless WebP (quality 100) that it cannot read back
    path = tmp_path / "o.webp"
    path.write_bytes(encode(filled(40, 30, ORANGE, QImage.Format.Format_RGB32), "WEBP", 90))
    r = load_image(path)
    assert r.format == "webp" and np.allclose(r.array, ORANGE_RGB[:, None, None], atol=6 / 255)


def test_values_exact_and_orientation_kept(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (17, 23, 4), dtype=np.uint8)
    a[..., 3] = 255
    r = load_image_bytes(encode(from_array(a), "PNG"), "rand.png")
    assert np.array_equal(r.array, (a[..., :3].transpose(2, 0, 1) / 255).astype(np.float32))


@pytest.mark.parametrize("ext", ["png", "tiff"])
def test_rgba_composited_on_white(ext):
    r = load_image_bytes(encode(filled(8, 8, QColor(255, 0, 0, 128)), ext.upper()), f"a.{ext}")
    a = 128 / 255
    assert np.allclose(r.array[:, 0, 0], [1.0, 1 - a, 1 - a], atol=1e-3)
    assert any("alpha composited on white" in n.lower() for n in r.notes)


def test_opaque_alpha_no_note():
    r = load_image_bytes(encode(filled(8, 8, QColor(255, 0, 0, 255)), "PNG"), "a.png")
    assert not any("alpha" in n.lower() for n in r.notes)


def test_gray8_png_and_gray_mode():
    g = filled(10, 6, QColor(77, 77, 77)).convertToFormat(QImage.Format.Format_Grayscale8)
    data = encode(g, "PNG")
    rgb = load_image_bytes(data, "g.png")
    assert rgb.array.shape == (3, 6, 10) and np.allclose(rgb.array, 77 / 255)
    assert any("R, G and B channels are equal" in n for n in rgb.notes)
    gray = load_image_bytes(data, "g.png", mode="gray")
    assert gray.array.shape == (1, 6, 10) and np.allclose(gray.array, 77 / 255, atol=1e-7)
    assert gray.notes == () and gray.mode == "gray"


def test_color_to_gray_uses_luma():
    r = load_image_bytes(encode(filled(4, 4, ORANGE), "PNG"), "o.png", mode="gray")
    assert np.allclose(r.array, 0.299 * 200 / 255 + 0.587 * 100 / 255 + 0.114 * 50 / 255, atol=1e-6)
    assert any("luma" in n for n in r.notes)


def test_gray_alpha_png():
    px = np.zeros((5, 6, 2), np.uint8)
    px[..., 0] = 40
    px[..., 1] = 255
    px[0, 0] = (0, 0)  # fully transparent: white
    r = load_image_bytes(make_png(px, color_type=4, depth=8), "ga.png", mode="gray")
    assert r.array.shape == (1, 5, 6)
    assert r.array[0, 0, 0] == pytest.approx(1.0) and r.array[0, 1, 1] == pytest.approx(40 / 255)
    assert any("alpha" in n.lower() for n in r.notes)


def test_16bit_gray_png_keeps_precision():
    px = np.array([[1000, 1001], [65535, 0]], np.uint16)
    r = load_image_bytes(make_png(px, color_type=0, depth=16), "g16.png", mode="gray")
    assert np.allclose(r.array[0], px / 65535, atol=1e-7)  # 8 bits would merge 1000 and 1001
    assert r.array[0, 0, 0] != r.array[0, 0, 1]
    assert any("16-bit precision" in n for n in r.notes)


@pytest.mark.parametrize("ext", ["png", "tiff"])
def test_16bit_rgba_written_by_qt(ext):
    img = filled(6, 4, QColor(255, 0, 0, 128)).convertToFormat(QImage.Format.Format_RGBA64)
    r = load_image_bytes(encode(img, ext.upper()), f"deep.{ext}")
    assert any("16-bit precision" in n for n in r.notes)
    assert np.allclose(r.array[:, 0, 0], [1.0, 1 - 128 / 255, 1 - 128 / 255], atol=1e-3)


def test_gray16_tiff():
    img = filled(6, 4, QColor(77, 77, 77)).convertToFormat(QImage.Format.Format_Grayscale16)
    r = load_image_bytes(encode(img, "TIFF"), "g16.tiff", mode="gray")
    assert np.allclose(r.array, 77 / 255, atol=1e-3)  # Qt converts to gray16 via luminance


@pytest.mark.parametrize("ext", ["png", "bmp", "tiff"])
def test_palette(ext):
    img = filled(8, 8, QColor(0, 0, 255))
    img.setPixelColor(0, 0, QColor(255, 255, 0))
    pal = img.convertToFormat(QImage.Format.Format_Indexed8)
    r = load_image_bytes(encode(pal, ext.upper()), f"p.{ext}")
    assert np.allclose(r.array[:, 0, 0], [1, 1, 0]) and np.allclose(r.array[:, 1, 1], [0, 0, 1])
    assert any("Palette image" in n for n in r.notes)


def test_palette_with_transparency_png():
    plte = png_chunk(b"PLTE", bytes([255, 0, 0, 0, 255, 0]))
    trns = png_chunk(b"tRNS", bytes([0, 255]))  # index 0 transparent
    px = np.array([[0, 1], [1, 1]], np.uint8)
    r = load_image_bytes(make_png(px, color_type=3, depth=8, extra_chunks=(plte, trns)), "pt.png")
    assert np.allclose(r.array[:, 0, 0], 1.0) and np.allclose(r.array[:, 0, 1], [0, 1, 0])


def test_mono():
    img = filled(8, 8, QColor(255, 255, 255)).convertToFormat(QImage.Format.Format_Mono)
    r = load_image_bytes(encode(img, "PNG"), "m.png", mode="gray")
    assert np.allclose(r.array, 1.0)


@pytest.mark.parametrize("ext", ["jpeg", "tiff"])
def test_cmyk(ext):
    img = filled(8, 8, QColor(255, 0, 0)).convertToFormat(QImage.Format.Format_CMYK8888)
    r = load_image_bytes(encode(img, ext.upper(), 100), f"c.{ext}")
    assert np.allclose(r.array[:, 4, 4], [1, 0, 0], atol=3 / 255)
    assert any("CMYK" in n for n in r.notes)


# -- EXIF orientation --------------------------------------------------------------

def _left_blue_right_red() -> bytes:
    a = np.zeros((16, 32, 4), np.uint8)
    a[..., 3] = 255
    a[:, :16, 2] = 255  # left half blue
    a[:, 16:, 0] = 255  # right half red
    return encode(from_array(a), "JPEG", 100)


@pytest.mark.parametrize("orientation, shape, top, note", [
    (1, (16, 32), None, None),
    (6, (32, 16), "blue", "90 degrees clockwise"),   # rotate 90 CW: left half goes to the top
    (8, (32, 16), "red", "counter-clockwise"),
    (3, (16, 32), None, "180"),
])
def test_exif_orientation(orientation, shape, top, note):
    r = load_image_bytes(with_exif(_left_blue_right_red(), orientation), "exif.jpg")
    assert r.array.shape[1:] == shape
    blue, red = r.array[2], r.array[0]
    if top is not None:
        upper = (blue if top == "blue" else red)[: shape[0] // 2 - 2]
        assert upper.mean() > 0.9
    if orientation == 3:
        assert red[:, :14].mean() > 0.9 and blue[:, 18:].mean() > 0.9  # left and right swapped
    if note is None:
        assert not any("EXIF" in n for n in r.notes)
    else:
        assert any("EXIF" in n and note in n for n in r.notes), r.notes


# -- downscaling -------------------------------------------------------------------

def test_downscale_exact_blocks():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (256, 512, 4), dtype=np.uint8)
    a[..., 3] = 255
    r = load_image_bytes(encode(from_array(a), "PNG"), "big.png", max_side=128)
    want = a[..., :3].reshape(64, 4, 128, 4, 3).mean(axis=(1, 3)) / 255
    assert r.array.shape == (3, 64, 128)
    assert np.allclose(r.array, want.transpose(2, 0, 1), atol=1e-6)
    assert "Downscaled from 512x256 to 128x64 (area averaging)." in r.notes
    assert r.original_size == (512, 256)


def test_downscale_non_integer_ratio_is_area_average():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (30, 45, 4), dtype=np.uint8)
    a[..., 3] = 255
    r = load_image_bytes(encode(from_array(a), "PNG"), "odd.png", max_side=20, mode="gray")
    h, w = 13, 20  # 30 * 20 / 45 = 13.3
    g = (a[..., :3] / 255) @ imageio.LUMA
    # reference: upsample by (h, w) with repeats, then block-average: exact area weights
    up = np.repeat(np.repeat(g, h, axis=0), w, axis=1)
    want = up.reshape(h, 30, w, 45).mean(axis=(1, 3))
    assert r.array.shape == (1, h, w)
    assert np.allclose(r.array[0], want, atol=1e-6)


def test_no_upscale_and_no_limit():
    data = encode(filled(40, 30, ORANGE), "PNG")
    assert load_image_bytes(data, max_side=1000).array.shape == (3, 30, 40)
    assert load_image_bytes(data, max_side=None).array.shape == (3, 30, 40)
    assert load_image_bytes(data, max_side=10).array.shape == (3, 8, 10)


def test_tall_image_longest_side():
    r = load_image_bytes(encode(filled(30, 300, ORANGE), "PNG"), "tall.png", max_side=100)
    assert r.array.shape == (3, 100, 10)


def test_big_image_in_bands(monkeypatch):
    monkeypatch.setattr(imageio, "_BAND_PIXELS", 1000)  # many bands of a few rows each
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (90, 120, 4), dtype=np.uint8)
    a[..., 3] = rng.integers(0, 256, (90, 120))
    data = encode(from_array(a), "PNG")
    banded = load_image_bytes(data, max_side=40).array
    monkeypatch.setattr(imageio, "_BAND_PIXELS", 1 << 24)
    whole = load_image_bytes(data, max_side=40).array
    assert np.allclose(banded, whole, atol=1e-6)


# -- broken inputs -----------------------------------------------------------------

def expect(fn, *fragments):
    with pytest.raises(InputError) as info:
        fn()
    msg = str(info.value)
    for frag in fragments:
        assert frag in msg, msg
    return info.value


def test_missing_empty_folder_device(tmp_path):
    expect(lambda: load_image(tmp_path / "nope.png"), "nope.png", "no such file")
    (tmp_path / "zero.png").write_bytes(b"")
    expect(lambda: load_image(tmp_path / "zero.png"), "zero.png", "empty (0 bytes)")
    expect(lambda: load_image(tmp_path), str(tmp_path), "is a folder")
    expect(lambda: load_image("/dev/null"), "/dev/null", "not a regular file")
    expect(lambda: load_image_bytes(b"", "z.png"), "z.png", "empty")


def test_non_images(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("just some text, not a picture\n")
    expect(lambda: load_image(p), "notes.png", "not an image file", "text file")
    expect(lambda: load_image_bytes(b"%PDF-1.4\n" + bytes(200), "doc.jpg"), "doc.jpg", "PDF")
    expect(lambda: load_image_bytes(bytes(range(256)) * 4, "noise.bmp"), "noise.bmp", "not an image file")


def test_fake_headers():
    expect(lambda: load_image_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 30, "fake.png"), "fake.png")
    expect(lambda: load_image_bytes(b"\xff\xd8\xff\xe0" + bytes(300), "fake.jpg"), "fake.jpg")
    expect(lambda: load_image_bytes(b"GIF89a" + bytes(50), "fake.gif"), "fake.gif")


@pytest.mark.parametrize("ext", ["PNG", "JPEG", "BMP", "TIFF", "WEBP"])
@pytest.mark.parametrize("keep", [0.3, 0.7])
def test_truncated(ext, keep):
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (64, 64, 4), dtype=np.uint8)
    a[..., 3] = 255
    data = encode(from_array(a), ext)
    cut = data[:int(len(data) * keep)]
    e = expect(lambda: load_image_bytes(cut, f"cut.{ext.lower()}"), f"cut.{ext.lower()}")
    assert any(w in e.reason for w in ("truncated", "damaged", "cannot read")), e.reason


def test_header_claiming_too_many_pixels_is_refused_before_decoding(monkeypatch):
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 10000, 8, 2, 0, 0, 0))
    data = b"\x89PNG\r\n\x1a\n" + ihdr + png_chunk(b"IDAT", zlib.compress(b"\x00" * 100))

    class NoDecode(imageio.QImageReader):
        def read(self):
            raise AssertionError("decoded a refused image")

    monkeypatch.setattr(imageio, "QImageReader", NoDecode)
    e = expect(lambda: load_image_bytes(data, "huge.png"), "huge.png", "20000x10000", "200 megapixels",
               "not decoded")
    assert e.path == "huge.png"


def test_pixel_limit_is_configurable():
    data = encode(filled(100, 100, ORANGE), "PNG")
    expect(lambda: load_image_bytes(data, "p.png", max_pixels=5000), "100x100", "megapixels")


def test_bad_arguments():
    data = encode(filled(4, 4, ORANGE), "PNG")
    with pytest.raises(ValueError):
        load_image_bytes(data, mode="cmyk")
    with pytest.raises(ValueError):
        load_image_bytes(data, max_side=0)


def test_result_is_read_only():
    r = load_image_bytes(encode(filled(4, 4, ORANGE), "PNG"))
    with pytest.raises(ValueError):
        r.array[0, 0, 0] = 1
