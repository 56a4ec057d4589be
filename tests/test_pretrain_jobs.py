"""The ``ptlib results`` pretraining jobs and the profiles' pretraining plans."""

from __future__ import annotations

import dataclasses

import pytest

from ptlib import course
from ptlib.experiments.command import _experiments
from ptlib.pretrain import (
    encoder_file,
    pretrain_config,
    pretrain_models,
    pretrained_encoder,
    resolve_encoder_init,
)


def test_profiles_plan_the_same_images_for_every_encoder():
    for name in ("ci", "cpu", "gpu"):
        profile = course.get_profile(name, check_data=False)
        models = {m.name: m for m in pretrain_models(profile)}
        assert {"vit", "convnext_s16"} <= set(models)  # the equal-token comparison
        assert models["convnext_s16"].overrides == ("model.feature_stride=16",)
        jobs = _experiments(profile)
        for model in models:
            assert f"pretrain-{model}" in jobs
            assert f"captioner-{model}-pretrained_frozen" in jobs
    cpu = pretrain_config(course.get_profile("cpu"))
    assert 0 < cpu.max_minutes <= 60  # the budget per encoder
    assert cpu.images * cpu.epochs >= 10 * 6000  # far more than the captioning split


def test_unknown_model_keys_are_refused(monkeypatch):
    profile = course.get_profile("ci")
    settings = {**profile.settings, "pretrain": {**profile.settings["pretrain"],
                                                 "models": {"vit": {"backbone": "vit",
                                                                    "imgs": 3}}}}
    broken = dataclasses.replace(profile, settings=settings)
    with pytest.raises(ValueError, match="unknown keys \\['imgs'\\]"):
        pretrain_models(broken)


def test_pretrain_job_stores_and_loads(isolated_dirs, capsys):
    """The ci job trains once, stores a record and the slim encoder, then loads."""
    first = pretrained_encoder("vit", "ci")
    target = encoder_file("ci", "vit")
    assert target.is_file() and resolve_encoder_init(first["encoder_file"]) == target
    assert first["pretrain"]["status"] == "finished" and first["pretrain"]["steps"] == 4
    assert set(first["probe"]) == {"random", "pretrained"}
    assert set(first["probe"]["pretrained"]) == {"colour", "shape", "size", "object"}
    capsys.readouterr()
    again = pretrained_encoder("vit", "ci")
    assert again == first and "loaded ci/pretrain/vit" in capsys.readouterr().out


def test_cpu_profile_trains_the_frozen_pretrained_captioners_with_three_seeds():
    profile = course.get_profile("cpu", check_data=False)
    jobs = _experiments(profile)
    for model in ("vit", "convnext_s16"):
        name = f"captioner-{model}-pretrained_frozen"
        assert {name, f"{name}-seed1", f"{name}-seed2"} <= set(jobs)
        assert f"captioner-{model}-pretrained_finetuned" in jobs
    # the seeds are not a pretraining setting: the stored encoders keep their keys
    assert "captioner_seeds" not in dataclasses.asdict(pretrain_config(profile))


def test_bad_captioner_seeds_are_refused():
    from ptlib.pretrain.variants import captioner_seeds

    profile = course.get_profile("ci")
    settings = {**profile.settings, "pretrain": {**profile.settings["pretrain"],
                                                 "captioner_seeds": [0, -1]}}
    with pytest.raises(ValueError, match="captioner_seeds"):
        captioner_seeds(dataclasses.replace(profile, settings=settings), "frozen")


def test_pretrained_captioners_state_dominant_relations():
    from ptlib.pretrain.variants import variant_overrides

    for variant in ("frozen", "finetuned"):
        assert "data.relation_rule=dominant" in variant_overrides("vit", variant, "ci")


def test_captioner_key_follows_the_encoder_file(isolated_dirs):
    """New pretrained weights under the same path make a new captioner, not a stale load."""
    from ptlib.experiments.captioners import _stored_paths
    from ptlib.pretrain.variants import variant_overrides

    profile = course.get_profile("ci")
    overrides = variant_overrides("vit", "frozen", profile)
    target = encoder_file(profile, "vit")
    target.parent.mkdir(parents=True, exist_ok=True)
    keys = []
    for content in (b"first weights", b"second weights"):
        target.write_bytes(content)
        _, key_config, checkpoint = _stored_paths("vit", profile, overrides, ("test",), "t")
        keys.append(checkpoint.name)
    assert keys[0] != keys[1]


def test_pretrained_captioners_train_unpruned_and_are_scored_pruned_too(isolated_dirs):
    """Prune ratio 0 in training; the record holds the test split at ratio 0 and at 0.3."""
    import shutil

    from ptlib.pretrain.variants import PRUNED_EVALUATION, pretrained_captioner

    run = pretrained_captioner("vit", "frozen", "ci")
    assert run.config["model"]["prune_ratio"] == 0
    assert run.config["data"]["relation_rule"] == "dominant"
    pruned = run.evaluation["pruned"]
    assert set(pruned) == {f"{m}@{r:g}" for r, m in PRUNED_EVALUATION}
    for scores in pruned.values():
        assert scores["n_images"] == run.evaluation["test"]["n_images"]
        assert "exact_set_accuracy" in scores["correctness"]
        assert "folds" not in scores  # floor and ceiling are the unpruned scoring's
    assert "folds" in run.evaluation["test"]
    # only the record is stored in results/: the weights stay under checkpoints/
    assert not list((course.results_dir() / "ci" / "checkpoints").glob("*pretrained*"))
    assert run.checkpoint is not None and run.checkpoint.is_relative_to(course.checkpoint_dir())
    run.load()
    # a fresh clone: the record loads without weights; need_weights trains them again
    shutil.rmtree(run.checkpoint.parent)
    record_only = pretrained_captioner("vit", "frozen", "ci")
    assert record_only.checkpoint is None and record_only.key == run.key
    with pytest.raises(FileNotFoundError, match="only its record is stored"):
        record_only.load()
    again = pretrained_captioner("vit", "frozen", "ci", need_weights=True)
    assert again.checkpoint is not None and again.checkpoint.is_file()
    assert again.key == run.key


def test_scratch_baseline_is_the_pretrained_recipe_without_pretraining():
    """captioner-<name>-scratch: the pretrained captioners' config less encoder_init."""
    from ptlib.experiments.captioners import stored_key_config
    from ptlib.pretrain.variants import (
        CAPTIONER_SPLITS,
        PRUNED_EVALUATION,
        captioner_arguments,
        captioner_seeds,
        scratch_arguments,
    )

    profile = course.get_profile("cpu", check_data=False)
    jobs = _experiments(profile)
    for name in ("vit", "convnext_s16"):
        assert f"captioner-{name}-scratch" in jobs
        backbone, overrides, tag = scratch_arguments(name, profile)
        scratch = stored_key_config(backbone, profile, overrides=overrides, tag=tag,
                                    splits=CAPTIONER_SPLITS, pruned=PRUNED_EVALUATION)
        frozen_args = captioner_arguments(name, "frozen", profile)
        frozen = stored_key_config(frozen_args[0], profile, overrides=frozen_args[1],
                                   tag=frozen_args[2], splits=CAPTIONER_SPLITS,
                                   pruned=PRUNED_EVALUATION)
        assert "encoder_init_sha256" not in scratch and scratch["config"]["model"].get(
            "encoder_init") is None
        assert scratch["run"].endswith("scratch") and scratch["pruned"] == frozen["pruned"]
        assert scratch["config"]["data"] == frozen["config"]["data"]  # dominant references
        for key in ("prune_ratio", "feature_stride", "encoder"):
            assert scratch["config"]["model"][key] == frozen["config"]["model"][key], key
    seeded = scratch_arguments("vit", profile, seed=2)
    assert "train.seed=2" in seeded[1] and seeded[2] == "scratch_seed2"
    assert captioner_seeds(profile, "scratch") == [0, 1]
    with pytest.raises(ValueError, match="variant must be one of"):
        captioner_seeds(profile, "thawed")
