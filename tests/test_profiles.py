"""Profiles by intent: what each profile trains, on which data, and the coco/smoke switches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ptlib import course
from ptlib.bench.efficiency import efficiency_config, shapes_runs
from ptlib.data.fixtures import make_coco_fixture
from ptlib.experiments import config_name
from ptlib.experiments.pruning_study import study_profile
from ptlib.train import TrainConfig, load_run_config

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _profile(name: str) -> course.Profile:
    return course.get_profile(name, check_data=False)


def _run_data(profile: course.Profile, dataset: str = "shapes") -> dict[str, dict]:
    """The data section of every run config a profile trains, per backbone."""
    return {backbone: load_run_config(name, course.run_overrides(profile, dataset))["data"]
            for backbone, name in course.run_config_names(profile, dataset).items()}


@pytest.mark.parametrize("name", course.PROFILE_NAMES)
def test_chapters_0_to_9_use_only_the_embedded_dataset(name):
    """Every profile's captioners (chapters 5-9), study, grounding and efficiency runs and
    the data/model sections of chapters 1-4 read the shapes dataset, never COCO."""
    profile = _profile(name)
    assert profile.section("data")["dataset"] == "shapes"
    for backbone, data in _run_data(profile).items():
        assert data["dataset"] == "shapes", (name, backbone)
        assert "coco_root" not in data
        assert config_name(backbone, profile).startswith("shapes_")
    assert study_profile(profile).name == name  # the study runs under the profile itself
    setups = efficiency_config(profile)["flops"]["setups"]
    assert [s["name"] for s in setups][:2] == list(shapes_runs(profile))
    # the profile's shapes dataset and its run configs' agree (generated once)
    section = profile.section("data")
    for data in _run_data(profile).values():
        for key in ("img_size", "n_train", "n_val", "n_test", "n_compositional"):
            assert data[key] == section[key], (name, key)


def test_chapter_10_reads_coco_only_under_the_coco_profile():
    """Chapter 10 uses real COCO only under coco; elsewhere the COCO fixture."""
    for name in ("ci", "cpu", "gpu"):
        with pytest.raises(ValueError, match="coco_runs"):
            course.run_config_names(_profile(name), "coco")
    coco = _profile("coco")
    for data in _run_data(coco, "coco").values():
        assert data["dataset"] == "coco" and data["img_size"] == 224
    chapter10 = json.loads((ROOT / "notebooks" / "10_coco_on_gpu.ipynb").read_text())
    sources = "\n".join("".join(c["source"]) for c in chapter10["cells"])
    assert 'profile.name == "coco"' in sources and "make_coco_fixture" in sources
    others = "\n".join("".join(c["source"]) for p in NOTEBOOKS if not p.name.startswith("10_")
                       for c in json.loads(p.read_text())["cells"] if c["cell_type"] == "code")
    assert "coco_vit_b16" not in others and 'dataset="coco"' not in others


def test_gpu_profile_is_the_shapes_course_at_gpu_scale():
    cpu, gpu = _profile("cpu"), _profile("gpu")
    for backbone in ("vit", "convnext"):
        small = load_run_config(config_name(backbone, cpu))
        big = load_run_config(config_name(backbone, gpu))
        assert big["data"]["img_size"] > small["data"]["img_size"]
        assert big["data"]["n_train"] > small["data"]["n_train"]
        paper = load_run_config("paper_table1")["model"]
        for key in ("d_model", "ff_dim", "n_heads", "dropout"):  # Table 1's decoder
            assert big["model"][key] == paper[key], key
        passes = {c["data"]["n_train"] * c["train"]["epochs"] for c in (small, big)}
        assert big["data"]["n_train"] * big["train"]["epochs"] == max(passes) > min(passes)
        train = TrainConfig.from_dict(big["train"])  # amp: the default, "auto"
        assert train.amp == "auto" and train.num_workers > 0
        assert big["model"]["pretrained"] is False  # nothing downloads
    assert course.run_config_names(_profile("coco")) == course.run_config_names(gpu)


def test_default_profile_never_is_coco(monkeypatch):
    import torch

    monkeypatch.delenv("PTLIB_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert course.default_profile_name() == "gpu"


def test_coco_without_coco_stops_with_one_line_of_advice(tmp_path, monkeypatch):
    monkeypatch.setenv("PTLIB_PROFILE", "coco")
    monkeypatch.setenv("PTLIB_COCO_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(course.CocoMissingError) as info:
        course.get_profile()
    message = str(info.value)
    assert "\n" not in message
    assert f"ptlib data coco --root {tmp_path / 'nowhere'} --check" in message
    assert "PTLIB_PROFILE=gpu" in message
    assert info.value._render_traceback_() == [f"CocoMissingError: {message}"]  # no traceback
    # the command line says the same in one line, before any experiment starts
    from ptlib.cli import main

    assert main(["results", "--list"]) == 2
    # with COCO in place (the fixture) the profile loads and names its root
    root = make_coco_fixture(tmp_path / "coco")
    monkeypatch.setenv("PTLIB_COCO_ROOT", str(root))
    assert course.get_profile().name == "coco"
    assert course.coco_root() == root


def test_coco_advice_in_a_fresh_process_is_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PTLIB_PROFILE": "coco", "HOME": str(tmp_path),
           "PTLIB_COCO_ROOT": str(tmp_path / "none"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "ptlib.cli", "info"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "--check" in done.stderr
    assert "Traceback" not in done.stderr


def test_smoke_shrinks_sizes_but_keeps_the_code_paths(monkeypatch, tmp_path):
    gpu = _profile("gpu")
    monkeypatch.setenv("PTLIB_SMOKE", "1")
    monkeypatch.setenv("PTLIB_RESULTS_DIR", str(tmp_path / "r"))
    smoke = _profile("gpu")
    assert smoke.smoke and smoke.name == "gpu" and "PTLIB_SMOKE" in smoke.description
    assert smoke.section("data")["n_train"] < gpu.section("data")["n_train"]
    assert course.results_dir(create=False) == tmp_path / "r" / "smoke"
    for backbone, name in course.run_config_names(smoke).items():
        real = load_run_config(name)
        small = load_run_config(name, course.run_overrides(smoke))
        assert small["train"]["epochs"] < real["train"]["epochs"]
        assert small["data"]["n_train"] < real["data"]["n_train"]
        for section, keys in {"model": ("encoder", "encoder_kwargs", "feature_stride",
                                        "prune_method", "prune_at", "n_decoder_layers"),
                              "train": ("amp", "lr")}.items():
            for key in keys:
                assert small[section].get(key) == real[section].get(key), (backbone, key)
        assert small["data"]["img_size"] == smoke.section("data")["img_size"]
    assert course.run_overrides(smoke, "coco") == []
    monkeypatch.setenv("PTLIB_SMOKE", "maybe")
    with pytest.raises(ValueError, match="PTLIB_SMOKE"):
        course.get_profile("gpu")


def test_setup_page_quotes_the_stored_estimate_and_the_version_floors():
    """The numbers typed in book/setup.md and README.md come from their sources."""
    from ptlib.requirements import OLDEST

    setup = (ROOT / "book" / "setup.md").read_text()
    readme = (ROOT / "README.md").read_text()
    estimate = json.loads((ROOT / "results" / "estimates" / "gpu_book_time.json").read_text())
    assert "ESTIMATE" in estimate["what"]
    assert f"about {round(estimate['total_min']['gpu_min'])} minutes" in setup
    assert f"about {estimate['total_min']['cpu_min'] / 60:.1f} hours" in setup
    assert f"take {estimate['chapters']['4b']['cpu_min'] / 60:.1f} |" in setup
    assert f"({estimate['assumptions']['train_tflops']:.1f} TFLOP/s" in setup
    pretrain_images = course.get_profile("gpu").section("pretrain")["images"]
    assert f"encoders on {pretrain_images:,} images each" in setup
    hours = estimate["total_min"]["cpu_min"] / 60
    assert f"it takes about {round(hours)} hours" in readme
    for requirement in OLDEST:
        assert f"| {requirement.oldest} |" in setup, requirement.name
        assert f"(>= {requirement.oldest})" in readme, requirement.name
    for name in course.PROFILE_NAMES:
        assert f"| `{name}` |" in setup
