"""The pointing game of the course's captioners at several inference prune ratios.

For each backbone in :data:`~ptlib.experiments.captioners.BACKBONES`,
:func:`grounding_study` loads the course captioner
(:func:`~ptlib.experiments.captioners.trained_captioner`, itself run-or-load),
captions the held-out test split greedily with cross-attention at every ratio of
the profile's ``model.prune_ratios`` (the model's own pruning method, swapped in
at inference with :func:`ptlib.models.inference_pruning`; ratio 0 keeps every
token), and plays the pointing game (:mod:`ptlib.metrics.grounding`). The result
is stored with :func:`ptlib.course.run_or_load` under
``results/<profile>/grounding/``, keyed by the runs' configs and checkpoints, so
a retrained captioner is scored again. ``ptlib results --only grounding`` runs it.

Only the shapes dataset has the object boxes the game needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from ptlib import course
from ptlib.data.datasets import CaptionDataset, collate_captions
from ptlib.data.vocab import Vocabulary
from ptlib.experiments.captioners import BACKBONES, trained_captioner
from ptlib.metrics.correctness import SceneTruth, load_ground_truth
from ptlib.metrics.grounding import PointingGame, generated_words
from ptlib.models.captioner import Captioner
from ptlib.models.repruning import inference_pruning
from ptlib.train.data import build_run_data, instances_path

SPLIT = "test"
"""The split the study scores (held out from training)."""


@torch.no_grad()
def score_pointing(
    model: Captioner,
    vocab: Vocabulary,
    dataset: CaptionDataset,
    truth: dict[int, SceneTruth],
    *,
    ratio: float,
    method: str | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    max_images: int = 0,
) -> dict[str, Any]:
    """Caption a split greedily at one inference prune ratio and play the pointing game.

    Args:
        model: A trained captioner.
        vocab: Its vocabulary.
        dataset: An eval-mode dataset of a shapes split.
        truth: That split's objects (:func:`ptlib.metrics.load_ground_truth`).
        ratio: Fraction of visual tokens pruned at inference.
        method: Pruning method (default: the model's own; ratio 0 keeps all).
        device: Where to run.
        batch_size: Images per generation batch.
        max_images: Score only the first this many images (0 = all).

    Returns:
        :meth:`ptlib.metrics.PointingGame.summary` plus ``ratio``, ``method``,
        ``kept_tokens`` (``K``) and ``memory_tokens`` (``M``, ``K + 1`` with a fused token).
    """
    subset = dataset if not max_images else Subset(dataset, range(min(max_images, len(dataset))))
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=collate_captions,
                        generator=torch.Generator())
    game = PointingGame(truth)
    kept = memory = 0
    with inference_pruning(model, ratio, method) as pruned:
        used_method = pruned.pruner.method
        for batch in loader:
            if len(batch) == 0:
                continue
            result = pruned.generate(batch.images.to(device), return_attention=True)
            game.add(batch.image_ids.tolist(), generated_words(result.tokens, vocab.itos),
                     result.attention, result.kept_indices, pruned.encoder.grid)
            kept, memory = result.kept_indices.shape[1], result.attention.shape[2]
    return {"ratio": ratio, "method": used_method, "kept_tokens": kept, "memory_tokens": memory,
            **game.summary()}


def grounding_study(
    profile: course.Profile | str | None = None,
    *,
    backbones: Sequence[str] = BACKBONES,
    ratios: Sequence[float] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run (or load) the pointing game per backbone and inference prune ratio.

    Args:
        profile: A profile or its name (default: the active one).
        backbones: Which course captioners to score.
        ratios: Inference prune ratios (default: the profile's ``model.prune_ratios``).
        force: Recompute even when a stored result matches (the captioners
            themselves are loaded, not retrained).

    Returns:
        A dict with ``split``, ``ratios`` and ``backbones``: for each backbone its
        ``run``, ``encoder``, ``grid``, ``tokens``, ``trained_method`` and
        ``results``, a list with one :func:`score_pointing` dict per ratio.

    Raises:
        ValueError: If the profile's data is not the shapes dataset (no object boxes).
    """
    if not isinstance(profile, course.Profile):
        profile = course.get_profile(profile)
    dataset_name = profile.section("data").get("dataset", "shapes")
    if dataset_name != "shapes":
        raise ValueError(f"the pointing game needs the shapes dataset's object boxes; profile "
                         f"{profile.name!r} uses data.dataset={dataset_name!r}")
    ratios = [float(r) for r in (ratios if ratios is not None
                                 else profile.section("model")["prune_ratios"])]
    runs = {backbone: trained_captioner(backbone, profile) for backbone in backbones}
    key = {
        "profile": profile.name, "split": SPLIT, "ratios": ratios, "decoding": "greedy",
        "runs": {b: {"run": r.name, "checkpoint": r.checkpoint.name, "config": r.config}
                 for b, r in runs.items()},
    }

    def run() -> dict[str, Any]:
        device = course.pick_device()
        out: dict[str, Any] = {"split": SPLIT, "ratios": ratios, "backbones": {}}
        for backbone, trained in runs.items():
            model, vocab, config = trained.load(device)
            data = build_run_data(config["data"], splits=(SPLIT,), vocab=vocab)
            truth = load_ground_truth(instances_path(data, SPLIT))
            out["backbones"][backbone] = {
                "run": trained.name,
                "encoder": model.encoder.name,
                "grid": list(model.encoder.grid),
                "tokens": model.encoder.num_tokens,
                "trained_method": model.pruner.method,
                "results": [score_pointing(model, vocab, data.datasets[SPLIT], truth, ratio=r,
                                           device=device) for r in ratios],
            }
        return out

    return course.run_or_load(f"{profile.name}/grounding", key, run, force=force)
