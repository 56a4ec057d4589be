"""Caption generation: greedy decoding and beam search, batched over images and beams.

Both work on decoder memory ``(B, M, D)`` (the projected, pruned visual
tokens) and return a :class:`GenerationResult` whose ``tokens`` are the
generated ids ``(B, L)`` without ``<bos>``, ending with ``<eos>`` (unless
``max_len`` was reached) and padded with ``<pad>`` after it.

With ``use_cache=True`` each step runs the decoder on the one new position
(:meth:`~ptlib.models.decoder.CaptionDecoder.step`); with ``use_cache=False``
it recomputes the whole prefix every step. Both give the same captions.

Beam search keeps ``beam_size`` hypotheses per image in one ``(B * beam, ·)``
batch. A finished hypothesis stays in its beam with its score frozen (it can
only be extended by ``<pad>`` at log-probability 0). Hypotheses are ranked by
``score / lp(length)`` with the GNMT length penalty
``lp(L) = ((5 + L) / 6) ** length_penalty`` (``L`` counts generated tokens,
``<eos>`` included; ``length_penalty = 0`` ranks by total log-probability).
The search stops when every beam of every image has finished or after
``max_len`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ptlib.models.decoder import CaptionDecoder
from ptlib.tokens import BOS_ID, EOS_ID, PAD_ID


@dataclass
class GenerationResult:
    """Generated captions.

    Attributes:
        tokens: ``(B, L)`` long, without ``<bos>``; ``<pad>`` after ``<eos>``.
        scores: ``(B,)`` total log-probability of each caption (beam: before the
            length penalty).
        attention: Cross-attention of the last decoder layer, mean over heads,
            for each generated token ``(B, L, M)``; ``None`` unless asked for.
        kept_indices: Original grid positions of the ``M`` memory tokens
            ``(B, M)`` (set by the captioner), for drawing attention on the image.
    """

    tokens: Tensor
    scores: Tensor
    attention: Tensor | None = None
    kept_indices: Tensor | None = None

    def lengths(self, eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> Tensor:
        """Tokens before padding in each caption ``(B,)`` (``<eos>`` counted)."""
        return (self.tokens != pad_id).sum(dim=1)


def length_penalty_factor(lengths: Tensor, alpha: float) -> Tensor:
    """GNMT length penalty ``((5 + L) / 6) ** alpha``."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


class _Stepper:
    """Next-token log-probabilities, with or without a KV cache."""

    def __init__(
        self,
        decoder: CaptionDecoder,
        memory: Tensor,
        memory_padding_mask: Tensor | None,
        max_len: int,
        use_cache: bool,
        need_attention: bool,
    ) -> None:
        self.decoder = decoder
        self.memory = memory
        self.memory_padding_mask = memory_padding_mask
        self.need_attention = need_attention
        self.cache = decoder.init_cache(memory, memory_padding_mask, max_len) if use_cache else None

    def __call__(self, prefix: Tensor) -> tuple[Tensor, Tensor | None]:
        """Log-probabilities ``(R, V)`` of the token after ``prefix`` ``(R, t)``, and attention ``(R, M)``."""
        if self.cache is not None:
            out = self.decoder.step(prefix[:, -1:], self.cache, need_attention=self.need_attention)
        else:
            out = self.decoder(
                prefix,
                self.memory,
                memory_padding_mask=self.memory_padding_mask,
                need_attention=self.need_attention,
            )
        attention = None
        if out.cross_attention is not None:
            attention = out.cross_attention[-1][:, :, -1].mean(dim=1)
        return out.logits[:, -1].float().log_softmax(dim=-1), attention

    def reorder(self, index: Tensor) -> None:
        if self.cache is not None:
            self.cache.reorder(index)


def _check(decoder: CaptionDecoder, memory: Tensor, max_len: int) -> None:
    if memory.ndim != 3:
        raise ValueError(f"memory must be (B, M, D), got {tuple(memory.shape)}")
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    if max_len > decoder.max_len:
        raise ValueError(
            f"max_len={max_len} generated tokens need a decoder with max_len >= {max_len} "
            f"(<bos> + {max_len - 1} tokens); this decoder has max_len={decoder.max_len}"
        )


@torch.no_grad()
def greedy_decode(
    decoder: CaptionDecoder,
    memory: Tensor,
    *,
    memory_padding_mask: Tensor | None = None,
    max_len: int = 20,
    bos_id: int = BOS_ID,
    eos_id: int | None = EOS_ID,
    pad_id: int = PAD_ID,
    use_cache: bool = True,
    return_attention: bool = False,
) -> GenerationResult:
    """Pick the most likely token at each step.

    Args:
        decoder: The caption decoder.
        memory: Visual tokens ``(B, M, D)``.
        memory_padding_mask: ``(B, M)`` bool, ``True`` at padding.
        max_len: Most tokens to generate (``<eos>`` included).
        bos_id: Start token.
        eos_id: Stop token; ``None`` never stops early (for benchmarks).
        pad_id: Filler after ``<eos>``.
        use_cache: Use the KV cache (one new position per step).
        return_attention: Record the last layer's cross-attention per token.

    Returns:
        A :class:`GenerationResult`.
    """
    _check(decoder, memory, max_len)
    batch, device = memory.shape[0], memory.device
    stepper = _Stepper(decoder, memory, memory_padding_mask, max_len, use_cache, return_attention)
    prefix = torch.full((batch, 1), bos_id, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    scores = torch.zeros(batch, device=device)
    attention: list[Tensor] = []
    for _ in range(max_len):
        log_probs, weights = stepper(prefix)
        best_log_prob, token = log_probs.max(dim=-1)
        token = token.masked_fill(finished, pad_id)
        scores = scores + best_log_prob.masked_fill(finished, 0.0)
        prefix = torch.cat([prefix, token[:, None]], dim=1)
        if weights is not None:
            attention.append(weights.masked_fill(finished[:, None], 0.0))
        if eos_id is not None:
            finished = finished | (token == eos_id)
            if bool(finished.all()):
                break
    return GenerationResult(
        tokens=prefix[:, 1:],
        scores=scores,
        attention=torch.stack(attention, dim=1) if return_attention else None,
    )


@torch.no_grad()
def beam_search(
    decoder: CaptionDecoder,
    memory: Tensor,
    *,
    beam_size: int = 3,
    memory_padding_mask: Tensor | None = None,
    max_len: int = 20,
    length_penalty: float = 0.0,
    bos_id: int = BOS_ID,
    eos_id: int | None = EOS_ID,
    pad_id: int = PAD_ID,
    use_cache: bool = True,
    return_attention: bool = False,
) -> GenerationResult:
    """Beam search over all images at once (no Python loop over images).

    Args:
        decoder: The caption decoder.
        memory: Visual tokens ``(B, M, D)``.
        beam_size: Hypotheses kept per image (1 gives greedy decoding).
        memory_padding_mask: ``(B, M)`` bool, ``True`` at padding.
        max_len: Most tokens to generate (``<eos>`` included).
        length_penalty: GNMT ``alpha`` (0 = none; 0.6–1.0 favours longer captions).
        bos_id: Start token.
        eos_id: Stop token; ``None`` never stops early.
        pad_id: Filler after ``<eos>``.
        use_cache: Use the KV cache.
        return_attention: Record the chosen hypothesis' cross-attention per token.

    Returns:
        A :class:`GenerationResult` with the best hypothesis of each image.
    """
    _check(decoder, memory, max_len)
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}")
    batch, device = memory.shape[0], memory.device
    k = beam_size
    rows = batch * k
    memory = memory.repeat_interleave(k, dim=0)
    if memory_padding_mask is not None:
        memory_padding_mask = memory_padding_mask.repeat_interleave(k, dim=0)
    stepper = _Stepper(decoder, memory, memory_padding_mask, max_len, use_cache, return_attention)
    prefix = torch.full((rows, 1), bos_id, dtype=torch.long, device=device)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    finished = torch.zeros(batch, k, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, k, dtype=torch.long, device=device)
    attention: Tensor | None = None  # (rows, t, M)
    image_offset = (torch.arange(batch, device=device) * k)[:, None]
    for _ in range(max_len):
        log_probs, weights = stepper(prefix)
        vocab = log_probs.shape[-1]
        log_probs = log_probs.view(batch, k, vocab)
        frozen = torch.full_like(log_probs[0, 0], float("-inf"))
        frozen[pad_id] = 0.0
        log_probs = torch.where(finished[..., None], frozen, log_probs)
        candidates = scores[..., None] + log_probs  # (B, k, V)
        new_lengths = lengths + (~finished).long()
        ranking = candidates / length_penalty_factor(new_lengths, length_penalty)[..., None]
        top = ranking.view(batch, k * vocab).topk(k, dim=1).indices  # (B, k)
        origin, token = top // vocab, top % vocab
        scores = candidates.view(batch, k * vocab).gather(1, top)
        source = (image_offset + origin).view(-1)  # (rows,)
        prefix = torch.cat([prefix[source], token.view(-1, 1)], dim=1)
        was_finished = finished.gather(1, origin)
        lengths = new_lengths.gather(1, origin)
        finished = was_finished | (token == eos_id) if eos_id is not None else was_finished
        stepper.reorder(source)
        if weights is not None:
            step_weights = weights[source].masked_fill(was_finished.view(-1, 1), 0.0)[:, None]
            attention = step_weights if attention is None else torch.cat(
                [attention[source], step_weights], dim=1
            )
        if bool(finished.all()):
            break
    final = scores / length_penalty_factor(lengths, length_penalty)
    best = final.argmax(dim=1)  # (B,)
    chosen = (image_offset[:, 0] + best)
    return GenerationResult(
        tokens=prefix[chosen, 1:],
        scores=scores.gather(1, best[:, None])[:, 0],
        attention=attention[chosen] if attention is not None else None,
    )
