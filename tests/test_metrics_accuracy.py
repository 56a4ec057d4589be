"""Teacher-forced token accuracy: hand-made logits, padding, the epoch accumulator."""

from __future__ import annotations

import pytest
import torch

from ptlib.metrics import TokenAccuracy, token_accuracy

PAD = 0


def ranked_logits(rankings: list[list[list[int]]], vocab_size: int) -> torch.Tensor:
    """Logits (B, T, V) whose top-ranked tokens at each position are the given ids, in order."""
    batch, steps = len(rankings), len(rankings[0])
    logits = torch.zeros(batch, steps, vocab_size)
    for b, row in enumerate(rankings):
        for t, ranking in enumerate(row):
            for rank, token in enumerate(ranking):
                logits[b, t, token] = float(len(ranking) - rank)
    return logits


def test_hand_made_logits_give_hand_counted_accuracy():
    # Position 0: target 2 ranked first (top-1 hit).
    # Position 1: target 4 ranked third (top-5 hit only).
    # Position 2: target 5 ranked sixth (miss for both).
    # Position 3: padding (ignored).
    logits = ranked_logits([[[2], [6, 7, 4], [1, 2, 3, 4, 6, 5], [9]]], vocab_size=10)
    targets = torch.tensor([[2, 4, 5, PAD]])
    result = token_accuracy(logits, targets, pad_id=PAD, topk=(1, 5))
    assert result == {"top1": pytest.approx(1 / 3), "top5": pytest.approx(2 / 3), "n_tokens": 3}


def test_padding_positions_never_count():
    targets = torch.tensor([[3, 5, PAD, PAD], [4, PAD, PAD, PAD]])
    logits = torch.randn(2, 4, 8)
    before = token_accuracy(logits, targets)
    changed = logits.clone()
    changed[targets == PAD] = torch.randn(int((targets == PAD).sum()), 8) * 100
    changed[0, 2, PAD] = 1e6  # a confident "<pad>" guess at a padding position
    assert token_accuracy(changed, targets) == before
    assert before["n_tokens"] == 3


def test_pad_id_none_counts_every_position():
    logits = ranked_logits([[[0], [1]]], vocab_size=3)
    result = token_accuracy(logits, torch.tensor([[0, 2]]), pad_id=None, topk=(1,))
    assert result == {"top1": 0.5, "n_tokens": 2}


def test_k_at_least_vocab_size_is_always_correct():
    logits = torch.randn(2, 3, 3)
    targets = torch.tensor([[1, 2, 1], [2, 1, 2]])
    result = token_accuracy(logits, targets, topk=(1, 5))
    assert result["top5"] == 1.0
    assert result["top1"] == int((logits.argmax(-1) == targets).sum()) / targets.numel()


def test_accumulator_over_batches_equals_one_computation_on_all_tokens():
    generator = torch.Generator().manual_seed(0)
    vocab = 12
    # Two batches with different lengths and different amounts of padding.
    logits_a = torch.randn(3, 5, vocab, generator=generator)
    targets_a = torch.randint(1, vocab, (3, 5), generator=generator)
    targets_a[0, 3:] = PAD
    targets_a[2, 1:] = PAD
    logits_b = torch.randn(2, 7, vocab, generator=generator)
    targets_b = torch.randint(1, vocab, (2, 7), generator=generator)
    targets_b[1, 2:] = PAD

    accumulator = TokenAccuracy(pad_id=PAD, topk=(1, 5))
    accumulator.update(logits_a, targets_a)
    accumulator.update(logits_b, targets_b)

    # The same tokens in one padded batch.
    logits_all = torch.zeros(5, 7, vocab)
    targets_all = torch.full((5, 7), PAD)
    logits_all[:3, :5], targets_all[:3, :5] = logits_a, targets_a
    logits_all[3:], targets_all[3:] = logits_b, targets_b
    together = token_accuracy(logits_all, targets_all, pad_id=PAD, topk=(1, 5))

    assert accumulator.compute() == together
    # And not the mean of per-batch accuracies (batches weigh by their tokens).
    per_batch = [token_accuracy(logits_a, targets_a), token_accuracy(logits_b, targets_b)]
    assert together["n_tokens"] == sum(r["n_tokens"] for r in per_batch) == 3 + 5 + 1 + 7 + 2
    expected_top1 = sum(r["top1"] * r["n_tokens"] for r in per_batch) / together["n_tokens"]
    assert together["top1"] == pytest.approx(expected_top1)

    accumulator.reset()
    with pytest.raises(ValueError, match="before any update"):
        accumulator.compute()


@pytest.mark.parametrize(
    ("logits", "targets", "error", "match"),
    [
        (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long), ValueError, r"\(B, T, V\)"),
        (torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), ValueError, "targets must"),
        (torch.zeros(2, 3, 4), torch.zeros(2, 3), TypeError, "integer token ids"),
        (torch.zeros(1, 2, 4), torch.zeros(1, 2, dtype=torch.long), ValueError, "pad_id"),
    ],
)
def test_bad_input_gets_a_clear_error(logits, targets, error, match):
    with pytest.raises(error, match=match):
        token_accuracy(logits, targets)


def test_bad_topk_is_rejected():
    with pytest.raises(ValueError, match="topk"):
        TokenAccuracy(topk=(0,))
    with pytest.raises(ValueError, match="topk"):
        token_accuracy(torch.zeros(1, 1, 3), torch.ones(1, 1, dtype=torch.long), topk=())
