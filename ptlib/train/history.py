"""The per-epoch training history, saved as JSON and CSV for plots."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ptlib.files import atomic_write_text

HISTORY_COLUMNS: tuple[str, ...] = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_token_acc",
    "train_token_top5",
    "val_loss",
    "val_token_acc",
    "val_token_top5",
    "val_cider",
    "val_bleu4",
    "seconds",
    "images_per_s",
)
"""Columns of ``history.csv`` in order (``None`` where a value was not measured)."""


def write_history(rows: Iterable[Mapping[str, Any]], folder: str | Path) -> tuple[Path, Path]:
    """Write ``history.json`` and ``history.csv`` into ``folder`` atomically.

    Args:
        rows: One mapping per epoch with (a subset of) :data:`HISTORY_COLUMNS`;
            extra keys go to the JSON file only.
        folder: Output folder (created).

    Returns:
        The JSON and CSV paths.
    """
    rows = [dict(r) for r in rows]
    folder = Path(folder)
    json_path, csv_path = folder / "history.json", folder / "history.csv"
    atomic_write_text(json_path, json.dumps(rows, indent=1) + "\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in HISTORY_COLUMNS})
    atomic_write_text(csv_path, buffer.getvalue())
    return json_path, csv_path


def read_history(folder: str | Path) -> list[dict[str, Any]]:
    """Read the ``history.json`` written by :func:`write_history`."""
    path = Path(folder) / "history.json"
    if not path.is_file():
        raise FileNotFoundError(f"no training history at {path}; train with ptlib train first")
    return json.loads(path.read_text())
