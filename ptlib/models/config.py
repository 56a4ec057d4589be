"""The captioner's configuration: a dataclass filled from a run config.

Hyperparameter values are written in one place, the run configs of
``ptlib/configs/runs/`` (:mod:`ptlib.train.runconfig`); the paper's Table 1 is the
run config ``paper_table1``. :func:`config_from_run` builds a
:class:`CaptionerConfig` from a run config (the model that ``ptlib train`` trains),
e.g. ``config_from_run("paper_table1", pretrained=False)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptlib.models.pruning import PRUNE_METHODS, PRUNE_PLACEMENTS, check_ratio
from ptlib.typecheck import check_fields


@dataclass
class CaptionerConfig:
    """Everything :meth:`ptlib.models.Captioner.from_config` needs.

    The values of a trained captioner come from its run config
    (:func:`config_from_run`); the paper's are in the run config ``paper_table1``.
    The defaults below are fallbacks for code that builds a config by hand (tests,
    toy models) and for the options a run config leaves out (e.g. ``positional``);
    ``tests/test_config_single_source.py`` checks that no run config restates a
    default that another shipped run relies on.

    Attributes:
        encoder: timm model name.
        img_size: Input image size (pixels, square; from ``data.img_size``).
        feature_stride: Pixels per token (``None``: the encoder's natural stride;
            16 gives ConvNeXt the same 196 tokens as ViT-B/16 at 224 px).
        pretrained: ``False``, ``True``, a timm tag or a local weights file.
        encoder_kwargs: Extra ``timm.create_model`` arguments that change the encoder's
            architecture (e.g. ``{"patch_size": 8, "depth": 4}``); ``None`` for timm's.
        freeze_encoder: Freeze the encoder (eval mode, no gradients).
        encoder_init: A slim pretrained-encoder checkpoint to start the encoder from
            (:mod:`ptlib.pretrain`; a path, relative ones under the results folder such as
            ``cpu/pretrain/vit/encoder.pt``), or ``None`` for ``pretrained``'s weights.
        d_model: Transformer width.
        n_encoder_layers: Transformer encoder layers over projected tokens.
        n_decoder_layers: Decoder layers.
        n_heads: Attention heads.
        ff_dim: Feed-forward width.
        dropout: Dropout.
        max_len: Longest token sequence, ``<bos>`` and ``<eos>`` included (from
            the run config's ``data.max_len``).
        vocab_size: Vocabulary size including special tokens (from the vocabulary).
        prune_ratio: Fraction of visual tokens removed.
        prune_method: One of :data:`~ptlib.models.pruning.PRUNE_METHODS`.
        prune_at: ``"memory"`` (the paper's) or ``"encoder"`` (inside ViT blocks).
        prune_layers: ViT block indices for ``prune_at="encoder"`` (``None``: 1/4, 1/2, 3/4 depth).
        prune_seed: Seed of the ``"random"`` method.
        fuse_dropped: EViT fusion of dropped tokens (``"cls_attention"`` only).
        positional: Positional encoding of visual tokens: ``"sincos"``, ``"learned"``, ``"none"``.
        tie_weights: Tie the output head to the token embedding.
        norm_first: Pre-norm decoder layers instead of the paper's post-norm.
    """

    encoder: str = "vit_base_patch16_224"
    img_size: int = 224
    feature_stride: int | None = None
    pretrained: bool | str = False
    encoder_kwargs: dict[str, Any] | None = None
    freeze_encoder: bool = False
    encoder_init: str | None = None
    d_model: int = 512
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    n_heads: int = 4
    ff_dim: int = 2048
    dropout: float = 0.1
    max_len: int = 32
    vocab_size: int = 2033
    prune_ratio: float = 0.3
    prune_method: str = "norm"
    prune_at: str = "memory"
    prune_layers: list[int] | None = None
    prune_seed: int | None = None
    fuse_dropped: bool = False
    positional: str = "sincos"
    tie_weights: bool = False
    norm_first: bool = False

    def __post_init__(self) -> None:
        check_ratio(self.prune_ratio, "prune_ratio")
        if self.prune_method not in PRUNE_METHODS:
            raise ValueError(f"prune_method={self.prune_method!r}: use one of {PRUNE_METHODS}")
        if self.prune_at not in PRUNE_PLACEMENTS:
            raise ValueError(f"prune_at={self.prune_at!r}: use one of {PRUNE_PLACEMENTS}")
        for name in ("img_size", "d_model", "n_heads", "ff_dim", "max_len", "vocab_size"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")

    @classmethod
    def field_names(cls) -> list[str]:
        """The valid keys."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str | None = None) -> CaptionerConfig:
        """Build from a plain dict (e.g. read from YAML).

        A dict with a ``model`` section (a whole config file) uses that section.

        Args:
            values: The config keys and values.
            source: The file the values come from, named at the start of an error
                (``None``: the values are a run config's ``model`` section, which the
                error names through its keys, e.g. ``model.d_model='abc'``).

        Raises:
            ValueError: On unknown keys (naming them and listing the valid ones) or a
                value of the wrong type (naming the key).
        """
        if "model" in values and isinstance(values["model"], Mapping):
            values = values["model"]
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ValueError(
                f"{source or 'model'}: unknown captioner config keys {unknown}; "
                f"valid keys: {cls.field_names()}"
            )
        try:
            check_fields(cls, values, "model")
        except ValueError as err:
            raise ValueError(f"{source}: {err}" if source else str(err)) from None
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """A plain dict (JSON/YAML-serialisable)."""
        return dataclasses.asdict(self)


def config_from_run(
    run: str | Path | Mapping[str, Any], *, vocab_size: int | None = None, **overrides: Any
) -> CaptionerConfig:
    """The captioner of a run config: the model that ``ptlib train`` trains from it.

    ``config_from_run("paper_table1")`` is the paper's Table 1 (ViT-B/16 at 224 px,
    ``vocab_size`` 2033; its ``pretrained: true`` downloads ImageNet weights, so pass
    ``pretrained=False`` to build it offline).

    Args:
        run: A shipped run config name (e.g. ``ptlib.course.run_config_names(profile)
            ["vit"]``), a YAML path, or a run config already resolved by
            :func:`ptlib.train.load_run_config` (e.g. with ``--set`` overrides).
        vocab_size: From the vocabulary built from the data; ``None``: the run
            config's vocabulary cap ``data.vocab_max_size`` (an upper bound).
        **overrides: Any :class:`CaptionerConfig` field (e.g. ``pretrained=False``).

    Raises:
        FileNotFoundError: If ``run`` is neither a shipped run config nor a file.
        ValueError: On unknown keys, a bad value, or no vocabulary size to use.
    """
    from ptlib.train.runconfig import load_run_config

    config = run if isinstance(run, Mapping) else load_run_config(run)
    if vocab_size is None:
        vocab_size = config.get("data", {}).get("vocab_max_size")
        if vocab_size is None:
            raise ValueError(f"run config {config.get('name')!r}: pass vocab_size= (it has no "
                             "data.vocab_max_size)")
    values = {**dict(config["model"]), "vocab_size": int(vocab_size), **overrides}
    return CaptionerConfig.from_dict(values)

