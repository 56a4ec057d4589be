"""The pruning study (chapter 7): ViT vs ConvNeXt captioners under visual token pruning.

What is measured is set by the profile's ``study`` section
(``ptlib/configs/profiles.yaml``):

* ``models``: the captioners, each a backbone with run-config overrides (e.g.
  ConvNeXt stride-16 features), trained **without** pruning, once per seed; or,
  with ``pretrained: <encoder>``, chapter 4b's captioners that start from a
  pretrained encoder (frozen by default), loaded at their own seeds.
  Each is then captioned with pruning applied only at inference: every method
  in ``methods`` (``cls_attention`` only where the encoder has CLS attention) at
  every ratio in ``ratios``, at the decoder memory (the paper's placement), and
  for a ViT inside its blocks (``encoder_methods``, first seed only). The
  ``compositional`` split is scored at ``compositional_ratios``, first seed.
* ``trained_with``: pruning methods used in training too (at the run config's
  ratio, 0.3), each trained like the backbone's first study model (same
  overrides, same budget): those captioners are swept over the ratios with their
  own method. Without overrides, the run config's own method is the course
  captioner of chapters 5 and 6 itself.

Each (model, seed) sweep is one stored result under
``results/<profile>/pruning_study/`` (run-or-load, so ``make results`` resumes
where it stopped; a stored sweep loads without its captioner's checkpoint, so the
study's checkpoints are not committed); :func:`pruning_study` gathers them into :class:`StudyResult`
rows. :mod:`ptlib.experiments.study_report` turns rows into tables, curves and
the numbers chapter 7's conclusions are written from.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from ptlib import course, runcache, runtime
from ptlib.experiments.captioners import TrainedRun, config_name, trained_captioner
from ptlib.experiments.study_eval import STUDY_METRICS, HeldOutSplit, score_pruning
from ptlib.metrics.captions import CaptionScorer
from ptlib.models.pruning import pruning_methods
from ptlib.train.runconfig import load_run_config

SWEEP_METRICS_VERSION = 2
"""Bumped when :func:`~ptlib.experiments.study_eval.score_pruning` reports new fields,
so stored sweeps without them are measured again."""

STUDY_KEYS: tuple[str, ...] = (
    "ratios", "methods", "encoder_methods", "compositional_ratios", "seeds", "models",
    "trained_with", "max_images", "tokenizer",
)
"""Keys of a profile's ``study`` section."""

SWEEP_KEYS: tuple[str, ...] = (
    "ratios", "methods", "encoder_methods", "compositional_ratios", "max_images", "tokenizer",
)
"""The study keys one stored sweep depends on (its key). ``models``, ``seeds`` and
``trained_with`` only say which sweeps exist, so adding a seed, a model or a trained
method leaves the stored sweeps valid."""


@dataclass(frozen=True)
class StudyModel:
    """One captioner of the study.

    Attributes:
        name: Its label in tables (e.g. ``"convnext_s16"``).
        backbone: ``"vit"`` or ``"convnext"``.
        overrides: Run-config overrides (``--set`` form) on top of the course's config.
        seeds: Training seeds.
        pretrained: ``(encoder, variant)`` for a captioner that starts from a pretrained
            encoder (:func:`ptlib.pretrain.variants.pretrained_captioner`, the very
            captioners of chapter 4b), ``None`` for one trained from scratch.
    """

    name: str
    backbone: str
    overrides: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)
    pretrained: tuple[str, str] | None = None


@dataclass
class StudyResult:
    """Every measured cell of the study.

    Attributes:
        rows: One dict per cell: ``model``, ``backbone``, ``seed``, ``trained_with``
            (``"none"`` or the method used in training), ``method``, ``placement``,
            ``ratio``, ``split``, and the metrics of
            :func:`~ptlib.experiments.study_eval.score_pruning`.
        models: Model name -> ``{"backbone", "tokens", "grid", "encoder",
            "trained_with", "start", "runs"}``: ``start`` is ``"scratch"`` or
            ``"pretrained_<variant>"``, ``runs`` holds ``train_minutes``,
            ``sweep_minutes``... per seed.
        settings: The study section the rows were measured with.
    """

    rows: list[dict[str, Any]]
    models: dict[str, dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)

    def select(self, **conditions: Any) -> list[dict[str, Any]]:
        """Rows whose fields equal every given value (a tuple/list value: any of them)."""
        def matches(row: dict[str, Any]) -> bool:
            for key, want in conditions.items():
                if isinstance(want, tuple | list):
                    if row.get(key) not in want:
                        return False
                elif row.get(key) != want:
                    return False
            return True

        return [row for row in self.rows if matches(row)]


def study_settings(profile: course.Profile) -> dict[str, Any]:
    """The profile's ``study`` section, checked.

    Raises:
        ValueError: If the profile has no study section, or a key is missing or unknown.
    """
    section = profile.section("study")
    if not section:
        raise ValueError(f"profile {profile.name!r} has no 'study' section in profiles.yaml")
    missing = sorted(set(STUDY_KEYS) - set(section))
    unknown = sorted(set(section) - set(STUDY_KEYS))
    if missing or unknown:
        raise ValueError(
            f"profile {profile.name!r} study section: missing keys {missing}, unknown keys "
            f"{unknown}; expected {list(STUDY_KEYS)}"
        )
    return section


def study_profile(profile: course.Profile | str | None = None) -> course.Profile:
    """The profile whose study to show: the given one, or ``cpu`` if it has no study.

    The study needs the embedded dataset's ground truth (kept-object recall,
    correctness); every shipped profile has one (``coco`` runs ``gpu``'s on the
    embedded dataset), so ``cpu`` is only the fallback for a profile without one.
    """
    if not isinstance(profile, course.Profile):
        profile = course.get_profile(profile)
    return profile if "study" in profile.settings else course.get_profile("cpu")


def study_models(settings: dict[str, Any], profile: course.Profile) -> list[StudyModel]:
    """The :class:`StudyModel` list of a study section (``settings``) of ``profile``.

    An entry with ``pretrained: <encoder>`` (and ``variant``, default ``frozen``) is a
    pretrained captioner; its seeds default to the profile's
    ``pretrain.captioner_seeds``, so the study sweeps the captioners chapter 4b trained.
    """
    from ptlib.pretrain.variants import MODEL_OPTIONS, captioner_seeds, pretrained_choice

    models = []
    for spec in course.model_specs(profile, "study", settings["models"],
                                   options=("seeds", *MODEL_OPTIONS)):
        pretrained = pretrained_choice(profile, "study", spec)
        seeds = (captioner_seeds(profile, pretrained[1]) if pretrained else settings["seeds"])
        models.append(StudyModel(spec.name, spec.backbone, spec.overrides,
                                 tuple(int(s) for s in spec.options.get("seeds", seeds)),
                                 pretrained))
    return models


def _sweep_cells(
    settings: dict[str, Any], *, has_cls: bool, is_vit: bool, first_seed: bool,
    trained_method: str | None,
) -> list[tuple[str, str, float, str]]:
    """``(method, placement, ratio, split)`` cells for one model and seed."""
    ratios = [float(r) for r in settings["ratios"]]
    cells: list[tuple[str, str, float, str]] = []
    if trained_method is not None:  # trained with pruning: sweep its own method
        return [(trained_method, "memory", r, "test") for r in ratios]
    cells.append(("none", "memory", 0.0, "test"))
    methods = [m for m in settings["methods"] if m != "cls_attention" or has_cls]
    for method in methods:
        cells += [(method, "memory", r, "test") for r in ratios if r > 0]
    if is_vit and first_seed:
        for method in settings["encoder_methods"]:
            if method != "cls_attention" or has_cls:
                cells += [(method, "encoder", r, "test") for r in ratios if r > 0]
    if first_seed:
        comp = [float(r) for r in settings["compositional_ratios"]]
        cells.append(("none", "memory", 0.0, "compositional"))
        for method in methods:
            cells += [(method, "memory", r, "compositional") for r in comp if r > 0]
    return cells


def _sweep(
    run: TrainedRun, settings: dict[str, Any], *, first_seed: bool, trained_method: str | None,
    label: str,
) -> dict[str, Any]:
    """Caption and score every cell for one trained captioner."""
    model, vocab, config = run.load(runtime.pick_device())  # the CPU unless a GPU is there
    model.float().eval()
    has_cls = "cls_attention" in pruning_methods(model.encoder)
    cells = _sweep_cells(settings, has_cls=has_cls, is_vit=model.encoder.kind == "vit",
                         first_seed=first_seed, trained_method=trained_method)
    rows = []
    start = time.perf_counter()
    with CaptionScorer(STUDY_METRICS, tokenizer=settings["tokenizer"]) as scorer:
        splits: dict[str, HeldOutSplit] = {}
        for method, placement, ratio, split in tqdm(cells, desc=f"pruning study {label}"):
            if split not in splits:
                splits[split] = HeldOutSplit.load(config["data"], split, vocab, scorer,
                                                  max_images=int(settings["max_images"]))
            scores = score_pruning(model, vocab, splits[split], scorer, ratio=ratio,
                                   method=method, prune_at=placement)
            rows.append({"method": method, "placement": placement, "ratio": ratio,
                         "split": split, **scores})
    return {
        "rows": rows,
        "tokens": model.encoder.num_tokens,
        "grid": list(model.encoder.grid),
        "encoder": config["model"]["encoder"],
        "train_minutes": run.train_minutes,
        "sweep_minutes": round((time.perf_counter() - start) / 60, 2),
    }


@dataclass(frozen=True)
class _Sweep:
    """One stored sweep: a trained captioner captioned at every cell."""

    label: str
    model: str
    backbone: str
    seed: int
    trained_with: str
    run: Callable[[bool], dict[str, Any]]
    start: str = "scratch"


def _jobs(profile: course.Profile) -> list[_Sweep]:
    """Every sweep of the study, in run order."""
    settings = study_settings(profile)
    jobs = []
    for spec in study_models(settings, profile):
        for index, seed in enumerate(spec.seeds):
            label = f"{spec.name}_s{seed}"
            if spec.pretrained:
                job = _pretrained_sweep(profile, label, settings, spec.pretrained, seed,
                                        first_seed=index == 0)
                jobs.append(_Sweep(label, spec.name, spec.backbone, seed, "none", job,
                                   start=f"pretrained_{spec.pretrained[1]}"))
                continue
            overrides = ["model.prune_ratio=0", "model.prune_method=none", f"train.seed={seed}",
                         *spec.overrides]
            job = _stored_sweep(profile, label, settings, spec.backbone, overrides,
                                tag=f"study_{label}", splits=(), first_seed=index == 0,
                                trained_method=None)
            jobs.append(_Sweep(label, spec.name, spec.backbone, seed, "none", job))
    for method in settings["trained_with"]:
        first_of_backbone = {s.backbone: s for s in reversed(study_models(settings, profile))
                             if not s.pretrained}
        for backbone, spec in first_of_backbone.items():
            # Trained like the backbone's first study model trained from scratch, with
            # pruning on; with no overrides and the run config's own method that is
            # the course captioner.
            label = f"{backbone}_trained_{method}"
            own = not spec.overrides and method == load_run_config(
                config_name(backbone, profile))["model"]["prune_method"]
            if own:
                job = _stored_sweep(profile, label, settings, backbone, [], tag="",
                                    splits=("test", "compositional"), first_seed=False,
                                    trained_method=method)
            else:
                job = _stored_sweep(profile, label, settings, backbone,
                                    [*spec.overrides, f"model.prune_method={method}"],
                                    tag=f"study_{label}", splits=(), first_seed=False,
                                    trained_method=method)
            jobs.append(_Sweep(label, label, backbone, 0, method, job))
    return jobs


def _stored_sweep(
    profile: course.Profile, label: str, settings: dict[str, Any], backbone: str,
    overrides: list[str], *, tag: str, splits: tuple[str, ...], first_seed: bool,
    trained_method: str | None,
) -> Callable[[bool], dict[str, Any]]:
    """``run(force)``: load the stored sweep, or train (or load) the captioner and sweep it.

    The key is known before training (the run config and the settings), so a stored
    sweep loads without its captioner's checkpoint: the study's checkpoints need not
    be kept.
    """
    name = config_name(backbone, profile)
    key_config = {"model_run": name + (f"_{tag}" if tag else ""),
                  "model_config": load_run_config(name, [*course.run_overrides(profile),
                                                         *overrides]),
                  "settings": {k: settings[k] for k in SWEEP_KEYS},
                  "first_seed": first_seed, "trained_method": trained_method,
                  "metrics": SWEEP_METRICS_VERSION}

    def compute(force: bool) -> dict[str, Any]:
        run = trained_captioner(backbone, profile, overrides=overrides, tag=tag, splits=splits,
                                force=force)
        return _sweep(run, settings, first_seed=first_seed, trained_method=trained_method,
                      label=label)

    def run(force: bool) -> dict[str, Any]:
        return runcache.run_or_load(f"{profile.name}/pruning_study/{label}", key_config,
                                    lambda: compute(force), force=force)

    return run


def _pretrained_sweep(
    profile: course.Profile, label: str, settings: dict[str, Any],
    pretrained: tuple[str, str], seed: int, *, first_seed: bool,
) -> Callable[[bool], dict[str, Any]]:
    """``run(force)`` of a pretrained captioner's sweep: load it, or sweep the captioner.

    Keyed on the captioner's stored config (with its encoder file's digest), so the
    sweep follows new pretrained weights and loads without the captioner's weights.
    """
    from ptlib.pretrain.variants import pretrained_captioner, pretrained_captioner_key

    name, variant = pretrained

    def compute(force: bool) -> dict[str, Any]:
        run = pretrained_captioner(name, variant, profile, seed=seed, force=force,
                                   need_weights=True)
        return _sweep(run, settings, first_seed=first_seed, trained_method=None, label=label)

    def run(force: bool) -> dict[str, Any]:
        key_config = {"captioner": pretrained_captioner_key(name, variant, profile, seed=seed),
                      "settings": {k: settings[k] for k in SWEEP_KEYS},
                      "first_seed": first_seed, "trained_method": None,
                      "metrics": SWEEP_METRICS_VERSION}
        return runcache.run_or_load(f"{profile.name}/pruning_study/{label}", key_config,
                                    lambda: compute(force), force=force)

    return run


def study_labels(profile: course.Profile | str | None = None) -> list[str]:
    """The names of the study's sweeps, in run order."""
    if not isinstance(profile, course.Profile):
        profile = course.get_profile(profile)
    return [sweep.label for sweep in _jobs(profile)]


def pruning_study(
    profile: course.Profile | str | None = None,
    *,
    only: Sequence[str] | None = None,
    force: bool = False,
) -> StudyResult:
    """Run (or load) the pruning study and gather its rows.

    Args:
        profile: A profile or its name (default: the active one).
        only: Run only these sweeps (see :func:`study_labels`); the others are
            left out of the result.
        force: Retrain and re-measure even stored results.
    """
    if not isinstance(profile, course.Profile):
        profile = course.get_profile(profile)
    torch.manual_seed(profile.seed)
    settings = study_settings(profile)
    sweeps = _jobs(profile)
    unknown = sorted(set(only or ()) - {sweep.label for sweep in sweeps})
    if unknown:
        raise ValueError(f"only={unknown}: the study's sweeps are {[s.label for s in sweeps]}")
    rows: list[dict[str, Any]] = []
    models: dict[str, dict[str, Any]] = {}
    for sweep in sweeps:
        if only is not None and sweep.label not in only:
            continue
        stored = sweep.run(force)
        info = {k: v for k, v in stored.items() if k != "rows"}
        entry = models.setdefault(sweep.model, {
            "backbone": sweep.backbone, "tokens": stored["tokens"], "grid": stored["grid"],
            "encoder": stored["encoder"], "trained_with": sweep.trained_with,
            "start": sweep.start, "runs": {}})
        entry["runs"][sweep.seed] = info
        for row in stored["rows"]:
            rows.append({"model": sweep.model, "backbone": sweep.backbone, "seed": sweep.seed,
                         "trained_with": sweep.trained_with, **row})
    return StudyResult(rows=rows, models=models, settings=dict(settings))
