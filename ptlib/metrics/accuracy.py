"""Teacher-forced token accuracy: how often the next word is guessed right, given the true prefix.

This is the number the paper reports (99.8% on its training images). It
measures next-token prediction with the reference caption fed in, not the
quality of captions the model writes on its own, so the course reports it
beside the generation metrics in :mod:`ptlib.metrics.captions`, never instead
of them. Top-5 accuracy is included because some codebases log it.

Padding positions (``targets == pad_id``) are ignored everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ptlib.tokens import PAD_ID


def _check_topk(topk: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(topk)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(
            f"topk={topk!r} must be a non-empty sequence of positive ints, e.g. (1, 5)"
        )
    return ks


def token_accuracy_counts(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    pad_id: int | None = PAD_ID,
    topk: Sequence[int] = (1, 5),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Count correct top-k guesses and non-padding tokens (no device sync).

    Args:
        logits: ``(B, T, V)`` scores for the token at each position.
        targets: ``(B, T)`` integer token ids; positions equal to ``pad_id``
            are ignored.
        pad_id: The padding id (``None``: count every position).
        topk: The k values to count; a k of at least V always counts as correct.

    Returns:
        ``(correct, n_tokens)``: ``correct`` is a ``(len(topk),)`` int64 tensor,
        ``n_tokens`` a 0-d int64 tensor, both on ``logits.device``.
    """
    ks = _check_topk(topk)
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, T, V), got shape {tuple(logits.shape)}")
    if targets.dim() != 2 or targets.shape != logits.shape[:2]:
        raise ValueError(
            f"targets must be (B, T) = {tuple(logits.shape[:2])} to match logits "
            f"{tuple(logits.shape)}, got shape {tuple(targets.shape)}"
        )
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise TypeError(f"targets must hold integer token ids, got dtype {targets.dtype}")
    vocab_size = logits.shape[-1]
    if vocab_size == 0:
        raise ValueError("logits has a vocabulary dimension of size 0")
    with torch.no_grad():
        targets = targets.to(logits.device)
        keep = (
            targets != pad_id if pad_id is not None else torch.ones_like(targets, dtype=torch.bool)
        )
        widest = min(max(ks), vocab_size)
        guesses = logits.detach().topk(widest, dim=-1).indices  # (B, T, widest)
        hits = guesses == targets.unsqueeze(-1)  # (B, T, widest)
        correct = torch.stack(
            [(hits[..., : min(k, vocab_size)].any(dim=-1) & keep).sum() for k in ks]
        )
        return correct.to(torch.int64), keep.sum().to(torch.int64)


def _as_result(ks: tuple[int, ...], correct: torch.Tensor, n_tokens: int) -> dict[str, float | int]:
    if n_tokens == 0:
        raise ValueError(
            "no non-padding target tokens to score: every target equals pad_id (check pad_id "
            "and that targets are not all padding)"
        )
    counts = correct.tolist()
    result: dict[str, float | int] = {f"top{k}": counts[i] / n_tokens for i, k in enumerate(ks)}
    result["n_tokens"] = n_tokens
    return result


def token_accuracy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    pad_id: int | None = PAD_ID,
    topk: Sequence[int] = (1, 5),
) -> dict[str, float | int]:
    """Teacher-forced top-k token accuracy of one batch, ignoring padding.

    Args:
        logits: ``(B, T, V)`` next-token scores.
        targets: ``(B, T)`` the true next tokens; ``pad_id`` positions are ignored.
        pad_id: The padding id (``<pad>`` is 0 in the course vocabulary).
        topk: Which top-k accuracies to report.

    Returns:
        ``{"top1": float, "top5": float, "n_tokens": int}`` (one ``top{k}`` per k).

    Raises:
        ValueError: Bad shapes or ``topk``, or no non-padding token.
    """
    ks = _check_topk(topk)
    correct, n_tokens = token_accuracy_counts(logits, targets, pad_id=pad_id, topk=ks)
    return _as_result(ks, correct, int(n_tokens))


class TokenAccuracy:
    """Token accuracy accumulated over many batches (an epoch), ignoring padding.

    Counts correct tokens and non-padding tokens across batches, so batches
    with more padding weigh less: the result equals :func:`token_accuracy` on
    all tokens at once. Counts stay on the device until :meth:`compute`.

    Example::

        accuracy = TokenAccuracy(pad_id=0)
        for batch in loader:
            accuracy.update(model(batch), batch.targets)
        print(accuracy.compute())   # {"top1": ..., "top5": ..., "n_tokens": ...}
    """

    def __init__(self, pad_id: int | None = PAD_ID, topk: Sequence[int] = (1, 5)) -> None:
        self.pad_id = pad_id
        self.topk = _check_topk(topk)
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._correct: torch.Tensor | None = None
        self._n_tokens: torch.Tensor | None = None

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add one batch: ``logits`` ``(B, T, V)``, ``targets`` ``(B, T)``."""
        correct, n_tokens = token_accuracy_counts(
            logits, targets, pad_id=self.pad_id, topk=self.topk
        )
        if self._correct is None or self._n_tokens is None:
            self._correct, self._n_tokens = correct, n_tokens
        else:
            self._correct = self._correct + correct.to(self._correct.device)
            self._n_tokens = self._n_tokens + n_tokens.to(self._n_tokens.device)

    def compute(self) -> dict[str, float | int]:
        """Accuracy over every batch since the last :meth:`reset`.

        Raises:
            ValueError: No batch was added, or every token seen was padding.
        """
        if self._correct is None or self._n_tokens is None:
            raise ValueError("TokenAccuracy.compute() before any update(logits, targets)")
        return _as_result(self.topk, self._correct.cpu(), int(self._n_tokens))
