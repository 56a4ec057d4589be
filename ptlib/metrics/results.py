"""Generated captions in COCO results format, with their metrics JSON beside them.

``captions_val.json`` holds ``[{"image_id": int, "caption": str}, ...]``
sorted by image id (the format the COCO evaluation server and
``pycocotools.coco.COCO.loadRes`` read); ``captions_val.metrics.json`` holds
the metrics dict. Both are written atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ptlib.files import atomic_write_text


def metrics_path_for(results_path: Path | str) -> Path:
    """``<dir>/<stem>.metrics.json`` for results at ``<dir>/<stem>.json``."""
    path = Path(results_path)
    return path.with_name(f"{path.stem}.metrics.json")


def _image_id(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{where}: COCO image ids are ints, got {value!r} ({type(value).__name__})")
    return value


def _finite_only(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"metrics{where} is {value}; JSON cannot hold it, fix the metric first")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _finite_only(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _finite_only(item, f"{where}[{index}]")


def write_results(
    path: Path | str, predictions: Mapping[int, str], metrics: Mapping[str, Any]
) -> tuple[Path, Path]:
    """Write captions as COCO results JSON and the metrics beside them.

    Args:
        path: Where the results go, ending in ``.json`` (e.g.
            ``results/eval/captions_val.json``).
        predictions: Image id (int) -> generated caption.
        metrics: The metrics (e.g. from :func:`~ptlib.metrics.captions.score_captions`);
            JSON-serialisable, no NaN or infinity.

    Returns:
        ``(results_path, metrics_path)``.

    Raises:
        ValueError: ``path`` does not end in ``.json``, or a metric is not finite.
        TypeError: A non-int image id, a non-str caption, or metrics that JSON
            cannot hold.
    """
    results_path = Path(path)
    if results_path.suffix != ".json":
        raise ValueError(f"results path {results_path} must end in .json")
    if results_path.name.endswith(".metrics.json"):
        raise ValueError(
            f"results path {results_path} ends in .metrics.json, the metrics file name"
        )
    rows = []
    for image_id, caption in predictions.items():
        if not isinstance(caption, str):
            raise TypeError(
                f"predictions[{image_id!r}] must be a str, got {type(caption).__name__}"
            )
        rows.append(
            {"image_id": _image_id(image_id, f"predictions key {image_id!r}"), "caption": caption}
        )
    rows.sort(key=lambda row: row["image_id"])
    _finite_only(metrics, "")
    try:
        metrics_text = json.dumps(dict(metrics), indent=2, allow_nan=False) + "\n"
    except TypeError as error:
        raise TypeError(f"metrics cannot be written as JSON: {error}") from error
    metrics_path = metrics_path_for(results_path)
    atomic_write_text(results_path, json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
    atomic_write_text(metrics_path, metrics_text)
    return results_path, metrics_path


def read_results(path: Path | str) -> dict[int, str]:
    """Read a COCO results JSON back as image id -> caption.

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The file is not a list of ``{"image_id": int, "caption": str}``
            or repeats an image id.
    """
    results_path = Path(path)
    rows = json.loads(results_path.read_text(encoding="utf-8"))
    if not isinstance(rows, list):
        raise ValueError(f"{results_path}: expected a JSON list of {{image_id, caption}} objects")
    captions: dict[int, str] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("caption"), str):
            raise ValueError(f"{results_path}: entry {index} needs a str 'caption', got {row!r}")
        image_id = row.get("image_id")
        if isinstance(image_id, bool) or not isinstance(image_id, int):
            raise ValueError(f"{results_path}: entry {index} needs an int 'image_id', got {row!r}")
        if image_id in captions:
            raise ValueError(f"{results_path}: image_id {image_id} appears twice")
        captions[image_id] = row["caption"]
    return captions


def read_metrics(results_path: Path | str) -> dict[str, Any]:
    """Read the metrics JSON written beside the results at ``results_path``."""
    return json.loads(metrics_path_for(results_path).read_text(encoding="utf-8"))
