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
from ptlib.pretrain.job import (
    encoder_init_value,
    pretrain_model,
    pretrain_models,
    pretrained_encoder,
)

SHARED: tuple[str, ...] = ("data.relation_rule=dominant", "model.prune_ratio=0",
                           "model.prune_method=none")
"""Overrides of every pretrained captioner.

Trained without pruning, like the pruning study's captioners (chapter 7): the stored
test scores are at prune ratio 0, and :func:`ptlib.models.reprune` prunes at inference.

With the default ``relation_rule: any`` a
reference states any true relation of any pair, so a diagonal pair is "left of" in one
reference and "above" in the next: the image -> relation mapping is one-to-many and a
captioner learns a mode that is often false (``scripts/relation_analysis.py``).
``dominant`` states each pair's relation along the axis on which they are further apart
(:func:`ptlib.data.grammar.dominant_relations`): one stateable fact per pair."""

PRUNED_EVALUATION: tuple[tuple[float, str], ...] = ((0.3, "norm"),)
"""Besides prune ratio 0, each pretrained captioner's test split is scored with 30 % of
its visual tokens pruned by norm at inference (the paper's ratio and the course's
default scorer): the drop the comparison of chapter 4b reports."""

CAPTIONER_SPLITS: tuple[str, ...] = ("test", "compositional")
"""The held-out splits every pretrained captioner is scored on."""

VARIANTS: dict[str, tuple[str, ...]] = {
    "frozen": ("model.freeze_encoder=true", "train.cache_features=true"),
    "finetuned": (),
}
"""Overrides of each way to use the pretrained encoder (beyond ``model.encoder_init``)."""

SCRATCH = "scratch"
"""The name of the pretrained captioners' baseline.

It follows the same recipe (:data:`SHARED`, the same run config, the same evaluations)
from a randomly initialised encoder, so that a gap to it is what pretraining buys, and
a gap between it and the pruning study's captioners from scratch (``relation_rule:
any``) is what the references buy."""


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
    return [*model.overrides, *SHARED, f"model.encoder_init={encoder_init_value(profile, name)}",
            *VARIANTS[variant]]


def captioner_seeds(profile: course.Profile, variant: str) -> list[int]:
    """The training seeds of the profile's pretrained captioners of one variant.

    ``pretrain.captioner_seeds`` is a list for every variant or a mapping per variant
    (``{frozen: [0, 1, 2], finetuned: [0]}``); default ``[0]``. Seed 0 is the run
    config's own ``train.seed``. :data:`SCRATCH` (the baseline from a random encoder)
    counts as a variant here.

    Raises:
        ValueError: If the seeds are not a list of non-negative integers.
    """
    if variant not in (*VARIANTS, SCRATCH):
        raise ValueError(f"variant must be one of {sorted((*VARIANTS, SCRATCH))}, "
                         f"got {variant!r}")
    seeds = profile.section("pretrain").get("captioner_seeds", [0])
    if isinstance(seeds, dict):
        seeds = seeds.get(variant, [0])
    if not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ValueError(f"profiles.yaml {profile.name}.pretrain.captioner_seeds: a list of "
                         f"non-negative integers (or one per variant), got {seeds!r}")
    return list(seeds)


def captioner_arguments(name: str, variant: str, profile: course.Profile, *, seed: int = 0
                        ) -> tuple[str, list[str], str]:
    """``(backbone, overrides, tag)``: the :func:`~ptlib.experiments.captioners.trained_captioner`
    arguments of the pretrained captioner ``name``/``variant``/``seed`` (see
    :func:`pretrained_captioner`)."""
    return _arguments(name, variant_overrides(name, variant, profile),
                      f"pretrained_{variant}", profile, seed)


def _arguments(name: str, overrides: list[str], kind: str, profile: course.Profile,
               seed: int) -> tuple[str, list[str], str]:
    """``(backbone, overrides, tag)`` of encoder ``name``'s captioner of one kind: the tag is
    ``[<stride suffix>_]<kind>[_seed<seed>]`` and a non-zero seed adds ``train.seed``."""
    model = pretrain_model(profile, name)
    suffix = name[len(model.backbone) + 1:] + "_" if name != model.backbone else ""
    tag = f"{suffix}{kind}"
    if seed:
        overrides, tag = [*overrides, f"train.seed={seed}"], f"{tag}_seed{seed}"
    return model.backbone, overrides, tag


def pretrained_captioner_key(name: str, variant: str, profile: course.Profile, *,
                             seed: int = 0, pretrain: bool = True) -> dict[str, Any]:
    """The config the captioner of :func:`pretrained_captioner` is stored under, with the
    digest of its encoder file: what a result computed from that captioner keys on, so
    it follows new encoder weights.

    ``pretrain=False`` only looks: without the encoder file the digest reads
    ``"missing"``, a key no stored captioner has. Otherwise the encoder is pretrained
    (or loaded) first.
    """
    from ptlib.experiments.captioners import stored_key_config

    if pretrain:
        pretrained_encoder(name, profile)
    backbone, overrides, tag = captioner_arguments(name, variant, profile, seed=seed)
    return stored_key_config(backbone, profile, overrides=overrides, tag=tag,
                             splits=CAPTIONER_SPLITS, pruned=PRUNED_EVALUATION)


def pretrained_captioner(name: str, variant: str, profile: course.Profile | str | None = None,
                         *, seed: int = 0, force: bool = False, need_weights: bool = False
                         ) -> Any:
    """Train (or load) a captioner from a pretrained encoder, pretraining it first if needed.

    Args:
        name: A pretrained encoder of the profile (``vit``, ``convnext``, ``convnext_s16``).
        variant: ``"frozen"`` or ``"finetuned"``.
        profile: A profile or its name (default: the active one).
        seed: The training seed; 0 is the run config's own, others add
            ``train.seed=<seed>`` and a ``_seed<seed>`` name suffix.
        force: Retrain even when a stored result matches.
        need_weights: Retrain when only its record is stored and its weights are not on
            this machine (a fresh clone), so that ``.load()`` works; the record, if the
            training is deterministic, comes out the same.

    Returns:
        A :class:`ptlib.experiments.captioners.TrainedRun` (run name
        ``<run config>_<suffix>pretrained_<variant>[_seed<seed>]``), evaluated on
        :data:`CAPTIONER_SPLITS`. Only its record is stored in ``results/`` (the weights
        stay under ``checkpoints/``), which keeps the committed results small.
    """
    from ptlib.experiments.captioners import trained_captioner

    if not isinstance(profile, course.Profile):
        profile = course.get_profile(profile)
    pretrained_encoder(name, profile)
    backbone, overrides, tag = captioner_arguments(name, variant, profile, seed=seed)

    def train(force: bool) -> Any:
        return trained_captioner(backbone, profile, overrides=overrides,
                                 splits=CAPTIONER_SPLITS, tag=tag, force=force,
                                 pruned=PRUNED_EVALUATION, keep_checkpoint=False)

    run = train(force)
    if need_weights and run.checkpoint is None:
        run = train(True)
    return run


MODEL_OPTIONS: tuple[str, ...] = ("pretrained", "variant")
"""Keys a ``models:`` entry of the study or the pointing game may have to name a
pretrained captioner: ``pretrained: <encoder of pretrain.models>``, ``variant:
frozen | finetuned`` (default ``frozen``)."""


def pretrained_choice(profile: course.Profile, section: str, spec: course.ModelSpec
                      ) -> tuple[str, str] | None:
    """``(encoder, variant)`` of a ``models:`` entry that names a pretrained captioner.

    Args:
        profile: The profile.
        section: The section the entry is in (``study``, ``grounding``), for messages.
        spec: The entry (:func:`ptlib.course.model_specs` with :data:`MODEL_OPTIONS`).

    Returns:
        ``None`` for a captioner trained from scratch (no ``pretrained`` key).

    Raises:
        ValueError: If the encoder is not pretrained by the profile, belongs to another
            backbone, the variant is unknown, or the entry also has ``set`` overrides.
    """
    where = f"profiles.yaml {profile.name}.{section}.models.{spec.name}"
    if "pretrained" not in spec.options:
        if "variant" in spec.options:
            raise ValueError(f"{where}: variant needs a pretrained encoder (pretrained: ...)")
        return None
    name, variant = str(spec.options["pretrained"]), str(spec.options.get("variant", "frozen"))
    known = {m.name: m for m in pretrain_models(profile)}
    if name not in known:
        raise ValueError(f"{where}: pretrained must be one of pretrain.models {sorted(known)}, "
                         f"got {name!r}")
    if known[name].backbone != spec.backbone:
        raise ValueError(f"{where}: pretrained encoder {name!r} is a {known[name].backbone}, "
                         f"not a {spec.backbone}")
    if variant not in VARIANTS:
        raise ValueError(f"{where}: variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    if spec.overrides:
        raise ValueError(f"{where}: a pretrained captioner takes its settings from its "
                         "variant; drop set")
    return name, variant


def scratch_arguments(name: str, profile: course.Profile, *, seed: int = 0
                      ) -> tuple[str, list[str], str]:
    """``(backbone, overrides, tag)`` of :func:`scratch_captioner` ``name``/``seed``."""
    overrides = [*pretrain_model(profile, name).overrides, *SHARED]
    return _arguments(name, overrides, SCRATCH, profile, seed)


def scratch_captioner(name: str, profile: course.Profile | str | None = None, *,
                      seed: int = 0, force: bool = False) -> Any:
    """Train (or load) the from-scratch baseline of the pretrained captioners of ``name``.

    The encoder of ``name`` (``vit``, ``convnext_s16``: its run config and overrides)
    starts from random weights; everything else is the pretrained captioners' recipe:
    no pruning in training, references of one relation per pair, scored on
    :data:`CAPTIONER_SPLITS` at prune ratio 0 and at :data:`PRUNED_EVALUATION`. Nothing
    is pretrained.

    Returns:
        A :class:`ptlib.experiments.captioners.TrainedRun` (run name
        ``<run config>_<suffix>scratch[_seed<seed>]``); its record only is stored.
    """
    from ptlib.experiments.captioners import trained_captioner

    if not isinstance(profile, course.Profile):
        profile = course.get_profile(profile)
    backbone, overrides, tag = scratch_arguments(name, profile, seed=seed)
    return trained_captioner(backbone, profile, overrides=overrides, splits=CAPTIONER_SPLITS,
                             tag=tag, force=force, pruned=PRUNED_EVALUATION,
                             keep_checkpoint=False)
