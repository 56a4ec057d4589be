"""Training hyperparameters (the ``train`` section of a run config)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ptlib.typecheck import check_fields


@dataclass
class TrainConfig:
    """How a captioner is trained.

    Attributes:
        epochs: Passes over the training images.
        batch_size: Global batch (split over processes in distributed training).
        lr: Peak learning rate of AdamW (Table 1: 1e-3).
        weight_decay: AdamW weight decay (not applied to biases and norms).
        betas: AdamW betas.
        warmup_ratio: Fraction of all optimizer steps spent in linear warm-up.
        min_lr_ratio: Final learning rate as a fraction of ``lr`` (cosine decay).
        grad_clip: Clip the global gradient norm to this value (0 disables).
        grad_accum: Micro-batches per optimizer step.
        label_smoothing: Cross-entropy label smoothing.
        amp: ``"auto"`` (bf16 where CUDA supports it, else fp16 with a scaler; off on
            CPU), ``"off"``, ``"bf16"`` or ``"fp16"``.
        eval_every: Generate and score validation captions every this many epochs
            (and after the last); 0 disables generation-based validation.
        eval_max_images: Cap on validation images captioned during training (0 = all).
        early_stopping: Stop after this many validations without a better CIDEr (0 = never).
        num_workers: DataLoader worker processes.
        seed: Seed of the run (data order, dropout, initialisation).
        max_len: Longest generated caption during validation, in tokens.
        cache_features: Train the decoder from cached encoder features (only with a
            frozen encoder): the images are encoded once.
        log_every: Update the progress bar's loss/accuracy every this many steps.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    grad_accum: int = 1
    label_smoothing: float = 0.0
    amp: str = "auto"
    eval_every: int = 1
    eval_max_images: int = 0
    early_stopping: int = 0
    num_workers: int = 0
    seed: int = 0
    max_len: int = 24
    cache_features: bool = False
    log_every: int = 10

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # YAML gives a list
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "warmup_ratio": 0 <= self.warmup_ratio < 1,
            "min_lr_ratio": 0 <= self.min_lr_ratio <= 1,
            "grad_clip": self.grad_clip >= 0,
            "grad_accum": self.grad_accum >= 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "amp": self.amp in ("auto", "off", "bf16", "fp16"),
            "eval_every": self.eval_every >= 0,
            "eval_max_images": self.eval_max_images >= 0,
            "early_stopping": self.early_stopping >= 0,
            "num_workers": self.num_workers >= 0,
            "seed": self.seed >= 0,
            "max_len": self.max_len >= 2,
            "log_every": self.log_every >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{n}={getattr(self, n)!r}" for n in bad)
            raise ValueError(f"train config: invalid {values} (see ptlib.train.TrainConfig)")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping (e.g. the ``train`` section of a YAML config).

        Raises:
            ValueError: On unknown keys (the message lists the known ones) or a value of
                the wrong type (naming the key: ``train.epochs=2.5: must be an integer``).
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"train config: unknown keys {unknown}; known keys: {sorted(known)}")
        check_fields(cls, values, "train")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (for checkpoints and result records)."""
        values = asdict(self)
        values["betas"] = list(self.betas)
        return values
