"""Run configs and the train / eval / caption commands, end to end on the ci shapes config."""

from __future__ import annotations

import json

import pytest

from ptlib.cli import main
from ptlib.train.runconfig import apply_overrides, load_run_config, shipped_run_configs


def test_shipped_configs_resolve_with_their_base():
    names = shipped_run_configs()
    assert {"shapes_vit", "shapes_convnext", "shapes_vit_ci", "shapes_convnext_ci"} <= set(names)
    ci = load_run_config("shapes_convnext_ci")
    cpu = load_run_config("shapes_convnext")
    assert ci["model"]["encoder"] == cpu["model"]["encoder"] == "convnext_atto"
    assert ci["data"]["n_train"] < cpu["data"]["n_train"]
    for name in names:
        config = load_run_config(name)
        assert config["model"]["img_size"] == config["data"]["img_size"], name


def test_overrides_parse_values_and_reject_bad_paths():
    config = apply_overrides({"train": {"lr": 1.0}}, ["train.lr=3e-4", "model.prune_layers=[3, 6]"])
    assert config["train"]["lr"] == pytest.approx(3e-4)
    assert config["model"]["prune_layers"] == [3, 6]
    with pytest.raises(ValueError, match="section.key=value"):
        apply_overrides({}, ["lr=3"])
    with pytest.raises(ValueError, match="section must be one of"):
        apply_overrides({}, ["optim.lr=3"])


def test_unknown_config_lists_shipped_ones(tmp_path):
    with pytest.raises(FileNotFoundError, match="shapes_vit"):
        load_run_config("no_such_config")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {}\nmodle: {}\n")
    with pytest.raises(ValueError, match="unknown top-level keys \\['modle'\\]"):
        load_run_config(bad)


def test_train_eval_caption_end_to_end(isolated_dirs, capsys):
    out = isolated_dirs / "run"
    code = main(["train", "--config", "shapes_convnext_ci", "--out", str(out),
                 "--set", "train.epochs=1"])
    assert code == 0
    assert (out / "last.pt").is_file() and (out / "best.pt").is_file()
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 1 and history[0]["val_cider"] is not None
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "finished" and record["config"]["name"] == "shapes_convnext_ci"

    assert main(["eval", "--ckpt", str(out / "best.pt"), "--split", "test"]) == 0
    results = json.loads((out / "results_test.json").read_text())
    metrics = json.loads((out / "results_test.metrics.json").read_text())
    assert len(results) == metrics["n_images"] == 16
    assert {"BLEU-4", "CIDEr-D", "ROUGE-L"} <= set(metrics)
    assert metrics["SPICE"] is None and "SPICE" in metrics["unavailable"]
    assert "correctness" in metrics

    image = next((isolated_dirs / "data").glob("shapes-*/images/test/*.jpg"))
    capsys.readouterr()
    assert main(["caption", "--ckpt", str(out / "best.pt"), str(image), "--json",
                 "--attention", str(isolated_dirs / "att.png")]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed.strip().splitlines()[-1])[0]["image"] == str(image)
    assert (isolated_dirs / "att.png").stat().st_size > 0


def test_errors_are_reported_without_traceback(isolated_dirs, capsys):
    assert main(["train", "--config", "shapes_vit_ci", "--set", "train.grad_accum=0"]) == 2
    assert "grad_accum=0" in capsys.readouterr().err
    missing = isolated_dirs / "missing.pt"
    assert main(["eval", "--ckpt", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err
