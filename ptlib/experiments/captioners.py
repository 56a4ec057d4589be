"""The course's trained captioners: trained once per profile, stored, loaded by the chapters.

The cache key of a stored captioner hashes its resolved run config
(:func:`ptlib.train.load_run_config`), so a change to a run config that changes a
value (not one that moves it between files, e.g. into a ``base:``) trains it again;
``tests/test_config_single_source.py`` checks that every stored ``cpu`` result loads.

:func:`trained_captioner` trains a run config (the profile's ``runs`` in
``ptlib/configs/profiles.yaml``: ``shapes_vit`` / ``shapes_convnext`` under ``cpu``,
their ``_ci`` versions under ``ci``, ``_gpu`` under ``gpu`` and ``coco``; the paper's
``coco_vit_b16`` / ``coco_convnext_t`` with ``dataset="coco"``), evaluates it on
the held-out splits, and stores the result through :func:`ptlib.runcache.run_or_load`:
``results/<profile>/captioners/<name>/<key>.json`` with its config, seed, versions,
machine and wall time, plus a slim checkpoint (weights in float16, no optimizer
state) in ``results/<profile>/checkpoints/``. ``make results`` produces the
``cpu`` ones; the book loads them instead of retraining.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ptlib import course, runcache, runtime
from ptlib.train.checkpoint import load_checkpoint, save_checkpoint
from ptlib.train.evaluate import caption_dataset, evaluate_captions, floor_model_ceiling
from ptlib.train.run import build_run_data, instances_path, load_captioner, train_run
from ptlib.train.runconfig import load_run_config

BACKBONES: tuple[str, ...] = ("vit", "convnext")


@dataclass
class TrainedRun:
    """A trained captioner and its measurements.

    Attributes:
        name: The run config name, e.g. ``"shapes_vit"``.
        config: The resolved run config.
        checkpoint: The slim checkpoint (load it with :func:`ptlib.train.load_captioner`):
            in ``results/``, or, where only the record is stored there
            (``keep_checkpoint=False``), in the training folder under ``checkpoints/``
            if it is still on this machine, else ``None``.
        history: Per-epoch training history.
        evaluation: Split name -> metrics (n-gram metrics on all references,
            ``folds`` with floor/model/ceiling, ``correctness`` on shapes) and the
            generated ``captions``.
        train_minutes: Wall time of training.
        parameters: Number of model parameters.
        key: The stored record's key (:func:`ptlib.runcache.config_key` of its config).
    """

    name: str
    config: dict[str, Any]
    checkpoint: Path | None
    history: list[dict[str, Any]]
    evaluation: dict[str, dict[str, Any]]
    train_minutes: float
    parameters: int
    key: str = ""

    def load(self, device: str | torch.device = "cpu"):
        """``(model, vocab, run_config)`` from the stored checkpoint.

        Raises:
            FileNotFoundError: If only the record of this run is stored.
        """
        if self.checkpoint is None:
            raise FileNotFoundError(
                f"{self.name}: only its record is stored in results/ and its weights are not "
                "under checkpoints/ on this machine; train it again with force=True")
        return load_captioner(self.checkpoint, device)


def config_name(backbone: str, profile: course.Profile, dataset: str = "shapes") -> str:
    """The shipped run config of a backbone under a profile
    (:func:`ptlib.course.run_config_names`).

    Args:
        backbone: ``"vit"`` or ``"convnext"``.
        profile: The profile.
        dataset: ``"shapes"`` (chapters 5 to 9, every profile) or ``"coco"`` (the
            ``coco`` profile's paper runs).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    return course.run_config_names(profile, dataset)[backbone]


def slim_checkpoint(source: Path, target: Path) -> Path:
    """Copy a training checkpoint without optimizer state, weights in float16."""
    state = load_checkpoint(source)
    weights = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    return save_checkpoint(target, {
        "model": weights, "vocab": state["vocab"], "run_config": state["run_config"],
        "epoch": state["epoch"], "history": state["history"],
    })


def evaluate_checkpoint(
    checkpoint: Path, splits: Sequence[str], *, beam_size: int = 1, max_images: int = 0,
    prune: tuple[float, str] | None = None, folds: bool = True,
) -> dict[str, dict[str, Any]]:
    """Caption and score each split: metrics, floor/model/ceiling folds, correctness.

    Captions are generated on :func:`ptlib.runtime.pick_device` (the CPU unless a GPU
    is there), scored on the CPU.

    Args:
        checkpoint: A captioner checkpoint.
        splits: Held-out splits to caption.
        beam_size: 1 for greedy decoding, else beam search with this width.
        max_images: Caption only this many images per split (0: all).
        prune: ``(ratio, method)``: caption with the pruning replaced at inference
            (:func:`ptlib.models.reprune`), e.g. ``(0.3, "norm")``; ``None`` keeps the
            checkpoint's own.
        folds: Also score the floor, the model and the ceiling over the reference folds
            (:func:`ptlib.train.evaluate.floor_model_ceiling`); the floor and the
            ceiling do not depend on the model, so a second scoring of the same split
            can skip them.
    """
    device = runtime.pick_device()
    model, vocab, config = load_captioner(checkpoint, device)
    if prune is not None:
        from ptlib.models import reprune

        model = reprune(model, prune[0], prune[1])
    data = build_run_data(config["data"], splits=("train", *splits), vocab=vocab)
    train_references = {r.image_id: r.captions for r in data.datasets["train"].records}
    results = {}
    for split in splits:
        predictions, references = caption_dataset(
            model, data.datasets[split], vocab, device=device,
            method="beam" if beam_size > 1 else "greedy", beam_size=beam_size,
            max_images=max_images,
        )
        scores = evaluate_captions(predictions, references,
                                   instances=instances_path(data, split))
        if folds:
            scores["folds"] = floor_model_ceiling(predictions, references, train_references)
        scores["captions"] = {str(k): v for k, v in predictions.items()}
        results[split] = scores
    return results


def _file_digest(encoder_init: str) -> str:
    """The first 16 hex digits of the SHA-256 of an ``encoder_init`` file ("missing" if absent)."""
    from ptlib.pretrain.checkpoint import resolve_encoder_init

    path = resolve_encoder_init(encoder_init)
    if not path.is_file():
        return "missing"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _stored_paths(
    backbone: str, profile: course.Profile, overrides: Sequence[str], splits: Sequence[str],
    tag: str, dataset: str = "shapes", pruned: Sequence[tuple[float, str]] = (),
) -> tuple[str, dict[str, Any], Path]:
    """``(run name, run-or-load key, slim checkpoint path)`` of a course captioner."""
    name = config_name(backbone, profile, dataset)
    extra = course.run_overrides(profile, dataset)
    if dataset == "coco":
        extra = [f"data.coco_root={course.require_coco(profile)}"]
    config = load_run_config(name, [*extra, *overrides])
    run_name = name + (f"_{tag}" if tag else "")
    key_config = {"profile": profile.name, "run": run_name, "config": config,
                  "splits": list(splits)}
    if config["model"].get("encoder_init"):  # new pretrained weights: a new captioner
        key_config["encoder_init_sha256"] = _file_digest(config["model"]["encoder_init"])
    if pruned:  # scored again with pruning at inference (trained_captioner's `pruned`)
        key_config["pruned"] = [[float(ratio), str(method)] for ratio, method in pruned]
    key = runcache.config_key(key_config)
    checkpoint = course.results_dir() / profile.name / "checkpoints" / f"{run_name}-{key[:8]}.pt"
    return run_name, key_config, checkpoint


def training_dir(profile: course.Profile, run_name: str, key: str) -> Path:
    """Where a course captioner trains (``checkpoints/<profile>/<run>-<key[:8]>/``); a
    captioner stored with ``keep_checkpoint=False`` keeps its ``slim.pt`` there."""
    return course.checkpoint_dir() / profile.name / f"{run_name}-{key[:8]}"


def stored_key_config(
    backbone: str,
    profile: course.Profile,
    *,
    overrides: Sequence[str] = (),
    splits: Sequence[str] = ("test", "compositional"),
    tag: str = "",
    pruned: Sequence[tuple[float, str]] = (),
) -> dict[str, Any]:
    """The config :func:`trained_captioner` with these arguments is stored under
    (its :func:`ptlib.runcache.config_key` is the record's key), without loading it:
    results computed from that captioner (a pruning-study sweep) key on it."""
    return _stored_paths(backbone, profile, overrides, splits, tag, "shapes", pruned)[1]


def is_stored(
    backbone: str,
    profile: course.Profile | str | None = None,
    *,
    overrides: Sequence[str] = (),
    splits: Sequence[str] = ("test", "compositional"),
    tag: str = "",
    dataset: str = "shapes",
    pruned: Sequence[tuple[float, str]] = (),
    keep_checkpoint: bool = True,
) -> bool:
    """Whether :func:`trained_captioner` with these arguments would load, not train.

    True when its stored record (for exactly this config) and, unless
    ``keep_checkpoint=False``, its slim checkpoint are both in ``results/<profile>/``.
    """
    if not isinstance(profile, course.Profile):
        profile = course.get_profile(profile)
    run_name, key_config, checkpoint = _stored_paths(
        backbone, profile, overrides, splits, tag, dataset, pruned
    )
    record = runcache.run_record_path(f"{profile.name}/captioners/{run_name}", key_config)
    return record.is_file() and (checkpoint.is_file() or not keep_checkpoint)


def trained_captioner(
    backbone: str,
    profile: course.Profile | str | None = None,
    *,
    overrides: Sequence[str] = (),
    splits: Sequence[str] = ("test", "compositional"),
    tag: str = "",
    force: bool = False,
    dataset: str = "shapes",
    pruned: Sequence[tuple[float, str]] = (),
    keep_checkpoint: bool = True,
) -> TrainedRun:
    """Train (or load) the course's captioner for a backbone under a profile.

    Args:
        backbone: ``"vit"`` or ``"convnext"``.
        profile: A profile or its name (default: the active one).
        overrides: ``--set``-style overrides (e.g. ``["train.epochs=3"]``); they
            are part of the cache key.
        splits: Held-out splits to evaluate (none: train and store only).
        tag: A name suffix for variants (e.g. ``"memorise"``).
        force: Retrain even when a stored result matches.
        dataset: ``"shapes"`` (the profile's ``runs``) or ``"coco"`` (the ``coco``
            profile's paper runs, reading COCO from :func:`ptlib.course.coco_root`).
        pruned: ``(ratio, method)`` settings at which the first split is also scored
            with the pruning replaced at inference; stored as
            ``evaluation["pruned"]["<method>@<ratio>"]`` (without the reference folds,
            which the unpruned scoring has) and part of the key.
        keep_checkpoint: Store the slim checkpoint in ``results/`` beside the record
            (``False``: the record only, so ``results/`` stays small; the slim
            checkpoint stays in the training folder under ``checkpoints/``).
    """
    if not isinstance(profile, course.Profile):
        profile = course.get_profile(profile)
    if pruned and not splits:
        raise ValueError("trained_captioner: pruned evaluations need a split to score")
    run_name, key_config, checkpoint = _stored_paths(
        backbone, profile, overrides, splits, tag, dataset, pruned
    )
    config = key_config["config"]
    key = runcache.config_key(key_config)

    def evaluate(checkpoint: Path) -> dict[str, Any]:
        evaluation = evaluate_checkpoint(checkpoint, splits) if splits else {}
        if pruned:
            evaluation["pruned"] = {
                f"{method}@{ratio:g}": evaluate_checkpoint(
                    checkpoint, splits[:1], prune=(ratio, method), folds=False)[splits[0]]
                for ratio, method in pruned}
        return evaluation

    def run() -> dict[str, Any]:
        out_dir = training_dir(profile, run_name, key)
        start = time.perf_counter()
        result = train_run(config, out_dir, resume="auto")
        minutes = (time.perf_counter() - start) / 60
        if result.status not in ("finished", "early_stopped"):
            raise RuntimeError(f"training {run_name} did not finish: {result.message}")
        slim = checkpoint if keep_checkpoint else out_dir / "slim.pt"
        slim_checkpoint(result.best_checkpoint, slim)
        model, _, _ = load_captioner(slim)
        return {
            "checkpoint": (str(checkpoint.relative_to(course.results_dir()))
                           if keep_checkpoint else None),
            "history": result.history,
            "evaluation": evaluate(slim),
            "train_minutes": round(minutes, 2),
            "parameters": sum(p.numel() for p in model.parameters()),
        }

    stored = runcache.run_or_load(f"{profile.name}/captioners/{run_name}", key_config, run,
                                  force=force or (keep_checkpoint and not checkpoint.is_file()))
    local = training_dir(profile, run_name, key) / "slim.pt"
    return TrainedRun(
        name=run_name,
        config=config,
        checkpoint=(course.results_dir() / stored["checkpoint"] if stored["checkpoint"]
                    else local if local.is_file() else None),
        history=stored["history"],
        evaluation=stored["evaluation"],
        train_minutes=stored["train_minutes"],
        parameters=stored["parameters"],
        key=key,
    )
