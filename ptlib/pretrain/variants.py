"""Captioners that start from a pretrained encoder: frozen or fine-tuned.

``frozen``: the encoder keeps its pretrained weights (``model.freeze_encoder``)
and its tokens are computed once per image (``train.cache_features``), so only
the projection and the decoder train. ``finetuned``: the encoder starts from the
pretrained weights and trains with the rest.

The shipped run configs ``shapes_<model>_pretrained_<variant>.yaml`` are the
cpu profile's captioners; :func:`variant_overrides` gives the same settings as
``--set`` overrides of any profile's run config (a test checks they agree).
"""

from __future__ import annotations

from typing import Any

from ptlib import course
from ptlib.pretrain.job import encoder_init_value, pretrain_model, pretrained_encoder

VARIANTS: dict[str, tuple[str, ...]] = {
    "frozen": ("model.freeze_encoder=true", "train.cache_features=true"),
    "finetuned": (),
}
"""Overrides of each way to use the pretrained encoder (beyond ``model.encoder_init``)."""


def variant_overrides(name: str, variant: str, profile: course.Profile | str | None = None
                      ) -> list[str]:
    """``--set`` overrides turning the profile's run config into a pretrained captioner.

    Args:
        name: A pretrained encoder of the profile (``vit``, ``convnext``, ``convnext_s16``).
        variant: ``"frozen"`` or ``"finetuned"``.
        profile: A profile or its name (default: the active one).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    if not isinstance(profile, course.Profile):
        profile = course.get_profile(profile)
    model = pretrain_model(profile, name)
    return [*model.overrides, f"model.encoder_init={encoder_init_value(profile, name)}",
            *VARIANTS[variant]]


def pretrained_captioner(name: str, variant: str, profile: course.Profile | str | None = None,
                         *, force: bool = False, splits: tuple[str, ...] = ("test",
                                                                             "compositional")
                         ) -> Any:
    """Train (or load) a captioner from a pretrained encoder, pretraining it first if needed.

    Returns:
        A :class:`ptlib.experiments.captioners.TrainedRun` (run name
        ``<run config>_<suffix>pretrained_<variant>``).
    """
    from ptlib.experiments.captioners import trained_captioner

    if not isinstance(profile, course.Profile):
        profile = course.get_profile(profile)
    model = pretrain_model(profile, name)
    pretrained_encoder(name, profile)
    suffix = name[len(model.backbone) + 1:] + "_" if name != model.backbone else ""
    return trained_captioner(model.backbone, profile,
                             overrides=variant_overrides(name, variant, profile),
                             splits=splits, tag=f"{suffix}pretrained_{variant}", force=force)
