"""``ptlib results``: produce every stored result the book shows (what ``make results`` runs)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from ptlib import course, runcache


def _experiments(profile: course.Profile) -> dict[str, Callable[[bool], Any]]:
    from ptlib.experiments.captioners import BACKBONES, trained_captioner

    train_section = profile.section("train")
    jobs: dict[str, Callable[[bool], Any]] = {}
    for backbone in BACKBONES:
        jobs[f"captioner-{backbone}"] = lambda force, b=backbone: trained_captioner(
            b, profile, force=force)
    if "pretrain" in profile.settings:  # chapter 4b: pretrained encoders, then captioners
        from ptlib.pretrain.job import pretrain_models, pretrained_encoder
        from ptlib.pretrain.variants import (
            SCRATCH,
            VARIANTS,
            captioner_seeds,
            pretrained_captioner,
            scratch_captioner,
        )

        models = pretrain_models(profile)
        for model in models:
            jobs[f"pretrain-{model.name}"] = lambda force, n=model.name: pretrained_encoder(
                n, profile, force=force)
        for model in models:
            for variant in VARIANTS:
                for seed in captioner_seeds(profile, variant):
                    job = f"captioner-{model.name}-pretrained_{variant}"
                    jobs[job + (f"-seed{seed}" if seed else "")] = (
                        lambda force, n=model.name, v=variant, s=seed: pretrained_captioner(
                            n, v, profile, seed=s, force=force))
            for seed in captioner_seeds(profile, SCRATCH):  # their baseline, no pretraining
                jobs[f"captioner-{model.name}-{SCRATCH}" + (f"-seed{seed}" if seed else "")] = (
                    lambda force, n=model.name, s=seed: scratch_captioner(
                        n, profile, seed=s, force=force))
    jobs["memorisation"] = lambda force: trained_captioner(
        "convnext", profile, overrides=train_section.get("memorise_overrides", []),
        tag="memorise", force=force)
    jobs["efficiency"] = lambda force: _efficiency(profile, force)
    if "coco_runs" in profile.settings:  # the coco profile: the paper's COCO captioners
        for backbone in BACKBONES:
            jobs[f"coco-{backbone}"] = lambda force, b=backbone: trained_captioner(
                b, profile, dataset="coco", force=force)
    if "study" in profile.settings:
        from ptlib.experiments.pruning_study import pruning_study, study_labels

        for label in study_labels(profile):
            jobs[f"study-{label}"] = lambda force, only=label: pruning_study(
                profile, only=[only], force=force)
    if profile.section("data").get("dataset", "shapes") == "shapes":  # needs object boxes
        from ptlib.experiments.grounding import grounding_models, grounding_study

        for spec in grounding_models(profile):
            if spec.overrides:  # the course captioners are jobs already
                jobs[f"captioner-{spec.name}"] = lambda force, s=spec: s.captioner(
                    profile, force=force)
        jobs["grounding"] = lambda force: grounding_study(profile, force=force)
    return jobs


def _efficiency(profile: course.Profile, force: bool) -> Any:
    from ptlib.bench.efficiency import efficiency_config, run_efficiency

    config = efficiency_config(profile)
    return runcache.run_or_load(f"{profile.name}/efficiency", config,
                                lambda: run_efficiency(config), force=force)


def run(args: argparse.Namespace) -> int:
    profile = course.get_profile(args.profile)
    jobs = _experiments(profile)
    if args.list:
        print("\n".join(jobs))
        return 0
    unknown = sorted(set(args.only or []) - set(jobs))
    if unknown:
        raise ValueError(f"--only {unknown}: experiments are {', '.join(jobs)}")
    names = args.only or list(jobs)
    print(f"ptlib results: profile {profile.name}, {len(names)} experiment(s): {', '.join(names)}")
    print(f"results go to {course.results_dir() / profile.name}")
    for index, name in enumerate(names, 1):
        start = time.perf_counter()
        print(f"[{index}/{len(names)}] {name} ...", flush=True)
        jobs[name](args.force)
        print(f"[{index}/{len(names)}] {name} done in {time.perf_counter() - start:.0f} s",
              flush=True)
    return 0


def add_parser(subparsers: Any) -> None:
    """Add ``ptlib results``."""
    parser = subparsers.add_parser(
        "results",
        help="run (or load) every experiment the book shows",
        description="Train and evaluate the course's captioners and studies under a profile, "
        "storing each result with its config, seed, versions, machine and wall time in "
        "results/<profile>/. Finished experiments are loaded, interrupted trainings resume.",
    )
    parser.add_argument("--profile", help="ci, cpu, gpu or coco (default: PTLIB_PROFILE or cpu/gpu)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these experiments")
    parser.add_argument("--force", action="store_true", help="rerun even stored experiments")
    parser.add_argument("--list", action="store_true", help="print the experiment names and exit")
    parser.set_defaults(func=run)
