"""How long and how hard to pretrain: :class:`PretrainConfig` (a profile's ``pretrain`` section)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from ptlib.typecheck import check_fields


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of one pretext-training run.

    Attributes:
        images: Distinct pretext images (stream indices ``0 .. images - 1``).
        epochs: Passes over them (each in a fresh seeded order).
        batch_size: Images per optimizer step.
        lr: Peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_ratio: Fraction of the steps spent warming up linearly.
        min_lr_ratio: The cosine schedule ends at ``lr * min_lr_ratio``.
        grad_clip: Gradient-norm clip (0: none).
        seed: Seed of the initialisation, the image order and the image stream.
        max_minutes: Stop (checkpointed, resumable) after this much training time
            over all sessions; 0 for no limit. A safety net: size ``images`` and
            ``epochs`` so the schedule ends first.
        checkpoint_every: Save a resumable checkpoint every this many steps.
        eval_images: Images of the evaluation stream that measure pretext accuracy.
        probe_images: Images (half to fit, half to score) of the per-token linear probe.
        min_cover: Fraction of a patch an object must cover to label its token.
        num_workers: DataLoader processes drawing images (0: in the training process).
        log_every: Record the training loss every this many steps.
    """

    images: int = 20000
    epochs: int = 1
    batch_size: int = 64
    lr: float = 1.0e-3
    weight_decay: float = 0.05
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    max_minutes: float = 0.0
    checkpoint_every: int = 100
    eval_images: int = 500
    probe_images: int = 400
    min_cover: float = 0.25
    num_workers: int = 0
    log_every: int = 20

    def __post_init__(self) -> None:
        positive = ("images", "epochs", "batch_size", "checkpoint_every", "eval_images",
                    "probe_images", "log_every")
        bad = [name for name in positive if getattr(self, name) < 1]
        bad += [name for name in ("lr",) if getattr(self, name) <= 0]
        bad += [name for name in ("weight_decay", "grad_clip", "max_minutes", "num_workers")
                if getattr(self, name) < 0]
        bad += [name for name in ("warmup_ratio", "min_lr_ratio", "min_cover")
                if not 0 <= getattr(self, name) <= 1]
        if self.batch_size > self.images:
            bad.append("batch_size")
        if self.probe_images < 2:
            bad.append("probe_images")
        if bad:
            values = ", ".join(f"{n}={getattr(self, n)!r}" for n in bad)
            raise ValueError(f"pretrain: invalid {values} (see ptlib.pretrain.PretrainConfig)")

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps per pass (the last partial batch is dropped)."""
        return self.images // self.batch_size

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole run."""
        return self.epochs * self.steps_per_epoch

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PretrainConfig:
        """Build from a mapping (a profile's ``pretrain`` section without ``models``).

        Raises:
            ValueError: On unknown keys or values of the wrong type, naming them.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"pretrain: unknown keys {unknown}; known keys: {sorted(known)}")
        check_fields(cls, values, "pretrain")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for result records and checkpoints)."""
        return asdict(self)
