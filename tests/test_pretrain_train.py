"""The pretext-training loop: it learns, it saves slim encoders, it resumes, it is probed."""

from __future__ import annotations

import json

import pytest
import torch

from ptlib.pretrain import (
    PretextDataset,
    PretextHeads,
    PretrainConfig,
    build_spec_encoder,
    linear_probe,
    pretext_loss,
    pretrain_encoder,
)
from ptlib.pretrain.probe import fit_linear
from ptlib.train.checkpoint import load_checkpoint

SPEC = {"encoder": "vit_tiny_patch16_224", "img_size": 64, "feature_stride": None,
        "encoder_kwargs": {"depth": 2}}
CONVNEXT = {"encoder": "convnext_atto", "img_size": 64, "feature_stride": 16,
            "encoder_kwargs": None}


def test_loss_decreases_on_a_fixed_batch():
    """A few AdamW steps on one batch lower the pretext loss (the heads and encoder learn)."""
    torch.manual_seed(0)
    encoder = build_spec_encoder(SPEC)
    heads = PretextHeads(encoder.width)
    batch = torch.utils.data.default_collate([PretextDataset(8, img_size=64, grid=encoder.grid)[i]
                                              for i in range(8)])
    optimizer = torch.optim.AdamW([*encoder.parameters(), *heads.parameters()], lr=1e-3)
    losses = []
    for _ in range(6):
        loss, parts = pretext_loss(heads(encoder(batch["images"]).tokens), batch)
        assert set(parts) == {"colour", "shape", "size", "presence", "count"}
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_pretrain_writes_a_slim_encoder_and_resumes(tmp_path):
    """Pausing after 2 of 4 steps and resuming gives the same encoder as an unbroken run;
    the slim checkpoint holds encoder weights only, in float16, and loads weights-only."""
    cfg = PretrainConfig(images=32, batch_size=8, eval_images=8, probe_images=8,
                         checkpoint_every=1, log_every=1)
    whole = pretrain_encoder(CONVNEXT, cfg, tmp_path / "whole", verbose=False)
    assert whole.status == "finished" and whole.steps == 4 and whole.images_seen == 32
    paused = pretrain_encoder(CONVNEXT, cfg, tmp_path / "split", stop_at_step=2, verbose=False)
    assert paused.status == "paused" and paused.encoder_file is None
    resumed = pretrain_encoder(CONVNEXT, cfg, tmp_path / "split", verbose=False)
    assert resumed.status == "finished" and resumed.steps == 4
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]

    state = torch.load(whole.encoder_file, map_location="cpu", weights_only=True)
    assert set(state) >= {"model", "encoder_spec", "pretext"}
    assert "optimizer" not in state and "heads" not in state
    assert all(v.dtype == torch.float16 for v in state["model"].values() if v.is_floating_point())
    other = load_checkpoint(resumed.encoder_file)["model"]
    for key, value in state["model"].items():
        assert torch.equal(value, other[key]), key
    assert state["encoder_spec"]["feature_stride"] == 16
    assert set(state["pretext"]["accuracy"]) >= {"colour_object", "presence", "count"}
    record = json.loads((tmp_path / "whole" / "pretrain.json").read_text())
    assert record["status"] == "finished" and record["minutes"] > 0


def test_time_budget_stops_resumably(tmp_path):
    cfg = PretrainConfig(images=32, batch_size=8, eval_images=8, probe_images=8,
                         max_minutes=1e-6)
    result = pretrain_encoder(SPEC, cfg, tmp_path, verbose=False)
    assert result.status == "budget" and result.steps == 1 and result.encoder_file.is_file()
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 1
    with pytest.raises(ValueError, match="another pretraining run"):
        pretrain_encoder(SPEC, PretrainConfig(images=40, batch_size=8), tmp_path, verbose=False)


def test_linear_probe_reads_a_planted_feature():
    """The closed-form probe recovers labels that are a linear function of the features."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(300, 5, generator=generator)
    labels = features[:, :3].argmax(dim=1)
    weight, bias = fit_linear(features, labels, 3)
    accuracy = ((features @ weight.T + bias).argmax(dim=1) == labels).float().mean()
    assert accuracy > 0.85


def test_probe_runs_on_an_encoder_and_reports_chance():
    torch.manual_seed(0)
    encoder = build_spec_encoder(SPEC)
    fit = PretextDataset(16, img_size=64, grid=encoder.grid, start=0)
    score = PretextDataset(16, img_size=64, grid=encoder.grid, start=100)
    result = linear_probe(encoder, fit, score)
    assert set(result) == {"colour", "shape", "size", "object"}
    for name, row in result.items():
        assert 0 <= row["accuracy"] <= 1 and 0 < row["chance"] <= 1 and row["tokens"] > 0, name
    assert result["object"]["tokens"] == 16 * encoder.num_tokens
    # tokens of a random encoder still carry the patch's colour: better than chance
    assert result["colour"]["accuracy"] > result["colour"]["chance"]


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="batch_size"):
        PretrainConfig(images=8, batch_size=16)
    with pytest.raises(ValueError, match="unknown keys"):
        PretrainConfig.from_dict({"imgs": 3})
    assert PretrainConfig(images=100, batch_size=32, epochs=3).total_steps == 9
