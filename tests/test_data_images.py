"""Safe image loading: every bad file gives a BadImageError naming it; odd modes become RGB."""

from __future__ import annotations

import struct
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from ptlib.data.images import BadImageError, load_rgb, resolve_image_path


def _jpeg_bytes(size: int = 48) -> bytes:
    rng = np.random.default_rng(0)
    buffer = BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _png_with_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (the pixel data is tiny)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


@pytest.fixture
def folder(tmp_path) -> Path:
    (tmp_path / "img").mkdir()
    return tmp_path / "img"


def test_good_jpeg_loads_as_rgb(folder):
    (folder / "ok.jpg").write_bytes(_jpeg_bytes())
    image = load_rgb("ok.jpg", root=folder)
    assert image.mode == "RGB" and image.size == (48, 48)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "empty file"),
        ("text.jpg", b"this is not an image\n" * 20, "not an image"),
        ("truncated.jpg", _jpeg_bytes(64)[:900], "truncated"),
        ("header_only.png", _png_with_header(32, 32), "truncated or corrupt"),
    ],
)
def test_bad_files_raise_naming_the_file_and_reason(folder, name, content, reason):
    (folder / name).write_bytes(content)
    with pytest.raises(BadImageError, match=reason) as info:
        load_rgb(folder / name)
    assert info.value.path.endswith(name) and reason in info.value.reason
    assert name in str(info.value)


def test_missing_file_is_reported_as_missing(folder):
    with pytest.raises(BadImageError, match="missing on disk") as info:
        load_rgb("nowhere.jpg", root=folder)
    assert info.value.path.endswith("nowhere.jpg")


def test_decompression_bombs_are_refused_before_decoding(folder):
    (folder / "huge.png").write_bytes(_png_with_header(20_000, 20_000))  # 400 M pixels
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_rgb(folder / "huge.png")
    (folder / "big.png").write_bytes(_png_with_header(10_000, 9_000))  # 90 M > 89.5 M limit
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_rgb(folder / "big.png")
    (folder / "ok.jpg").write_bytes(_jpeg_bytes(48))
    with pytest.raises(BadImageError, match="2304 pixels is over the limit of 1000"):
        load_rgb(folder / "ok.jpg", max_pixels=1000)


def test_a_raised_max_pixels_overrides_pillows_own_warning(folder, monkeypatch):
    (folder / "ok.jpg").write_bytes(_jpeg_bytes(48))  # 2304 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # Pillow would warn above 2000
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_rgb(folder / "ok.jpg", max_pixels=2000)
    assert load_rgb(folder / "ok.jpg", max_pixels=3000).size == (48, 48)


@pytest.mark.parametrize(
    "file_name", ["../secret.jpg", "a/../../secret.jpg", "/etc/passwd", "C:\\x.jpg", "", ".."]
)
def test_paths_that_leave_the_image_root_are_refused(folder, file_name):
    (folder.parent / "secret.jpg").write_bytes(_jpeg_bytes())
    with pytest.raises(BadImageError, match="absolute|leaves|empty"):
        load_rgb(file_name, root=folder)


def test_inner_dot_dot_that_stays_inside_is_allowed(folder):
    (folder / "sub").mkdir()
    (folder / "ok.jpg").write_bytes(_jpeg_bytes())
    assert resolve_image_path(folder, "sub/../ok.jpg") == folder / "ok.jpg"
    assert load_rgb("sub/../ok.jpg", root=folder).size == (48, 48)


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def test_every_mode_is_converted_to_rgb(folder):
    gray = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (8, 1))  # (8, 32)
    cases = {
        "gray.png": Image.fromarray(gray, "L"),
        "bw.png": Image.fromarray(gray > 127).convert("1"),
        "rgba.png": Image.new("RGBA", (8, 8), (255, 0, 0, 128)),
        "la.png": Image.new("LA", (8, 8), (0, 0)),
        "palette.png": Image.new("RGB", (8, 8), (0, 0, 255)).convert("P"),
        "cmyk.jpg": Image.new("CMYK", (8, 8), (0, 255, 255, 0)),
    }
    for name, image in cases.items():
        loaded = load_rgb(_save(image, folder / name))
        assert loaded.mode == "RGB", name
    rgba = np.asarray(load_rgb(folder / "rgba.png"), dtype=int)[0, 0]
    assert abs(rgba[0] - 255) <= 1 and abs(rgba[1] - 127) <= 1  # half red over white
    assert tuple(np.asarray(load_rgb(folder / "la.png"))[0, 0]) == (255, 255, 255)
    assert tuple(np.asarray(load_rgb(folder / "palette.png"))[0, 0]) == (0, 0, 255)
    cmyk = np.asarray(load_rgb(folder / "cmyk.jpg"), dtype=int)[0, 0]
    assert cmyk[0] > 200 and cmyk[1] < 60 and cmyk[2] < 60  # C=0 M=Y=255 is red


def test_transparent_palette_and_16_bit_images(folder):
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 255, 0] * 256)
    palette.info["transparency"] = 0
    palette.save(folder / "ptrans.png", transparency=0)
    assert tuple(np.asarray(load_rgb(folder / "ptrans.png"))[0, 0]) == (255, 255, 255)
    sixteen = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    Image.fromarray(sixteen).save(folder / "deep.png")
    assert Image.open(folder / "deep.png").mode.startswith("I")
    loaded = np.asarray(load_rgb(folder / "deep.png"))
    assert loaded.shape == (1, 3, 3) and loaded[0, :, 0].tolist() == [0, 128, 255]


def test_load_truncated_images_flag_is_not_silently_accepted(folder, monkeypatch):
    (folder / "ok.jpg").write_bytes(_jpeg_bytes())
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES"):
        load_rgb(folder / "ok.jpg")
