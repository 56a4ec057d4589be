"""Build a whole run from a run config: data, vocabulary, model, trainer; load it back.

This is what ``ptlib train`` / ``ptlib eval`` / ``ptlib caption`` call, and what the
chapters use::

    from ptlib.train import load_run_config, train_run, load_captioner
    config = load_run_config("shapes_vit", ["train.epochs=2"])
    result = train_run(config, out_dir)
    model, vocab, config = load_captioner(out_dir / "best.pt")
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptlib import course, files, runtime
from ptlib.data.datasets import collate_captions
from ptlib.data.loaders import CaptionData, build_caption_data
from ptlib.data.vocab import Vocabulary
from ptlib.models import Captioner, CaptionerConfig
from ptlib.train.checkpoint import check_weights_match, load_checkpoint
from ptlib.train.config import TrainConfig
from ptlib.train.distributed import DistEnv, cleanup_distributed, init_distributed
from ptlib.train.evaluate import caption_dataset, evaluate_captions
from ptlib.train.features import (
    CachedFeatureDataset,
    FeatureCaptioner,
    cached_or_encode,
    collate_features,
)
from ptlib.train.trainer import FitResult, Trainer

VAL_METRICS: tuple[str, ...] = ("BLEU", "CIDEr")
"""Metrics computed on validation captions during training (METEOR's JVM is slow to start)."""


# ---------------------------------------------------------------------------
# The data section: vocabulary and datasets
# ---------------------------------------------------------------------------
#
# The section has the keys of a profile's ``data`` section (see
# ``ptlib/configs/profiles.yaml`` and :func:`ptlib.data.build_caption_data`):
# ``dataset: shapes`` with the fields of :class:`ptlib.data.shapes.ShapesConfig`,
# or ``dataset: coco`` with ``coco_root``, ``split``, ``karpathy_json``, ``year``;
# plus ``img_size``, ``vocab_min_freq``, ``vocab_max_size``, ``max_len``.


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


# ---------------------------------------------------------------------------
# The model section, training, loading
# ---------------------------------------------------------------------------


def build_model(model_section: Mapping[str, Any], vocab: Vocabulary) -> Captioner:
    """A captioner for this vocabulary (``vocab_size`` is set from it)."""
    values = {**dict(model_section), "vocab_size": len(vocab)}
    return Captioner.from_config(CaptionerConfig.from_dict(values))


def _evaluate_fn(data: CaptionData, cfg: TrainConfig, device: torch.device):
    if "val" not in data.datasets or cfg.eval_every == 0:
        return None
    dataset = data.datasets["val"]

    def evaluate(model: nn.Module) -> dict[str, float]:
        predictions, references = caption_dataset(
            model, dataset, data.vocab, device=device, max_len=cfg.max_len,
            max_images=cfg.eval_max_images, batch_size=max(cfg.batch_size, 32),
        )
        scores = evaluate_captions(predictions, references, metrics=VAL_METRICS)
        return {k: v for k, v in scores.items() if isinstance(v, int | float) and v is not None}

    return evaluate


def train_run(
    config: Mapping[str, Any],
    out_dir: str | Path,
    *,
    resume: str | Path | None = None,
    device: torch.device | str | None = None,
    stop_at_epoch: int | None = None,
    show_progress: bool = True,
    pin_memory: bool | None = None,
    init_weights: str | Path | None = None,
) -> FitResult:
    """Train the run described by ``config`` into ``out_dir``.

    Args:
        config: A run config (:func:`ptlib.train.load_run_config`).
        out_dir: Checkpoints (``last.pt``, ``best.pt``) and history go here.
        resume: A checkpoint, or ``"auto"`` to continue from ``out_dir/last.pt`` if present.
        device: Default :func:`ptlib.runtime.pick_device`; under ``torchrun`` each
            process takes its local GPU.
        stop_at_epoch: Pause after this many epochs (resume later).
        show_progress: tqdm bars on the main process.
        pin_memory: Page-locked batches (default: on CUDA only; see
            :class:`ptlib.train.trainer.Trainer`).
        init_weights: A captioner checkpoint of the same architecture and vocabulary
            whose weights every parameter starts from (:func:`load_initial_weights`):
            the second stage of a two-stage recipe, e.g. a captioner trained with its
            encoder frozen, then trained again with the encoder unfrozen. A resumed
            run continues from its own checkpoint instead.

    Returns:
        How the run ended (:class:`ptlib.train.trainer.FitResult`), with ``wall_time_s``
        and the run config recorded in ``out_dir/run.json``.
    """
    from ptlib.errors import check_output_dir
    from ptlib.train.runconfig import check_run_config

    check_run_config(config)
    cfg = TrainConfig.from_dict(dict(config.get("train", {})))
    check_output_dir(out_dir, "output folder")  # before any work, not after an epoch
    device = runtime.pick_device(device)
    env: DistEnv = init_distributed(device)
    if env.distributed and device.type == "cuda":
        device = torch.device("cuda", env.local_rank)
    try:
        runtime.seed_everything(cfg.seed)
        data = build_run_data(config["data"], splits=("train", "val"), seed=cfg.seed)
        model = build_model(config["model"], data.vocab)
        if init_weights is not None:
            load_initial_weights(model, data.vocab, init_weights)
        model = model.to(device)
        train_set, collate, trained = data.datasets["train"], collate_captions, model
        if cfg.cache_features:
            cache = cached_or_encode(model, train_set, Path(out_dir) / "features_train.pt",
                                     device=device, show_progress=show_progress and env.is_main)
            train_set, collate = CachedFeatureDataset(train_set, cache), collate_features
            trained = FeatureCaptioner(model)
        trainer = Trainer(
            trained,
            train_set,
            data.datasets.get("val"),
            cfg,
            out_dir,
            collate_fn=collate,
            val_collate_fn=collate_captions,
            device=device,
            evaluate_fn=_evaluate_fn(data, cfg, device),
            checkpoint_extra={
                "run_config": {k: config[k] for k in ("name", "data", "model", "train")
                               if k in config},
                "vocab": data.vocab.to_json(),
            },
            dist_env=env,
            show_progress=show_progress,
            pin_memory=pin_memory,
        )
        start = time.perf_counter()
        result = trainer.fit(resume=resume, stop_at_epoch=stop_at_epoch)
        result.dropped = list(data.dropped)
        if env.is_main:
            files.atomic_write_text(
                Path(out_dir) / "run.json",
                json.dumps(
                    {
                        "config": dict(config),
                        "status": result.status,
                        "message": result.message,
                        "wall_time_s": round(time.perf_counter() - start, 2),
                        "epochs": len(result.history),
                        "parameters": sum(p.numel() for p in model.parameters()),
                        "versions": runtime.versions(),
                        "machine": runtime.machine(),
                    },
                    indent=1,
                )
                + "\n",
            )
        return result
    finally:
        cleanup_distributed()


def load_initial_weights(model: Captioner, vocab: Vocabulary, path: str | Path) -> None:
    """Copy every weight of the captioner checkpoint ``path`` into ``model``, in place.

    Float16 weights (a slim checkpoint) are cast to the model's dtype. Nothing is
    loaded unless the checkpoint's vocabulary equals ``vocab`` (the same token ids)
    and every parameter's name and shape fit.

    Raises:
        ptlib.train.checkpoint.CheckpointError: The file is unsafe, not a captioner
            checkpoint, has another vocabulary, or another architecture.
    """
    from ptlib.train.checkpoint import CheckpointError

    state = load_checkpoint(path)
    for key in ("vocab", "model"):
        if key not in state:
            raise CheckpointError(f"init_weights: checkpoint {path} has no {key!r}: it was "
                                  "not written by ptlib train")
    saved = state["vocab"].get("itos") if isinstance(state["vocab"], Mapping) else None
    if saved != vocab.itos:
        raise CheckpointError(
            f"init_weights: checkpoint {path} was trained with another vocabulary "
            f"({len(saved or [])} tokens, this run has {len(vocab)}): start from a "
            "captioner trained on the same data section")
    check_weights_match(model, state["model"], path)
    model.load_state_dict(state["model"])


def load_captioner(
    path: str | Path, device: torch.device | str | None = "cpu"
) -> tuple[Captioner, Vocabulary, dict[str, Any]]:
    """Load a trained captioner from a checkpoint written by :func:`train_run`.

    Returns:
        ``(model in eval mode, vocabulary, run config)``.

    Raises:
        ptlib.train.checkpoint.CheckpointError: Unsafe, unreadable, or not a run checkpoint.
    """
    from ptlib.train.checkpoint import CheckpointError

    device = runtime.pick_device(device)
    state = load_checkpoint(path, map_location=device)
    for key in ("run_config", "vocab", "model"):
        if key not in state:
            raise CheckpointError(
                f"checkpoint {path} has no {key!r}: it was not written by ptlib train"
            )
    run_config, saved_vocab = state["run_config"], state["vocab"]
    if not isinstance(run_config, Mapping) or not isinstance(run_config.get("model"), Mapping):
        raise CheckpointError(f"checkpoint {path}: its run_config has no model section")
    if not isinstance(saved_vocab, Mapping) or not isinstance(saved_vocab.get("itos"), list):
        raise CheckpointError(f"checkpoint {path}: its vocabulary has no 'itos' list")
    try:
        vocab = Vocabulary(saved_vocab["itos"], saved_vocab.get("counts"))
        # The checkpoint holds every weight: never fetch pretrained ones again.
        model_section = {**run_config["model"], "pretrained": False, "encoder_init": None}
        model = build_model(model_section, vocab)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path}: its model config or vocabulary is invalid "
                              f"({err})") from err
    check_weights_match(model, state["model"], path)
    model = model.to(device)
    model.load_state_dict(state["model"])
    model.eval()
    return model, vocab, dict(run_config)
