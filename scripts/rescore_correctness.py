"""Re-score stored results with the current correctness measures and floor, without retraining.

What it changes, and nothing else (every other number stays byte-identical):

* ``captioners/*/*.json`` (``result.evaluation.<split>``) and
  ``decoding/*/*.json`` (``result``): records that keep their per-image
  ``captions`` get ``correctness`` recomputed by
  :func:`ptlib.metrics.correctness.score_correctness` (strict exact set as the
  headline ``exact_set_accuracy``, ``exact_set_accuracy_lenient`` beside it,
  relations judged on the named kinds, ``relation_breakdown``) and, where
  they have ``folds``, ``folds.floor`` recomputed with the floor caption
  chosen on the training split (:func:`ptlib.metrics.references.best_constant_caption`).
* ``pruning_study/*/*.json``: the rows keep no captions, so they cannot be
  re-scored; their ``exact_set`` (the lenient measure: a kind named twice
  still earns credit) is renamed ``exact_set_lenient`` so that no stored
  number is read as the strict figure. Re-running the study (``ptlib
  results``) writes both.
* Each changed record gets a top-level ``rescored`` note saying what was
  recomputed.

The ground truth comes from the generated shapes dataset the record's own
``data`` config names (``ptlib data`` makes it; nothing is trained).

Usage::

    PTLIB_PROFILE=cpu python scripts/rescore_correctness.py            # rewrite in place
    PTLIB_PROFILE=cpu python scripts/rescore_correctness.py --dry-run  # only report
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from ptlib import course  # noqa: E402
from ptlib.data.shapes import ShapesConfig, ensure_shapes_dataset, shapes_paths  # noqa: E402
from ptlib.metrics.captions import CaptionScorer  # noqa: E402
from ptlib.metrics.correctness import load_ground_truth, score_correctness  # noqa: E402
from ptlib.metrics.references import best_constant_caption, score_floor  # noqa: E402

FLOOR_METRICS = ("BLEU", "METEOR", "ROUGE_L", "CIDEr")
"""The metrics :func:`ptlib.train.evaluate.floor_model_ceiling` stores for the floor."""

NOTE = ("re-scored by scripts/rescore_correctness.py without retraining: {what}; every other "
        "number is as trained")


def _dump(record: dict) -> str:
    return json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n"


class Dataset:
    """Ground truth and references of the shapes dataset a record's ``data`` config names."""

    def __init__(self, data_root: Path | None) -> None:
        self.data_root = data_root
        self._cache: dict[tuple[str, str], Any] = {}

    def root(self, section: dict) -> Path:
        if section.get("dataset", "shapes") != "shapes":
            raise ValueError(f"only shapes records can be re-scored, got {section.get('dataset')!r}")
        config = ShapesConfig.from_section(section)
        profile = course.Profile(name="rescore", description="rescore", seed=config.seed,
                                 settings={"data": dict(section)})
        return ensure_shapes_dataset(profile, root=self.data_root)

    def _load(self, root: Path, split: str, what: str, make: Callable[[], Any]) -> Any:
        key = (str(root), split + what)
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def truth(self, section: dict, split: str) -> dict:
        root = self.root(section)
        return self._load(root, split, "truth",
                          lambda: load_ground_truth(shapes_paths(root, split)[2]))

    def references(self, section: dict, split: str) -> dict[int, list[str]]:
        root = self.root(section)

        def read() -> dict[int, list[str]]:
            data = json.loads(shapes_paths(root, split)[1].read_text())
            refs: dict[int, list[str]] = {}
            for ann in data["annotations"]:
                refs.setdefault(int(ann["image_id"]), []).append(ann["caption"])
            return refs

        return self._load(root, split, "refs", read)


def _captions(entry: dict) -> dict[int, str]:
    return {int(i): c for i, c in entry["captions"].items()}


def rescore_entry(entry: dict, section: dict, split: str, data: Dataset,
                  scorer: CaptionScorer) -> list[str]:
    """Recompute ``correctness`` (and ``folds.floor``) of one evaluated split, in place."""
    done = []
    if "captions" not in entry:
        return done
    predictions = _captions(entry)
    if "correctness" in entry:
        truth = data.truth(section, split)
        entry["correctness"] = score_correctness(predictions, truth)
        done.append(f"{split} correctness")
    if "folds" in entry:
        choice = best_constant_caption(data.references(section, "train"))
        refs = data.references(section, split)
        floor = score_floor((), {i: refs[i] for i in predictions}, scorer=scorer,
                            caption=choice["caption"])
        floor.pop("per_fold", None)
        floor["choice"] = {"rule": choice["rule"], "candidates": choice["candidates"]}
        entry["folds"]["floor"] = floor
        done.append(f"{split} floor")
    return done


def rescore_record(path: Path, data: Dataset, scorer: CaptionScorer) -> tuple[dict, list[str]]:
    """The re-scored record of one results file and what was recomputed."""
    record = json.loads(path.read_text())
    kind = path.parent.parent.name
    result = record["result"]
    done: list[str] = []
    if kind == "captioners":
        section = record["config"]["config"]["data"]
        for split, entry in result.get("evaluation", {}).items():
            done += rescore_entry(entry, section, split, data, scorer)
    elif kind == "decoding":
        section = record["config"]["config"]["data"]
        done += rescore_entry(result, section, record["config"]["split"], data, scorer)
    elif kind == "pruning_study":
        renamed = 0
        for row in result.get("rows", []):
            if "exact_set" in row and "exact_set_lenient" not in row:
                row["exact_set_lenient"] = row.pop("exact_set")
                renamed += 1
        if renamed:
            done.append(f"{renamed} rows keep no captions: 'exact_set' (lenient) renamed "
                        "'exact_set_lenient'; the strict figure needs a re-run")
    if done:
        record["rescored"] = NOTE.format(what="; ".join(done))
    return record, done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=None,
                        help="results/<profile> to re-score (default: PTLIB_PROFILE)")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="where the shapes datasets live (default: the course data dir)")
    parser.add_argument("--dry-run", action="store_true", help="report, write nothing")
    args = parser.parse_args(argv)
    profile = args.profile or course.get_profile().name
    results = REPO / "results" / profile
    if not results.is_dir():
        parser.error(f"--profile {profile!r}: {results} does not exist")
    data = Dataset(args.data_root)
    changed = 0
    with CaptionScorer(FLOOR_METRICS) as scorer:
        for kind in ("captioners", "decoding", "pruning_study"):
            for path in sorted((results / kind).glob("*/*.json")):
                record, done = rescore_record(path, data, scorer)
                if not done:
                    continue
                text = _dump(record)
                if text == path.read_text():
                    print(f"unchanged  {path.relative_to(REPO)}")
                    continue
                changed += 1
                print(f"{'would fix' if args.dry_run else 'rescored'}  "
                      f"{path.relative_to(REPO)}: {'; '.join(done)}")
                if not args.dry_run:
                    path.write_text(text)
    print(f"{changed} record(s) {'to change' if args.dry_run else 'changed'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
