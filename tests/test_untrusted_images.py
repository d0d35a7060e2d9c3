"""Issue 19: image decoders. Only pixel formats are opened, recognised by content
(an SVG named .png is still an SVG); special files are never read; a TGA is called a TGA."""

from __future__ import annotations

import gzip
import os
import struct
import threading

import numpy as np
import pytest

pytest.importorskip("PySide6")
from PySide6.QtGui import QImageReader  # noqa: E402

from cnnplay.app.imageio import ACCEPTED_FORMATS, VECTOR_FORMATS, load_image, load_image_bytes  # noqa: E402
from cnnplay.core.errors import InputError  # noqa: E402


@pytest.fixture(autouse=True)
def _app(qapp):
    return qapp


def nested_use_svg(depth: int) -> str:
    """The issue's SVG: each level doubles the drawing work (2**39 rectangles at 39)."""
    u = "".join(f'<g id="g{i}"><use xlink:href="#g{i - 1}"/><use xlink:href="#g{i - 1}" x="1"/></g>'
                for i in range(1, depth + 1))
    return ('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="100" '
            'height="100"><defs><rect id="g0" width="1" height="1"/>' + u + f'</defs><use xlink:href="#g{depth}"/></svg>')


def expect(fn, *fragments):
    with pytest.raises(InputError) as info:
        fn()
    for f in fragments:
        assert f in str(info.value), str(info.value)
    return info.value


def test_the_issues_svg_named_png_is_refused_before_drawing(tmp_path):
    p = tmp_path / "cat.png"
    p.write_text(nested_use_svg(39))
    e = expect(lambda: load_image(p), "cat.png", "SVG", "vector graphics", "PNG")
    assert e.path == str(p)


@pytest.mark.parametrize("name", ["drawing.svg", "photo.jpg", "scan.tiff", "noext"])
@pytest.mark.parametrize("compress", [False, True])
def test_vector_images_are_refused_whatever_their_name(tmp_path, name, compress):
    data = nested_use_svg(39).encode()
    if compress:
        data = gzip.compress(data)  # .svgz: Qt sniffs it too
    p = tmp_path / name
    p.write_bytes(data)
    expect(lambda: load_image(p), name, "vector graphics")
    expect(lambda: load_image_bytes(data, name), name, "vector graphics")


def test_every_format_qt_offers_is_either_accepted_or_refused_by_name():
    """The class: no format Qt can decode slips through undecided. Vector formats
    (work unbounded by the pixel count) are never accepted."""
    offered = {bytes(f.data()).decode() for f in QImageReader.supportedImageFormats()}
    assert not (VECTOR_FORMATS & ACCEPTED_FORMATS)
    assert {"png", "jpeg", "bmp", "gif"} <= offered & ACCEPTED_FORMATS
    for fmt in offered - ACCEPTED_FORMATS:
        assert fmt in VECTOR_FORMATS, f"{fmt}: neither accepted nor known as a vector format"


def tga(width, height, pixels_bgr: bytes, footer: bool) -> bytes:
    header = struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, width, height, 24, 0x20)  # top-left origin
    tail = struct.pack("<II", 0, 0) + b"TRUEVISION-XFILE.\0" if footer else b""
    return header + pixels_bgr + tail


def test_a_tga_is_called_a_tga_not_an_ico(tmp_path):
    body = bytes(range(3 * 4 * 3))
    p = tmp_path / "pic.tga"
    p.write_bytes(tga(4, 3, body[:20], footer=False))  # truncated, no footer
    e = expect(lambda: load_image(p), "pic.tga", "TGA")
    assert "ICO" not in str(e) and "CUR" not in str(e)


def test_a_tga_with_its_footer_decodes_to_its_pixels(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)  # (h, w, RGB)
    p = tmp_path / "pic.tga"
    p.write_bytes(tga(4, 3, rgb[..., ::-1].tobytes(), footer=True))  # TGA stores BGR
    img = load_image(p, max_side=None)
    assert img.format == "tga" and img.array.shape == (3, 3, 4)
    assert np.array_equal(np.rint(img.array * 255).astype(np.uint8), rgb.transpose(2, 0, 1))


def test_image_loader_refuses_special_files_without_blocking(tmp_path):
    fifo = tmp_path / "cat.png"
    os.mkfifo(fifo)
    paths = [str(fifo)] + [p for p in ("/dev/zero", "/dev/urandom", "/proc/self/environ") if os.path.exists(p)]
    for path in paths:
        out = []
        t = threading.Thread(target=lambda: out.append(pytest.raises(InputError, load_image, path)), daemon=True)
        t.start()
        t.join(20)
        assert not t.is_alive(), f"{path}: loading blocked"
        assert out and out[0].value.path == path and "regular file" in str(out[0].value)
