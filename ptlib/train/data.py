"""The data of a run, from its config's ``data`` section.

The section (also a profile's ``data`` section, which is its run configs'; see
:func:`ptlib.data.build_caption_data`) holds
``dataset: shapes`` with the fields of :class:`ptlib.data.shapes.ShapesConfig`,
or ``dataset: coco`` with ``coco_root``, ``split``, ``karpathy_json``, ``year``;
plus ``img_size``, ``vocab_min_freq``, ``vocab_max_size``, ``max_len``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ptlib import course
from ptlib.data.loaders import CaptionData, build_caption_data
from ptlib.data.vocab import Vocabulary


def build_run_data(
    section: Mapping[str, Any],
    *,
    splits: Sequence[str] = ("train", "val"),
    seed: int = 0,
    vocab: Vocabulary | None = None,
) -> CaptionData:
    """Vocabulary and datasets for a run (the shapes dataset is generated if missing).

    Args:
        section: The run config's ``data`` section.
        splits: Splits to build (``"train"`` in train mode, the others in eval mode).
        seed: Seeds the per-epoch choice of training reference.
        vocab: The vocabulary of a trained model (from its checkpoint); it replaces
            the one rebuilt from the training captions, so ids always match the model.
    """
    profile = course.Profile(name="run", description="run config data section", seed=seed,
                             settings={"data": dict(section)})
    data = build_caption_data(profile, splits=splits, seed=seed)
    if vocab is not None and vocab != data.vocab:
        data.vocab = vocab
        for dataset in data.datasets.values():
            dataset.vocab = vocab
    return data


def instances_path(data: CaptionData, split: str) -> Path | None:
    """The ground-truth objects file of a shapes split (``None`` for COCO)."""
    if data.name != "shapes":
        return None
    from ptlib.data.shapes import shapes_paths

    return shapes_paths(data.root, split)[2]
