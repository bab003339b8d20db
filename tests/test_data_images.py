"""load_image: every mode to 8-bit RGB with the right pixels; every broken file a DataError naming it."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from deco.data import load_image
from deco.errors import DataError


def save(tmp_path, image: Image.Image, name: str, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path


def pixels(image: Image.Image) -> list[tuple[int, int, int]]:
    assert image.mode == "RGB"
    return [tuple(int(v) for v in px) for px in np.asarray(image).reshape(-1, 3)]


def blend(value: int, alpha: int) -> int:
    """Expected channel after compositing on white."""
    return round((value * alpha + 255 * (255 - alpha)) / 255)


def test_rgb_round_trip(tmp_path):
    path = save(tmp_path, Image.new("RGB", (3, 2), (10, 20, 30)), "rgb.png")
    image = load_image(path)
    assert image.size == (3, 2) and set(pixels(image)) == {(10, 20, 30)}


def test_grayscale_l(tmp_path):
    image = load_image(save(tmp_path, Image.new("L", (2, 2), 77), "l.png"))
    assert set(pixels(image)) == {(77, 77, 77)}


def test_la_composites_alpha_on_white(tmp_path):
    la = Image.new("LA", (3, 1))
    la.putdata([(100, 0), (100, 255), (100, 128)])
    got = pixels(load_image(save(tmp_path, la, "la.png")))
    assert got[0] == (255, 255, 255) and got[1] == (100, 100, 100)
    assert all(abs(c - blend(100, 128)) <= 1 for c in got[2])


def test_rgba_composites_alpha_on_white(tmp_path):
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(255, 0, 0, 0), (0, 0, 255, 255), (0, 200, 0, 64)])
    got = pixels(load_image(save(tmp_path, rgba, "rgba.png")))
    assert got[0] == (255, 255, 255)  # fully transparent red is white, not red or black
    assert got[1] == (0, 0, 255)
    expected = (blend(0, 64), blend(200, 64), blend(0, 64))
    assert all(abs(a - e) <= 1 for a, e in zip(got[2], expected, strict=True))


def test_palette_with_and_without_transparency(tmp_path):
    p = Image.new("P", (2, 1))
    p.putpalette([255, 0, 0, 0, 255, 0])
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    assert pixels(load_image(save(tmp_path, p, "p.png"))) == [(255, 0, 0), (0, 255, 0)]
    assert pixels(load_image(save(tmp_path, p, "pt.png", transparency=0))) == [(255, 255, 255), (0, 255, 0)]
    assert pixels(load_image(save(tmp_path, p, "pt.gif", transparency=0))) == [(255, 255, 255), (0, 255, 0)]


def test_cmyk(tmp_path):
    cmyk = Image.new("CMYK", (3, 1))
    cmyk.putdata([(255, 0, 0, 0), (0, 0, 0, 255), (0, 0, 0, 0)])
    got = pixels(load_image(save(tmp_path, cmyk, "cmyk.tif")))
    assert got == [(0, 255, 255), (0, 0, 0), (255, 255, 255)]  # cyan, black, white


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 65535, 257 * 100, 1000]], dtype=np.uint16)
    path = save(tmp_path, Image.fromarray(values), "g16.png")
    assert Image.open(path).mode == "I;16"
    got = pixels(load_image(path))
    assert got == [(0, 0, 0), (255, 255, 255), (100, 100, 100), (4, 4, 4)]  # 1000 / 257 = 3.9


def test_32_bit_integer_mode_i_is_read_as_16_bit(tmp_path):
    path = save(tmp_path, Image.new("I", (1, 1), 40000), "i32.tif")
    assert Image.open(path).mode == "I"
    assert pixels(load_image(path)) == [(156, 156, 156)]  # round(40000 / 257)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (4, 2), (0, 0, 0))
    image.putpixel((0, 0), (255, 0, 0))  # red at top-left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = save(tmp_path, image, "exif.png", exif=exif)
    loaded = load_image(path)
    assert loaded.size == (2, 4)
    assert loaded.getpixel((1, 0)) == (255, 0, 0)  # top-left moves to top-right


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match=f"image file not found: {tmp_path / 'nope.jpg'}"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(DataError, match="is a directory"):
        load_image(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=f"image file is empty \\(0 bytes\\): {path}"):
        load_image(path)


def test_not_an_image(tmp_path):
    path = tmp_path / "junk.png"
    path.write_bytes(b"definitely not a picture" * 10)
    with pytest.raises(DataError, match=f"not an image.*{path}"):
        load_image(path)


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_truncated_image(tmp_path, fmt):
    rng = np.random.default_rng(0)
    full = save(tmp_path, Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), f"full.{fmt}")
    data = full.read_bytes()
    path = tmp_path / f"cut.{fmt}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=f"corrupt or truncated image file {path}"):
        load_image(path)


def png_header(width: int, height: int) -> bytes:
    """A PNG with only a header claiming the given size (no pixel data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("size", [(0, 5), (5, 0)])
def test_zero_size_image(tmp_path, size):
    path = tmp_path / "zero.png"
    path.write_bytes(png_header(*size))
    with pytest.raises(DataError, match=f"image has zero size \\({size[0]} x {size[1]}\\): {path}"):
        load_image(path)


def test_decompression_bomb_guard(tmp_path):
    # Above our limit but below PIL's error threshold: PIL would only warn; we refuse before decoding.
    path = tmp_path / "big.png"
    path.write_bytes(png_header(10_000, 10_000))
    with pytest.raises(DataError, match=f"decompression-bomb guard.*{path}.*100,000,000 pixels.*89,478,485"):
        load_image(path)
    # Far above: PIL's own DecompressionBombError, reported the same way.
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_header(30_000, 30_000))
    with pytest.raises(DataError, match=f"decompression-bomb guard.*{huge}"):
        load_image(huge)


def test_max_pixels_is_configurable(tmp_path):
    path = save(tmp_path, Image.new("RGB", (100, 100)), "small.png")
    with pytest.raises(DataError, match="above the limit of 5,000"):
        load_image(path, max_pixels=5_000)
    assert load_image(path, max_pixels=10_000).size == (100, 100)
    assert load_image(path, max_pixels=None).size == (100, 100)
