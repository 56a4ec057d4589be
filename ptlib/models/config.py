"""The captioner's configuration: a dataclass, YAML files, profile sections.

``ptlib/configs/paper_table1.yaml`` ships the paper's Table 1 (its ``model``
section is a :class:`CaptionerConfig`; its ``train`` section is for the
training engine). :func:`load_config` reads it by name or path.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ptlib.course import Profile
from ptlib.models.pruning import PRUNE_METHODS, PRUNE_PLACEMENTS, check_ratio
from ptlib.typecheck import check_fields


@dataclass
class CaptionerConfig:
    """Everything :meth:`ptlib.models.Captioner.from_config` needs.

    Defaults are the paper's Table 1 with a ViT-B/16 encoder at 224 px.

    Attributes:
        encoder: timm model name.
        img_size: Input image size (pixels, square).
        feature_stride: Pixels per token (``None``: the encoder's natural stride;
            16 gives ConvNeXt the same 196 tokens as ViT-B/16 at 224 px).
        pretrained: ``False``, ``True``, a timm tag or a local weights file.
        encoder_kwargs: Extra ``timm.create_model`` arguments that change the encoder's
            architecture (e.g. ``{"patch_size": 8, "depth": 4}``); ``None`` for timm's.
        freeze_encoder: Freeze the encoder (eval mode, no gradients).
        encoder_init: A slim pretrained-encoder checkpoint to start the encoder from
            (:mod:`ptlib.pretrain`; a path, relative ones under the results folder such as
            ``cpu/pretrain/vit/encoder.pt``), or ``None`` for ``pretrained``'s weights.
        d_model: Transformer width (Table 1: 512).
        n_encoder_layers: Transformer encoder layers over projected tokens (Table 1: 2).
        n_decoder_layers: Decoder layers (Table 1: 2).
        n_heads: Attention heads (Table 1: 4).
        ff_dim: Feed-forward width (Table 1: 2048).
        dropout: Dropout (Table 1: 0.1).
        max_len: Longest token sequence, ``<bos>`` and ``<eos>`` included.
        vocab_size: Vocabulary size including special tokens (Table 1: 2033).
        prune_ratio: Fraction of visual tokens removed (Table 1: 0.3).
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


def load_config(name_or_path: str | Path = "paper_table1") -> CaptionerConfig:
    """Read a captioner config from ``ptlib/configs/NAME.yaml`` or a YAML file path.

    Raises:
        FileNotFoundError: If neither a shipped config nor the file exists.
        ValueError: On unknown keys.
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        text, source = path.read_text(), str(path)
    else:
        ref = resources.files("ptlib.configs").joinpath(f"{name_or_path}.yaml")
        if not ref.is_file():
            raise FileNotFoundError(
                f"no shipped config {name_or_path!r} (looked for ptlib/configs/{name_or_path}.yaml)"
            )
        text, source = ref.read_text(), f"ptlib/configs/{name_or_path}.yaml"
    values = yaml.safe_load(text) or {}
    return CaptionerConfig.from_dict(values, source=source)


PROFILE_EXTRA_KEYS: tuple[str, ...] = ("encoders", "prune_ratios")
"""Keys of a profile's ``model`` section that are not :class:`CaptionerConfig` fields."""


def config_from_profile(
    profile: Profile, *, backbone: str = "vit", vocab_size: int, **overrides: Any
) -> CaptionerConfig:
    """A config sized by a course profile (``course.get_profile()``).

    The profile's ``model`` section names one encoder per backbone under
    ``encoders`` (e.g. ``{vit: vit_tiny_patch16_224, convnext: convnext_atto}``)
    and holds captioner keys; ``img_size`` and ``max_len`` come from its
    ``data`` section so images and captions always fit the model.

    Args:
        profile: The active :class:`ptlib.course.Profile`.
        backbone: Key into ``encoders`` (``"vit"`` or ``"convnext"``).
        vocab_size: From the dataset's vocabulary.
        **overrides: Any :class:`CaptionerConfig` field.

    Raises:
        ValueError: On an unknown backbone or unknown keys in the section.
    """
    section = profile.section("model")
    data = profile.section("data")
    source = f"ptlib/configs/profiles.yaml, profile {profile.name!r}, section model"
    encoders = section.get("encoders", {})
    if backbone not in encoders:
        raise ValueError(f"{source}: no encoder for backbone {backbone!r}; it has {sorted(encoders)}")
    values = {k: v for k, v in section.items() if k not in PROFILE_EXTRA_KEYS}
    values["encoder"] = encoders[backbone]
    for key in ("img_size", "max_len"):
        if key in data and key not in values:
            values[key] = data[key]
    values.update(vocab_size=vocab_size, **overrides)
    return CaptionerConfig.from_dict(values, source=source)
