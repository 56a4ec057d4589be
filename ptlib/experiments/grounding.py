"""The pointing game of the course's captioners at several inference prune ratios.

For each model of the profile's ``grounding`` section (:func:`grounding_models`:
the course captioners, ConvNeXt at stride 16, which gives as many tokens as the
ViT, and chapter 4b's pretrained captioners), :func:`grounding_study` loads its
captioner (:func:`~ptlib.experiments.captioners.trained_captioner`, itself
run-or-load), captions the held-out test split greedily with cross-attention at
every ratio of the profile's ``inference.prune_ratios`` (the model's own pruning
method, or ``norm`` for one trained without pruning, swapped in at inference with
:func:`ptlib.models.reprune`; ratio 0 keeps every token), and plays the pointing
game (:mod:`ptlib.metrics.grounding`). Each model's result is stored with
:func:`ptlib.runcache.run_or_load` under ``results/<profile>/grounding/<model>/``,
keyed by that run's config and stored record, so a retrained captioner is scored
again and adding a model leaves the others' results valid; a pretrained
captioner's stored game loads without its weights. ``ptlib results --only
grounding`` runs it.

Only the shapes dataset has the object boxes the game needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ptlib import course, runcache, runtime
from ptlib.data.datasets import CaptionDataset
from ptlib.data.vocab import Vocabulary
from ptlib.experiments.captioners import (
    BACKBONES,
    TrainedRun,
    is_stored,
    trained_captioner,
    training_dir,
)
from ptlib.metrics.correctness import SceneTruth, load_ground_truth
from ptlib.metrics.grounding import PointingGame
from ptlib.models.captioner import Captioner, reprune
from ptlib.train.captioning import caption_split
from ptlib.train.run import build_run_data, instances_path

SPLIT = "test"
"""The split the study scores (held out from training)."""


UNPRUNED_METHOD = "norm"
"""The scorer that prunes a captioner trained without pruning (it has none of its own)."""


@dataclass(frozen=True)
class GroundingModel:
    """One captioner of the pointing game.

    Attributes:
        name: Its label, e.g. ``"convnext_s16"``.
        backbone: ``"vit"`` or ``"convnext"``.
        overrides: Run-config overrides (``--set`` form) on the course's run config;
            none means the course captioner itself.
        pretrained: ``(encoder, variant)``: chapter 4b's pretrained captioner (seed 0,
            :func:`ptlib.pretrain.variants.pretrained_captioner`) instead.
    """

    name: str
    backbone: str
    overrides: tuple[str, ...] = ()
    pretrained: tuple[str, str] | None = None

    @property
    def tag(self) -> str:
        """The run-name suffix of its captioner (``""`` for the course captioner)."""
        if not self.overrides:
            return ""
        return self.name.removeprefix(f"{self.backbone}_") or self.name

    def is_stored(self, profile: course.Profile | str | None = None) -> bool:
        """Whether its captioner and its weights are here (it loads without training)."""
        if self.pretrained:
            from ptlib.pretrain.variants import pretrained_captioner_key

            if not isinstance(profile, course.Profile):
                profile = course.get_profile(profile)
            key_config = pretrained_captioner_key(*self.pretrained, profile, pretrain=False)
            weights = training_dir(profile, key_config["run"], runcache.config_key(key_config))
            record = runcache.run_record_path(
                f"{profile.name}/captioners/{key_config['run']}", key_config)
            return record.is_file() and (weights / "slim.pt").is_file()
        return is_stored(self.backbone, profile, overrides=self.overrides, tag=self.tag)

    def captioner(self, profile: course.Profile, *, force: bool = False,
                  need_weights: bool = True) -> TrainedRun:
        """Train (or load) this model's captioner under a profile.

        ``need_weights=False`` lets a pretrained captioner load as its stored record
        only (``checkpoint`` ``None`` where its weights are not on this machine).
        """
        if self.pretrained:
            from ptlib.pretrain.variants import pretrained_captioner

            return pretrained_captioner(*self.pretrained, profile, force=force,
                                        need_weights=need_weights)
        return trained_captioner(self.backbone, profile, overrides=list(self.overrides),
                                 tag=self.tag, force=force)


def grounding_models(profile: course.Profile | str | None = None) -> list[GroundingModel]:
    """The models of a profile's ``grounding`` section (default: one per backbone).

    Raises:
        ValueError: If a model names no known backbone.
    """
    if not isinstance(profile, course.Profile):
        profile = course.get_profile(profile)
    from ptlib.pretrain.variants import MODEL_OPTIONS, pretrained_choice

    specs = course.model_specs(profile, "grounding", options=MODEL_OPTIONS)
    if not specs:
        return [GroundingModel(backbone, backbone) for backbone in BACKBONES]
    return [GroundingModel(spec.name, spec.backbone, spec.overrides,
                           pretrained_choice(profile, "grounding", spec)) for spec in specs]


@torch.no_grad()
def score_pointing(
    model: Captioner,
    vocab: Vocabulary,
    dataset: CaptionDataset,
    truth: dict[int, SceneTruth],
    *,
    ratio: float,
    method: str | None = None,
    device: torch.device | str | None = None,
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
        device: Where the images go (default: the model's device).
        batch_size: Images per generation batch.
        max_images: Score only the first this many images (0 = all).

    Returns:
        :meth:`ptlib.metrics.PointingGame.summary` plus ``ratio``, ``method``,
        ``kept_tokens`` (``K``) and ``memory_tokens`` (``M``, ``K + 1`` with a fused token).
    """
    game = PointingGame(truth)
    kept = memory = 0
    pruned = reprune(model, ratio, method)
    used_method = pruned.pruner.method
    for batch in caption_split(pruned, dataset, vocab, batch_size=batch_size, device=device,
                               max_images=max_images, need_attention=True):
        game.add(batch.image_ids, batch.words, batch.attention, batch.kept_indices,
                 pruned.encoder.grid)
        kept, memory = batch.kept_indices.shape[1], batch.attention.shape[2]
    return {"ratio": ratio, "method": used_method, "kept_tokens": kept, "memory_tokens": memory,
            **game.summary()}


def grounding_study(
    profile: course.Profile | str | None = None,
    *,
    models: Sequence[str] | None = None,
    ratios: Sequence[float] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run (or load) the pointing game per model and inference prune ratio.

    Args:
        profile: A profile or its name (default: the active one).
        models: Which models of :func:`grounding_models` to score (default: all).
        ratios: Inference prune ratios (default: the profile's ``inference.prune_ratios``).
        force: Recompute even when a stored result matches (the captioners
            themselves are loaded, not retrained).

    Returns:
        A dict with ``split``, ``ratios`` and ``models``: for each model its
        ``run``, ``backbone``, ``encoder``, ``grid``, ``tokens``, ``trained_method``
        and ``results``, a list with one :func:`score_pointing` dict per ratio.

    Raises:
        ValueError: If the profile's data is not the shapes dataset (no object
            boxes), or ``models`` names an unknown model.
    """
    if not isinstance(profile, course.Profile):
        profile = course.get_profile(profile)
    dataset_name = profile.section("data").get("dataset", "shapes")
    if dataset_name != "shapes":
        raise ValueError(f"the pointing game needs the shapes dataset's object boxes; profile "
                         f"{profile.name!r} uses data.dataset={dataset_name!r}")
    ratios = [float(r) for r in (ratios if ratios is not None
                                 else profile.section("inference")["prune_ratios"])]
    known = grounding_models(profile)
    unknown = sorted(set(models or ()) - {m.name for m in known})
    if unknown:
        raise ValueError(f"models={unknown}: the pointing game's models are "
                         f"{[m.name for m in known]}")
    chosen = [m for m in known if models is None or m.name in models]
    out: dict[str, Any] = {"split": SPLIT, "ratios": ratios, "models": {}}
    for spec in chosen:
        # a pretrained captioner's record is enough to load its stored game
        trained = spec.captioner(profile, need_weights=False)
        key = {"profile": profile.name, "split": SPLIT, "ratios": ratios, "decoding": "greedy",
               "run": trained.name, "checkpoint": f"{trained.name}-{trained.key[:8]}.pt",
               "config": trained.config}

        def play(spec: GroundingModel = spec, trained: TrainedRun = trained) -> dict[str, Any]:
            if trained.checkpoint is None:  # its weights are not here: train them again
                trained = spec.captioner(profile)
            return _play(trained, ratios)

        stored = runcache.run_or_load(f"{profile.name}/grounding/{spec.name}", key, play,
                                      force=force)
        out["models"][spec.name] = {"backbone": spec.backbone, **stored}
    return out


def _play(trained: TrainedRun, ratios: Sequence[float]) -> dict[str, Any]:
    """The pointing game of one trained captioner at every ratio."""
    device = runtime.pick_device()
    model, vocab, config = trained.load(device)
    data = build_run_data(config["data"], splits=(SPLIT,), vocab=vocab)
    truth = load_ground_truth(instances_path(data, SPLIT))
    # a captioner trained without pruning has no scorer of its own: it is pruned by
    # norm, as chapter 4b scores the pretrained captioners at 0.3
    method = UNPRUNED_METHOD if model.pruner.method == "none" else None
    return {
        "run": trained.name,
        "encoder": model.encoder.name,
        "grid": list(model.encoder.grid),
        "tokens": model.encoder.num_tokens,
        "trained_method": model.pruner.method,
        "results": [score_pointing(model, vocab, data.datasets[SPLIT], truth, ratio=r,
                                   method=method, device=device) for r in ratios],
    }
