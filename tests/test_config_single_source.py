"""Every hyperparameter has one written value; stored results still load.

The rule, checked on every YAML file under ``ptlib/configs``:

1. **Run configs are the only place values are written.** ``profiles.yaml`` has no
   ``data`` or ``model`` section and no key that nobody reads; its ``--set`` strings
   (variant runs: memorise, stride 16, ``PTLIB_SMOKE``) must each change the run they
   apply to, or they restate a value.
2. **Along a run's ``base:`` chain each value is written once.** A key written in a
   file (a run config or a ``_`` part) must change the resolved config of at least one
   shipped run that uses the file; a child restating its base's value, or a part
   restating what every run using it already has, is a duplicate.
3. **Derived keys are written nowhere**: ``model.img_size``, ``model.max_len`` and
   ``train.max_len`` come from the data section, ``model.vocab_size`` from the
   vocabulary (``ptlib.train.runconfig.NEVER_WRITTEN``).
4. **Dataclass defaults.** ``CaptionerConfig`` and ``TrainConfig`` defaults are the
   fallbacks for code that builds a config by hand (tests, toy models) and for the keys
   a run leaves out. A default counts as a written value for every shipped run that
   relies on it (leaves the key out): then no YAML file may write that key with the
   default's value. A default that no shipped run relies on (every run writes the key,
   e.g. ``d_model``) is a fallback for hand-built configs only, and a run config may
   state its own value for it (the stored results are keyed by the written values).
5. **Nothing is unread**: an unknown key in a run config's sections or a profile fails
   at load, naming the key.

Stored results: the resolved configs of the shipped runs are the ones recorded in
``results/cpu`` (the cache key hashes them), so ``ptlib results`` under ``cpu`` loads
every stored captioner, study, grounding game and efficiency table without training.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import ptlib
from ptlib import course, runcache
from ptlib.data.shapes import ShapesConfig
from ptlib.models import CaptionerConfig
from ptlib.train import TrainConfig
from ptlib.train.runconfig import (
    NEVER_WRITTEN,
    SECTIONS,
    base_names,
    load_run_config,
    shipped_run_configs,
)

CONFIGS = Path(ptlib.__file__).parent / "configs"
RESULTS = Path(ptlib.__file__).parent.parent / "results" / "cpu"
MISSING = object()
DEFAULTS: dict[str, dict[str, Any]] = {
    section: {f.name: f.default for f in dataclasses.fields(cls)
              if f.default is not dataclasses.MISSING}
    for section, cls in (("data", ShapesConfig), ("model", CaptionerConfig),
                         ("train", TrainConfig))
}


def _files() -> dict[str, dict[str, Any]]:
    return {p.stem: yaml.safe_load(p.read_text()) or {}
            for p in sorted((CONFIGS / "runs").glob("*.yaml"))}


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _resolve(files: dict[str, dict[str, Any]], name: str,
             drop: tuple[str, str, str] | None = None) -> dict[str, Any]:
    """The sections of a run config as written (no derived keys), without ``drop``."""
    values = files[name]
    config: dict[str, Any] = {section: {} for section in SECTIONS}
    for base in base_names(values):
        config = _merge(config, _resolve(files, base, drop))
    own = {section: dict(values.get(section) or {}) for section in SECTIONS}
    if drop is not None and drop[0] == name:
        own[drop[1]].pop(drop[2])
    return _merge(config, own)


def _chain(files: dict[str, dict[str, Any]], name: str) -> set[str]:
    return {name}.union(*(_chain(files, base) for base in base_names(files[name])))




def test_shipped_runs_and_parts():
    files = _files()
    runs = shipped_run_configs()
    assert set(runs) | {n for n in files if n.startswith("_")} == set(files)
    assert {"paper_table1", "coco_vit_b16", "coco_convnext_t"} <= set(runs)
    assert "paper_table1" in _chain(files, "coco_convnext_t")
    assert not (CONFIGS / "paper_table1.yaml").exists()  # Table 1 is a run config now
    with pytest.raises(ValueError, match="is a part"):
        load_run_config("_ci")
    for name in runs:
        load_run_config(name)  # every section validated (unknown keys, types, ranges)


def test_every_value_is_written_once_along_a_chain():
    files = _files()
    runs = shipped_run_configs()
    resolved = {run: _resolve(files, run) for run in runs}
    duplicates = []
    for name, values in files.items():
        users = [run for run in runs if name in _chain(files, run)]
        assert users, f"runs/{name}.yaml is used by no shipped run"
        for section in SECTIONS:
            for key, value in (values.get(section) or {}).items():
                changes = any(
                    resolved[run][section].get(key, MISSING)
                    != _resolve(files, run, (name, section, key))[section].get(key, MISSING)
                    for run in users
                )
                if not changes:
                    duplicates.append(f"runs/{name}.yaml {section}.{key}={value!r}")
    assert not duplicates, f"values every run using the file already has: {duplicates}"


def test_derived_keys_are_written_nowhere_and_set_once():
    files = _files()
    for name, values in files.items():
        for dotted in NEVER_WRITTEN:
            section, key = dotted.split(".")
            assert key not in (values.get(section) or {}), f"runs/{name}.yaml writes {dotted}"
    for run in shipped_run_configs():
        config = load_run_config(run)
        assert config["model"]["img_size"] == config["data"]["img_size"]
        assert config["model"]["max_len"] == config["train"]["max_len"] == \
            config["data"]["max_len"]
        assert "vocab_size" not in config["model"]
    with pytest.raises(ValueError, match="do not write model.img_size: it is set from "
                                         "data.img_size"):
        load_run_config("shapes_vit_ci", ["model.img_size=32"])
    small = load_run_config("shapes_vit_ci", ["data.img_size=32", "data.max_len=12"])
    assert (small["model"]["img_size"], small["model"]["max_len"]) == (32, 12)
    assert small["train"]["max_len"] == 12


def test_dataclass_defaults_are_not_restated():
    files = _files()
    runs = shipped_run_configs()
    resolved = {run: _resolve(files, run) for run in runs}
    restated = []
    for section in ("model", "train"):
        for key, default in DEFAULTS[section].items():
            relying = [run for run in runs if key not in resolved[run][section]]
            writers = [name for name, values in files.items()
                       if (values.get(section) or {}).get(key, MISSING) == default]
            if relying and writers:
                restated.append(f"{section}.{key}={default!r} in {writers}, the default "
                                f"of {relying}")
    assert not restated, restated


def _profiles_yaml() -> dict[str, Any]:
    return yaml.safe_load((CONFIGS / "profiles.yaml").read_text())


def _changes(run: str, item: str) -> bool:
    return load_run_config(run) != load_run_config(run, [item])


def test_profiles_name_runs_and_write_no_hyperparameters():
    table = _profiles_yaml()
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    for name in course.PROFILE_NAMES:
        entry = table[name]
        assert set(entry) <= set(course.PROFILE_KEYS), name
        assert not {"data", "model"} & set(entry), name
        assert not train_keys & set(entry.get("train", {})), name
        profile = course.get_profile(name, check_data=False)
        runs = course.run_config_names(profile)
        assert profile.section("data") == load_run_config(runs["vit"])["data"]
        for item in profile.section("train").get("memorise_overrides", []):
            assert any(_changes(run, item) for run in runs.values()), (name, item)
        for part in ("study", "grounding"):
            for label, spec in profile.settings.get(part, {}).get("models", {}).items():
                for item in spec.get("set", []):
                    assert _changes(runs[spec["backbone"]], item), (name, part, label, item)
    assert not {"data", "model"} & set(table["smoke"]["sections"])
    shapes_runs = {run for name in course.PROFILE_NAMES
                   for run in course.run_config_names(name).values()}
    for item in table["smoke"]["run_overrides"]:
        assert any(_changes(run, item) for run in shapes_runs), item


def test_unknown_keys_fail_loudly(tmp_path, monkeypatch):
    for section, key, message in (
        ("train", "num_epochs", r"unknown keys \['num_epochs'\]"),
        ("model", "vocab_sise", r"unknown captioner config keys \['vocab_sise'\]"),
        ("data", "n_trian", "data: unknown key n_trian"),
    ):
        path = tmp_path / f"{section}.yaml"
        path.write_text(yaml.safe_dump({"base": "shapes_vit_ci", section: {key: 1}}))
        with pytest.raises(ValueError, match=message):
            load_run_config(path)
    path = tmp_path / "vocab.yaml"
    path.write_text(yaml.safe_dump({"base": "shapes_vit_ci", "model": {"vocab_size": 9}}))
    with pytest.raises(ValueError, match="model.vocab_size: it is set from the vocabulary"):
        load_run_config(path)
    table = copy.deepcopy(_profiles_yaml())
    table["ci"]["model"] = {"d_model": 64}
    monkeypatch.setattr(course, "_profiles_table", lambda: table)
    with pytest.raises(ValueError, match=r"profile 'ci' has unknown keys \['model'\]"):
        course.get_profile("ci")


def test_stored_cpu_results_still_load(monkeypatch):
    """Every ``ptlib results`` job under ``cpu`` loads its stored record: nothing trains.

    Every captioner, study, grounding, efficiency and pretraining record in ``results/cpu``
    is one of those loaded (a study captioner is looked up as its sweep would look it up),
    and the chapter-6 decoding records hold the same captioner configs.
    """
    import ptlib.experiments.captioners as captioners
    import ptlib.experiments.pruning_study as study
    from ptlib.experiments.command import _experiments

    real = runcache.run_or_load
    loaded: set[Path] = set()
    open_sweeps = False

    def load_only(name, config, fn, **kwargs):
        path = runcache.run_record_path(name, config)
        loaded.add(path.resolve())
        if open_sweeps and "/pruning_study/" in name:
            assert path.is_file(), f"{name}: no stored sweep for this config"
            return fn()  # look up the sweep's captioner too

        def refuse():
            raise AssertionError(f"{name}: no stored record for this config; it would run")

        return real(name, config, refuse, verbose=False)

    def no_training(*args, **kwargs):
        raise AssertionError("a stored captioner would be trained again")

    monkeypatch.delenv("PTLIB_SMOKE", raising=False)
    monkeypatch.delenv("PTLIB_RESULTS_DIR", raising=False)
    monkeypatch.setattr(runcache, "run_or_load", load_only)
    monkeypatch.setattr(captioners, "train_run", no_training)
    profile = course.get_profile("cpu")
    assert course.results_dir(create=False).resolve() == RESULTS.parent.resolve()
    for job in _experiments(profile).values():
        job(False)
    open_sweeps = True
    monkeypatch.setattr(study, "_sweep", lambda run, *args, **kwargs: {"run": run.name})
    # a pretrained captioner's weights are not committed: look up its record only
    import ptlib.pretrain.variants as variants

    with_weights = variants.pretrained_captioner
    monkeypatch.setattr(variants, "pretrained_captioner", lambda *args, **kwargs: with_weights(
        *args, **{**kwargs, "need_weights": False}))
    for sweep in study._jobs(profile):
        assert sweep.run(False)["run"].startswith(captioners.config_name(sweep.backbone,
                                                                         profile))
    stored = {p.resolve() for part in ("captioners", "pruning_study", "grounding", "efficiency",
                                                       "pretrain")
              for p in (RESULTS / part).glob("**/*.json")}
    assert stored and stored <= loaded, sorted(str(p) for p in stored - loaded)
    for backbone in captioners.BACKBONES:
        run = captioners.trained_captioner(backbone, profile)
        assert run.checkpoint.is_file()
        for path in (RESULTS / "decoding" / run.name).glob("*.json"):
            assert json.loads(path.read_text())["config"]["config"] == run.config
