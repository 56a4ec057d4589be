"""The stored grounding experiment under the ci profile.

Training the ci captioners (with their full evaluation) takes tens of seconds
each, so ``trained_captioner`` is replaced by one that stores an untrained ci
captioner whose output bias makes it write "circle" at every step. The
pointing-game counts are then known exactly from the test split's objects.
"""

from __future__ import annotations

import pytest
import torch

from ptlib import course
from ptlib.experiments import TrainedRun, config_name
from ptlib.experiments import grounding as grounding_module
from ptlib.experiments.command import _experiments
from ptlib.experiments.grounding import GroundingModel, grounding_models, grounding_study
from ptlib.metrics import load_ground_truth
from ptlib.models import num_kept
from ptlib.train.checkpoint import save_checkpoint
from ptlib.train.run import build_model, build_run_data, instances_path
from ptlib.train.runconfig import load_run_config


def _circle_captioner(backbone: str, profile: course.Profile, *, overrides=(), tag: str = "",
                      **_: object) -> TrainedRun:
    """An untrained ci captioner that always says "circle", stored like a trained one."""
    name = config_name(backbone, profile) + (f"_{tag}" if tag else "")
    config = load_run_config(config_name(backbone, profile), list(overrides))
    vocab = build_run_data(config["data"], splits=("test",)).vocab
    torch.manual_seed(0)
    model = build_model(config["model"], vocab)
    with torch.no_grad():
        model.decoder.head.bias[vocab.stoi["circle"]] = 1e4
    checkpoint = course.results_dir() / profile.name / "checkpoints" / f"{name}-fake.pt"
    save_checkpoint(checkpoint, {"model": model.state_dict(), "vocab": vocab.to_json(),
                                 "run_config": config, "epoch": 0, "history": []})
    return TrainedRun(name, config, checkpoint, [], {}, 0.0,
                      sum(p.numel() for p in model.parameters()))


def _circle_pretrained(name: str, variant: str, profile: course.Profile, **_: object
                       ) -> TrainedRun:
    """A circle captioner standing in for chapter 4b's: trained without pruning."""
    backbone = "vit" if name == "vit" else "convnext"
    overrides = ["model.prune_ratio=0", "model.prune_method=none"]
    if name == "convnext_s16":
        overrides.append("model.feature_stride=16")
    return _circle_captioner(backbone, profile, overrides=overrides,
                             tag=f"{name}_pretrained_{variant}")


@pytest.fixture
def circle_runs(isolated_dirs, monkeypatch):
    import ptlib.pretrain.variants as variants

    monkeypatch.setattr(grounding_module, "trained_captioner", _circle_captioner)
    monkeypatch.setattr(variants, "pretrained_captioner", _circle_pretrained)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only contend with other jobs
    yield isolated_dirs
    torch.set_num_threads(threads)


def test_grounding_study_scores_every_ratio_then_loads(circle_runs, monkeypatch):
    profile = course.get_profile("ci")
    result = grounding_study(profile)
    ratios = [float(r) for r in profile.section("inference")["prune_ratios"]]
    assert result["ratios"] == ratios and result["split"] == "test"
    assert set(result["models"]) == {m.name for m in grounding_models(profile)}
    assert set(result["models"]) == {"vit", "convnext", "convnext_s16", "vit_pretrained",
                                     "convnext_s16_pretrained"}
    tokens = {name: entry["tokens"] for name, entry in result["models"].items()}
    assert tokens["convnext_s16"] == tokens["vit"] < tokens["convnext"]  # equal-token ConvNeXt
    assert tokens["convnext_s16_pretrained"] == tokens["vit_pretrained"] == tokens["vit"]
    assert result["models"]["convnext_s16"]["run"] == "shapes_convnext_ci_s16"

    config = load_run_config(config_name("vit", profile))
    data = build_run_data(config["data"], splits=("test",))
    truth = load_ground_truth(instances_path(data, "test"))
    with_circle = sum(any(o.shape == "circle" for o in t.objects) for t in truth.values())
    assert 0 < with_circle < len(truth)
    steps = config["model"]["max_len"] - 1  # the captioner never stops: "circle" every step

    for backbone, entry in result["models"].items():
        assert [row["ratio"] for row in entry["results"]] == ratios
        assert entry["grid"][0] * entry["grid"][1] == entry["tokens"]
        for row in entry["results"]:
            assert row["kept_tokens"] == num_kept(entry["tokens"], row["ratio"]), backbone
            # trained without pruning (the pretrained ones): pruned by norm at inference
            own = entry["trained_method"] if entry["trained_method"] != "none" else "norm"
            assert row["method"] == ("none" if row["ratio"] == 0 else own)
            assert row["n_captions"] == len(truth) and row["n_without_shape_word"] == 0
            assert row["n_shape_words"] == len(truth) * steps
            assert row["n_scored"] == with_circle * steps
            assert row["n_absent"] == (len(truth) - with_circle) * steps
            assert row["per_shape"]["circle"]["scored"] == row["n_scored"]
            assert row["per_shape"]["square"]["scored"] == 0
            assert row["rate"] == pytest.approx(row["hits"] / row["n_scored"])
            assert 0.0 < row["chance_rate"] < 1.0

    def no_scoring(*args, **kwargs):
        raise AssertionError("a stored grounding result must be loaded, not recomputed")

    monkeypatch.setattr(grounding_module, "score_pointing", no_scoring)
    assert grounding_study(profile) == result
    with pytest.raises(AssertionError, match="must be loaded"):
        grounding_study(profile, ratios=[0.0, 0.9])  # another config is computed


def test_adding_a_model_leaves_the_stored_results_of_the_others(circle_runs, monkeypatch):
    profile = course.get_profile("ci")
    first = grounding_study(profile, models=["vit"])
    scored = []
    original = grounding_module.score_pointing

    def counting(model, *args, **kwargs):
        scored.append(model.encoder.num_tokens)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(grounding_module, "score_pointing", counting)
    everything = grounding_study(profile)
    assert everything["models"]["vit"] == first["models"]["vit"]
    n_ratios = len(profile.section("inference")["prune_ratios"])
    others = len(grounding_models(profile)) - 1
    assert len(scored) == others * n_ratios  # every model but the vit
    with pytest.raises(ValueError, match="convnext_s8"):
        grounding_study(profile, models=["convnext_s8"])


def test_grounding_models_come_from_the_profile():
    models = {m.name: m for m in grounding_models("cpu")}
    assert models["vit"] == GroundingModel("vit", "vit") and models["vit"].tag == ""
    assert models["convnext_s16"].overrides == ("model.feature_stride=16",)
    assert models["convnext_s16"].tag == "s16"
    assert models["vit"].is_stored("cpu") and models["convnext"].is_stored("cpu")
    assert models["vit_pretrained"].pretrained == ("vit", "frozen")
    assert models["convnext_s16_pretrained"].pretrained == ("convnext_s16", "frozen")


def test_a_pretrained_entry_is_checked():
    from ptlib.pretrain.variants import pretrained_choice

    profile = course.get_profile("cpu")
    entry = {"backbone": "vit", "pretrained": "convnext_s16"}
    spec = course.model_specs(profile, "grounding", {"p": entry},
                              options=("pretrained", "variant"))[0]
    with pytest.raises(ValueError, match=r"grounding\.models\.p: .*is a convnext, not a vit"):
        pretrained_choice(profile, "grounding", spec)
    spec = course.model_specs(profile, "grounding",
                              {"p": {"backbone": "vit", "pretrained": "vit",
                                     "variant": "thawed"}},
                              options=("pretrained", "variant"))[0]
    with pytest.raises(ValueError, match="variant must be one of"):
        pretrained_choice(profile, "grounding", spec)


def test_is_stored_is_false_until_trained(isolated_dirs):
    assert not any(m.is_stored("ci") for m in grounding_models("ci"))
    # looking does not pretrain a pretrained captioner's encoder
    assert not list(course.results_dir().glob("ci/pretrain/*/*"))


def test_grounding_is_a_results_job_only_where_there_are_boxes():
    for name in ("ci", "gpu"):
        assert "grounding" in _experiments(course.get_profile(name))
    coco = course.get_profile("coco", check_data=False)
    assert "grounding" in _experiments(coco) and "coco-vit" in _experiments(coco)
    ci = course.get_profile("ci")
    boxless = course.Profile(name="x", description="", seed=0,
                             settings={**ci.settings, "data": {"dataset": "coco"}})
    assert "grounding" not in _experiments(boxless)
    assert "captioner-convnext_s16" in _experiments(course.get_profile("cpu"))
    with pytest.raises(ValueError, match="shapes dataset"):
        grounding_study(boxless)
