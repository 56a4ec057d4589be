"""The training loop: exact resume, interruption, NaN handling, accumulation, history."""

from __future__ import annotations

import json

import pytest
import torch
from _toy_captioning import ToyCaptioner, ToyCaptions, collate

from ptlib.train.checkpoint import load_checkpoint
from ptlib.train.config import TrainConfig
from ptlib.train.resume import EpochSampler
from ptlib.train.trainer import Trainer


def _trainer(tmp_path, cfg: TrainConfig, *, nan_at=None, sigint_at=None, **kw) -> Trainer:
    torch.manual_seed(cfg.seed)
    model = ToyCaptioner()
    model.nan_at_call, model.sigint_at_call = nan_at, sigint_at
    return Trainer(
        model,
        ToyCaptions(),
        ToyCaptions(n=8, seed=1),
        cfg,
        tmp_path,
        collate_fn=collate,
        device=torch.device("cpu"),
        show_progress=False,
        **kw,
    )


CFG = dict(epochs=3, batch_size=8, lr=3e-3, eval_every=0, seed=3, warmup_ratio=0.2)


def _losses(history):
    return [(row["train_loss"], row["val_loss"]) for row in history]


def test_resume_from_epoch_checkpoint_is_bit_exact(tmp_path):
    full = _trainer(tmp_path / "full", TrainConfig(**CFG)).fit()
    assert full.status == "finished" and len(full.history) == 3
    paused = _trainer(tmp_path / "split", TrainConfig(**CFG)).fit(stop_at_epoch=1)
    assert paused.status == "paused" and len(paused.history) == 1
    resumed = _trainer(tmp_path / "split", TrainConfig(**CFG)).fit(
        resume="auto"
    )
    assert resumed.status == "finished"
    assert _losses(resumed.history) == _losses(full.history)  # exact, not approximate
    a = load_checkpoint(full.last_checkpoint)["model"]
    b = load_checkpoint(resumed.last_checkpoint)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sigint_mid_epoch_saves_and_resumes_exactly(tmp_path):
    full = _trainer(tmp_path / "full", TrainConfig(**CFG)).fit()
    # SIGINT arrives in epoch 2, during its second batch (3 batches per epoch).
    interrupted = _trainer(tmp_path / "cut", TrainConfig(**CFG), sigint_at=5).fit()
    assert interrupted.status == "interrupted"
    assert "SIGINT" in interrupted.message and "--resume" in interrupted.message
    state = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (state["epoch"], state["batch_in_epoch"]) == (1, 2)
    resumed = _trainer(tmp_path / "cut", TrainConfig(**CFG)).fit(
        resume="auto"
    )
    assert _losses(resumed.history) == _losses(full.history)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    result = _trainer(tmp_path, TrainConfig(**CFG), nan_at=4).fit()  # first batch of epoch 2
    assert result.status == "nan"
    assert "NaN" in result.message and "last good checkpoint" in result.message
    state = load_checkpoint(result.last_checkpoint)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    cfg = dict(CFG, epochs=2)
    one = _trainer(tmp_path / "a", TrainConfig(**cfg, grad_accum=1)).fit()
    two = _trainer(tmp_path / "b", TrainConfig(**cfg, grad_accum=2)).fit()
    for row_a, row_b in zip(one.history, two.history, strict=True):
        assert row_a["train_loss"] == pytest.approx(row_b["train_loss"], rel=1e-5)
        assert row_a["val_loss"] == pytest.approx(row_b["val_loss"], rel=1e-5)


def test_history_and_best_checkpoint_are_written(tmp_path):
    scores = iter([0.5, 0.7, 0.6])
    result = _trainer(
        tmp_path, TrainConfig(**dict(CFG, eval_every=1)), evaluate_fn=lambda m: {
            "CIDEr-D": next(scores), "BLEU-4": 0.1}
    ).fit()
    rows = json.loads((tmp_path / "history.json").read_text())
    assert [r["val_cider"] for r in rows] == [0.5, 0.7, 0.6]
    header = (tmp_path / "history.csv").read_text().splitlines()[0]
    assert header.startswith("epoch,step,lr,train_loss,train_token_acc")
    assert load_checkpoint(result.best_checkpoint)["epoch"] == 2  # the epoch with CIDEr 0.7
    assert load_checkpoint(result.last_checkpoint)["epoch"] == 3
    assert all(0 <= r["train_token_acc"] <= 1 and r["images_per_s"] > 0 for r in rows)


def test_early_stopping(tmp_path):
    scores = iter([0.5, 0.4, 0.3, 0.2])
    result = _trainer(
        tmp_path,
        TrainConfig(**dict(CFG, epochs=4, eval_every=1, early_stopping=2)),
        evaluate_fn=lambda m: {"CIDEr-D": next(scores)},
    ).fit()
    assert result.status == "early_stopped" and len(result.history) == 3


def test_resume_refuses_a_changed_config(tmp_path):
    _trainer(tmp_path, TrainConfig(**CFG)).fit(stop_at_epoch=1)
    with pytest.raises(ValueError, match="lr: 0.003 -> 0.01"):
        _trainer(tmp_path, TrainConfig(**dict(CFG, lr=1e-2))).fit(resume="auto")


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="grad_accum=0"):
        TrainConfig(grad_accum=0)
    with pytest.raises(ValueError, match="unknown keys \\['epoch'\\]"):
        TrainConfig.from_dict({"epoch": 3})


def test_epoch_sampler_shards_cover_the_epoch_and_resume():
    full = list(EpochSampler(10, shuffle=True, seed=1))
    assert sorted(full) == list(range(10))
    ranks = [list(EpochSampler(10, shuffle=True, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == list(range(10))
    sampler = EpochSampler(10, shuffle=True, seed=1)
    sampler.set_start(4)
    assert list(sampler) == full[4:]
    sampler.set_epoch(1)
    assert list(sampler) != full and sorted(sampler) == list(range(10))
