"""The captioner: forward pass, configs, generation (greedy, beam, KV cache)."""

from __future__ import annotations

import pytest
import torch

from ptlib.models import (
    Captioner,
    CaptionerConfig,
    beam_search,
    config_from_run,
    greedy_decode,
    num_kept,
)
from ptlib.models.decoder import CaptionDecoder

torch.set_num_threads(1)

V = 30
TINY = dict(
    encoder="vit_tiny_patch16_224",
    img_size=64,
    d_model=32,
    n_encoder_layers=1,
    n_decoder_layers=2,
    n_heads=4,
    ff_dim=64,
    max_len=12,
    vocab_size=V,
)


def _model(**overrides) -> Captioner:
    torch.manual_seed(0)
    return Captioner.from_config({**TINY, **overrides}).eval()


def _tokens(batch: int = 2, length: int = 7) -> torch.Tensor:
    tokens = torch.randint(4, V, (batch, length))
    tokens[:, 0] = 1
    tokens[0, -2:] = 0  # padding
    tokens[0, -3] = 2
    return tokens


def _captions(tokens: torch.Tensor, eos: int = 2) -> list[list[int]]:
    """Token lists cut after <eos>."""
    out = []
    for row in tokens.tolist():
        out.append(row[: row.index(eos) + 1] if eos in row else row)
    return out


def test_paper_table1_config():
    config = config_from_run("paper_table1")  # vocab_size: the cap
    assert (config.vocab_size, config.d_model, config.n_heads, config.ff_dim) == (2033, 512, 4, 2048)
    assert (config.n_encoder_layers, config.n_decoder_layers) == (2, 2)
    assert (config.dropout, config.prune_ratio, config.prune_at) == (0.1, 0.3, "memory")
    assert (config.encoder, config.img_size, config.max_len) == ("vit_base_patch16_224", 224, 22)
    assert config_from_run("paper_table1", pretrained=False).pretrained is False


def test_from_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown captioner config keys \['d_modle'\]"):
        Captioner.from_config({**TINY, "d_modle": 8})
    with pytest.raises(ValueError, match="prune_ratio"):
        CaptionerConfig(prune_ratio=1.5)


@pytest.mark.parametrize(
    ("overrides", "kept"),
    [
        (dict(prune_ratio=0.0, prune_method="none"), 16),
        (dict(prune_ratio=0.3, prune_method="norm"), num_kept(16, 0.3)),
        (dict(prune_ratio=0.5, prune_method="cls_attention"), 8),
        (dict(prune_ratio=0.5, prune_method="merge"), 8),
        (dict(prune_ratio=0.5, prune_method="cls_attention", prune_at="encoder"), 8),
        (dict(encoder="convnext_atto", feature_stride=16, prune_method="learned"), 11),
    ],
)
def test_forward_shapes(overrides, kept):
    model = _model(**overrides)
    tokens = _tokens()
    out = model(torch.randn(2, 3, 64, 64), tokens, need_attention=True)
    assert out.logits.shape == (2, 7, V)
    assert out.kept_indices.shape == (2, kept)
    assert (out.kept_indices.diff(dim=1) > 0).all()
    assert out.cross_attention.shape == (2, 7, kept)
    assert out.aux_loss.ndim == 0
    assert model.num_memory_tokens == kept
    assert out.grid == (4, 4)


def test_training_step_reaches_encoder_and_learned_scorer():
    model = _model(prune_method="learned", prune_ratio=0.5).train()
    tokens = _tokens()
    out = model(torch.randn(2, 3, 64, 64), tokens)
    loss = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1), ignore_index=0
    )
    (loss + out.aux_loss).backward()
    assert model.pruner.scorer.out[-1].weight.grad.abs().sum() > 0
    assert model.encoder.model.patch_embed.proj.weight.grad.abs().sum() > 0
    # in training every token stays, gated; the attention shown is over the K kept ones
    out = model(torch.randn(2, 3, 64, 64), tokens, need_attention=True)
    assert out.cross_attention.shape == (2, tokens.shape[1], model.num_memory_tokens)
    torch.testing.assert_close(out.cross_attention.sum(-1), torch.ones(2, tokens.shape[1]))


def test_frozen_encoder_gets_no_gradient():
    model = _model(freeze_encoder=True).train()
    out = model(torch.randn(2, 3, 64, 64), _tokens())
    out.logits.sum().backward()
    assert model.encoder.model.patch_embed.proj.weight.grad is None
    assert model.projection.linear.weight.grad is not None


def test_forward_features_equals_forward():
    model = _model(prune_method="cls_attention")
    images, tokens = torch.randn(2, 3, 64, 64), _tokens()
    with torch.no_grad():
        full = model(images, tokens)
        enc = model.encoder(images, need_cls_attention=True)
        cached = model.forward_features(enc.tokens, tokens, cls_attention=enc.cls_attention)
    torch.testing.assert_close(full.logits, cached.logits)
    assert torch.equal(full.kept_indices, cached.kept_indices)


def test_cls_attention_needs_a_vit():
    with pytest.raises(ValueError, match="methods that apply"):
        _model(encoder="convnext_atto", prune_method="cls_attention")
    with pytest.raises(ValueError, match="is not one"):
        _model(encoder="convnext_atto", prune_method="norm", prune_at="encoder")
    with pytest.raises(ValueError, match="1 block"):
        _model(prune_at="encoder", encoder_kwargs={"depth": 1})


def test_kept_positions_keep_their_position_encoding():
    model = _model(prune_ratio=0.5, prune_method="norm", n_encoder_layers=0, dropout=0.0)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        enc = model.encoder(images)
        memory = model.encode(images)
        full = model.projection(enc.tokens)
    assert torch.equal(memory.tokens[0], full[0, memory.kept_indices[0]])


# -- generation ------------------------------------------------------------------------


def _decoder_and_memory(batch: int = 4):
    torch.manual_seed(3)
    decoder = CaptionDecoder(V, 32, 2, 4, 64, 0.0, 16).eval()
    return decoder, torch.randn(batch, 6, 32) * 3


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_kv_cache_gives_exactly_the_recomputed_captions(method):
    decoder, memory = _decoder_and_memory()
    run = greedy_decode if method == "greedy" else beam_search
    cached = run(decoder, memory, max_len=12, use_cache=True, return_attention=True)
    recomputed = run(decoder, memory, max_len=12, use_cache=False, return_attention=True)
    assert torch.equal(cached.tokens, recomputed.tokens)
    torch.testing.assert_close(cached.scores, recomputed.scores)
    torch.testing.assert_close(cached.attention, recomputed.attention, atol=1e-5, rtol=1e-4)
    assert len({tuple(c) for c in _captions(cached.tokens)}) > 1  # not a degenerate model


def test_beam_one_equals_greedy():
    decoder, memory = _decoder_and_memory(6)
    greedy = greedy_decode(decoder, memory, max_len=12)
    beam = beam_search(decoder, memory, beam_size=1, max_len=12)
    assert _captions(greedy.tokens) == _captions(beam.tokens)
    torch.testing.assert_close(greedy.scores, beam.scores)


def test_batched_beam_equals_per_image_beam():
    decoder, memory = _decoder_and_memory(5)
    batched = beam_search(decoder, memory, beam_size=3, max_len=12, length_penalty=0.6)
    single = [
        _captions(beam_search(decoder, memory[i : i + 1], beam_size=3, max_len=12, length_penalty=0.6).tokens)[0]
        for i in range(5)
    ]
    assert _captions(batched.tokens) == single


def test_beam_finds_at_least_the_greedy_log_probability():
    decoder, memory = _decoder_and_memory(6)
    greedy = greedy_decode(decoder, memory, max_len=12)
    beam = beam_search(decoder, memory, beam_size=4, max_len=12)
    assert (beam.scores >= greedy.scores - 1e-5).all()
    assert (beam.scores > greedy.scores + 1e-5).any()


def test_generation_stops_at_eos_and_pads_after_it():
    decoder, memory = _decoder_and_memory()
    with torch.no_grad():
        decoder.head.bias[2] = 8.0  # make <eos> likely after a few tokens
    for result in (greedy_decode(decoder, memory, max_len=12), beam_search(decoder, memory, max_len=12)):
        tokens = result.tokens
        assert tokens.shape[1] < 12  # stopped before max_len because every caption ended
        for row in tokens.tolist():
            end = row.index(2)
            assert all(t == 0 for t in row[end + 1 :])


def test_captioner_generate_returns_attention_over_kept_tokens():
    model = _model(prune_ratio=0.5, prune_method="norm")
    images = torch.randn(3, 3, 64, 64)
    greedy = model.generate(images, max_len=6, return_attention=True, stop_at_eos=False)
    assert greedy.tokens.shape == (3, 6)
    assert greedy.attention.shape == (3, 6, 8)
    assert greedy.kept_indices.shape == (3, 8)
    torch.testing.assert_close(greedy.attention.sum(-1), torch.ones(3, 6))
    beam = model.generate(images, method="beam", beam_size=1, max_len=6, stop_at_eos=False)
    assert _captions(beam.tokens) == _captions(greedy.tokens)
    with pytest.raises(ValueError, match="greedy' or 'beam"):
        model.generate(images, method="sample")


@pytest.mark.parametrize("profile_name", ["ci", "cpu", "gpu", "coco"])
@pytest.mark.parametrize("backbone", ["vit", "convnext"])
def test_every_profile_gives_a_valid_config(profile_name, backbone):
    """A profile's captioner is its run config's: what chapter 3 shows, chapter 5 trains."""
    from ptlib import course
    from ptlib.train import load_run_config

    profile = course.get_profile(profile_name, check_data=False)
    name = course.run_config_names(profile)[backbone]
    config = config_from_run(name, vocab_size=123)
    run = load_run_config(name)
    assert config == config_from_run(run, vocab_size=123)
    assert {k: v for k, v in config.to_dict().items() if k in run["model"]} == run["model"]
    assert config.img_size == profile.section("data")["img_size"] == run["data"]["img_size"]
    assert config.max_len == profile.section("data")["max_len"]
    assert config.vocab_size == 123
    assert config_from_run(name).vocab_size == run["data"]["vocab_max_size"]
    with torch.device("meta"):
        model = Captioner.from_config({**config.to_dict(), "pretrained": False})
    assert model.num_memory_tokens == num_kept(model.encoder.num_tokens, config.prune_ratio)
    with pytest.raises(FileNotFoundError, match="no run config named 'swin'"):
        config_from_run("swin", vocab_size=123)
