"""A tiny COCO 2014 install made from the shapes dataset, for running the COCO code path offline.

:func:`make_coco_fixture` writes exactly the layout that
``ptlib data coco --root DIR --check`` expects (see :mod:`ptlib.data.coco`)::

    ROOT/annotations/captions_train2014.json
    ROOT/annotations/captions_val2014.json
    ROOT/train2014/COCO_train2014_000000000001.jpg ...
    ROOT/val2014/COCO_val2014_000000000025.jpg ...
    ROOT/dataset_coco.json                       Karpathy split
                                                 (train/restval/val/test)

The images and captions are shapes images (:mod:`ptlib.data.shapes`), so a
model trained on the fixture learns something real in seconds. As in the real
Karpathy split, the ``train`` images come from ``train2014`` and the
``restval``, ``val`` and ``test`` images from ``val2014``. Chapter 10 and the
tests train the paper's COCO recipe on it; nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ptlib.data.annotations import read_json
from ptlib.data.shapes import ShapesConfig, generate_shapes_dataset, shapes_paths
from ptlib.data.vocab import tokenize

MIN_FIXTURE_IMAGES = 6
"""The smallest fixture has 3 ``train2014`` images and one each for restval, val and test."""

FIXTURE_YEAR = 2014


def coco_file_name(split: str, image_id: int, year: int = FIXTURE_YEAR) -> str:
    """COCO's image file name, e.g. ``COCO_train2014_000000000001.jpg``."""
    return f"COCO_{split}{year}_{image_id:012d}.jpg"


def karpathy_assignment(n_val_images: int) -> list[str]:
    """The Karpathy split of each ``val2014`` image, in order: val, test, then restval.

    Args:
        n_val_images: Images in the fixture's ``val2014`` folder (at least 3).

    Returns:
        One of ``"val"``, ``"test"``, ``"restval"`` per image: a third each for
        ``val`` and ``test`` (rounded down), the rest ``restval``.
    """
    if n_val_images < 3:
        raise ValueError(f"n_val_images={n_val_images}: need at least 3 (val, test, restval)")
    third = n_val_images // 3
    return ["val"] * third + ["test"] * third + ["restval"] * (n_val_images - 2 * third)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=None) + "\n", encoding="utf-8")


def _copy_split(
    shapes_root: Path, shapes_split: str, root: Path, coco_split: str, first_annotation_id: int
) -> list[dict[str, Any]]:
    """Copy one shapes split into ``ROOT/<coco_split>2014`` with COCO names and captions JSON.

    Annotation ids count up from ``first_annotation_id`` (unique over both files, as in COCO).

    Returns:
        One entry per image: ``{"id", "file_name", "width", "height", "captions"}``.
    """
    image_dir, captions_json, _ = shapes_paths(shapes_root, shapes_split)
    source = read_json(captions_json)
    captions: dict[int, list[str]] = {}
    for ann in source["annotations"]:
        captions.setdefault(ann["image_id"], []).append(ann["caption"])
    folder = root / f"{coco_split}{FIXTURE_YEAR}"
    folder.mkdir(parents=True)
    images = []
    for entry in source["images"]:
        name = coco_file_name(coco_split, entry["id"])
        shutil.copyfile(image_dir / entry["file_name"], folder / name)
        images.append({"id": entry["id"], "file_name": name, "width": entry["width"],
                       "height": entry["height"], "captions": captions[entry["id"]]})
    annotations = []
    for image in images:
        for text in image["captions"]:
            annotations.append({"id": first_annotation_id + len(annotations), "image_id": image["id"],
                                "caption": text})
    _write_json(root / "annotations" / f"captions_{coco_split}{FIXTURE_YEAR}.json", {
        "info": {"description": "ptlib COCO-format fixture (shapes images)",
                 "year": FIXTURE_YEAR},
        "licenses": [],
        "images": [{k: v for k, v in image.items() if k != "captions"} for image in images],
        "annotations": annotations,
    })
    return images


def _karpathy_entries(
    images: list[dict[str, Any]], folder: str, splits: list[str], first_imgid: int,
    first_sentid: int,
) -> list[dict[str, Any]]:
    entries = []
    sentid = first_sentid
    for offset, (image, split) in enumerate(zip(images, splits, strict=True)):
        imgid = first_imgid + offset
        sentences = []
        for text in image["captions"]:
            sentences.append({"tokens": tokenize(text), "raw": text, "imgid": imgid,
                              "sentid": sentid})
            sentid += 1
        entries.append({
            "filepath": folder,
            "filename": image["file_name"],
            "imgid": imgid,
            "split": split,
            "cocoid": image["id"],
            "sentids": [s["sentid"] for s in sentences],
            "sentences": sentences,
        })
    return entries


def make_coco_fixture(
    root: str | Path, n_images: int = 48, img_size: int = 64, seed: int = 0
) -> Path:
    """Write a tiny COCO 2014 install (with a Karpathy split) made of shapes images.

    Half of the images (rounded down) go to ``train2014`` (Karpathy ``train``),
    the others to ``val2014``, split a third each into Karpathy ``val`` and
    ``test`` and the rest ``restval``. The same arguments give byte-identical
    files.

    Args:
        root: An empty or missing folder; it becomes the COCO root.
        n_images: Images in all (at least :data:`MIN_FIXTURE_IMAGES`).
        img_size: Image side in pixels (32..1024).
        seed: Seed of the shapes generator.

    Returns:
        ``root``, ready for ``ptlib data coco --root ROOT --check`` and for a run
        config with ``data.dataset: coco`` and ``data.coco_root: ROOT``.

    Raises:
        ValueError: If ``n_images`` is too small (or a shapes parameter is invalid).
        FileExistsError: If ``root`` exists and is not an empty folder.
    """
    if isinstance(n_images, bool) or not isinstance(n_images, int) or (
        n_images < MIN_FIXTURE_IMAGES
    ):
        raise ValueError(f"n_images={n_images!r}: a COCO fixture needs at least "
                         f"{MIN_FIXTURE_IMAGES} images (3 train, 1 each for restval, val, test)")
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"make_coco_fixture: {root} exists and is not an empty folder; "
                              "pass a new folder (the fixture never overwrites files)")
    n_train = n_images // 2
    n_val = n_images - n_train
    config = ShapesConfig(img_size=img_size, n_train=n_train, n_val=n_val, n_test=0,
                          n_compositional=0, seed=seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir()
    with tempfile.TemporaryDirectory(prefix="ptlib-coco-fixture-") as tmp:
        shapes_root = Path(tmp) / "shapes"
        generate_shapes_dataset(shapes_root, config)
        train_images = _copy_split(shapes_root, "train", root, "train", 1)
        n_train_captions = sum(len(image["captions"]) for image in train_images)
        val_images = _copy_split(shapes_root, "val", root, "val", 1 + n_train_captions)
    train_entries = _karpathy_entries(train_images, f"train{FIXTURE_YEAR}",
                                      ["train"] * len(train_images), 0, 0)
    val_entries = _karpathy_entries(val_images, f"val{FIXTURE_YEAR}",
                                    karpathy_assignment(len(val_images)), len(train_entries),
                                    n_train_captions)
    _write_json(root / "dataset_coco.json",
                {"images": train_entries + val_entries, "dataset": "coco"})
    return root
