"""The pretext-training loop: AdamW, warm-up + cosine, seeded, resumable, time-boxed.

:func:`pretrain_encoder` trains an encoder and :class:`~ptlib.pretrain.heads.PretextHeads`
on the pretext stream, saving ``OUT/last.pt`` (encoder, heads, optimizer, step,
minutes) every ``checkpoint_every`` steps, so a killed run resumes where it
stopped and reads exactly the images it would have read. At the end it
measures pretext accuracy on the evaluation stream and writes the slim
encoder checkpoint and ``OUT/pretrain.json`` (accuracy per head, minutes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ptlib import files, runtime
from ptlib.models.encoders import VisualEncoder
from ptlib.pretrain.checkpoint import save_encoder
from ptlib.pretrain.config import PretrainConfig
from ptlib.pretrain.dataset import PretextDataset
from ptlib.pretrain.encoder import build_spec_encoder
from ptlib.pretrain.heads import PretextHeads, pretext_hits, pretext_loss
from ptlib.pretrain.scenes import PRETEXT_EVAL_STREAM
from ptlib.train.checkpoint import load_checkpoint, save_checkpoint
from ptlib.train.step import warmup_cosine_scheduler


@dataclass
class PretrainResult:
    """How a pretext-training run ended.

    Attributes:
        status: ``"finished"`` (the whole schedule), ``"budget"`` (stopped at
            ``max_minutes`` before the schedule ended; evaluated and saved like a
            finished run, and resumable with a larger budget) or ``"paused"``
            (``stop_at_step``; not evaluated, no encoder written).
        steps: Optimizer steps taken.
        images_seen: ``steps * batch_size``.
        minutes: Training minutes over all sessions (evaluation excluded).
        images_per_second: Training throughput of the last session.
        accuracy: Pretext accuracy per head on the evaluation stream.
        history: ``{"step", "loss", <head>: loss}`` every ``log_every`` steps.
        encoder_file: The slim checkpoint written (``None`` when paused).
    """

    status: str
    steps: int
    images_seen: int
    minutes: float
    images_per_second: float
    accuracy: dict[str, float]
    history: list[dict[str, float]]
    encoder_file: Path | None

    def record(self) -> dict[str, Any]:
        """Plain data (JSON) of everything but the file."""
        return {"status": self.status, "steps": self.steps, "images_seen": self.images_seen,
                "minutes": round(self.minutes, 3),
                "images_per_second": round(self.images_per_second, 1),
                "accuracy": self.accuracy, "history": self.history}


def _batches(cfg: PretrainConfig, step: int) -> list[list[int]]:
    """Index batches from global ``step`` to the end of its epoch (seeded order per epoch)."""
    epoch, offset = divmod(step, cfg.steps_per_epoch)
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    order = torch.randperm(cfg.images, generator=generator).tolist()
    size = cfg.batch_size
    return [order[i * size:(i + 1) * size] for i in range(offset, cfg.steps_per_epoch)]


def _loader(dataset: Dataset, batches: list[list[int]] | None, cfg: PretrainConfig,
            batch_size: int | None = None) -> DataLoader:
    if batches is not None:
        return DataLoader(dataset, batch_sampler=batches, num_workers=cfg.num_workers)
    return DataLoader(dataset, batch_size=batch_size, num_workers=cfg.num_workers)


@torch.no_grad()
def pretext_accuracy(encoder: VisualEncoder, heads: PretextHeads, dataset: Dataset,
                     batch_size: int = 64, num_workers: int = 0) -> dict[str, float]:
    """Accuracy of every pretext head over a dataset.

    Args:
        encoder: The encoder (put in eval mode here).
        heads: The pretext heads.
        dataset: A :class:`~ptlib.pretrain.dataset.PretextDataset`.
        batch_size: Images per forward pass.
        num_workers: DataLoader processes.

    Returns:
        ``colour``/``shape``/``size``: accuracy over object tokens (the
        attribute of the object under the token); ``*_token``: over all tokens,
        background included; ``presence``: images with all 60 kinds right;
        ``count``: images with the right number of objects. Fractions in [0, 1].
    """
    encoder.eval()
    heads.eval()
    hits: dict[str, list[torch.Tensor]] = {}
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
    for batch in loader:
        logits = heads(encoder(batch["images"]).tokens)
        for name, right in pretext_hits(logits, batch).items():
            hits.setdefault(name, []).append(right)
    return {name: round(float(torch.cat(parts).float().mean()), 4)
            for name, parts in hits.items()}


def pretrain_encoder(
    spec: Mapping[str, Any],
    cfg: PretrainConfig,
    out_dir: str | Path,
    *,
    max_objects: int = 4,
    encoder_file: str | Path | None = None,
    stop_at_step: int | None = None,
    verbose: bool = True,
) -> PretrainResult:
    """Pretrain an encoder on the pretext task, resuming from ``out_dir/last.pt`` if there.

    Args:
        spec: The encoder (:func:`ptlib.pretrain.encoder.encoder_spec`).
        cfg: How long and how hard.
        out_dir: Resumable checkpoint ``last.pt`` and ``pretrain.json`` go here.
        max_objects: At most this many objects per image (the data section's).
        encoder_file: Where to write the slim encoder checkpoint when finished
            (default ``out_dir/encoder.pt``).
        stop_at_step: Pause after this step (checkpointed; for tests of resuming).
        verbose: Print a line per ``log_every`` steps.

    Returns:
        A :class:`PretrainResult`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    last = out_dir / "last.pt"
    runtime.seed_everything(cfg.seed)
    encoder = build_spec_encoder(spec)
    heads = PretextHeads(encoder.width)
    spec = {**dict(spec), "feature_stride": encoder.feature_stride}
    params = [*encoder.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = warmup_cosine_scheduler(optimizer, cfg.total_steps,
                                        round(cfg.warmup_ratio * cfg.total_steps),
                                        cfg.min_lr_ratio)
    step, minutes, history = 0, 0.0, []
    if last.is_file():
        state = load_checkpoint(last)
        if state.get("pretrain_config") != cfg.to_dict() or state.get("encoder_spec") != spec:
            raise ValueError(f"{last} belongs to another pretraining run (config or encoder "
                             "differ); delete it or use another output folder")
        encoder.load_state_dict(state["encoder"])
        heads.load_state_dict(state["heads"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, minutes, history = state["step"], state["minutes"], state["history"]
        torch.set_rng_state(state["torch_rng"])
        if verbose:
            print(f"[pretrain] resumed at step {step}/{cfg.total_steps}", flush=True)

    def save() -> None:
        save_checkpoint(last, {
            "encoder": encoder.state_dict(), "heads": heads.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "step": step, "minutes": minutes, "history": history,
            "torch_rng": torch.get_rng_state(), "pretrain_config": cfg.to_dict(),
            "encoder_spec": spec,
        })

    dataset = PretextDataset(cfg.images, img_size=spec["img_size"], grid=encoder.grid,
                             seed=cfg.seed, max_objects=max_objects, min_cover=cfg.min_cover)
    session_start, session_steps = time.perf_counter(), 0
    status = "finished"
    encoder.train()
    heads.train()
    while step < cfg.total_steps and status == "finished":
        tick = time.perf_counter()
        for batch in _loader(dataset, _batches(cfg, step), cfg):
            loss, parts = pretext_loss(heads(encoder(batch["images"]).tokens), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            session_steps += 1
            now = time.perf_counter()
            minutes += (now - tick) / 60
            tick = now
            if step % cfg.log_every == 0 or step == cfg.total_steps:
                history.append({"step": step, "loss": round(loss.item(), 4),
                                **{k: round(v, 4) for k, v in parts.items()}})
                if verbose:
                    print(f"[pretrain] step {step}/{cfg.total_steps} loss {loss.item():.3f} "
                          f"({minutes:.1f} min)", flush=True)
            if step % cfg.checkpoint_every == 0:
                save()
            if cfg.max_minutes and minutes >= cfg.max_minutes and step < cfg.total_steps:
                status = "budget"
                break
            if stop_at_step is not None and step >= stop_at_step:
                status = "paused"
                break
    save()
    session = time.perf_counter() - session_start
    speed = session_steps * cfg.batch_size / max(session, 1e-9)
    accuracy: dict[str, float] = {}
    written: Path | None = None
    if status != "paused":
        evaluation = PretextDataset(cfg.eval_images, img_size=spec["img_size"], grid=encoder.grid,
                                    seed=cfg.seed, stream=PRETEXT_EVAL_STREAM,
                                    max_objects=max_objects, min_cover=cfg.min_cover)
        accuracy = pretext_accuracy(encoder, heads, evaluation, cfg.batch_size, cfg.num_workers)
    result = PretrainResult(status, step, step * cfg.batch_size, minutes, speed, accuracy,
                            history, None)
    if status != "paused":
        written = save_encoder(encoder_file or out_dir / "encoder.pt", encoder, spec,
                               result.record())
        result.encoder_file = written
    files.atomic_write_text(out_dir / "pretrain.json",
                             json.dumps({"spec": spec, "config": cfg.to_dict(),
                                         **result.record()}, indent=1) + "\n")
    return result
