"""ptlib.course: profiles and folders."""

from __future__ import annotations

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
