"""Encoders: token grids, counts, widths, CLS attention, freezing, local weights."""

from __future__ import annotations

import pytest
import torch

from ptlib.models import EncoderPruning, TokenPruner, build_encoder, num_kept

torch.set_num_threads(1)


@pytest.mark.parametrize(
    ("name", "img_size", "stride", "grid", "width"),
    [
        ("vit_tiny_patch16_224", 224, None, (14, 14), 192),
        ("vit_tiny_patch16_224", 96, 16, (6, 6), 192),
        ("vit_tiny_patch16_224", (64, 128), None, (4, 8), 192),
        ("vit_base_patch16_224", 224, None, (14, 14), 768),
        ("vit_base_patch16_224", 384, None, (24, 24), 768),
        ("convnext_atto", 224, None, (7, 7), 320),
        ("convnext_atto", 224, 16, (14, 14), 160),
        ("convnext_atto", 128, 8, (16, 16), 80),
        ("convnext_tiny", 224, None, (7, 7), 768),
        ("convnext_tiny", 224, 16, (14, 14), 384),
        ("convnext_tiny", 384, 32, (12, 12), 768),
    ],
)
def test_token_counts_and_shapes(name, img_size, stride, grid, width):
    # Build and run on the meta device: shapes without weights or compute.
    with torch.device("meta"):
        encoder = build_encoder(name, img_size=img_size, feature_stride=stride)
        height, wide = (img_size, img_size) if isinstance(img_size, int) else img_size
        out = encoder(torch.empty(2, 3, height, wide))
    assert encoder.grid == grid
    assert encoder.num_tokens == grid[0] * grid[1]
    assert encoder.width == width
    assert tuple(out.tokens.shape) == (2, grid[0] * grid[1], width)
    assert out.grid == grid
    assert (out.cls_token is not None) == name.startswith("vit")


def test_vit_and_stride16_convnext_have_equal_token_counts():
    with torch.device("meta"):
        vit = build_encoder("vit_base_patch16_224", img_size=224)
        convnext = build_encoder("convnext_tiny", img_size=224, feature_stride=16)
        convnext32 = build_encoder("convnext_tiny", img_size=224)
    assert vit.num_tokens == convnext.num_tokens == 196
    assert convnext32.num_tokens == 49


def test_real_forward_tokens_follow_the_grid():
    encoder = build_encoder("convnext_atto", img_size=64, feature_stride=16)
    images = torch.randn(2, 3, 64, 64)
    out = encoder(images)
    feature = encoder.model.forward_intermediates(images, indices=[2], intermediates_only=True)[0]
    # token n is feature-map position (n // w, n % w): row-major order
    assert torch.equal(out.tokens[:, 5], feature[:, :, 1, 1])
    assert torch.equal(out.tokens[:, 4], feature[:, :, 1, 0])


def test_cls_attention_matches_explicit_attention_matrix():
    encoder = build_encoder("vit_tiny_patch16_224", img_size=64).eval()
    last = encoder.model.blocks[-1].attn
    last.fused_attn = False  # so timm computes the softmax matrix we can capture
    captured = {}
    last.attn_drop.register_forward_hook(lambda m, i, o: captured.setdefault("attn", o))
    with torch.no_grad():
        out = encoder(torch.randn(2, 3, 64, 64), need_cls_attention=True)
    expected = captured["attn"][:, :, 0, 1:].mean(dim=1)
    assert out.cls_attention.shape == (2, 16)
    torch.testing.assert_close(out.cls_attention, expected, atol=1e-6, rtol=1e-5)


def test_convnext_has_no_cls_attention():
    encoder = build_encoder("convnext_atto", img_size=64)
    assert not encoder.has_cls_attention
    # asking is harmless: there is none to return (check_pruner rejects its use for pruning)
    assert encoder(torch.randn(1, 3, 64, 64), need_cls_attention=True).cls_attention is None


def test_frozen_encoder_runs_in_eval_without_a_graph():
    encoder = build_encoder("vit_tiny_patch16_224", img_size=32, freeze=True)
    encoder.train()
    assert not encoder.model.training
    out = encoder(torch.randn(1, 3, 32, 32))
    assert not out.tokens.requires_grad and out.tokens.grad_fn is None
    assert all(not p.requires_grad for p in encoder.parameters())


def test_unfrozen_encoder_builds_a_graph():
    encoder = build_encoder("vit_tiny_patch16_224", img_size=32)
    assert encoder(torch.randn(1, 3, 32, 32)).tokens.requires_grad


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file_round_trips(tmp_path, suffix):
    source = build_encoder("convnext_atto", img_size=64)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(source.model.state_dict(), str(path))
    else:
        torch.save(source.model.state_dict(), path)
    loaded = build_encoder("convnext_atto", img_size=64, pretrained=str(path))
    for (key, a), (_, b) in zip(
        source.model.state_dict().items(), loaded.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), key
    fresh = build_encoder("convnext_atto", img_size=64)
    assert not torch.equal(fresh.model.stem[0].weight, loaded.model.stem[0].weight)


def test_local_vit_weights_resize_position_embedding(tmp_path):
    source = build_encoder("vit_tiny_patch16_224", img_size=32)
    path = tmp_path / "vit.pth"
    torch.save(source.state_dict(), path)  # the encoder's own state_dict ("model." prefix)
    loaded = build_encoder("vit_tiny_patch16_224", img_size=64, pretrained=path)
    assert loaded.model.pos_embed.shape == (1, 1 + 16, 192)
    assert torch.equal(loaded.model.blocks[3].mlp.fc1.weight, source.model.blocks[3].mlp.fc1.weight)


def test_weights_of_another_model_fail_clearly(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(build_encoder("convnext_atto", img_size=64).model.state_dict(), path)
    with pytest.raises(ValueError, match="missing keys"):
        build_encoder("vit_tiny_patch16_224", img_size=32, pretrained=path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_encoder("vit_tiny_patch16_224", img_size=32, pretrained=tmp_path / "nope.pth")


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match="vit_tiny_patch16_224"):
        build_encoder("vit_tiny_patch16_22", img_size=64)
    with pytest.raises(ValueError, match="convnext_tiny"):
        build_encoder("convnext_tine", img_size=64)


def test_bad_strides_and_sizes_fail_clearly():
    with pytest.raises(ValueError, match="feature_stride must be None or 16"):
        build_encoder("vit_tiny_patch16_224", img_size=64, feature_stride=32)
    with pytest.raises(ValueError, match=r"offers feature_stride \[4, 8, 16, 32\]"):
        build_encoder("convnext_atto", img_size=64, feature_stride=64)
    with pytest.raises(ValueError, match="divisible"):
        build_encoder("convnext_atto", img_size=70)
    encoder = build_encoder("convnext_atto", img_size=64)
    with pytest.raises(ValueError, match="img_size"):
        encoder(torch.randn(1, 3, 32, 32))


def _keep_last(tokens, cls_attention=None):
    """Scores the current last tokens highest, to check index composition across stages."""
    return torch.arange(tokens.shape[1], dtype=torch.float).expand(tokens.shape[0], -1)


def test_in_encoder_pruning_maps_indices_to_the_original_grid():
    encoder = build_encoder("vit_tiny_patch16_224", img_size=96).eval()  # 36 tokens
    pruner = TokenPruner(0.5, "norm", prune_at="encoder", prune_layers=[2, 5])
    schedule = pruner.encoder_schedule(36, 12)
    assert [layer for layer, _ in schedule] == [2, 5]
    assert schedule[-1][1] == num_kept(36, 0.5) == 18
    with torch.no_grad():
        out = encoder(torch.randn(2, 3, 96, 96), pruning=EncoderPruning(tuple(schedule), _keep_last))
    assert out.tokens.shape == (2, 18, 192)
    # stage 1 keeps the last 25 original positions, stage 2 the last 18 of those
    assert out.kept_indices.tolist() == [list(range(18, 36))] * 2


def test_in_encoder_cls_attention_pruning_keeps_k_sorted_unique_tokens():
    encoder = build_encoder("vit_tiny_patch16_224", img_size=96).eval()
    pruner = TokenPruner(0.7, "cls_attention", prune_at="encoder")
    pruning = EncoderPruning(tuple(pruner.encoder_schedule(36, 12)), pruner.score, True)
    with torch.no_grad():
        out = encoder(torch.randn(3, 3, 96, 96), pruning=pruning, need_cls_attention=True)
    k = num_kept(36, 0.7)
    assert out.tokens.shape == (3, k, 192) and out.kept_indices.shape == (3, k)
    assert (out.kept_indices.diff(dim=1) > 0).all()
    assert out.cls_attention.shape == (3, k)
    assert out.scores.shape == (3, 36)


def test_in_encoder_pruning_needs_a_vit():
    encoder = build_encoder("convnext_atto", img_size=64)
    with pytest.raises(ValueError, match="needs a ViT"):
        encoder(torch.randn(1, 3, 64, 64), pruning=EncoderPruning(((0, 2),), _keep_last))


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224",
                                  "vit_small_patch16_224.dino"])
def test_public_embedding_matches_timm_forward_features(name):
    """The encoder embeds patches from timm's public parts exactly as timm's ViT does."""
    torch.manual_seed(0)
    kwargs = {"depth": 2}
    if name.endswith(".dino"):
        name, kwargs = "vit_small_patch16_224", {"depth": 2, "reg_tokens": 2, "no_embed_class": True}
    encoder = build_encoder(name, img_size=64, encoder_kwargs=kwargs).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = encoder(images).tokens
        timm_out = encoder.model.forward_features(images)[:, encoder.model.num_prefix_tokens:]
    torch.testing.assert_close(ours, timm_out)


@pytest.mark.parametrize(
    ("name", "kind", "grid", "width", "cls_attention"),
    [
        ("deit_tiny_distilled_patch16_224", "vit", (14, 14), 192, True),  # 2 prefix tokens
        ("eva02_tiny_patch14_224", "feature_map", (16, 16), 192, False),  # rotary attention
        ("swin_tiny_patch4_window7_224", "feature_map", (7, 7), 768, False),
    ],
)
def test_other_timm_families_read_as_token_grids(name, kind, grid, width, cls_attention):
    with torch.device("meta"):
        encoder = build_encoder(name, img_size=224)
        out = encoder(torch.empty(1, 3, 224, 224))
    assert (encoder.kind, encoder.grid, encoder.width) == (kind, grid, width)
    assert tuple(out.tokens.shape) == (1, grid[0] * grid[1], width)
    assert encoder.has_cls_attention == cls_attention
