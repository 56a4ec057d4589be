"""The encoder to pretrain: exactly the one a run config's captioner builds."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ptlib.models.config import CaptionerConfig
from ptlib.models.encoders import VisualEncoder, build_encoder

ENCODER_KEYS: tuple[str, ...] = ("encoder", "img_size", "feature_stride", "encoder_kwargs")
"""The ``model`` keys that decide the encoder's architecture and its token grid."""


def encoder_spec(model_section: Mapping[str, Any]) -> dict[str, Any]:
    """The encoder part of a run config's ``model`` section, with the captioner's defaults.

    Args:
        model_section: A run config's ``model`` section (e.g. ``shapes_vit``'s).

    Returns:
        ``{"encoder", "img_size", "feature_stride", "encoder_kwargs"}``.
    """
    config = CaptionerConfig.from_dict({**dict(model_section), "vocab_size": 1})
    return {key: getattr(config, key) for key in ENCODER_KEYS}


def build_spec_encoder(spec: Mapping[str, Any]) -> VisualEncoder:
    """A randomly initialised encoder as :meth:`ptlib.models.Captioner.from_config` builds it.

    Args:
        spec: From :func:`encoder_spec`.

    Returns:
        A trainable :class:`~ptlib.models.encoders.VisualEncoder` whose tokens are
        ``(B, h * w, width)``.
    """
    return build_encoder(spec["encoder"], pretrained=False, img_size=spec["img_size"],
                         feature_stride=spec["feature_stride"],
                         encoder_kwargs=spec["encoder_kwargs"])
