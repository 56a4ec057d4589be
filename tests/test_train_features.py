"""Frozen-encoder feature caching gives the losses of running the encoder every step."""

from __future__ import annotations

import pytest
import torch

from ptlib.data.datasets import collate_captions
from ptlib.train.features import (
    CachedFeatureDataset,
    FeatureCache,
    FeatureCaptioner,
    cached_or_encode,
    collate_features,
    encode_dataset,
)
from ptlib.train.run import build_model, build_run_data, train_run
from ptlib.train.runconfig import load_run_config
from ptlib.train.step import caption_loss_sum

CPU = torch.device("cpu")


def _setup(overrides=()):
    config = load_run_config("shapes_vit_ci", ["model.freeze_encoder=true", *overrides])
    data = build_run_data(config["data"], splits=("train",))
    torch.manual_seed(0)
    model = build_model(config["model"], data.vocab).eval()
    return config, data, model


def _loss(model, images, tokens):
    out = model(images, tokens[:, :-1])
    return caption_loss_sum(out.logits, tokens[:, 1:])[0]


@pytest.mark.parametrize(
    "overrides",
    [
        (),
        ("model.prune_method=cls_attention",),
        ("model.prune_at=encoder", "model.prune_method=cls_attention", "model.prune_layers=[3]"),
    ],
    ids=["norm-memory", "cls-attention-memory", "cls-attention-encoder"],
)
def test_float32_cache_gives_exactly_the_same_loss(isolated_dirs, overrides):
    _, data, model = _setup(overrides)
    dataset = data.datasets["train"]
    cache = encode_dataset(model, dataset, device=CPU, dtype=torch.float32)
    cached = CachedFeatureDataset(dataset, cache)
    indices = list(range(8))
    plain = collate_captions([dataset[i] for i in indices])
    fast = collate_features([cached[i] for i in indices])
    assert torch.equal(plain.tokens, fast["tokens"])
    expected = _loss(model, plain.images, plain.tokens)
    got = _loss(FeatureCaptioner(model), fast["images"], fast["tokens"])
    assert torch.equal(expected, got)


def test_float16_cache_is_close_and_half_the_size(isolated_dirs):
    _, data, model = _setup()
    dataset = data.datasets["train"]
    full = encode_dataset(model, dataset, device=CPU, dtype=torch.float32)
    half = encode_dataset(model, dataset, device=CPU, dtype=torch.float16)
    assert half.tokens.dtype == torch.float16
    assert half.tokens.nbytes * 2 == full.tokens.nbytes
    batch = collate_features([CachedFeatureDataset(dataset, half)[i] for i in range(8)])
    reference = collate_features([CachedFeatureDataset(dataset, full)[i] for i in range(8)])
    wrapped = FeatureCaptioner(model)
    assert _loss(wrapped, batch["images"], batch["tokens"]).item() == pytest.approx(
        _loss(wrapped, reference["images"], reference["tokens"]).item(), rel=1e-3
    )


def test_cache_is_reused_only_for_the_same_settings(isolated_dirs, tmp_path):
    _, data, model = _setup()
    dataset = data.datasets["train"]
    path = tmp_path / "features.pt"
    first = cached_or_encode(model, dataset, path, device=CPU)
    stamp = path.stat().st_mtime_ns
    again = cached_or_encode(model, dataset, path, device=CPU)
    assert path.stat().st_mtime_ns == stamp and torch.equal(first.tokens, again.tokens)
    cached_or_encode(model, dataset, path, device=CPU, dtype=torch.float32)
    assert path.stat().st_mtime_ns != stamp
    assert FeatureCache.load(path).config["dtype"] == "float32"


def test_cache_made_with_other_encoder_weights_is_not_reused(isolated_dirs, tmp_path):
    """Same settings, other weights (a new ``encoder_init``, say): the tokens are encoded again."""
    _, data, model = _setup()
    dataset = data.datasets["train"]
    path = tmp_path / "features.pt"
    first = cached_or_encode(model, dataset, path, device=CPU, dtype=torch.float32)
    with torch.no_grad():
        next(model.encoder.parameters()).add_(1.0)
    second = cached_or_encode(model, dataset, path, device=CPU, dtype=torch.float32)
    assert first.config["weights"] != second.config["weights"]
    assert not torch.equal(first.tokens, second.tokens)


def test_trainable_encoder_cannot_be_cached(isolated_dirs):
    config = load_run_config("shapes_vit_ci")
    data = build_run_data(config["data"], splits=("train",))
    model = build_model(config["model"], data.vocab)
    with pytest.raises(ValueError, match="freeze_encoder"):
        encode_dataset(model, data.datasets["train"], device=CPU)


def test_training_from_the_cache_follows_the_uncached_run(isolated_dirs):
    settings = ["model.freeze_encoder=true", "train.epochs=2", "train.eval_every=0"]
    plain = train_run(load_run_config("shapes_vit_ci", settings), isolated_dirs / "plain",
                      show_progress=False)
    cached = train_run(load_run_config("shapes_vit_ci", [*settings, "train.cache_features=true"]),
                       isolated_dirs / "cached", show_progress=False)
    assert (isolated_dirs / "cached" / "features_train.pt").is_file()
    for a, b in zip(plain.history, cached.history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-3)
