"""Reading COCO-format caption files with errors that name the file and the key.

``pycocotools.coco.COCO`` trusts its input: a missing key surfaces as a bare
``KeyError`` deep inside it. :func:`read_caption_annotations` checks every
field first, so a broken file is reported as, e.g.,
``captions_val.json: images[12] lacks key 'file_name'``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptlib.data.vocab import tokenize


class AnnotationError(ValueError):
    """An annotation file that does not have the expected structure."""


@dataclass(frozen=True)
class CaptionRecord:
    """One image and its reference captions.

    Attributes:
        image_id: The COCO image id.
        file_name: The image path relative to the image folder.
        captions: The reference captions (non-empty, in file order).
    """

    image_id: int
    file_name: str
    captions: tuple[str, ...]


def _type_name(value: Any) -> str:
    return type(value).__name__


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; the error names the file and the position.

    Raises:
        FileNotFoundError: If the file is missing.
        AnnotationError: If it is not valid JSON (UTF-8).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    try:
        with path.open("r", encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise AnnotationError(
            f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None
    except UnicodeDecodeError as err:
        raise AnnotationError(f"{path} is not UTF-8 text: {err}") from None


def require(
    entry: Any, key: str, kind: type | tuple[type, ...], where: str, path: Path
) -> Any:
    """Return ``entry[key]`` after checking it exists and has type ``kind``.

    Raises:
        AnnotationError: Naming the file, the entry (``where``) and the key.
    """
    if not isinstance(entry, dict):
        raise AnnotationError(f"{path}: {where} must be a JSON object, got {_type_name(entry)}")
    if key not in entry:
        raise AnnotationError(f"{path}: {where} lacks key {key!r}")
    value = entry[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) or not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise AnnotationError(
            f"{path}: {where}[{key!r}] must be {expected}, got {_type_name(value)} {value!r:.60}"
        )
    return value


def read_caption_annotations(
    path: str | Path,
) -> tuple[list[CaptionRecord], list[tuple[str, str]]]:
    """Read and check a COCO captions file (``images`` + ``annotations``).

    Args:
        path: E.g. ``annotations/captions_val2014.json``.

    Returns:
        ``(records, dropped)``: one record per image with at least one usable
        caption, in the file's image order; and ``(what, why)`` for every
        caption or image that was left out (empty or whitespace-only
        captions, and images left with no caption).

    Raises:
        FileNotFoundError: If the file is missing.
        AnnotationError: If a key is missing or has the wrong type, an image id
            repeats, or a caption names an image that is not listed. The message
            names the file, the entry and the key.
    """
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: the top level must be a JSON object with 'images' and "
                              f"'annotations', got {_type_name(data)}")
    images = require(data, "images", list, "the top level", path)
    annotations = require(data, "annotations", list, "the top level", path)
    order: list[int] = []
    file_names: dict[int, str] = {}
    for i, image in enumerate(images):
        image_id = require(image, "id", int, f"images[{i}]", path)
        file_name = require(image, "file_name", str, f"images[{i}]", path)
        if image_id in file_names:
            raise AnnotationError(f"{path}: images[{i}] repeats image id {image_id}")
        file_names[image_id] = file_name
        order.append(image_id)
    captions: dict[int, list[str]] = {image_id: [] for image_id in order}
    dropped: list[tuple[str, str]] = []
    for i, annotation in enumerate(annotations):
        image_id = require(annotation, "image_id", int, f"annotations[{i}]", path)
        caption = require(annotation, "caption", str, f"annotations[{i}]", path)
        if image_id not in captions:
            raise AnnotationError(
                f"{path}: annotations[{i}] refers to image_id {image_id}, which is not in 'images'"
            )
        if not tokenize(caption):
            reason = "empty caption" if not caption.strip() else "caption has no words"
            dropped.append((f"{path.name}: annotations[{i}] (image {image_id})", reason))
            continue
        captions[image_id].append(caption.strip())
    records = []
    for image_id in order:
        if not captions[image_id]:
            dropped.append(
                (f"{path.name}: image {image_id} ({file_names[image_id]})", "no usable caption")
            )
            continue
        records.append(CaptionRecord(image_id, file_names[image_id], tuple(captions[image_id])))
    return records, dropped


def coco_api(path: str | Path):  # -> pycocotools.coco.COCO
    """Load a checked captions or instances file with pycocotools (quietly).

    The file is first checked by :func:`read_caption_annotations` (for caption
    files) so that a broken file fails with a clear message.
    """
    import contextlib
    import io

    from pycocotools.coco import COCO

    path = Path(path)
    data = read_json(path)
    if isinstance(data, dict) and data.get("annotations") and "caption" in data["annotations"][0]:
        read_caption_annotations(path)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def records_summary(records: Sequence[CaptionRecord]) -> dict[str, float]:
    """Images, captions and caption length statistics (words) of a list of records."""
    lengths = [len(tokenize(c)) for r in records for c in r.captions]
    return {
        "images": len(records),
        "captions": len(lengths),
        "mean_words": sum(lengths) / len(lengths) if lengths else 0.0,
        "max_words": max(lengths, default=0),
    }
