"""ptlib.course: profiles, folders, seeds, devices and the run-or-load cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ptlib import course


def test_profiles_have_expected_names_and_sections():
    for name in course.PROFILE_NAMES:
        profile = course.get_profile(name, check_data=False)
        assert profile.name == name
        assert profile.description
        assert {"runs", "data", "inference", "train"} <= set(profile.settings)
        assert "model" not in profile.settings  # the run configs hold the model


def test_profile_comes_from_environment(monkeypatch):
    monkeypatch.setenv("PTLIB_PROFILE", "ci")
    assert course.get_profile().name == "ci"
    monkeypatch.setenv("PTLIB_PROFILE", "GPU")
    assert course.get_profile().name == "gpu"


def test_default_profile_follows_cuda(monkeypatch):
    monkeypatch.delenv("PTLIB_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert course.get_profile().name == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert course.get_profile().name == "gpu"


def test_unknown_profile_names_the_variable(monkeypatch):
    monkeypatch.setenv("PTLIB_PROFILE", "laptop")
    with pytest.raises(ValueError, match="PTLIB_PROFILE.*'laptop'.*ci, cpu, gpu"):
        course.get_profile()
    with pytest.raises(ValueError, match="argument name"):
        course.get_profile("tiny")


def test_missing_section_lists_the_sections():
    with pytest.raises(KeyError, match="sections"):
        course.get_profile("ci").section("nope")


def test_directories_default_inside_repo_and_follow_env(tmp_path, monkeypatch):
    monkeypatch.delenv("PTLIB_DATA_DIR", raising=False)
    assert course.data_dir(create=False) == course.repo_root() / "data"
    assert (course.repo_root() / "pyproject.toml").is_file()
    monkeypatch.setenv("PTLIB_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("PTLIB_RESULTS_DIR", str(tmp_path / "r"))
    monkeypatch.setenv("PTLIB_CHECKPOINT_DIR", str(tmp_path / "c"))
    assert course.data_dir() == tmp_path / "d" and (tmp_path / "d").is_dir()
    assert course.results_dir() == tmp_path / "r" and (tmp_path / "r").is_dir()
    assert course.checkpoint_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


def test_default_directories_are_git_ignored():
    ignored = (course.repo_root() / ".gitignore").read_text().split()
    for folder in ("/data/", "/checkpoints/", "/results/ci/", ".venv/", "_build/"):
        assert folder in ignored


def test_seed_everything_reproduces_all_generators():
    def draw():
        import random

        return random.random(), float(np.random.rand()), float(torch.rand(1))

    course.seed_everything(123)
    first = draw()
    course.seed_everything(123)
    assert draw() == first
    course.seed_everything(124)
    assert draw() != first


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="seed"):
        course.seed_everything(bad)


def test_pick_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert course.pick_device().type in ("cpu", "mps")
    assert course.pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        course.pick_device("cuda")
    with pytest.raises(ValueError, match="not a device"):
        course.pick_device("gpu0")


def test_run_or_load_runs_once_per_exact_config(tmp_path):
    calls = []

    def fn():
        calls.append(1)
        return {"loss": [1.0, 0.5], "n": 3}

    config = {"profile": "ci", "lr": 1e-3, "layers": [2, 2]}
    first = course.run_or_load("train/demo", config, fn, directory=tmp_path, verbose=False)
    again = course.run_or_load("train/demo", dict(config), fn, directory=tmp_path, verbose=False)
    assert first == again == {"loss": [1.0, 0.5], "n": 3}
    assert len(calls) == 1
    course.run_or_load("train/demo", {**config, "lr": 2e-3}, fn, directory=tmp_path, verbose=False)
    assert len(calls) == 2
    course.run_or_load("train/demo", config, fn, directory=tmp_path, force=True, verbose=False)
    assert len(calls) == 3


def test_run_or_load_record_carries_provenance(tmp_path):
    config = {"seed": 0}
    course.run_or_load("x", config, lambda: [1, 2], directory=tmp_path, verbose=False)
    record = json.loads(course.run_record_path("x", config, tmp_path).read_text())
    assert record["config"] == config and record["result"] == [1, 2]
    assert record["versions"]["torch"] == torch.__version__
    assert record["wall_time_s"] >= 0 and "machine" in record


def test_run_or_load_ignores_record_with_other_config_under_same_key(tmp_path):
    """A record is reused only if its stored config equals the requested one, not just its hash."""
    config = {"a": 1}
    path = course.run_record_path("x", config, tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"config": {"a": 2}, "result": "stale"}))
    result = course.run_or_load("x", config, lambda: "fresh", directory=tmp_path, verbose=False)
    assert result == "fresh"


def test_run_or_load_rejects_unserialisable_config(tmp_path):
    with pytest.raises(TypeError, match="JSON"):
        course.run_or_load("x", {"f": object()}, lambda: 1, directory=tmp_path)
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        course.run_or_load("x", {"a": 1}, lambda: object(), directory=tmp_path)
    with pytest.raises(ValueError, match="run name"):
        course.run_or_load("../escape", {"a": 1}, lambda: 1, directory=tmp_path)


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "r.json"
    course.atomic_write_text(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(course.os, "replace", broken_replace)
    with pytest.raises(OSError):
        course.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    import os
    import stat

    target = tmp_path / "result.json"
    course.atomic_write_text(target, "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
