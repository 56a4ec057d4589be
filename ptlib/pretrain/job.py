"""``ptlib results`` jobs: pretrain each course encoder once per profile, store it, probe it.

A profile's ``pretrain`` section (``ptlib/configs/profiles.yaml``) holds the
:class:`~ptlib.pretrain.config.PretrainConfig` settings and, under ``models``, the
encoders to pretrain: a backbone (whose run config, the profile's ``runs``,
gives the encoder) and ``set`` overrides (``model.feature_stride=16``).
:func:`pretrained_encoder` stores, through :func:`ptlib.runcache.run_or_load`::

    results/<profile>/pretrain/<name>/<key>.json   accuracy, minutes, probes
    results/<profile>/pretrain/<name>/encoder.pt   the slim encoder checkpoint

and the chapters read the record back without training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptlib import course, runcache, runtime
from ptlib.pretrain.config import PretrainConfig
from ptlib.pretrain.dataset import PretextDataset
from ptlib.pretrain.encoder import build_spec_encoder, encoder_spec
from ptlib.pretrain.probe import linear_probe
from ptlib.pretrain.scenes import PRETEXT_EVAL_STREAM
from ptlib.pretrain.train import pretrain_encoder
from ptlib.train.runconfig import load_run_config

ENCODER_FILE = "encoder.pt"
"""Name of the slim checkpoint in ``results/<profile>/pretrain/<name>/``."""


@dataclass(frozen=True)
class PretrainModel:
    """One encoder a profile pretrains.

    Attributes:
        name: ``vit``, ``convnext``, ``convnext_s16``.
        backbone: The profile's ``runs`` key whose run config builds the encoder.
        overrides: ``--set`` overrides on that run config.
    """

    name: str
    backbone: str
    overrides: tuple[str, ...] = ()


def pretrain_models(profile: course.Profile) -> list[PretrainModel]:
    """The encoders of a profile's ``pretrain.models`` (empty without a ``pretrain`` section).

    Raises:
        ValueError: If a model names no backbone of the profile's ``runs``.
    """
    return [PretrainModel(spec.name, spec.backbone, spec.overrides)
            for spec in course.model_specs(profile, "pretrain")]


def pretrain_config(profile: course.Profile) -> PretrainConfig:
    """The profile's pretraining settings (its ``pretrain`` section without ``models`` and
    ``captioner_seeds``); every encoder sees the same number of images."""
    section = {k: v for k, v in profile.section("pretrain").items()
               if k not in ("models", "captioner_seeds")}
    return PretrainConfig.from_dict(section)


def encoder_file(profile: course.Profile | str, name: str) -> Path:
    """``results/<profile>/pretrain/<name>/encoder.pt`` (whether or not it exists yet)."""
    profile_name = profile.name if isinstance(profile, course.Profile) else profile
    return course.results_dir() / profile_name / "pretrain" / name / ENCODER_FILE


def encoder_init_value(profile: course.Profile | str, name: str) -> str:
    """The ``model.encoder_init`` value naming that file (relative to the results folder)."""
    profile_name = profile.name if isinstance(profile, course.Profile) else profile
    return f"{profile_name}/pretrain/{name}/{ENCODER_FILE}"


def pretrain_model(profile: course.Profile, name: str) -> PretrainModel:
    """The encoder ``name`` of the profile's ``pretrain.models``.

    Raises:
        ValueError: If the profile does not pretrain it (listing those it does).
    """
    models = {m.name: m for m in pretrain_models(profile)}
    if name not in models:
        raise ValueError(f"profile {profile.name!r} pretrains {sorted(models)}, not {name!r} "
                         "(profiles.yaml, section pretrain.models)")
    return models[name]


def run_sections(profile: course.Profile, model: PretrainModel) -> tuple[dict, dict]:
    """The ``model`` and ``data`` sections of the run config whose encoder ``model`` is."""
    run = course.run_config_names(profile)[model.backbone]
    config = load_run_config(run, [*course.run_overrides(profile), *model.overrides])
    return config["model"], config["data"]


def probe_datasets(spec_grid: tuple[int, int], img_size: int, cfg: PretrainConfig,
                   max_objects: int = 4) -> tuple[PretextDataset, PretextDataset]:
    """The probe's fitting and scoring images: evaluation-stream images after the
    ``eval_images`` that measure pretext accuracy, half each."""
    half = max(1, cfg.probe_images // 2)
    common = {"img_size": img_size, "grid": spec_grid, "seed": cfg.seed,
              "stream": PRETEXT_EVAL_STREAM, "max_objects": max_objects,
              "min_cover": cfg.min_cover}
    return (PretextDataset(half, start=cfg.eval_images, **common),
            PretextDataset(half, start=cfg.eval_images + half, **common))


def pretrained_encoder(name: str, profile: course.Profile | str | None = None, *,
                       force: bool = False) -> dict[str, Any]:
    """Pretrain (or load) one of a profile's encoders, and probe it against a random one.

    Args:
        name: A key of the profile's ``pretrain.models`` (``vit``, ``convnext``, ...).
        profile: A profile or its name (default: the active one).
        force: Pretrain again even when a stored result matches.

    Returns:
        The stored record, with ``encoder_file`` (relative to the results folder),
        ``spec``, ``pretrain`` (status, steps, images seen, minutes, images/s,
        ``accuracy`` per head, loss ``history``) and ``probe``
        (``{"random": ..., "pretrained": ...}``, see
        :func:`ptlib.pretrain.probe.linear_probe`).
    """
    if not isinstance(profile, course.Profile):
        profile = course.get_profile(profile)
    model = pretrain_model(profile, name)
    model_section, data_section = run_sections(profile, model)
    spec = encoder_spec(model_section)
    cfg = pretrain_config(profile)
    max_objects = int(data_section.get("max_objects", 4))
    key_config = {"profile": profile.name, "name": name, "spec": spec,
                  "pretrain": cfg.to_dict(), "max_objects": max_objects}
    target = encoder_file(profile, name)
    key = runcache.config_key(key_config)

    def run() -> dict[str, Any]:
        out_dir = course.checkpoint_dir() / profile.name / f"pretrain-{name}-{key[:8]}"
        result = pretrain_encoder(spec, cfg, out_dir, max_objects=max_objects,
                                  encoder_file=target)
        runtime.seed_everything(cfg.seed)
        random_encoder = build_spec_encoder(spec)
        fit, score = probe_datasets(random_encoder.grid, spec["img_size"], cfg, max_objects)
        pretrained = build_spec_encoder(spec)
        from ptlib.pretrain.checkpoint import load_encoder_init

        load_encoder_init(pretrained, target)
        return {
            "encoder_file": str(target.relative_to(course.results_dir())),
            "spec": {**spec, "feature_stride": random_encoder.feature_stride},
            "tokens": random_encoder.num_tokens,
            "pretrain": result.record(),
            "probe": {"random": linear_probe(random_encoder, fit, score),
                      "pretrained": linear_probe(pretrained, fit, score)},
        }

    return runcache.run_or_load(f"{profile.name}/pretrain/{name}", key_config, run,
                              force=force or not target.is_file())


def pretrain_job_names(profile: course.Profile) -> Sequence[str]:
    """``pretrain-<name>`` for every encoder the profile pretrains."""
    return [f"pretrain-{m.name}" for m in pretrain_models(profile)]
