"""Visual token pruning: scorers, two primitives, one memory pruner, one compatibility check.

Pruning keeps ``K`` of ``N`` visual tokens, where

    ``K = max(1, floor((1 - ratio) * N + 1/2))``

(round half up, never below one token; :func:`num_kept` is the one place this
rule lives). ``ratio`` is the fraction of tokens *removed*, so the paper's
30 % pruning of ViT-B/16's 196 tokens keeps ``K = 137``.

The parts:

* **Scorers** give every token a score ``(B, N)``, higher = more worth keeping:
  :func:`norm_scores` (L2 norm), :func:`random_scores` (uniform, seeded),
  :func:`cls_attention_scores` (EViT's attentiveness: the attention the CLS
  token pays to each patch), and :class:`TokenScorer` (a DynamicViT-style
  learned MLP). :func:`merge_tokens` (ToMe-style bipartite soft matching)
  merges similar tokens instead of dropping any.
* **Primitives**: :func:`select_top_k` picks the indices of the ``K`` highest
  scores in original order; :func:`take_tokens` gathers them.
* :class:`TokenPruner` holds a pruning setting (ratio, method, placement) and
  prunes the decoder's memory (``prune_at="memory"``, the paper's placement:
  after the visual encoder and projection, before the decoder's
  cross-attention). With ``prune_at="encoder"`` (EViT-style) the
  :class:`~ptlib.models.encoders.VisualEncoder` prunes inside its ViT blocks
  with the pruner's :meth:`TokenPruner.score` and
  :meth:`TokenPruner.encoder_schedule`, so every later block runs on fewer tokens.
* :func:`check_pruner` is the one place that checks a pruner fits an encoder
  (CLS attention, a ViT with enough blocks, the learned scorer's width); the
  :class:`~ptlib.models.Captioner` calls it whenever a pruner is attached.

Methods (``method=``): ``"none"`` (keep everything, only with ``ratio=0``),
``"random"``, ``"norm"``, ``"cls_attention"`` (``fuse_dropped=True`` appends
one extra token, the score-weighted mean of the dropped tokens), ``"learned"``
and ``"merge"``. The learned scorer removes no token in training: the keep
decision is a hard top-K of Gumbel-perturbed scores, given to the decoder as a
0/1 ``gate`` over all ``N`` tokens that masks its cross-attention (DynamicViT's
attention masking) and carries the sigmoid's gradient (straight-through), plus
a keep-ratio loss. Because the dropped tokens stay in the attention with gate
0, the caption loss tells the scorer what each dropped token would have been
worth. At inference it is a hard top-K of the scores, and the dropped tokens
are removed.

Kept tokens are selected by advanced indexing ``tokens[rows, kept]``, which
saves only the index for backward. ``torch.gather`` would save its whole input,
keeping the unpruned memory alive until backward, which defeats the purpose
(see :func:`ptlib.bench.saved_tensors.saved_tensor_bytes` and the tests).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from ptlib.models.encoders import VisualEncoder

PRUNE_METHODS: tuple[str, ...] = ("none", "random", "norm", "cls_attention", "learned", "merge")
"""Every pruning method."""

ENCODER_PRUNE_METHODS: tuple[str, ...] = ("none", "random", "norm", "cls_attention")
"""Methods that can prune inside the ViT blocks (``prune_at="encoder"``)."""

NO_CLS_METHODS: tuple[str, ...] = ("none", "random", "norm", "learned", "merge")
"""Methods that work for encoders without CLS attention (e.g. ConvNeXt)."""

PRUNE_PLACEMENTS: tuple[str, ...] = ("memory", "encoder")


def check_ratio(ratio: float, name: str = "ratio") -> float:
    """Return ``ratio`` as a float after checking it lies in ``[0, 1)``.

    Raises:
        ValueError: If it is not a number in ``[0, 1)``.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, int | float):
        raise ValueError(f"{name} must be a number in [0, 1), got {ratio!r}")
    ratio = float(ratio)
    if not 0.0 <= ratio < 1.0 or math.isnan(ratio):
        raise ValueError(
            f"{name}={ratio} is the fraction of tokens removed and must lie in [0, 1) "
            "(0 keeps all tokens, 0.3 removes 30 %)"
        )
    return ratio


def num_kept(num_tokens: int, ratio: float) -> int:
    """Tokens kept when removing the fraction ``ratio`` of ``num_tokens``.

    ``K = max(1, floor((1 - ratio) * N + 1/2))``: round half up, never zero.

    Raises:
        ValueError: If ``num_tokens < 1`` or ``ratio`` is outside ``[0, 1)``.
    """
    ratio = check_ratio(ratio)
    if num_tokens < 1:
        raise ValueError(f"cannot prune {num_tokens} tokens: need at least one token")
    return max(1, min(num_tokens, math.floor((1.0 - ratio) * num_tokens + 0.5)))


def default_prune_layers(num_blocks: int) -> tuple[int, ...]:
    """EViT's default blocks to prune after: 1/4, 1/2 and 3/4 of the depth (3, 6, 9 of 12).

    Only blocks before the last one count (pruning after the last block is memory
    pruning), so a 4-block ViT prunes after blocks 1 and 2 and a 2-block ViT after
    block 0.

    Args:
        num_blocks: Number of ViT blocks.

    Returns:
        Strictly increasing 0-based block indices in ``[0, num_blocks - 2]``.

    Raises:
        ValueError: For fewer than 2 blocks (no block comes before the last).
    """
    if num_blocks < 2:
        raise ValueError(
            f"a ViT with {num_blocks} block(s) cannot prune inside the encoder: pruning after "
            "its last block is memory pruning (use prune_at='memory')"
        )
    candidates = {num_blocks // 4, num_blocks // 2, (3 * num_blocks) // 4}
    return tuple(sorted(i for i in candidates if i <= num_blocks - 2))


# -- primitives ---------------------------------------------------------------------
def select_top_k(scores: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` highest scores per row, in ascending (original) order.

    Args:
        scores: ``(B, N)``; higher means keep. Gradients are not followed.
        k: Tokens to keep, ``1 <= k <= N``.

    Returns:
        ``(B, k)`` long, strictly increasing along each row.

    Raises:
        ValueError: If ``k < 1``.
    """
    if k < 1:
        raise ValueError(f"cannot keep {k} tokens: K must be at least 1")
    return scores.detach().topk(k, dim=1).indices.sort(dim=1).values


def take_tokens(tokens: Tensor, indices: Tensor) -> Tensor:
    """Select tokens per batch row: ``out[b, k] = tokens[b, indices[b, k]]``.

    Uses advanced indexing, whose backward saves only ``indices`` (``gather``
    would save all of ``tokens``).

    Args:
        tokens: ``(B, N, ...)``.
        indices: ``(B, K)`` long.

    Returns:
        ``(B, K, ...)``.
    """
    rows = torch.arange(tokens.shape[0], device=tokens.device)[:, None]
    return tokens[rows, indices]


# -- scorers --------------------------------------------------------------------------
def norm_scores(tokens: Tensor) -> Tensor:
    """L2 norm of each token ``(B, N)`` (float32, detached) for tokens ``(B, N, D)``."""
    return tokens.detach().float().norm(dim=-1)


def random_scores(tokens: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Uniform random scores ``(B, N)`` for tokens ``(B, N, D)``.

    Args:
        tokens: ``(B, N, D)``; only the shape and device are used.
        generator: A CPU generator, so runs repeat; ``None`` draws from the global RNG.
    """
    batch, count = tokens.shape[:2]
    if generator is None:
        return torch.rand(batch, count, device=tokens.device)
    return torch.rand(batch, count, generator=generator).to(tokens.device)


def cls_attention_scores(tokens: Tensor, cls_attention: Tensor | None) -> Tensor:
    """EViT's attentiveness: the CLS attention ``(B, N)`` itself, checked and detached.

    Args:
        tokens: ``(B, N, D)``, the tokens scored (for the shape check).
        cls_attention: ``(B, N)`` attention the CLS token pays to each token.

    Raises:
        ValueError: If ``cls_attention`` is missing or of the wrong shape.
    """
    batch, count = tokens.shape[:2]
    if cls_attention is None:
        raise ValueError(
            "method 'cls_attention' scores tokens by the CLS attention of a ViT encoder with a "
            "class token, and none was given (encoders without it, such as ConvNeXt, cannot "
            f"use it); methods that apply: {NO_CLS_METHODS}"
        )
    if tuple(cls_attention.shape) != (batch, count):
        raise ValueError(
            f"cls_attention has shape {tuple(cls_attention.shape)}, expected {(batch, count)}"
        )
    return cls_attention.detach().float()


class TokenScorer(nn.Module):
    """DynamicViT-style predictor: an MLP on each token and the mean of all tokens.

    Args:
        dim: Token width ``D``.
        hidden: Hidden width (default ``max(16, D // 4)``).
    """

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or max(16, dim // 4)
        self.dim = int(dim)
        self.norm = nn.LayerNorm(dim)
        self.local = nn.Linear(dim, hidden)
        self.context = nn.Linear(dim, hidden)
        self.out = nn.Sequential(nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, tokens: Tensor) -> Tensor:
        """Keep logits ``(B, N)`` for tokens ``(B, N, D)``."""
        h = self.norm(tokens)
        context = self.context(h.mean(dim=1, keepdim=True))
        return self.out(self.local(h) + context).squeeze(-1)


@dataclass
class PruneResult:
    """What :class:`TokenPruner` returns.

    Attributes:
        tokens: Kept tokens ``(B, K, D)`` in original order; ``(B, K + 1, D)``
            when ``fused`` (the last token is the fused one).
        kept_indices: Original positions of the kept tokens ``(B, K)``, long,
            strictly increasing (for ``merge``: each merged group's representative).
        scores: Per-token scores ``(B, N)`` (detached; higher = more worth keeping).
        aux_loss: Scalar loss term (the learned scorer's keep-ratio loss; 0 otherwise).
        sizes: ``merge`` only: how many original tokens each output token holds ``(B, K)``.
        assignment: ``merge`` only: the output token each input token went to ``(B, N)``.
        fused: Whether a fused token of the dropped tokens was appended.
        gate: ``learned`` in training only: ``(B, N)`` keep gate, exactly ``K``
            ones per row in value, with the scorer's gradient (straight-through).
            ``tokens`` then holds all ``N`` tokens and the decoder masks its
            cross-attention with the gate; ``None`` otherwise.
    """

    tokens: Tensor
    kept_indices: Tensor
    scores: Tensor
    aux_loss: Tensor
    sizes: Tensor | None = None
    assignment: Tensor | None = None
    fused: bool = False
    gate: Tensor | None = None


class TokenPruner(nn.Module):
    """A pruning setting, and the module that prunes the decoder's memory.

    Called on tokens (``prune_at="memory"``), it keeps the ``K`` most useful of
    ``N`` tokens. With ``prune_at="encoder"`` the encoder prunes inside its ViT
    blocks with :meth:`score` after the blocks of :meth:`encoder_schedule`, and
    calling the pruner is an error.

    Args:
        ratio: Fraction of tokens removed, in ``[0, 1)``.
        method: One of :data:`PRUNE_METHODS`.
        dim: ``"learned"`` without ``scorer``: width of the tokens a new predictor scores.
        seed: Seed for ``"random"`` (a private generator, so runs repeat); ``None``
            uses the global RNG.
        fuse_dropped: ``"cls_attention"`` only: append one token, the
            score-weighted mean of the dropped tokens (EViT's fusion).
        prune_at: ``"memory"`` or ``"encoder"``.
        prune_layers: ``"encoder"`` only: 0-based ViT block indices after which to
            prune; default: blocks at 1/4, 1/2 and 3/4 depth (EViT's 3, 6, 9 of 12).
        gumbel_tau: ``"learned"``: temperature of the training-time keep gate.
        ratio_loss_weight: ``"learned"``: weight of the keep-ratio loss.
        scorer_hidden: ``"learned"``: hidden width of a new predictor.
        scorer: ``"learned"``: an existing (trained) :class:`TokenScorer` to use,
            shared, not copied; instead of ``dim``.

    Raises:
        ValueError: For an unknown method or placement, a ratio outside ``[0, 1)``,
            or options that do not go together.
    """

    def __init__(
        self,
        ratio: float = 0.0,
        method: str = "none",
        *,
        dim: int | None = None,
        seed: int | None = None,
        fuse_dropped: bool = False,
        prune_at: str = "memory",
        prune_layers: Sequence[int] | None = None,
        gumbel_tau: float = 1.0,
        ratio_loss_weight: float = 2.0,
        scorer_hidden: int | None = None,
        scorer: TokenScorer | None = None,
    ) -> None:
        super().__init__()
        self.ratio = check_ratio(ratio)
        if method not in PRUNE_METHODS:
            raise ValueError(f"unknown pruning method {method!r}; use one of {PRUNE_METHODS}")
        if prune_at not in PRUNE_PLACEMENTS:
            raise ValueError(f"prune_at must be one of {PRUNE_PLACEMENTS}, got {prune_at!r}")
        if method == "none" and self.ratio > 0:
            raise ValueError(
                f"method 'none' keeps every token, so ratio must be 0 (got {ratio}); "
                f"choose one of {PRUNE_METHODS[1:]} to prune"
            )
        if prune_at == "encoder" and method not in ENCODER_PRUNE_METHODS:
            raise ValueError(
                f"method {method!r} cannot prune inside the encoder; with prune_at='encoder' "
                f"use one of {ENCODER_PRUNE_METHODS}, or use prune_at='memory'"
            )
        if fuse_dropped and (method != "cls_attention" or prune_at != "memory"):
            raise ValueError("fuse_dropped=True needs method='cls_attention', prune_at='memory'")
        if prune_layers is not None and prune_at != "encoder":
            raise ValueError("prune_layers is only used with prune_at='encoder'")
        if gumbel_tau <= 0:
            raise ValueError(f"gumbel_tau must be positive, got {gumbel_tau}")
        if scorer is not None and method != "learned":
            raise ValueError(f"scorer= is the learned predictor; method {method!r} has none")
        self.method = method
        self.prune_at = prune_at
        self.prune_layers = None if prune_layers is None else tuple(int(i) for i in prune_layers)
        self.fuse_dropped = fuse_dropped
        self.gumbel_tau = float(gumbel_tau)
        self.ratio_loss_weight = float(ratio_loss_weight)
        self.seed = seed
        self._generator: torch.Generator | None = None
        if seed is not None:
            self._generator = torch.Generator().manual_seed(int(seed))
        self.scorer: TokenScorer | None = scorer
        if method == "learned" and scorer is None:
            if dim is None:
                raise ValueError("method 'learned' needs dim= (the width of the tokens it scores)")
            self.scorer = TokenScorer(dim, scorer_hidden)

    def extra_repr(self) -> str:
        text = f"ratio={self.ratio}, method={self.method!r}, prune_at={self.prune_at!r}"
        if self.prune_layers is not None:
            text += f", prune_layers={self.prune_layers}"
        return text + (", fuse_dropped=True" if self.fuse_dropped else "")

    @property
    def uses_cls_attention(self) -> bool:
        """Whether the scores come from the encoder's CLS attention (and tokens are removed)."""
        return self.method == "cls_attention" and self.ratio > 0

    @property
    def prunes_memory(self) -> bool:
        """Whether this pruner acts on the decoder memory (``prune_at="memory"``)."""
        return self.prune_at == "memory"

    def num_kept(self, num_tokens: int) -> int:
        """``K`` for ``num_tokens`` inputs (see :func:`num_kept`)."""
        return num_kept(num_tokens, self.ratio)

    def num_memory_tokens(self, num_tokens: int) -> int:
        """Tokens the decoder attends to for ``num_tokens`` visual tokens (``K``, +1 when fused)."""
        kept = self.num_kept(num_tokens)
        return kept + int(self.fuse_dropped and kept < num_tokens)

    def encoder_schedule(self, num_tokens: int, num_blocks: int) -> list[tuple[int, int]]:
        """Where and how much to prune inside a ViT (``prune_at="encoder"``).

        Stage ``s`` of ``S`` keeps ``max(1, round_half_up(N * (1 - ratio) ** ((s + 1) / S)))``
        tokens, so the keep rate per stage is equal and the last stage keeps
        exactly :meth:`num_kept` ``(N)``, the same count as memory pruning.

        Args:
            num_tokens: Patch tokens ``N`` entering the ViT blocks.
            num_blocks: Number of ViT blocks.

        Returns:
            ``[(block_index, tokens_kept_after_it), ...]``; empty when nothing is
            pruned inside the encoder.

        Raises:
            ValueError: If the layers do not fit a ViT of ``num_blocks`` blocks.
        """
        if self.prune_at != "encoder" or self.ratio == 0:
            return []
        layers = self.prune_layers
        if layers is None:
            layers = default_prune_layers(num_blocks)
        if not layers or any(not 0 <= i < num_blocks - 1 for i in layers):
            raise ValueError(
                f"prune_layers={layers} must be block indices in [0, {num_blocks - 2}] "
                f"(the encoder has {num_blocks} blocks; pruning after the last one is memory pruning)"
            )
        if list(layers) != sorted(set(layers)):
            raise ValueError(f"prune_layers={layers} must be strictly increasing")
        keep = 1.0 - self.ratio
        stages = len(layers)
        counts = [
            max(1, min(num_tokens, math.floor(num_tokens * keep ** ((s + 1) / stages) + 0.5)))
            for s in range(stages)
        ]
        counts[-1] = self.num_kept(num_tokens)
        return list(zip(layers, counts, strict=True))

    def score(self, tokens: Tensor, cls_attention: Tensor | None = None) -> Tensor:
        """Scores ``(B, N)`` for tokens ``(B, N, D)`` with this pruner's scorer: higher means keep.

        For ``"learned"`` the scores carry gradients (they are the predictor's
        logits); for the other methods they are detached. ``"none"`` and
        ``"merge"`` score zeros.

        Args:
            tokens: ``(B, N, D)``.
            cls_attention: ``(B, N)``, for ``"cls_attention"`` only.

        Raises:
            ValueError: ``"cls_attention"`` without ``cls_attention`` (the
                message lists the methods that apply), or a shape mismatch.
        """
        if self.method == "cls_attention":
            return cls_attention_scores(tokens, cls_attention)
        if self.method == "norm":
            return norm_scores(tokens)
        if self.method == "random":
            return random_scores(tokens, self._generator)
        if self.method == "learned":
            assert self.scorer is not None
            return self.scorer(tokens).float()
        return torch.zeros(tokens.shape[:2], device=tokens.device)

    # -- forward -----------------------------------------------------------------
    def forward(self, tokens: Tensor, *, cls_attention: Tensor | None = None) -> PruneResult:
        """Prune the decoder's memory (``prune_at="memory"``).

        Args:
            tokens: ``(B, N, D)``.
            cls_attention: ``(B, N)`` CLS attention of the encoder (``"cls_attention"`` only).

        Returns:
            A :class:`PruneResult`.

        Raises:
            ValueError: If ``tokens`` is not ``(B, N, D)`` with ``N >= 1``, or the
                pruner prunes inside the encoder.
        """
        if not self.prunes_memory:
            raise ValueError(
                "this pruner prunes inside the encoder (prune_at='encoder'): the encoder "
                "applies it with score() and encoder_schedule(); it does not prune memory"
            )
        if tokens.ndim != 3 or tokens.shape[1] < 1:
            raise ValueError(f"tokens must be (B, N, D) with N >= 1, got {tuple(tokens.shape)}")
        batch, count, _ = tokens.shape
        zero = tokens.new_zeros(())
        if self.method == "none" or self.ratio == 0:
            skip = self.method == "merge" or (self.method == "cls_attention" and cls_attention is None)
            scores = torch.zeros(batch, count, device=tokens.device) if skip else self.score(
                tokens, cls_attention).detach()
            identity = torch.arange(count, device=tokens.device).expand(batch, count)
            return PruneResult(tokens, identity, scores, zero)
        k = self.num_kept(count)
        if self.method == "merge":
            return merge_tokens(tokens, k)
        scores = self.score(tokens, cls_attention)
        if self.method == "learned":
            return self._learned(tokens, scores, k)
        kept = select_top_k(scores, k)
        out = take_tokens(tokens, kept)
        fused = False
        if self.fuse_dropped and k < count:
            out = torch.cat([out, _fuse_dropped(tokens, scores, kept)], dim=1)
            fused = True
        return PruneResult(out, kept, scores, zero, fused=fused)

    def _learned(self, tokens: Tensor, logits: Tensor, k: int) -> PruneResult:
        count = tokens.shape[1]
        if not self.training:
            kept = select_top_k(logits, k)
            return PruneResult(take_tokens(tokens, kept), kept, logits.detach(), tokens.new_zeros(()))
        uniform = torch.rand_like(logits).clamp_(1e-6, 1 - 1e-6)
        noisy = logits - torch.log(-torch.log(uniform))  # Gumbel-perturbed logits
        kept = select_top_k(noisy, k)
        soft = torch.sigmoid(noisy / self.gumbel_tau)  # (B, N) keep probability
        hard = torch.zeros_like(soft)
        hard[torch.arange(hard.shape[0], device=hard.device)[:, None], kept] = 1.0
        gate = hard + soft - soft.detach()  # 0/1 in the forward pass, d soft in backward
        keep_rate = k / count
        aux = self.ratio_loss_weight * ((soft.mean(dim=1) - keep_rate) ** 2).mean()
        return PruneResult(tokens, kept, logits.detach(), aux.to(tokens.dtype),
                           gate=gate.to(tokens.dtype))


# -- compatibility: the one check, wherever a pruner is attached ---------------------------
def _misfit(
    encoder: VisualEncoder, method: str, ratio: float, prune_at: str,
    schedule: Callable[[], object] | None = None,
) -> str | None:
    """Why ``method`` at ``ratio`` and ``prune_at`` cannot run on ``encoder``, or ``None``."""
    if ratio == 0:
        return None
    if method == "cls_attention" and not encoder.has_cls_attention:
        return (
            f"pruning method 'cls_attention' needs a ViT with a class token, but encoder "
            f"{encoder.name!r} has no CLS attention; methods that apply: {NO_CLS_METHODS}"
        )
    if prune_at == "encoder" and encoder.kind != "vit":
        return (
            f"prune_at='encoder' prunes inside ViT blocks and needs a ViT; {encoder.name!r} "
            "is not one. Use prune_at='memory'."
        )
    if schedule is not None:
        try:
            schedule()
        except ValueError as err:
            return f"{encoder.name}: {err}"
    return None


def check_pruner(pruner: TokenPruner, encoder: VisualEncoder, width: int) -> None:
    """Check that ``pruner`` can prune ``encoder``'s tokens (the one compatibility check).

    Called where a pruner is attached: :class:`~ptlib.models.Captioner`'s
    constructor, which :func:`~ptlib.models.reprune` also goes through.

    Args:
        pruner: The pruner to attach.
        encoder: The visual encoder whose tokens it prunes.
        width: Width ``D`` of the tokens a memory pruner scores (the projection's
            ``d_model``), which a learned scorer must take.

    Raises:
        ValueError: For CLS attention on an encoder without it, in-encoder
            pruning outside a ViT or at blocks the ViT does not have, or a
            learned scorer of another width.
    """
    problem = _misfit(
        encoder, pruner.method, pruner.ratio, pruner.prune_at,
        lambda: pruner.encoder_schedule(encoder.num_tokens, encoder.num_blocks),
    )
    if problem is None and pruner.scorer is not None and pruner.scorer.dim != width:
        problem = (
            f"the learned scorer takes tokens of width {pruner.scorer.dim}, but the "
            f"captioner's memory tokens have width {width}"
        )
    if problem is not None:
        raise ValueError(problem)


def pruning_methods(encoder: VisualEncoder, prune_at: str = "memory") -> tuple[str, ...]:
    """The untrained pruning methods ``encoder`` supports at ``prune_at``, in :data:`PRUNE_METHODS` order.

    ``"none"`` and ``"learned"`` (which needs a scorer trained with the model) are
    not listed.
    """
    allowed = ENCODER_PRUNE_METHODS if prune_at == "encoder" else PRUNE_METHODS
    return tuple(
        m for m in PRUNE_METHODS
        if m in allowed and m not in ("none", "learned")
        and _misfit(encoder, m, 0.5, prune_at) is None
    )


def _fuse_dropped(tokens: Tensor, scores: Tensor, kept: Tensor) -> Tensor:
    """Score-weighted mean of the tokens not in ``kept`` ``(B, 1, D)`` (EViT fusion)."""
    dropped = torch.ones_like(scores, dtype=torch.bool)
    dropped[torch.arange(scores.shape[0], device=scores.device)[:, None], kept] = False
    weights = scores.clamp_min(0) * dropped
    weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.einsum("bn,bnd->bd", weights.to(tokens.dtype), tokens).unsqueeze(1)


def _merge_round(
    x: Tensor, size: Tensor, rep: Tensor, assignment: Tensor, r: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One ToMe bipartite matching step that merges ``r`` tokens away.

    Tokens alternate between set A (even positions) and B (odd). Each A token
    points to its most similar B token (cosine); the ``r`` A tokens with the
    strongest match are merged into their B partner by size-weighted averaging.

    Args:
        x: Tokens ``(B, n, D)`` (already size-weighted means).
        size: Tokens each one holds ``(B, n)``.
        rep: Representative original index of each token ``(B, n)``.
        assignment: Current token of every original token ``(B, N)``.
        r: Number of tokens to remove, ``1 <= r <= ceil(n / 2)``.

    Returns:
        ``(x, size, rep, assignment)`` with ``n - r`` tokens in original order.
    """
    batch, n, dim = x.shape
    rows = torch.arange(batch, device=x.device)[:, None]
    metric = F.normalize(x.detach().float(), dim=-1)
    similarity = metric[:, ::2] @ metric[:, 1::2].transpose(1, 2)  # (B, nA, nB)
    best, partner = similarity.max(dim=-1)  # (B, nA)
    order = best.argsort(dim=-1, descending=True)
    src, unmerged = order[:, :r], order[:, r:]
    dst = partner[rows, src]  # (B, r) index into B
    a_x, b_x = x[:, ::2], x[:, 1::2]
    a_size, b_size = size[:, ::2], size[:, 1::2]
    weighted_b = b_x * b_size.unsqueeze(-1)
    src_weighted = take_tokens(a_x * a_size.unsqueeze(-1), src)
    weighted_b = weighted_b.index_put((rows.expand_as(dst), dst), src_weighted, accumulate=True)
    new_b_size = b_size.index_put((rows.expand_as(dst), dst), a_size[rows, src], accumulate=True)
    new_size = torch.cat([a_size[rows, unmerged], new_b_size], dim=1)
    new_x = torch.cat([a_x[rows, unmerged], weighted_b / new_b_size.unsqueeze(-1)], dim=1)
    new_rep = torch.cat([rep[:, ::2][rows, unmerged], rep[:, 1::2]], dim=1)
    # Where every current token goes (before re-sorting): A-unmerged first, then B.
    n_unmerged = unmerged.shape[1]
    n_a = (n + 1) // 2
    target_a = torch.empty(batch, n_a, dtype=torch.long, device=x.device)
    target_a[rows, unmerged] = torch.arange(n_unmerged, device=x.device).expand(batch, -1)
    target_a[rows, src] = n_unmerged + dst
    target_b = n_unmerged + torch.arange(n - n_a, device=x.device).expand(batch, -1)
    target = torch.empty(batch, n, dtype=torch.long, device=x.device)
    target[:, ::2], target[:, 1::2] = target_a, target_b
    # Restore original order by representative index.
    new_rep, perm = new_rep.sort(dim=1)
    inverse = torch.empty_like(perm)
    inverse[rows, perm] = torch.arange(perm.shape[1], device=x.device).expand(batch, -1)
    new_x, new_size = new_x[rows, perm], new_size[rows, perm]
    assignment = inverse[rows, target[rows, assignment]]
    return new_x, new_size, new_rep, assignment


def merge_tokens(tokens: Tensor, k: int) -> PruneResult:
    """Merge ``(B, N, D)`` tokens down to ``k`` with ToMe bipartite soft matching.

    Repeats matching rounds (each removes at most half the tokens) until ``k``
    remain. Every output token is the size-weighted mean of the original tokens
    merged into it, so ``sum(sizes * tokens) / N`` equals the mean of the inputs.

    Returns:
        A :class:`PruneResult` whose ``kept_indices`` are each group's
        representative original index, ``sizes`` the group sizes, ``assignment``
        the group of each input token, and ``scores`` the negated cosine
        similarity of each token to its closest other token (distinct tokens
        score high).
    """
    batch, count, _ = tokens.shape
    if not 1 <= k <= count:
        raise ValueError(f"cannot merge {count} tokens down to {k}: need 1 <= K <= N")
    device = tokens.device
    with torch.no_grad():
        metric = F.normalize(tokens.detach().float(), dim=-1)
        similarity = metric @ metric.transpose(1, 2)
        similarity.diagonal(dim1=1, dim2=2).fill_(-2.0)
        scores = -similarity.max(dim=-1).values if count > 1 else torch.zeros(batch, count)
    x = tokens
    size = torch.ones(batch, count, dtype=tokens.dtype, device=device)
    rep = torch.arange(count, device=device).expand(batch, count)
    assignment = rep.clone()
    while x.shape[1] > k:
        n = x.shape[1]
        x, size, rep, assignment = _merge_round(x, size, rep, assignment, min(n - k, (n + 1) // 2))
    return PruneResult(
        x, rep, scores.to(device), tokens.new_zeros(()), sizes=size, assignment=assignment
    )
