"""The caption decoder: agreement with torch.nn.TransformerDecoder, causality, masks, KV cache."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ptlib.models import CaptionDecoder, MultiHeadAttention
from ptlib.models.decoder import DecoderLayer

torch.set_num_threads(1)

D, H, FF, V = 32, 4, 64, 40


def _copy_attention(mine: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    q, k, v = theirs.in_proj_weight.chunk(3)
    qb, kb, vb = theirs.in_proj_bias.chunk(3)
    for proj, weight, bias in ((mine.q_proj, q, qb), (mine.k_proj, k, kb), (mine.v_proj, v, vb)):
        proj.weight.copy_(weight)
        proj.bias.copy_(bias)
    mine.out_proj.weight.copy_(theirs.out_proj.weight)
    mine.out_proj.bias.copy_(theirs.out_proj.bias)


@torch.no_grad()
def _copy_layer(mine: DecoderLayer, theirs: nn.TransformerDecoderLayer) -> None:
    _copy_attention(mine.self_attn, theirs.self_attn)
    _copy_attention(mine.cross_attn, theirs.multihead_attn)
    for name in ("linear1", "linear2", "norm1", "norm2", "norm3"):
        getattr(mine, name).load_state_dict(getattr(theirs, name).state_dict())


def _decoder(norm_first: bool = False, **kwargs) -> CaptionDecoder:
    torch.manual_seed(0)
    return CaptionDecoder(V, D, 2, H, FF, 0.1, 16, norm_first=norm_first, **kwargs).eval()


@pytest.mark.parametrize("norm_first", [False, True])
def test_layers_match_torch_transformer_decoder(norm_first):
    decoder = _decoder(norm_first)
    torch.manual_seed(1)
    layer = nn.TransformerDecoderLayer(D, H, FF, 0.1, batch_first=True, norm_first=norm_first)
    reference = nn.TransformerDecoder(layer, 2, norm=nn.LayerNorm(D) if norm_first else None)
    reference.eval()
    for mine, theirs in zip(decoder.layers, reference.layers, strict=True):
        _copy_layer(mine, theirs)
    if norm_first:
        decoder.final_norm.load_state_dict(reference.norm.state_dict())
    # give the norms non-trivial weights so a mix-up of norm1/2/3 would show
    with torch.no_grad():
        for mine, theirs in zip(decoder.layers, reference.layers, strict=True):
            for name in ("norm1", "norm2", "norm3"):
                weight = torch.rand(D) + 0.5
                getattr(mine, name).weight.copy_(weight)
                getattr(theirs, name).weight.copy_(weight)

    x = torch.randn(3, 7, D)
    memory = torch.randn(3, 5, D)
    text_pad = torch.zeros(3, 7, dtype=torch.bool)
    text_pad[1, 5:] = True
    memory_pad = torch.zeros(3, 5, dtype=torch.bool)
    memory_pad[2, 3:] = True
    causal = torch.ones(7, 7, dtype=torch.bool).triu(1)  # torch: True = may not attend
    with torch.no_grad():
        expected = reference(
            x,
            memory,
            tgt_mask=causal,
            tgt_key_padding_mask=text_pad,
            memory_key_padding_mask=memory_pad,
            tgt_is_causal=True,
        )
        allowed = torch.ones(7, 7, dtype=torch.bool).tril()[None, None] & ~text_pad[:, None, None]
        hidden = x
        for mine in decoder.layers:
            hidden, _ = mine(
                hidden, memory, self_allowed=allowed, memory_allowed=~memory_pad[:, None, None]
            )
        hidden = decoder.final_norm(hidden)
    real = ~text_pad  # torch's values at padded query rows are meaningless
    torch.testing.assert_close(hidden[real], expected[real], atol=1e-5, rtol=1e-5)


@settings(max_examples=20, deadline=None)
@given(length=st.integers(2, 12), position=st.integers(0, 10), new_token=st.integers(0, V - 1))
def test_changing_a_token_never_changes_earlier_logits(length, position, new_token):
    position = min(position, length - 1)
    decoder = _decoder()
    gen = torch.Generator().manual_seed(length)
    tokens = torch.randint(0, V, (2, length), generator=gen)
    memory = torch.randn(2, 6, D, generator=gen)
    changed = tokens.clone()
    changed[:, position] = new_token
    with torch.no_grad():
        before = decoder(tokens, memory).logits
        after = decoder(changed, memory).logits
    torch.testing.assert_close(before[:, :position], after[:, :position], atol=0, rtol=0)
    if new_token != tokens[0, position]:
        assert not torch.allclose(before[0, position], after[0, position])


def test_padded_memory_tokens_are_ignored():
    decoder = _decoder()
    tokens = torch.randint(4, V, (2, 6))
    memory = torch.randn(2, 5, D)
    pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
    changed = memory.clone()
    changed[1, 3:] = 100.0
    with torch.no_grad():
        a = decoder(tokens, memory, memory_padding_mask=pad, need_attention=True)
        b = decoder(tokens, changed, memory_padding_mask=pad)
        c = decoder(tokens, changed)
    torch.testing.assert_close(a.logits, b.logits)
    assert not torch.allclose(a.logits[1], c.logits[1])
    assert (a.cross_attention[0][1, :, :, 3:] == 0).all()
    torch.testing.assert_close(a.cross_attention[0].sum(-1), torch.ones(2, H, 6))


def test_a_gate_masks_memory_tokens_yet_gives_them_a_gradient():
    decoder = _decoder().eval()
    tokens = torch.randint(4, V, (2, 6))
    memory = torch.randn(2, 5, D)
    kept = torch.tensor([[0, 2, 3], [1, 3, 4]])
    gate = torch.zeros(2, 5)
    gate[torch.arange(2)[:, None], kept] = 1.0
    gate.requires_grad_(True)
    gated = decoder(tokens, memory, memory_gate=gate, need_attention=True)
    only_kept = decoder(tokens, memory[torch.arange(2)[:, None], kept])
    # in value, a 0/1 gate is attention over the gated-in tokens only ...
    torch.testing.assert_close(gated.logits, only_kept.logits)
    assert (gated.cross_attention[0][0, :, :, [1, 4]] == 0).all()
    # ... but the gated-out tokens still learn what they would have been worth
    gated.logits.square().sum().backward()
    assert (gate.grad[0, [1, 4]].abs() > 0).all() and (gate.grad[1, [0, 2]].abs() > 0).all()


def test_padded_text_tokens_are_ignored_by_real_positions():
    decoder = _decoder()
    tokens = torch.randint(4, V, (1, 6))
    pad = torch.tensor([[False, False, False, False, True, True]])
    changed = tokens.clone()
    changed[0, 4:] = 0
    with torch.no_grad():
        memory = torch.randn(1, 3, D)
        a = decoder(tokens, memory, token_padding_mask=pad).logits
        b = decoder(changed, memory, token_padding_mask=pad).logits
    torch.testing.assert_close(a[:, :4], b[:, :4])


@pytest.mark.parametrize("norm_first", [False, True])
def test_kv_cache_steps_give_the_full_forward_logits(norm_first):
    decoder = _decoder(norm_first)
    tokens = torch.randint(0, V, (3, 9))
    memory = torch.randn(3, 5, D)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[0, 4] = True
    with torch.no_grad():
        full = decoder(tokens, memory, memory_padding_mask=pad, need_attention=True)
        cache = decoder.init_cache(memory, pad)
        first = decoder.step(tokens[:, :3], cache)  # a block of 3 positions at once
        steps = [first.logits]
        attention = []
        for t in range(3, 9):
            out = decoder.step(tokens[:, t : t + 1], cache, need_attention=True)
            steps.append(out.logits)
            attention.append(out.cross_attention[-1])
    assert cache.length == 9
    torch.testing.assert_close(torch.cat(steps, dim=1), full.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        torch.cat(attention, dim=2), full.cross_attention[-1][:, :, 3:], atol=1e-6, rtol=1e-5
    )


def test_cache_computes_cross_attention_keys_once():
    decoder = _decoder()
    calls = []
    decoder.layers[0].cross_attn.k_proj.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        cache = decoder.init_cache(torch.randn(2, 5, D))
        for _ in range(4):
            decoder.step(torch.randint(0, V, (2, 1)), cache)
    assert len(calls) == 1


def test_tied_head_shares_the_embedding():
    decoder = _decoder(tie_weights=True)
    assert decoder.head.weight is decoder.token_embedding.weight
    assert _decoder().head.weight is not _decoder().token_embedding.weight


def test_too_long_sequences_fail_clearly():
    decoder = _decoder()
    with pytest.raises(ValueError, match="max_len=16"):
        decoder(torch.zeros(1, 17, dtype=torch.long), torch.randn(1, 2, D))
    with pytest.raises(ValueError, match="divisible"):
        CaptionDecoder(V, 30, 1, 4)
