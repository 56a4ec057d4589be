"""Loading images safely: a clear error for every bad file, never a crash deep in torch.

:func:`load_rgb` is the only way ``ptlib`` datasets read an image. It refuses
paths that leave the image folder, and turns every problem (missing, empty,
not an image, truncated, too many pixels) into a :class:`BadImageError` that
names the file and the reason. Images that are valid but not 8-bit RGB
(grayscale, RGBA, palette, CMYK, 16-bit) are converted to RGB.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

DEFAULT_MAX_PIXELS: int = 89_478_485
"""Refuse images with more pixels than this (Pillow's own default bomb limit, 0.25 GiB RGBA)."""


class BadImageError(ValueError):
    """An image that cannot be used; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | Path, reason: str | None = None) -> None:
        if reason is None:  # rebuilt from its message (e.g. by a DataLoader worker's re-raise)
            text = str(path)
            from ptlib.errors import worker_message

            text = worker_message(text)
            prefix, _, rest = text.partition(": ")
            path = prefix.removeprefix("bad image ") if rest else "?"
            reason = rest or text
        self.path = str(path)
        self.reason = reason
        super().__init__(f"bad image {self.path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (self.path, self.reason)


def resolve_image_path(root: str | Path, file_name: str) -> Path:
    """Join an annotation's ``file_name`` to the image folder, refusing escapes.

    The check is on the text of the path (symbolic links inside ``root`` that
    point elsewhere, as in a shared COCO install, are allowed).

    Args:
        root: The image folder.
        file_name: The path as written in the annotation file, relative to ``root``.

    Raises:
        BadImageError: If ``file_name`` is empty, absolute (``/x``, ``C:\\x``) or
            climbs out of ``root`` with ``..``.
    """
    if not isinstance(file_name, str) or not file_name.strip():
        raise BadImageError(f"{root}/{file_name!r}", "file_name is empty or not a string")
    if "\x00" in file_name:
        raise BadImageError(repr(file_name), "file_name contains a NUL byte")
    windows = PureWindowsPath(file_name)
    if PurePosixPath(file_name).is_absolute() or windows.is_absolute() or windows.drive:
        raise BadImageError(
            file_name, f"file_name is an absolute path; it must be relative to {root}"
        )
    normal = os.path.normpath(file_name.replace("\\", "/"))
    if normal == ".." or normal.startswith("../") or normal == ".":
        raise BadImageError(file_name, f"file_name leaves the image folder {root}; refused")
    return Path(root) / normal


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (alpha is composited over white)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode != "F":  # 16-bit samples (Pillow opens 16-bit PNGs as I;16 or I)
            values = values / 257.0
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(
    path: str | Path,
    root: str | Path | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Image.Image:
    """Open an image file and return it fully decoded as 8-bit RGB.

    Args:
        path: The image file, or a ``file_name`` relative to ``root``.
        root: If given, ``path`` is an annotation ``file_name`` inside this
            folder and is checked with :func:`resolve_image_path`.
        max_pixels: Refuse images with more pixels (decompression bombs).

    Returns:
        A loaded ``PIL.Image.Image`` in mode ``"RGB"``.

    Raises:
        BadImageError: The file is missing, empty, not an image, truncated or
            corrupt, too large, or its path leaves ``root``. The message names
            the file and the reason.
        RuntimeError: If some other code set ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``
            to True (truncated images would then load silently as grey).
    """
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise RuntimeError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True (set by other code): truncated images "
            "would load silently with grey fill. Set it back to False to use ptlib datasets."
        )
    file = resolve_image_path(root, str(path)) if root is not None else Path(path)
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        where = " (listed in the annotations, missing on disk)" if root is not None else ""
        raise BadImageError(file, f"file not found{where}") from None
    except OSError as err:
        raise BadImageError(file, f"cannot read the file: {err}") from err
    if not file.is_file():
        raise BadImageError(file, "not a regular file")
    if size == 0:
        raise BadImageError(file, "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            pillow_limit = Image.MAX_IMAGE_PIXELS or float("inf")
            action = "error" if max_pixels <= pillow_limit else "ignore"  # ours decides
            warnings.simplefilter(action, Image.DecompressionBombWarning)
            with Image.open(file) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise BadImageError(
                        file,
                        f"{width}x{height} = {width * height} pixels is over the limit of "
                        f"{max_pixels} (decompression bomb?); raise max_pixels if it is genuine",
                    )
                image.load()
                return _to_rgb(image)
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError(file, "not an image (Pillow cannot identify the format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadImageError(file, f"too many pixels (decompression bomb): {err}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise BadImageError(file, f"truncated or corrupt image data: {err}") from None
