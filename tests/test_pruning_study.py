"""The pruning study's parts: kept-object recall, inference-time pruning, the report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptlib import course, runcache
from ptlib.experiments import study_report as report
from ptlib.experiments.pruning_study import (
    StudyResult,
    _sweep_cells,
    study_models,
    study_profile,
    study_settings,
)
from ptlib.metrics.correctness import SceneTruth, TrueObject
from ptlib.metrics.kept_objects import cell_object_area, kept_object_recall
from ptlib.models import Captioner, CaptionerConfig, reprune


def _scene(*boxes: tuple[float, float, float, float], side: int = 64) -> SceneTruth:
    objects = tuple(
        TrueObject("circle", "red", "small", box, (box[0] + box[2] / 2, box[1] + box[3] / 2))
        for box in boxes
    )
    return SceneTruth(image_id=1, width=side, height=side, objects=objects)


# ----------------------------------------------------------------------------- kept objects


def test_cell_object_area_splits_a_box_over_the_cells_it_covers() -> None:
    # 4x4 grid of 16-px cells; a 16x16 box at (8, 8) covers a quarter of cells 0, 1, 4, 5.
    area = cell_object_area(_scene((8, 8, 16, 16)), (4, 4))
    assert area.shape == (16,)
    assert area.sum() == pytest.approx(256)
    np.testing.assert_allclose(area[[0, 1, 4, 5]], 64)
    assert area[[2, 3, 6, 7, 8]].sum() == 0


def test_kept_object_recall_counts_kept_area_and_duplicates_once() -> None:
    area = cell_object_area(_scene((8, 8, 16, 16), (48, 48, 16, 16)), (4, 4))
    assert kept_object_recall(area, list(range(16))) == pytest.approx(1.0)
    assert kept_object_recall(area, [0, 0, 1]) == pytest.approx(128 / 512)
    assert kept_object_recall(area, [15]) == pytest.approx(256 / 512)
    assert kept_object_recall(area, [2, 3]) == 0.0
    assert kept_object_recall(cell_object_area(_scene(), (4, 4)), [0]) is None


def test_kept_object_recall_rejects_indices_outside_the_grid() -> None:
    area = cell_object_area(_scene((0, 0, 8, 8)), (2, 2))
    with pytest.raises(ValueError, match=r"kept_indices must lie in \[0, 4\)"):
        kept_object_recall(area, [4])


# ----------------------------------------------------------------------- inference pruning


def _captioner(encoder: str = "vit_tiny_patch16_224", method: str = "norm") -> Captioner:
    torch.manual_seed(0)
    config = CaptionerConfig(encoder=encoder, img_size=64, d_model=32, ff_dim=64, vocab_size=20,
                             max_len=8, n_encoder_layers=0, prune_ratio=0.25, prune_method=method)
    return Captioner.from_config(config).eval()


def test_reprune_returns_a_new_captioner_and_leaves_the_model_alone() -> None:
    model = _captioner()
    trained = model.pruner
    images = torch.randn(2, 3, 64, 64)
    before = model.generate(images)
    pruned = reprune(model, 0.5, "random", "encoder")
    assert pruned is not model and pruned.pruner is not trained
    assert (pruned.pruner.method, pruned.pruner.ratio, pruned.pruner.prune_at) == (
        "random", 0.5, "encoder")
    assert pruned.num_memory_tokens == 8
    assert pruned.generate(images).kept_indices.shape == (2, 8)
    # the trained modules are shared, not copied
    assert pruned.encoder is model.encoder and pruned.decoder is model.decoder
    assert pruned.projection is model.projection
    assert {id(p) for p in pruned.parameters()} == {id(p) for p in model.parameters()}
    # the original keeps its pruner and gives the same captions
    assert model.pruner is trained and (trained.method, trained.ratio) == ("norm", 0.25)
    after = model.generate(images)
    assert torch.equal(before.tokens, after.tokens)
    assert torch.equal(before.kept_indices, after.kept_indices)
    assert pruned.config.prune_at == "encoder" and model.config.prune_at == "memory"


def test_reprune_keeps_the_training_mode_and_a_seeded_random_pruner_repeats() -> None:
    model = _captioner().train()
    pruned = reprune(model, 0.5, "random")
    assert pruned.training and not pruned.pruner.training
    assert model.training and model.pruner.training
    images = torch.randn(2, 3, 64, 64)
    first = reprune(model, 0.5, "random", seed=3).generate(images).kept_indices
    again = reprune(model, 0.5, "random", seed=3).generate(images).kept_indices
    assert torch.equal(first, again)


def test_ratio_zero_means_no_pruning() -> None:
    model = _captioner()
    pruned = reprune(model, 0.0, "merge")
    assert pruned.pruner.method == "none"
    assert pruned.num_memory_tokens == model.encoder.num_tokens


def test_learned_pruning_needs_a_trained_scorer_and_reuses_it() -> None:
    with pytest.raises(ValueError, match="trained with method 'norm'"):
        reprune(_captioner(), 0.5, "learned")
    model = _captioner(method="learned")
    pruned = reprune(model, 0.5)
    assert pruned.pruner.method == "learned" and pruned.pruner.scorer is model.pruner.scorer
    images = torch.randn(2, 3, 64, 64)
    expected = model.pruner.scorer(model.projection(model.encoder(images).tokens))
    kept = expected.topk(8, dim=1).indices.sort(dim=1).values
    assert torch.equal(pruned.generate(images).kept_indices, kept)
    with pytest.raises(ValueError, match="prune_at='memory'"):
        reprune(model, 0.5, "learned", "encoder")


def test_reprune_rejects_what_the_encoder_cannot_do() -> None:
    model = _captioner("convnext_atto")
    with pytest.raises(ValueError, match="class token"):
        reprune(model, 0.5, "cls_attention")
    with pytest.raises(ValueError, match="needs a ViT"):
        reprune(model, 0.5, "norm", "encoder")
    assert model.pruner.method == "norm"


# --------------------------------------------------------------------------- settings/cells


def test_every_profile_with_a_study_has_valid_settings() -> None:
    for name in ("ci", "cpu", "gpu"):
        profile = course.get_profile(name)
        models = study_models(study_settings(profile), profile)
        assert {m.backbone for m in models} == {"vit", "convnext"}
        assert all(m.seeds for m in models)
    assert study_profile("gpu").name == "gpu"
    assert study_profile(course.get_profile("coco", check_data=False)).name == "coco"
    no_study = course.Profile(name="x", description="", seed=0, settings={"data": {}})
    assert study_profile(no_study).name == "cpu"
    assert study_profile("ci").name == "ci"


def test_study_settings_name_missing_and_unknown_keys() -> None:
    profile = course.Profile(name="x", description="", seed=0,
                             settings={"study": {"ratios": [0.0], "colour": 1}})
    with pytest.raises(ValueError, match=r"missing keys \[.*'methods'.*unknown keys \['colour'\]"):
        study_settings(profile)


def test_sweep_cells_cover_the_grid() -> None:
    settings = study_settings(course.get_profile("cpu"))
    n_ratios = len([r for r in settings["ratios"] if r > 0])
    vit = _sweep_cells(settings, has_cls=True, is_vit=True, first_seed=True, trained_method=None)
    memory = [c for c in vit if c[1] == "memory" and c[3] == "test"]
    assert len(memory) == 1 + len(settings["methods"]) * n_ratios
    encoder = [c for c in vit if c[1] == "encoder"]
    assert len(encoder) == len(settings["encoder_methods"]) * n_ratios
    assert len(set(vit)) == len(vit)
    convnext = _sweep_cells(settings, has_cls=False, is_vit=False, first_seed=False,
                            trained_method=None)
    assert all(c[0] != "cls_attention" and c[1] == "memory" and c[3] == "test" for c in convnext)
    trained = _sweep_cells(settings, has_cls=False, is_vit=False, first_seed=False,
                           trained_method="norm")
    assert [c[2] for c in trained] == [float(r) for r in settings["ratios"]]


def _sweep_keys(monkeypatch: pytest.MonkeyPatch, study: dict) -> dict[str, str]:
    """The stored-result key of each sweep of a ci profile with this study section."""
    import ptlib.experiments.pruning_study as pruning_study

    keys: dict[str, str] = {}

    def record(name, config, fn, **kwargs):
        if "/pruning_study/" in name:  # not the pretrained encoders' records
            keys[name.rsplit("/", 1)[-1]] = runcache.config_key(config)

    monkeypatch.setattr(pruning_study.runcache, "run_or_load", record)
    ci = course.get_profile("ci")
    profile = course.Profile(name="ci", description="", seed=0,
                             settings={**ci.settings, "study": study})
    for job in pruning_study._jobs(profile):
        job.run(False)
    return keys


def test_adding_seeds_or_trained_methods_keeps_stored_sweeps(monkeypatch) -> None:
    study = dict(study_settings(course.get_profile("ci")))
    before = _sweep_keys(monkeypatch, {**study, "seeds": [0], "trained_with": ["norm"]})
    after = _sweep_keys(monkeypatch, {**study, "seeds": [0, 1], "trained_with": ["norm", "learned"]})
    assert set(before) < set(after)
    assert all(after[label] == key for label, key in before.items())
    regridded = _sweep_keys(monkeypatch, {**study, "ratios": [0.0, 0.3]})
    assert all(regridded[label] != key for label, key in before.items())


# ----------------------------------------------------------------------------------- report


def _row(model, seed, method, ratio, cider, exact=0.5, trained="none", backbone=None):
    return {"model": model, "backbone": backbone or model.split("_")[0], "seed": seed,
            "trained_with": trained, "method": method, "placement": "memory", "ratio": ratio,
            "split": "test", "cider": cider, "exact_set": exact, "tokens_kept": 10}


def _fake_study() -> StudyResult:
    rows = []
    for seed, noise in ((0, 0.0), (1, 0.1)):
        rows += [_row("vit", seed, "none", 0.0, 2.0 + noise)]
        rows += [_row("vit", seed, "norm", r, 2.0 + noise - 2 * r) for r in (0.3, 0.7)]
        rows += [_row("vit", seed, "merge", r, 2.0 + noise - r / 10) for r in (0.3, 0.7)]
        rows += [_row("convnext", seed, "none", 0.0, 3.0 + noise)]
        rows += [_row("convnext", seed, "norm", r, 3.0 + noise - r) for r in (0.3, 0.7)]
    rows += [_row("vit_trained_norm", 0, "norm", r, c, trained="norm", backbone="vit")
             for r, c in ((0.0, 1.0), (0.3, 1.9), (0.7, 0.2))]
    models = {
        "vit": {"backbone": "vit", "tokens": 10, "trained_with": "none", "runs": {0: {}, 1: {}}},
        "convnext": {"backbone": "convnext", "tokens": 10, "trained_with": "none",
                     "runs": {0: {}, 1: {}}},
        "vit_trained_norm": {"backbone": "vit", "tokens": 10, "trained_with": "norm",
                             "runs": {0: {}}},
    }
    return StudyResult(rows=rows, models=models)


def test_curve_averages_seeds_and_keeps_the_spread() -> None:
    points = report.curve(_fake_study(), "vit", "norm")
    assert [p.ratio for p in points] == [0.0, 0.3, 0.7]
    assert points[0].mean == pytest.approx(2.05)
    assert (points[1].low, points[1].high) == pytest.approx((1.4, 1.5))
    assert all(p.n_seeds == 2 for p in points)


def test_best_method_first_drop_and_headline() -> None:
    study = _fake_study()
    assert report.best_method(study, "vit") == "merge"
    assert report.first_drop(report.curve(study, "vit", "norm")) == pytest.approx(0.3)
    assert report.first_drop(report.curve(study, "vit", "merge")) is None
    table = report.headline_table(study, ratios=(0.0, 0.7))
    assert [row["model"] for row in table] == ["vit", "convnext"]
    assert table[0]["cider@0.7"] == pytest.approx(2.05 - 0.07)


def test_no_sentence_builder_left_in_the_report() -> None:
    assert not hasattr(report, "conclusions")  # chapter 7 writes its conclusions in Markdown


def test_retention_is_measured_per_seed_with_its_spread() -> None:
    study = _fake_study()
    norm = report.retention(study, "vit", "norm")
    # seed 0: (1.4/2.0 + 0.6/2.0) / 2 = 0.5; seed 1: (1.5/2.1 + 0.7/2.1) / 2
    assert norm.n_seeds == 2
    assert norm.low == pytest.approx(0.5)
    assert norm.high == pytest.approx(2.2 / 4.2)
    assert norm.mean == pytest.approx((0.5 + 2.2 / 4.2) / 2)
    merge = report.retention(study, "vit", "merge")
    assert merge.mean == pytest.approx(0.97, abs=0.01)
    assert report.retention(study, "vit", "cls_attention") is None


def test_method_scores_keep_every_seed() -> None:
    scores = report.method_scores(_fake_study(), "vit")
    assert list(scores) == ["norm", "merge"]
    assert (scores["norm"].low, scores["norm"].high) == pytest.approx((1.0, 1.1))
    assert scores["merge"].mean == pytest.approx(2.05 - 0.05)
    assert report.seeds_of(_fake_study(), "vit_trained_norm") == [0]


def test_a_difference_inside_the_seed_spread_is_a_tie() -> None:
    a = report.spread_of([0.80, 0.88])  # mean 0.84, range 0.08
    b = report.spread_of([0.81, 0.83])  # mean 0.82
    assert report.is_tie(a, b) and report.is_tie(b, a)
    c = report.spread_of([0.50, 0.52])
    assert not report.is_tie(a, c)
    one, other = report.spread_of([1.0]), report.spread_of([1.1])
    assert one.width == 0 and not report.is_tie(one, other)
    assert report.is_tie(one, other, noise=0.2)  # single seeds: a spread measured elsewhere
    with pytest.raises(ValueError, match="no values"):
        report.spread_of([])


def test_largest_spread_is_relative_to_the_mean() -> None:
    points = report.curve(_fake_study(), "vit", "norm")
    # ratio 0.7: seeds 0.6 and 0.7, mean 0.65
    assert report.largest_spread(points) == pytest.approx(0.1 / 0.65)
    assert report.largest_spread(report.curve(_fake_study(), "vit_trained_norm", "norm")) == 0


def test_trained_vs_inference_carries_the_inference_seed_spread() -> None:
    rows = report.trained_vs_inference(_fake_study())
    at = {r["ratio"]: r for r in rows}
    assert at[0.3]["trained with pruning"] == pytest.approx(1.9)
    assert at[0.3]["pruned at inference only"] == pytest.approx(1.4)  # seed 0
    assert at[0.3]["inference seed spread"] == pytest.approx(0.1)
    assert at[0.3]["inference seeds"] == 2


def test_scorers_used_in_training_are_compared_per_backbone() -> None:
    study = _fake_study()
    assert report.trained_scorers(study) == {}  # one trained scorer: nothing to compare
    study.rows += [_row("vit_trained_learned", 0, "learned", r, c, trained="learned",
                        backbone="vit") for r, c in ((0.0, 1.5), (0.3, 1.6), (0.7, 0.6))]
    study.models["vit_trained_learned"] = {"backbone": "vit", "tokens": 10,
                                           "trained_with": "learned", "runs": {0: {}}}
    assert report.trained_scorers(study) == {"vit": pytest.approx({"norm": 1.05, "learned": 1.1})}


def test_rows_csv_has_one_line_per_row() -> None:
    study = _fake_study()
    text = report.rows_csv(study)
    assert len(text.strip().splitlines()) == len(study.rows) + 1
    assert text.splitlines()[0].startswith("model,backbone,seed")


def test_spread_over_seeds_and_its_text() -> None:
    from ptlib.experiments.study_report import spread_over, spread_text

    runs = [{"acc": 0.5}, {"acc": None}, {"acc": 0.7}]
    spread = spread_over(runs, lambda run: run["acc"])
    assert spread.n_seeds == 2 and spread.mean == pytest.approx(0.6)
    assert spread_text(spread) == "60.0 (50.0-70.0)"
    assert spread_text(spread_over(runs[:1], lambda run: run["acc"]), digits=0) == "50"
    assert spread_text(None) is None
    nothing = spread_over(runs[1:2], lambda run: run["acc"])
    assert nothing.n_seeds == 1 and nothing.mean != nothing.mean  # nan: no run has it
