"""Token pruning: the K rule, scorers, primitives, every method, compatibility, saved tensors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ptlib.bench.saved_tensors import saved_tensor_bytes
from ptlib.models import (
    TokenPruner,
    TokenScorer,
    build_encoder,
    check_pruner,
    cls_attention_scores,
    merge_tokens,
    norm_scores,
    num_kept,
    pruning_methods,
    random_scores,
    select_top_k,
    take_tokens,
)

torch.set_num_threads(1)

SCORED = ["random", "norm", "cls_attention", "learned"]
ALL_PRUNING = [*SCORED, "merge"]

shapes = st.tuples(st.integers(1, 3), st.integers(1, 40), st.integers(1, 8))
ratios = st.floats(0.0, 0.95, allow_nan=False)


def _inputs(batch: int, count: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randn(batch, count, dim, generator=gen, dtype=torch.float64)
    attention = torch.rand(batch, count, generator=gen).softmax(dim=1)
    return tokens, attention


def _pruner(method: str, ratio: float, dim: int, **kwargs) -> TokenPruner:
    torch.manual_seed(0)
    pruner = TokenPruner(ratio, method, dim=dim, seed=0 if method == "random" else None, **kwargs)
    return pruner.double().eval()


def test_k_rule_rounds_half_up_and_never_reaches_zero():
    assert num_kept(196, 0.3) == 137
    assert num_kept(49, 0.3) == 34  # 34.3
    assert num_kept(5, 0.5) == 3  # 2.5 rounds up
    assert num_kept(10, 0.25) == 8  # 7.5 rounds up
    assert num_kept(10, 0.0) == 10
    assert num_kept(3, 0.9) == 1  # 0.3 would round to 0: at least one token
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        num_kept(10, 1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        num_kept(10, -0.1)
    with pytest.raises(ValueError, match="at least one token"):
        num_kept(0, 0.3)
    with pytest.raises(ValueError, match="K must be at least 1"):
        select_top_k(torch.rand(1, 4), 0)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, ratio=ratios, method=st.sampled_from(ALL_PRUNING), seed=st.integers(0, 99))
def test_exactly_k_tokens_with_unique_increasing_indices(shape, ratio, method, seed):
    batch, count, dim = shape
    tokens, attention = _inputs(batch, count, dim, seed)
    result = _pruner(method, ratio, dim)(tokens, cls_attention=attention)
    k = num_kept(count, ratio)
    assert result.tokens.shape == (batch, k, dim)
    assert result.kept_indices.shape == (batch, k)
    assert result.kept_indices.dtype == torch.long
    assert (result.kept_indices.diff(dim=1) > 0).all()
    assert ((result.kept_indices >= 0) & (result.kept_indices < count)).all()
    assert result.scores.shape == (batch, count)
    if method != "merge":  # kept tokens are the input tokens at the kept indices
        torch.testing.assert_close(result.tokens, take_tokens(tokens, result.kept_indices))


@settings(max_examples=25, deadline=None)
@given(shape=shapes, method=st.sampled_from(["none", *ALL_PRUNING]), seed=st.integers(0, 99))
def test_ratio_zero_is_the_identity(shape, method, seed):
    batch, count, dim = shape
    tokens, attention = _inputs(batch, count, dim, seed)
    result = _pruner(method, 0.0, dim)(tokens, cls_attention=attention)
    assert torch.equal(result.tokens, tokens)
    assert torch.equal(result.kept_indices, torch.arange(count).expand(batch, count))


@settings(max_examples=40, deadline=None)
@given(shape=shapes, ratio=ratios, seed=st.integers(0, 99))
def test_merge_preserves_the_size_weighted_mean(shape, ratio, seed):
    batch, count, dim = shape
    tokens, _ = _inputs(batch, count, dim, seed)
    result = merge_tokens(tokens, num_kept(count, ratio))
    assert torch.equal(result.sizes.sum(dim=1), torch.full((batch,), float(count), dtype=tokens.dtype))
    weighted_mean = (result.sizes.unsqueeze(-1) * result.tokens).sum(dim=1) / count
    torch.testing.assert_close(weighted_mean, tokens.mean(dim=1))
    # each output token is the mean of the inputs assigned to it, and holds its representative
    for b in range(batch):
        for k in range(result.tokens.shape[1]):
            members = result.assignment[b] == k
            assert members.sum() == result.sizes[b, k]
            assert members[result.kept_indices[b, k]]
            torch.testing.assert_close(result.tokens[b, k], tokens[b, members].mean(dim=0))


def test_merge_joins_duplicate_tokens_first():
    # bipartite sets: A = even positions, B = odd; A tokens 2 and 4 copy B tokens 1 and 3
    x = torch.randn(6, 16, dtype=torch.float64)
    tokens = x[[0, 1, 1, 3, 3, 5]].unsqueeze(0)
    result = merge_tokens(tokens, 4)
    assert result.assignment[0, 2] == result.assignment[0, 1]
    assert result.assignment[0, 4] == result.assignment[0, 3]
    assert result.kept_indices.tolist() == [[0, 1, 3, 5]]
    assert result.sizes.tolist() == [[1, 2, 2, 1]]


def test_norm_keeps_the_largest_tokens():
    tokens = torch.zeros(1, 6, 2)
    tokens[0, [1, 4], 0] = torch.tensor([3.0, 5.0])
    tokens[0, 2, 1] = 1.0
    result = TokenPruner(0.5, "norm")(tokens)
    assert result.kept_indices.tolist() == [[1, 2, 4]]


def test_cls_attention_keeps_the_most_attended_and_fuses_the_rest():
    tokens = torch.randn(2, 5, 3)
    attention = torch.tensor([[0.1, 0.4, 0.05, 0.3, 0.15], [0.5, 0.1, 0.12, 0.08, 0.2]])
    result = TokenPruner(0.4, "cls_attention", fuse_dropped=True)(tokens, cls_attention=attention)
    assert result.kept_indices.tolist() == [[1, 3, 4], [0, 2, 4]]
    assert result.fused and result.tokens.shape == (2, 4, 3)
    dropped = [0, 2]
    weights = attention[0, dropped] / attention[0, dropped].sum()
    torch.testing.assert_close(result.tokens[0, -1], (weights[:, None] * tokens[0, dropped]).sum(0))


def test_cls_attention_without_attention_names_the_methods_that_apply():
    with pytest.raises(ValueError, match="methods that apply.*norm"):
        TokenPruner(0.3, "cls_attention")(torch.randn(1, 4, 2))


def test_random_is_reproducible_with_a_seed():
    tokens = torch.randn(2, 50, 4)
    first = TokenPruner(0.5, "random", seed=7)(tokens).kept_indices
    again = TokenPruner(0.5, "random", seed=7)(tokens).kept_indices
    other = TokenPruner(0.5, "random", seed=8)(tokens).kept_indices
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_learned_scorer_trains_through_a_gate_over_every_token():
    torch.manual_seed(0)
    pruner = TokenPruner(0.5, "learned", dim=8).train()
    tokens = torch.randn(2, 10, 8, requires_grad=True)
    result = pruner(tokens)
    assert result.aux_loss.ndim == 0 and result.aux_loss.item() > 0
    # nothing is removed in training: the decoder masks its attention with the gate
    assert result.tokens is tokens
    assert result.gate is not None and result.gate.shape == (2, 10)
    ones = torch.zeros(2, 10)
    ones[torch.arange(2)[:, None], result.kept_indices] = 1.0
    torch.testing.assert_close(result.gate.detach(), ones)  # exactly K ones, at the kept tokens
    # a loss on a dropped token's gate reaches the scorer (straight-through)
    dropped = int((ones[0] == 0).nonzero()[0])
    result.gate[0, dropped].backward()
    grads = [p.grad for p in pruner.scorer.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_learned_is_a_hard_top_k_at_inference():
    torch.manual_seed(0)
    pruner = TokenPruner(0.5, "learned", dim=8).eval()
    tokens = torch.randn(2, 10, 8)
    result = pruner(tokens)
    expected = pruner.scorer(tokens).topk(5, dim=1).indices.sort(dim=1).values
    assert torch.equal(result.kept_indices, expected)
    assert result.aux_loss.item() == 0.0
    assert result.gate is None and result.tokens.shape == (2, 5, 8)


def test_selection_does_not_keep_the_unpruned_memory_alive():
    memory = torch.randn(4, 196, 64, requires_grad=True)
    kept = torch.sort(torch.randperm(196)[:137]).values.expand(4, -1).contiguous()
    by_index = saved_tensor_bytes(take_tokens, memory, kept)
    by_gather = saved_tensor_bytes(
        lambda m, i: m.gather(1, i.unsqueeze(-1).expand(-1, -1, m.shape[-1])), memory, kept
    )
    assert by_gather.holds(memory)  # gather saves its whole input for backward
    assert not by_index.holds(memory)
    assert by_index.bytes < memory.numel() * memory.element_size() / 10 < by_gather.bytes
    attention = torch.rand(4, 196)
    for method in ("norm", "random", "cls_attention"):
        pruner = TokenPruner(0.3, method, seed=0 if method == "random" else None)
        assert not saved_tensor_bytes(pruner, memory, cls_attention=attention).holds(memory), method
    # the learned scorer reads every token with gradients, so it must keep them: a real cost
    assert saved_tensor_bytes(TokenPruner(0.3, "learned", dim=64), memory).holds(memory)


def test_encoder_schedule_ends_at_k():
    pruner = TokenPruner(0.3, "cls_attention", prune_at="encoder")
    schedule = pruner.encoder_schedule(196, 12)
    assert [layer for layer, _ in schedule] == [3, 6, 9]
    counts = [k for _, k in schedule]
    assert counts == sorted(counts, reverse=True) and counts[-1] == num_kept(196, 0.3)
    assert TokenPruner(0.0, "norm", prune_at="encoder").encoder_schedule(196, 12) == []
    with pytest.raises(ValueError, match="prune_layers"):
        TokenPruner(0.3, "norm", prune_at="encoder", prune_layers=[11]).encoder_schedule(196, 12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(ratio=1.0, method="norm"), r"\[0, 1\)"),
        (dict(ratio=0.3, method="none"), "keeps every token"),
        (dict(ratio=0.3, method="topk"), "unknown pruning method"),
        (dict(ratio=0.3, method="learned"), "needs dim"),
        (dict(ratio=0.3, method="merge", prune_at="encoder"), "cannot prune inside the encoder"),
        (dict(ratio=0.3, method="norm", prune_at="decoder"), "prune_at"),
        (dict(ratio=0.3, method="norm", fuse_dropped=True), "fuse_dropped"),
    ],
)
def test_bad_pruner_arguments_fail_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TokenPruner(**kwargs)


@pytest.mark.parametrize("num_blocks", range(1, 13))
def test_default_prune_layers_fit_every_vit_depth(num_blocks):
    pruner = TokenPruner(0.5, "norm", prune_at="encoder")
    if num_blocks == 1:
        with pytest.raises(ValueError, match="1 block"):
            pruner.encoder_schedule(36, num_blocks)
        return
    schedule = pruner.encoder_schedule(36, num_blocks)
    layers = [layer for layer, _ in schedule]
    assert layers and layers == sorted(set(layers))
    assert all(0 <= layer <= num_blocks - 2 for layer in layers)
    assert schedule[-1][1] == pruner.num_kept(36)
    if num_blocks == 12:
        assert layers == [3, 6, 9]


def test_scorers_are_plain_functions_the_pruner_uses():
    tokens = torch.randn(2, 7, 3)
    attention = torch.rand(2, 7)
    torch.testing.assert_close(norm_scores(tokens), tokens.norm(dim=-1))
    assert torch.equal(cls_attention_scores(tokens, attention), attention)
    with pytest.raises(ValueError, match="expected"):
        cls_attention_scores(tokens, attention[:, :3])
    seeded = random_scores(tokens, torch.Generator().manual_seed(5))
    assert torch.equal(seeded, random_scores(tokens, torch.Generator().manual_seed(5)))
    assert torch.equal(TokenPruner(0.5, "norm").score(tokens), norm_scores(tokens))
    assert torch.equal(TokenPruner(0.5, "random", seed=5).score(tokens), seeded)
    kept = select_top_k(norm_scores(tokens), num_kept(7, 0.5))
    assert torch.equal(TokenPruner(0.5, "norm")(tokens).tokens, take_tokens(tokens, kept))


def test_a_learned_pruner_can_share_a_trained_scorer():
    scorer = TokenScorer(8)
    pruner = TokenPruner(0.5, "learned", scorer=scorer).eval()
    assert pruner.scorer is scorer
    assert list(pruner.state_dict()) == [f"scorer.{k}" for k in scorer.state_dict()]
    with pytest.raises(ValueError, match="scorer="):
        TokenPruner(0.5, "norm", scorer=scorer)


def test_an_encoder_pruner_does_not_prune_memory():
    with pytest.raises(ValueError, match="inside the encoder"):
        TokenPruner(0.5, "norm", prune_at="encoder")(torch.randn(1, 4, 2))


def test_check_pruner_is_the_one_compatibility_check():
    vit = build_encoder("vit_tiny_patch16_224", img_size=64, encoder_kwargs={"depth": 2})
    convnext = build_encoder("convnext_atto", img_size=64)
    check_pruner(TokenPruner(0.5, "cls_attention"), vit, 8)
    check_pruner(TokenPruner(0.5, "norm", prune_at="encoder"), vit, 8)
    check_pruner(TokenPruner(0.0, "none", prune_at="encoder"), convnext, 8)  # prunes nothing
    with pytest.raises(ValueError, match="no CLS attention; methods that apply"):
        check_pruner(TokenPruner(0.5, "cls_attention"), convnext, 8)
    with pytest.raises(ValueError, match="needs a ViT"):
        check_pruner(TokenPruner(0.5, "norm", prune_at="encoder"), convnext, 8)
    with pytest.raises(ValueError, match="prune_layers"):
        check_pruner(TokenPruner(0.5, "norm", prune_at="encoder", prune_layers=[1]), vit, 8)
    with pytest.raises(ValueError, match="width 16"):
        check_pruner(TokenPruner(0.5, "learned", dim=16), vit, 8)
    assert pruning_methods(vit) == ("random", "norm", "cls_attention", "merge")
    assert pruning_methods(convnext) == ("random", "norm", "merge")
    assert pruning_methods(vit, "encoder") == ("random", "norm", "cls_attention")
    assert pruning_methods(convnext, "encoder") == ()
