"""The training loop: teacher forcing, checkpoints, resume, signals, history.

The model is anything whose ``forward(images, tokens)`` returns an object with
``logits`` ``(B, T, V)`` and ``aux_loss`` (a scalar tensor, e.g. the learned
pruner's keep-ratio loss), such as :class:`ptlib.models.Captioner`. A batch is a
mapping or object with ``images`` ``(B, 3, H, W)`` (or cached encoder features)
and ``tokens`` ``(B, T)``: ``<bos> w1 ... wn <eos> <pad>...``.

One optimizer step sees ``grad_accum`` micro-batches. The loss of a micro-batch
is its summed token cross-entropy divided by the number of caption tokens in the
global micro-batch (all processes together), so one process with batch ``B`` and
``N`` processes with batch ``B / N`` take the same steps.

Files written into ``out_dir`` (by the main process only): ``last.pt`` after
every epoch and on interruption, ``best.pt`` when validation CIDEr-D improves
(validation loss when captions are not scored), ``history.json`` and
``history.csv``.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ptlib.metrics.accuracy import token_accuracy_counts
from ptlib.train.checkpoint import (
    CheckpointError,
    check_weights_match,
    config_differences,
    load_checkpoint,
    remove_stale_temp_files,
    save_checkpoint,
)
from ptlib.train.config import TrainConfig
from ptlib.train.distributed import DistEnv, all_reduce_sum, broadcast_flag
from ptlib.train.history import write_history
from ptlib.train.resume import EpochSampler, capture_rng_state, restore_rng_state
from ptlib.train.step import (
    autocast,
    caption_loss_sum,
    make_scaler,
    resolve_amp,
    warmup_cosine_scheduler,
)

EvaluateFn = Callable[[nn.Module], Mapping[str, float]]
"""Scores a model's generated validation captions; returns at least ``CIDEr-D``."""


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` did.

    Attributes:
        status: ``"finished"``, ``"paused"`` (stopped at ``stop_at_epoch``),
            ``"early_stopped"``, ``"interrupted"`` (SIGINT/SIGTERM) or ``"nan"``.
        history: One row per completed epoch (see :data:`ptlib.train.history.HISTORY_COLUMNS`).
        last_checkpoint: Path of ``last.pt`` (``None`` if none was written).
        best_checkpoint: Path of ``best.pt`` (``None`` if none was written).
        message: A sentence for the user about how the run ended.
        skipped: ``(file, reason)`` of images left out while training because they
            could not be read (dataset policy ``on_bad_image="skip"``).
        dropped: ``(where, reason)`` of captions or images the annotation files listed
            but the data left out (empty captions); filled by :func:`ptlib.train.train_run`.
    """

    status: str
    history: list[dict[str, Any]] = field(default_factory=list)
    last_checkpoint: Path | None = None
    best_checkpoint: Path | None = None
    message: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    dropped: list[tuple[str, str]] = field(default_factory=list)


class StopSignal:
    """Turns SIGINT/SIGTERM into a flag the loop checks between optimizer steps."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopSignal]:
        """Install the handlers for the duration of a ``with`` block (main thread only)."""
        previous = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._handler)
        except ValueError:  # not in the main thread: signals stay with their owner
            previous = {}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _field(batch: Any, name: str) -> Any:
    if isinstance(batch, Mapping):
        return batch[name]
    return getattr(batch, name)


def _to_device(value: Any, device: torch.device) -> Any:
    """A tensor, or a dict of tensors (cached features), on ``device``."""
    if isinstance(value, Mapping):
        return {k: v.to(device, non_blocking=True) for k, v in value.items()}
    return value.to(device, non_blocking=True)


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases, norms or embeddings' scales)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


class Trainer:
    """Trains a captioner with teacher forcing; see the module docstring.

    Args:
        model: The captioner (already on ``device``).
        train_set: Training dataset; if it has ``set_epoch(epoch)`` it is called
            before every epoch (e.g. to draw one reference per image per epoch).
        val_set: Validation dataset in the same (training) format, for the
            teacher-forced validation loss and token accuracy; ``None`` skips them.
        cfg: Training hyperparameters.
        out_dir: Folder for checkpoints and history.
        collate_fn: Turns a list of samples into a batch.
        val_collate_fn: The same for ``val_set`` (default ``collate_fn``).
        device: Where the model runs.
        evaluate_fn: Scores generated validation captions (called on the main
            process every ``cfg.eval_every`` epochs); ``None`` skips it.
        checkpoint_extra: Plain data stored in every checkpoint (the run config,
            the vocabulary): what :func:`ptlib.train.load_captioner` needs.
        dist_env: This process's place in a distributed run.
        show_progress: Show a tqdm bar per epoch (main process only).
        pin_memory: Load batches into page-locked memory, so that the
            ``non_blocking`` copies to the GPU overlap with compute. Default: on
            for CUDA devices only.
    """

    def __init__(
        self,
        model: nn.Module,
        train_set: Dataset,
        val_set: Dataset | None,
        cfg: TrainConfig,
        out_dir: str | Path,
        *,
        collate_fn: Callable[[list[Any]], Any],
        device: torch.device,
        val_collate_fn: Callable[[list[Any]], Any] | None = None,
        evaluate_fn: EvaluateFn | None = None,
        checkpoint_extra: Mapping[str, Any] | None = None,
        dist_env: DistEnv | None = None,
        show_progress: bool = True,
        pin_memory: bool | None = None,
    ) -> None:
        self.cfg = cfg
        self.pin_memory = device.type == "cuda" if pin_memory is None else pin_memory
        self.device = device
        self.env = dist_env or DistEnv()
        self.out_dir = Path(out_dir)
        self.train_set, self.val_set = train_set, val_set
        self.collate_fn = collate_fn
        self.val_collate_fn = val_collate_fn or collate_fn
        self.evaluate_fn = evaluate_fn
        self.checkpoint_extra = dict(checkpoint_extra or {})
        self.show_progress = show_progress and self.env.is_main
        if cfg.batch_size % (self.env.world_size * cfg.grad_accum):
            raise ValueError(
                f"train.batch_size={cfg.batch_size} must be divisible by world size "
                f"{self.env.world_size} x grad_accum {cfg.grad_accum}"
            )
        self.micro_batch = cfg.batch_size // (self.env.world_size * cfg.grad_accum)
        self.model = model
        self.ddp_model: nn.Module = model
        if self.env.distributed:
            ids = [device.index] if device.type == "cuda" else None
            self.ddp_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        self.sampler = EpochSampler(
            len(train_set),
            shuffle=True,
            seed=cfg.seed,
            rank=self.env.rank,
            world_size=self.env.world_size,
        )
        # A private generator: creating a DataLoader iterator then draws no number from
        # the global RNG, so a run resumed in the middle of an epoch keeps the exact
        # random stream (dropout) of the uninterrupted run.
        self.loader_generator = torch.Generator()
        self.loader = DataLoader(
            train_set,
            batch_size=self.micro_batch,
            sampler=self.sampler,
            collate_fn=collate_fn,
            num_workers=cfg.num_workers,
            pin_memory=self.pin_memory,
            drop_last=False,
            generator=self.loader_generator,
        )
        micro_per_epoch = math.ceil(len(self.sampler) / self.micro_batch)
        self.steps_per_epoch = math.ceil(micro_per_epoch / cfg.grad_accum)
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.optimizer = build_optimizer(model, cfg)
        self.scheduler = warmup_cosine_scheduler(
            self.optimizer,
            total_steps=self.total_steps,
            warmup_steps=int(cfg.warmup_ratio * self.total_steps),
            min_ratio=cfg.min_lr_ratio,
        )
        self.amp_dtype = resolve_amp(cfg.amp, device)
        self.scaler = make_scaler(device, self.amp_dtype)
        # Progress of the run (restored on resume).
        self.epoch = 0  # epochs completed
        self.batch_in_epoch = 0  # micro-batches of the current epoch already done
        self.step = 0  # optimizer steps taken
        self.history: list[dict[str, Any]] = []
        self.partial: dict[str, float] = {}
        self.best_score: float | None = None
        self.validations_without_gain = 0
        self.skipped_images: dict[str, str] = {}  # file -> reason, found bad while training

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (plain data only)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": capture_rng_state(),
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "history": self.history,
            "partial": self.partial,
            "best_score": self.best_score,
            "validations_without_gain": self.validations_without_gain,
            "train_config": self.cfg.to_dict(),
            **self.checkpoint_extra,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`state_dict`."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.partial = dict(state["partial"])
        self.best_score = state["best_score"]
        self.validations_without_gain = int(state["validations_without_gain"])

    def _save(self, name: str) -> Path | None:
        if not self.env.is_main:
            return None
        return save_checkpoint(self.out_dir / name, self.state_dict())

    def resume(self, path: str | Path) -> None:
        """Load ``path`` and check that it belongs to this run's configuration.

        Nothing is loaded unless the saved train section, model and data sections,
        vocabulary size and weight shapes all match this run.

        Raises:
            CheckpointError: The file cannot be read, or differs from this run
                (the differing keys are named).
        """
        remove_stale_temp_files(self.out_dir)
        state = load_checkpoint(path, map_location=self.device)
        current = self.cfg.to_dict()
        changed = config_differences(dict(state.get("train_config", {})), current, "train",
                                     ignore=("num_workers", "log_every"))
        saved_run = state.get("run_config")
        this_run = self.checkpoint_extra.get("run_config")
        if isinstance(saved_run, Mapping) and isinstance(this_run, Mapping):
            changed += config_differences(dict(saved_run.get("model", {})),
                                          dict(this_run.get("model", {})), "model")
            changed += config_differences(dict(saved_run.get("data", {})),
                                          dict(this_run.get("data", {})), "data",
                                          ignore=("num_workers", "coco_root"))
        saved_vocab, this_vocab = state.get("vocab"), self.checkpoint_extra.get("vocab")
        if isinstance(saved_vocab, Mapping) and isinstance(this_vocab, Mapping):
            sizes = len(saved_vocab.get("itos", [])), len(this_vocab.get("itos", []))
            if sizes[0] != sizes[1]:
                changed.append(f"vocabulary size: {sizes[0]} -> {sizes[1]}")
        if changed:
            raise CheckpointError(
                f"cannot resume from {path}: the run config changed ({'; '.join(changed)}); "
                "resume with the same config, or start a new run in another folder"
            )
        missing = [k for k in ("model", "optimizer", "scheduler", "scaler", "rng", "epoch",
                               "batch_in_epoch", "step", "history", "partial", "best_score",
                               "validations_without_gain") if k not in state]
        if missing:
            raise CheckpointError(f"cannot resume from {path}: it lacks {', '.join(missing)} "
                                  "(not a training checkpoint of ptlib train)")
        check_weights_match(self.model, state["model"], path)
        self.load_state_dict(state)

    # --------------------------------------------------------------- the loop

    def _forward_loss(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int, Any]:
        images = _to_device(_field(batch, "images"), self.device)
        tokens = _field(batch, "tokens").to(self.device, non_blocking=True)
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        with autocast(self.device, self.amp_dtype):
            out = self.ddp_model(images, inputs)
        loss_sum, n_tokens = caption_loss_sum(
            out.logits, targets, label_smoothing=self.cfg.label_smoothing
        )
        aux = getattr(out, "aux_loss", None)
        aux = aux.float() if isinstance(aux, torch.Tensor) else torch.zeros((), device=self.device)
        return loss_sum, aux, n_tokens, (out.logits.detach(), targets)

    def _train_epoch(self, stop: StopSignal) -> str:
        """Run (the rest of) one epoch; returns ``"done"``, ``"interrupted"`` or ``"nan"``."""
        cfg = self.cfg
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(self.epoch)
        self.sampler.set_epoch(self.epoch)
        self.loader_generator.manual_seed(cfg.seed * 1_000_003 + self.epoch)
        self.sampler.set_start(self.batch_in_epoch * self.micro_batch)
        if self.batch_in_epoch == 0:
            self.partial = {"loss": 0.0, "tokens": 0.0, "top1": 0.0, "top5": 0.0,
                            "images": 0.0, "seconds": 0.0}
        self.ddp_model.train()
        total_micro = self.batch_in_epoch + math.ceil(len(self.sampler) / self.micro_batch)
        bar = tqdm(
            total=total_micro,
            initial=self.batch_in_epoch,
            desc=f"Epoch {self.epoch + 1}/{cfg.epochs}",
            disable=not self.show_progress,
            leave=True,
            file=sys.stdout,
        )
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        status = "done"
        for batch in self.loader:
            for file, reason in getattr(batch, "skipped", None) or []:
                self.skipped_images.setdefault(file, reason)
            index = self.batch_in_epoch
            last_of_step = (index + 1) % cfg.grad_accum == 0 or index + 1 == total_micro
            sync = contextlib.nullcontext()
            if self.env.distributed and not last_of_step:
                sync = self.ddp_model.no_sync()
            with sync:
                loss_sum, aux, n_tokens, (logits, targets) = self._forward_loss(batch)
                global_tokens = all_reduce_sum([float(n_tokens)], self.env, self.device)[0]
                loss = loss_sum / max(global_tokens, 1.0) * self.env.world_size + aux
                not_finite = not bool(torch.isfinite(loss))
                if broadcast_flag(not_finite, self.env, self.device):
                    status = "nan"
                    break
                self.scaler.scale(loss / cfg.grad_accum).backward()
            correct, _ = token_accuracy_counts(logits, targets, topk=(1, 5))
            self.partial["loss"] += float(loss_sum.detach())
            self.partial["tokens"] += n_tokens
            self.partial["top1"] += float(correct[0])
            self.partial["top5"] += float(correct[1])
            self.partial["images"] += targets.shape[0]
            self.batch_in_epoch += 1
            if last_of_step:
                if cfg.grad_clip > 0:
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                self.step += 1
            bar.update(1)
            if self.batch_in_epoch % cfg.log_every == 0 or self.batch_in_epoch == total_micro:
                tokens_seen = max(self.partial["tokens"], 1.0)
                bar.set_postfix(
                    acc=f"{100 * self.partial['top1'] / tokens_seen:.2f}%",
                    loss=f"{self.partial['loss'] / tokens_seen:.4f}",
                    refresh=False,  # the bar redraws at its own pace (TQDM_MININTERVAL)
                )
            if last_of_step and broadcast_flag(stop.requested, self.env, self.device):
                status = "interrupted"
                break
        bar.close()
        self.partial["seconds"] += time.perf_counter() - start
        return status

    @torch.no_grad()
    def validate_loss(self) -> dict[str, float]:
        """Teacher-forced loss and token accuracy on the validation set (all processes)."""
        if self.val_set is None:
            return {}
        sampler = EpochSampler(len(self.val_set), shuffle=False, rank=self.env.rank,
                               world_size=self.env.world_size)
        loader = DataLoader(self.val_set, batch_size=self.micro_batch, sampler=sampler,
                            collate_fn=self.val_collate_fn, num_workers=self.cfg.num_workers,
                            pin_memory=self.pin_memory,
                            generator=torch.Generator().manual_seed(self.cfg.seed))
        self.model.eval()
        totals = [0.0, 0.0, 0.0, 0.0]
        for batch in loader:
            images = _to_device(_field(batch, "images"), self.device)
            tokens = _field(batch, "tokens").to(self.device, non_blocking=True)
            with autocast(self.device, self.amp_dtype):
                out = self.model(images, tokens[:, :-1])
            loss_sum, n_tokens = caption_loss_sum(out.logits, tokens[:, 1:])
            correct, _ = token_accuracy_counts(out.logits, tokens[:, 1:], topk=(1, 5))
            totals = [t + float(v) for t, v in
                      zip(totals, (loss_sum, n_tokens, correct[0], correct[1]), strict=True)]
        loss, n_tokens, top1, top5 = all_reduce_sum(totals, self.env, self.device)
        n_tokens = max(n_tokens, 1.0)
        return {"val_loss": loss / n_tokens, "val_token_acc": top1 / n_tokens,
                "val_token_top5": top5 / n_tokens}

    def _end_of_epoch(self) -> bool:
        """Validate, record history, write checkpoints; returns True when to stop early."""
        cfg = self.cfg
        tokens = max(self.partial["tokens"], 1.0)
        seconds = self.partial["seconds"]
        totals = all_reduce_sum([self.partial["loss"], tokens, self.partial["top1"],
                                 self.partial["top5"], self.partial["images"]],
                                self.env, self.device)
        row: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "step": self.step,
            "lr": self.scheduler.get_last_lr()[0],
            "train_loss": totals[0] / totals[1],
            "train_token_acc": totals[2] / totals[1],
            "train_token_top5": totals[3] / totals[1],
            "seconds": round(seconds, 3),
            "images_per_s": round(totals[4] / max(seconds, 1e-9), 2),
            "val_cider": None,
            "val_bleu4": None,
        }
        row.update(self.validate_loss())
        due = cfg.eval_every > 0 and (
            (self.epoch + 1) % cfg.eval_every == 0 or self.epoch + 1 == cfg.epochs
        )
        score: float | None = None
        if self.evaluate_fn is not None and due:
            metrics: Mapping[str, float] = {}
            if self.env.is_main:
                metrics = self.evaluate_fn(self.model)
            cider = all_reduce_sum([float(metrics.get("CIDEr-D", 0.0))], self.env, self.device)[0]
            bleu4 = all_reduce_sum([float(metrics.get("BLEU-4", 0.0))], self.env, self.device)[0]
            row["val_cider"], row["val_bleu4"] = cider, bleu4
            for key, value in metrics.items():
                if isinstance(value, int | float) and key not in ("CIDEr-D", "BLEU-4"):
                    row[f"val_{key}"] = value
            score = cider
        elif self.evaluate_fn is None and "val_loss" in row:
            score = -row["val_loss"]
        self.history.append(row)
        self.epoch += 1
        self.batch_in_epoch = 0
        self.partial = {}
        improved = score is not None and (self.best_score is None or score > self.best_score)
        if improved:
            self.best_score = score
            self.validations_without_gain = 0
        elif score is not None:
            self.validations_without_gain += 1
        self._save("last.pt")
        if improved:
            self._save("best.pt")
        if self.env.is_main:
            write_history(self.history, self.out_dir)
        return bool(cfg.early_stopping and self.validations_without_gain >= cfg.early_stopping)

    def fit(self, resume: str | Path | None = None, stop_at_epoch: int | None = None) -> FitResult:
        """Train until ``cfg.epochs`` (or ``stop_at_epoch``) epochs are complete.

        Args:
            resume: A checkpoint to continue from, or ``"auto"`` for
                ``out_dir/last.pt`` when it exists.
            stop_at_epoch: Pause after this many completed epochs (the run can be
                resumed later and ends exactly as an uninterrupted one).

        Returns:
            How the run ended, with its history and checkpoint paths.
        """
        last, best = self.out_dir / "last.pt", self.out_dir / "best.pt"
        if self.env.is_main:
            remove_stale_temp_files(self.out_dir)
        if resume == "auto":
            resume = last if last.is_file() else None
        if resume is not None:
            self.resume(resume)
        target = self.cfg.epochs if stop_at_epoch is None else min(stop_at_epoch, self.cfg.epochs)
        stop = StopSignal()
        status = "finished"
        with stop.installed():
            while self.epoch < target:
                outcome = self._train_epoch(stop)
                if outcome == "nan":
                    status = "nan"
                    break
                if outcome == "interrupted":
                    self._save("last.pt")
                    status = "interrupted"
                    break
                if self._end_of_epoch():
                    status = "early_stopped"
                    break
            else:
                if target < self.cfg.epochs:
                    status = "paused"
        messages = {
            "finished": f"trained {self.epoch} epochs",
            "paused": f"paused after epoch {self.epoch} of {self.cfg.epochs}; resume to continue",
            "early_stopped": f"stopped early after epoch {self.epoch}: validation CIDEr-D did "
            f"not improve for {self.cfg.early_stopping} validations",
            "interrupted": f"interrupted by {stop.signal_name or 'a signal'} in epoch "
            f"{self.epoch + 1} (batch {self.batch_in_epoch}); saved {last}; "
            "run the same command with --resume to continue",
            "nan": f"the loss became NaN/inf in epoch {self.epoch + 1} at batch "
            f"{self.batch_in_epoch}; training stopped and the last good checkpoint "
            f"({last if last.is_file() else 'none yet'}) was kept. " + (
                f"Lower train.lr (gradient clipping is already on: train.grad_clip="
                f"{self.cfg.grad_clip})" if self.cfg.grad_clip > 0 else
                "Lower train.lr or set train.grad_clip (e.g. 1.0)"),
        }
        return FitResult(
            status=status,
            history=list(self.history),
            last_checkpoint=last if last.is_file() else None,
            best_checkpoint=best if best.is_file() else None,
            message=messages[status],
            skipped=sorted(self.skipped_images.items()),
        )
