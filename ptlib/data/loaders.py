"""One call from a profile to a vocabulary and datasets (shapes or COCO).

::

    from ptlib.data import build_caption_data
    data = build_caption_data()            # active profile (PTLIB_PROFILE)
    loader = DataLoader(data.datasets["train"], batch_size=64, shuffle=True,
                        collate_fn=collate_captions)

A profile's ``data`` section (the ``data`` section of its run configs in
``ptlib/configs/runs/``) says which dataset (``dataset: shapes`` for every shipped
profile; ``coco`` in a run config), its size, the input size and the vocabulary caps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptlib.data.annotations import CaptionRecord, read_caption_annotations
from ptlib.data.datasets import BadImagePolicy, CaptionDataset
from ptlib.data.vocab import Vocabulary


@dataclass
class CaptionData:
    """A vocabulary and the datasets of one profile.

    Attributes:
        name: ``"shapes"`` or ``"coco"``.
        root: The dataset root.
        img_size: The input side in pixels.
        vocab: Built from the training captions (min frequency and max size from the profile).
        datasets: Split name -> dataset (``"train"`` in train mode, the others in eval mode).
        max_len: Token sequences are truncated to this many ids.
        dropped: ``(where, reason)`` of every caption or image the annotation files
            listed but that was left out (empty captions, images without a usable
            caption), to report at the end of a run.
    """

    name: str
    root: Path
    img_size: int
    vocab: Vocabulary
    datasets: dict[str, CaptionDataset]
    max_len: int | None
    dropped: list[tuple[str, str]] = field(default_factory=list)


def _coco_records(
    section: dict[str, Any], root: Path, split: str
) -> tuple[list, Path, list[tuple[str, str]]]:
    from ptlib.data.coco import coco_caption_records, read_karpathy_split

    if section.get("split", "karpathy") == "karpathy":
        path = root / section.get("karpathy_json", "dataset_coco.json")
        if not path.is_file():
            raise FileNotFoundError(
                f"Karpathy split file {path} is missing; run 'ptlib data coco --root {root} "
                "--check' to see what to download and where"
            )
        records, dropped = read_karpathy_split(path, split)
        return records, root, dropped
    official = {"train": "train", "val": "val", "test": "val"}[split]
    records, image_dir, dropped = coco_caption_records(root, official,
                                                       int(section.get("year", 2014)))
    return records, image_dir, dropped


def build_caption_data(
    profile: Any = None,
    root: str | Path | None = None,
    splits: Sequence[str] = ("train", "val", "test"),
    on_bad_image: BadImagePolicy = "raise",
    seed: int | None = None,
) -> CaptionData:
    """Build the vocabulary and datasets a profile asks for.

    The shapes dataset is generated first when missing
    (:func:`ptlib.data.shapes.ensure_shapes_dataset`); COCO must be in place
    (``ptlib data coco --check``).

    Args:
        profile: A :class:`ptlib.course.Profile`, a name, or ``None`` for the active one.
        root: Shapes: the parent folder of generated datasets (default the data
            directory). COCO: the COCO root (default the profile's ``coco_root``
            or ``DATA_DIR/coco``).
        splits: Which splits to build (``train`` is always read for the vocabulary).
        on_bad_image: ``"raise"`` or ``"skip"``.
        seed: Seeds the per-epoch choice of training reference (default: the profile seed).
    """
    from ptlib import course

    if not isinstance(profile, course.Profile):
        profile = course.get_profile(profile)
    section = profile.section("data")
    name = section.get("dataset", "shapes")
    img_size = int(section["img_size"])
    max_len = section.get("max_len")
    seed = profile.seed if seed is None else seed
    sources: dict[str, tuple[list[CaptionRecord], Path]] = {}
    dropped: dict[str, list[tuple[str, str]]] = {}
    if name == "shapes":
        from ptlib.data.shapes import ensure_shapes_dataset, shapes_paths

        data_root = ensure_shapes_dataset(profile, root)
        for split in dict.fromkeys(["train", *splits]):
            image_dir, captions_json, _ = shapes_paths(data_root, split)
            records, dropped[split] = read_caption_annotations(captions_json)
            sources[split] = (records, image_dir)
    elif name == "coco":
        configured = section.get("coco_root")
        data_root = Path(root or configured or course.data_dir(create=False) / "coco")
        for split in dict.fromkeys(["train", *splits]):
            records, image_dir, dropped[split] = _coco_records(section, data_root, split)
            sources[split] = (records, image_dir)
    else:
        raise ValueError(
            f"profile {profile.name!r}: data.dataset must be 'shapes' or 'coco', got {name!r}"
        )
    vocab = Vocabulary.build(
        (c for r in sources["train"][0] for c in r.captions),
        min_freq=int(section.get("vocab_min_freq", 5)),
        max_size=int(section.get("vocab_max_size", 2033)),
    )
    datasets = {
        split: CaptionDataset(
            image_dir,
            records,
            vocab,
            img_size=img_size,
            mode="train" if split == "train" else "eval",
            train_reference=section.get("train_reference", "random"),
            max_len=max_len,
            seed=seed,
            on_bad_image=on_bad_image,
        )
        for split, (records, image_dir) in sources.items()
        if split in splits
    }
    left_out = [item for split in datasets for item in dropped.get(split, [])]
    return CaptionData(name, data_root, img_size, vocab, datasets, max_len, left_out)
