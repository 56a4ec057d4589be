"""COCO captions (2014 / 2017) and the Karpathy split, read with clear messages.

Expected layout under a COCO root (``ptlib data coco --root DIR --check``
says which part is missing and where it is published; ``ptlib`` never
downloads)::

    ROOT/annotations/captions_train2014.json    from annotations_trainval2014.zip
    ROOT/annotations/captions_val2014.json
    ROOT/train2014/*.jpg                        from train2014.zip (82,783 images)
    ROOT/val2014/*.jpg                          from val2014.zip (40,504 images)
    ROOT/dataset_coco.json                      from caption_datasets.zip
                                                (the Karpathy split)

(and the same with ``2017`` for COCO 2017: 118,287 train and 5,000 val images).

The Karpathy split (``dataset_coco.json``) divides the 2014 train+val images
into ``train`` (82,783), ``restval`` (30,504), ``val`` (5,000) and ``test``
(5,000); the usual training set is ``train`` + ``restval`` (113,287 images).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ptlib.data.annotations import (
    AnnotationError,
    CaptionRecord,
    read_caption_annotations,
    read_json,
    require,
)

YEARS: tuple[int, ...] = (2014, 2017)
KARPATHY_FILE = "dataset_coco.json"
KARPATHY_SPLITS: tuple[str, ...] = ("train", "restval", "val", "test")

PUBLISHED: dict[str, str] = {
    "annotations_trainval2014.zip": "http://images.cocodataset.org/annotations/annotations_trainval2014.zip",
    "train2014.zip": "http://images.cocodataset.org/zips/train2014.zip",
    "val2014.zip": "http://images.cocodataset.org/zips/val2014.zip",
    "annotations_trainval2017.zip": "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
    "train2017.zip": "http://images.cocodataset.org/zips/train2017.zip",
    "val2017.zip": "http://images.cocodataset.org/zips/val2017.zip",
    "caption_datasets.zip": "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip",
}
"""The official download address of each archive (as listed on the COCO download page)."""

EXPECTED_IMAGES: dict[str, int] = {
    "train2014": 82_783,
    "val2014": 40_504,
    "train2017": 118_287,
    "val2017": 5_000,
}


@dataclass(frozen=True)
class CocoCheck:
    """One file or folder a COCO setup needs.

    Attributes:
        path: Where it should be.
        what: What it is.
        present: Whether it is there (and, for image folders, non-empty).
        archive: The published archive that contains it.
        detail: Extra facts (image counts, split sizes) or the problem found.
    """

    path: Path
    what: str
    present: bool
    archive: str
    detail: str = ""
    unpack_into: Path | None = None

    @property
    def url(self) -> str:
        """Where the archive is published."""
        return PUBLISHED[self.archive]

    def message(self) -> str:
        """One line for a report: ``ok`` or ``MISSING`` with what to do."""
        if self.present:
            return f"ok       {self.path}  ({self.what}{'; ' + self.detail if self.detail else ''})"
        return (
            f"MISSING  {self.path}  ({self.what}{'; ' + self.detail if self.detail else ''})\n"
            f"         get {self.archive} from {self.url}\n"
            f"         and unzip it in {self.unpack_into or self.path.parent} (never downloaded by ptlib)"
        )


def _check_year(root: Path, year: int) -> list[CocoCheck]:
    if year not in YEARS:
        raise ValueError(f"COCO year must be one of {YEARS}, got {year!r}")
    archive = f"annotations_trainval{year}.zip"
    checks = []
    for split in ("train", "val"):
        path = root / "annotations" / f"captions_{split}{year}.json"
        checks.append(
            CocoCheck(path, f"COCO {year} {split} captions", path.is_file(), archive, "", root)
        )
    for split in ("train", "val"):
        folder = root / f"{split}{year}"
        count = sum(1 for _ in folder.glob("*.jpg")) if folder.is_dir() else 0
        expected = EXPECTED_IMAGES[f"{split}{year}"]
        detail = f"{count} of {expected} images" if folder.is_dir() else ""
        if folder.is_dir() and count < expected:
            detail += " (incomplete?)"
        checks.append(
            CocoCheck(
                folder, f"COCO {year} {split} images", count > 0, f"{split}{year}.zip", detail, root
            )
        )
    return checks


def check_coco(
    root: str | Path, year: int = 2014, karpathy: bool = True, count_karpathy: bool = False
) -> list[CocoCheck]:
    """List every file a COCO caption setup needs and whether it is there.

    Never downloads anything.

    Args:
        root: The COCO root (see the module docstring for the layout).
        year: 2014 or 2017.
        karpathy: Also check for the Karpathy split file (it uses the 2014 images).
        count_karpathy: Read the Karpathy file and report its split sizes (a few seconds).

    Returns:
        One :class:`CocoCheck` per file or folder.
    """
    root = Path(root)
    checks = _check_year(root, year)
    if karpathy:
        if year != 2014:
            checks += [c for c in _check_year(root, 2014) if "images" in c.what]
        path = root / KARPATHY_FILE
        detail = ""
        if path.is_file() and count_karpathy:
            sizes = karpathy_split_sizes(path)
            detail = ", ".join(f"{k} {v}" for k, v in sizes.items())
        checks.append(
            CocoCheck(path, "Karpathy split (dataset_coco.json)", path.is_file(),
                      "caption_datasets.zip", detail, root)
        )
    return checks


def coco_caption_records(
    root: str | Path, split: str = "val", year: int = 2014
) -> tuple[list[CaptionRecord], Path, list[tuple[str, str]]]:
    """The caption records of an official COCO split.

    Args:
        root: The COCO root.
        split: ``"train"`` or ``"val"``.
        year: 2014 or 2017.

    Returns:
        ``(records, image_dir, dropped)``; pass ``image_dir`` and ``records`` to
        :class:`ptlib.data.datasets.CaptionDataset`.

    Raises:
        FileNotFoundError: If the captions file or the image folder is missing
            (the message says where to get it).
    """
    if split not in ("train", "val"):
        raise ValueError(f"COCO caption split must be 'train' or 'val', got {split!r}")
    root = Path(root)
    missing = [c for c in _check_year(root, year) if not c.present and split in c.what.split()]
    if missing:
        raise FileNotFoundError("\n".join(c.message() for c in missing))
    records, dropped = read_caption_annotations(root / "annotations" / f"captions_{split}{year}.json")
    return records, root / f"{split}{year}", dropped


def _karpathy_images(path: Path) -> list[dict]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: the top level must be a JSON object with key 'images'")
    return require(data, "images", list, "the top level", path)


def karpathy_split_sizes(path: str | Path) -> dict[str, int]:
    """Images per split (``train``, ``restval``, ``val``, ``test``) of a Karpathy file."""
    path = Path(path)
    sizes = dict.fromkeys(KARPATHY_SPLITS, 0)
    for i, image in enumerate(_karpathy_images(path)):
        split = require(image, "split", str, f"images[{i}]", path)
        sizes[split] = sizes.get(split, 0) + 1
    return sizes


def read_karpathy_split(
    path: str | Path, split: str, include_restval: bool = True
) -> tuple[list[CaptionRecord], list[tuple[str, str]]]:
    """Read one split of a Karpathy-format file (``dataset_coco.json``).

    Args:
        path: The Karpathy JSON file.
        split: ``"train"``, ``"val"``, ``"test"`` or ``"restval"``.
        include_restval: For ``"train"``, add the ``restval`` images (the usual
            113,287-image training set on COCO).

    Returns:
        ``(records, dropped)``. ``file_name`` is ``filepath/filename`` (e.g.
        ``val2014/COCO_val2014_000000391895.jpg``), relative to the COCO root;
        ``image_id`` is ``cocoid`` (``imgid`` when there is none). Captions are
        the ``raw`` sentences (``tokens`` joined when ``raw`` is absent).

    Raises:
        AnnotationError: Naming the file, entry and key that is missing or wrong.
    """
    if split not in KARPATHY_SPLITS:
        raise ValueError(f"Karpathy split must be one of {KARPATHY_SPLITS}, got {split!r}")
    path = Path(path)
    wanted = {split, "restval"} if split == "train" and include_restval else {split}
    records: list[CaptionRecord] = []
    dropped: list[tuple[str, str]] = []
    for i, image in enumerate(_karpathy_images(path)):
        where = f"images[{i}]"
        image_split = require(image, "split", str, where, path)
        if image_split not in KARPATHY_SPLITS:
            raise AnnotationError(
                f"{path}: {where}['split'] is {image_split!r}; expected one of {KARPATHY_SPLITS}"
            )
        if image_split not in wanted:
            continue
        filename = require(image, "filename", str, where, path)
        folder = image.get("filepath", "")
        if not isinstance(folder, str):
            raise AnnotationError(f"{path}: {where}['filepath'] must be str")
        id_key = "cocoid" if "cocoid" in image else "imgid"
        image_id = require(image, id_key, int, where, path)
        captions = []
        for j, sentence in enumerate(require(image, "sentences", list, where, path)):
            swhere = f"{where}['sentences'][{j}]"
            if isinstance(sentence, dict) and "raw" in sentence:
                text = require(sentence, "raw", str, swhere, path)
            else:
                tokens = require(sentence, "tokens", list, swhere, path)
                text = " ".join(str(t) for t in tokens)
            if text.strip():
                captions.append(text.strip())
            else:
                dropped.append((f"{path.name}: {swhere} (image {image_id})", "empty caption"))
        file_name = f"{folder}/{filename}" if folder else filename
        if not captions:
            dropped.append((f"{path.name}: image {image_id} ({file_name})", "no usable caption"))
            continue
        records.append(CaptionRecord(image_id, file_name, tuple(captions)))
    return records, dropped
