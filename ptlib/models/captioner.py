"""The captioner: encoder -> projection (+ visual Transformer layers) -> pruning -> decoder.

::

    images (B, 3, H, W)
      -> VisualEncoder     tokens (B, N, C)   [prune_at="encoder": fewer tokens]
      -> VisualProjection  memory (B, N, D)   positions added by original index
      -> TokenPruner       memory (B, K, D)   [prune_at="memory", the paper's]
      -> CaptionDecoder    logits (B, T, V)   cross-attention over the K tokens

:meth:`Captioner.forward` is teacher-forced training; :meth:`Captioner.generate`
captions images (greedy or beam search, KV cache). :meth:`Captioner.forward_features`
and :meth:`Captioner.encode_features` start from encoder tokens, so a frozen
encoder's outputs can be computed once and cached. :func:`reprune` gives a
trained captioner another pruning setting as a new captioner sharing its modules::

    half = reprune(model, 0.5, "merge")   # model itself is unchanged
    captions = half.generate(images).tokens
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ptlib.models.config import CaptionerConfig
from ptlib.models.decoder import CaptionDecoder
from ptlib.models.encoders import EncoderOutput, EncoderPruning, VisualEncoder, build_encoder
from ptlib.models.generate import GenerationResult, beam_search, greedy_decode
from ptlib.models.projection import VisualProjection
from ptlib.models.pruning import TokenPruner, check_pruner
from ptlib.tokens import BOS_ID, EOS_ID, PAD_ID


@dataclass
class VisualMemory:
    """The visual tokens the decoder attends to.

    Attributes:
        tokens: ``(B, M, D)``: ``M = K`` kept tokens (``K + 1`` with a fused token);
            while the learned scorer trains, all ``M = N`` tokens, with ``gate``.
        kept_indices: Original grid positions of the kept tokens ``(B, K)``, ascending.
        scores: Pruning scores over the tokens the memory pruner saw ``(B, N)``
            (the first encoder stage's scores for ``prune_at="encoder"``), or ``None``.
        aux_loss: Scalar pruning loss (0 unless the learned scorer trains).
        grid: ``(h, w)`` of the full token grid.
        sizes: Merge group sizes ``(B, K)`` (``merge`` only).
        gate: ``(B, N)`` 0/1 keep gate that masks the decoder's cross-attention
            while the learned scorer trains (exactly ``K`` ones per row), else ``None``.
    """

    tokens: Tensor
    kept_indices: Tensor
    scores: Tensor | None
    aux_loss: Tensor
    grid: tuple[int, int]
    sizes: Tensor | None = None
    gate: Tensor | None = None


@dataclass
class CaptionerOutput:
    """What :meth:`Captioner.forward` returns.

    Attributes:
        logits: ``(B, T, V)``; position ``t`` predicts token ``t + 1``.
        aux_loss: Scalar tensor to add to the caption loss (0 without a learned pruner).
        kept_indices: ``(B, K)`` original grid positions of the visual tokens kept.
        scores: Pruning scores ``(B, N)`` or ``None``.
        cross_attention: Last decoder layer's cross-attention, mean over heads,
            ``(B, T, M)`` when asked for.
        grid: ``(h, w)`` of the full token grid.
    """

    logits: Tensor
    aux_loss: Tensor
    kept_indices: Tensor
    scores: Tensor | None = None
    cross_attention: Tensor | None = None
    grid: tuple[int, int] = (0, 0)


class Captioner(nn.Module):
    """An image captioner with visual token pruning.

    Args:
        encoder: From :func:`~ptlib.models.build_encoder`.
        projection: Maps encoder tokens to ``d_model`` (+ visual Transformer layers).
        pruner: A :class:`~ptlib.models.TokenPruner` (``method="none"`` to keep all).
        decoder: A :class:`~ptlib.models.CaptionDecoder`.
        bos_id: Start token id. eos_id: Stop token id. pad_id: Padding id.

    Raises:
        ValueError: If the pruner does not fit the encoder (see
            :func:`~ptlib.models.pruning.check_pruner`).
    """

    def __init__(
        self,
        encoder: VisualEncoder,
        projection: VisualProjection,
        pruner: TokenPruner,
        decoder: CaptionDecoder,
        *,
        bos_id: int = BOS_ID,
        eos_id: int = EOS_ID,
        pad_id: int = PAD_ID,
    ) -> None:
        super().__init__()
        check_pruner(pruner, encoder, projection.linear.out_features)
        self.encoder = encoder
        self.projection = projection
        self.pruner = pruner
        self.decoder = decoder
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.config: CaptionerConfig | None = None  # set by from_config

    # -- construction ------------------------------------------------------------
    @classmethod
    def from_config(cls, config: CaptionerConfig | Mapping[str, Any]) -> Captioner:
        """Build a captioner from a :class:`CaptionerConfig` or its dict form (e.g. from YAML).

        Raises:
            ValueError: On unknown keys or invalid values.
        """
        if not isinstance(config, CaptionerConfig):
            config = CaptionerConfig.from_dict(config)
        encoder = build_encoder(
            config.encoder,
            pretrained=config.pretrained,
            img_size=config.img_size,
            feature_stride=config.feature_stride,
            freeze=config.freeze_encoder,
            encoder_kwargs=config.encoder_kwargs,
        )
        if config.encoder_init is not None:
            from ptlib.pretrain.checkpoint import load_encoder_init

            load_encoder_init(encoder, config.encoder_init)
        projection = VisualProjection(
            encoder.width,
            config.d_model,
            encoder.grid,
            positional=config.positional,
            n_encoder_layers=config.n_encoder_layers,
            n_heads=config.n_heads,
            ff_dim=config.ff_dim,
            dropout=config.dropout,
        )
        pruner = TokenPruner(
            config.prune_ratio,
            config.prune_method,
            dim=config.d_model,
            seed=config.prune_seed,
            fuse_dropped=config.fuse_dropped,
            prune_at=config.prune_at,
            prune_layers=config.prune_layers,
        )
        decoder = CaptionDecoder(
            config.vocab_size,
            config.d_model,
            config.n_decoder_layers,
            config.n_heads,
            config.ff_dim,
            config.dropout,
            config.max_len,
            tie_weights=config.tie_weights,
            norm_first=config.norm_first,
        )
        model = cls(encoder, projection, pruner, decoder)
        model.config = config
        return model

    @property
    def num_memory_tokens(self) -> int:
        """How many visual tokens the decoder attends to (known without running)."""
        return self.pruner.num_memory_tokens(self.encoder.num_tokens)

    # -- the visual side ------------------------------------------------------------
    def encode_images(self, images: Tensor) -> EncoderOutput:
        """Run the encoder (which prunes inside its blocks when ``prune_at="encoder"``).

        Args:
            images: ``(B, 3, H, W)``.

        Returns:
            An :class:`~ptlib.models.EncoderOutput`; its ``cls_attention (B, N)`` is
            set when the memory pruner scores by it.
        """
        pruner = self.pruner
        if pruner.prunes_memory:
            return self.encoder(images, need_cls_attention=pruner.uses_cls_attention)
        schedule = pruner.encoder_schedule(self.encoder.num_tokens, self.encoder.num_blocks)
        pruning = EncoderPruning(tuple(schedule), pruner.score, pruner.uses_cls_attention)
        return self.encoder(images, pruning=pruning if schedule else None)

    def encode_features(
        self,
        encoder_tokens: Tensor,
        *,
        cls_attention: Tensor | None = None,
        positions: Tensor | None = None,
        encoder_scores: Tensor | None = None,
    ) -> VisualMemory:
        """Projection, visual Transformer layers and memory pruning, from encoder tokens.

        Args:
            encoder_tokens: ``(B, N, C)`` as returned by the encoder.
            cls_attention: ``(B, N)`` for ``method="cls_attention"``.
            positions: Original grid positions ``(B, N)`` if the encoder pruned.
            encoder_scores: Scores of in-encoder pruning ``(B, h * w)``, passed through.

        Returns:
            A :class:`VisualMemory`.
        """
        projected = self.projection(encoder_tokens, positions)
        grid = self.encoder.grid
        if not self.pruner.prunes_memory:  # pruned inside the encoder, or not at all
            batch, count = projected.shape[:2]
            if positions is None:
                positions = torch.arange(count, device=projected.device).expand(batch, count)
            return VisualMemory(projected, positions, encoder_scores, projected.new_zeros(()), grid)
        result = self.pruner(projected, cls_attention=cls_attention)
        kept = result.kept_indices
        if positions is not None:
            kept = positions.gather(1, kept)
        return VisualMemory(result.tokens, kept, result.scores, result.aux_loss, grid,
                            result.sizes, result.gate)

    def encode(self, images: Tensor) -> VisualMemory:
        """Images ``(B, 3, H, W)`` to the decoder's memory (projected, pruned)."""
        enc = self.encode_images(images)
        return self.encode_features(
            enc.tokens,
            cls_attention=enc.cls_attention,
            positions=enc.kept_indices,
            encoder_scores=enc.scores,
        )

    # -- training -------------------------------------------------------------------
    def forward(self, images: Tensor, tokens: Tensor, *, need_attention: bool = False) -> CaptionerOutput:
        """Teacher-forced forward pass.

        Args:
            images: ``(B, 3, H, W)``.
            tokens: ``(B, T)`` long: ``<bos>`` at position 0, ``<pad>`` after the caption.
            need_attention: Also return the last layer's cross-attention (mean over heads).

        Returns:
            A :class:`CaptionerOutput` (``logits (B, T, V)``; the loss compares
            ``logits[:, :-1]`` with ``tokens[:, 1:]``).
        """
        return self._decode(self.encode(images), tokens, need_attention)

    def forward_features(
        self,
        encoder_tokens: Tensor,
        tokens: Tensor,
        *,
        cls_attention: Tensor | None = None,
        positions: Tensor | None = None,
        need_attention: bool = False,
    ) -> CaptionerOutput:
        """:meth:`forward` from precomputed encoder tokens ``(B, N, C)`` (e.g. a feature cache)."""
        memory = self.encode_features(encoder_tokens, cls_attention=cls_attention, positions=positions)
        return self._decode(memory, tokens, need_attention)

    def _decode(self, memory: VisualMemory, tokens: Tensor, need_attention: bool) -> CaptionerOutput:
        out = self.decoder(
            tokens,
            memory.tokens,
            token_padding_mask=tokens == self.pad_id,
            need_attention=need_attention,
            memory_gate=memory.gate,
        )
        attention = out.cross_attention[-1].mean(dim=1) if out.cross_attention else None
        if attention is not None and memory.gate is not None:
            # gated-out tokens have weight 0: keep the kept tokens' columns (B, T, K)
            index = memory.kept_indices[:, None, :].expand(-1, attention.shape[1], -1)
            attention = attention.gather(2, index)
        return CaptionerOutput(
            logits=out.logits,
            aux_loss=memory.aux_loss,
            kept_indices=memory.kept_indices,
            scores=memory.scores,
            cross_attention=attention,
            grid=memory.grid,
        )

    # -- inference ------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        images: Tensor,
        method: str = "greedy",
        beam_size: int = 3,
        max_len: int | None = None,
        length_penalty: float = 0.0,
        return_attention: bool = False,
        *,
        use_cache: bool = True,
        stop_at_eos: bool = True,
    ) -> GenerationResult:
        """Caption images.

        Args:
            images: ``(B, 3, H, W)``.
            method: ``"greedy"`` or ``"beam"``.
            beam_size: Beams per image (``"beam"`` only).
            max_len: Most tokens to generate (default: decoder ``max_len - 1``).
            length_penalty: GNMT alpha for beam search.
            return_attention: Record cross-attention per generated token.
            use_cache: Use the KV cache (same captions, faster).
            stop_at_eos: Stop a caption at ``<eos>`` (``False`` only for benchmarks).

        Returns:
            A :class:`~ptlib.models.generate.GenerationResult`: ``tokens (B, L)``,
            ``scores``, ``attention (B, L, M)`` when asked, and ``kept_indices (B, K)``.
        """
        if method not in ("greedy", "beam"):
            raise ValueError(f"method must be 'greedy' or 'beam', got {method!r}")
        was_training = self.training
        self.eval()
        try:
            memory = self.encode(images)
            common: dict[str, Any] = dict(
                max_len=max_len if max_len is not None else self.decoder.max_len - 1,
                bos_id=self.bos_id,
                eos_id=self.eos_id if stop_at_eos else None,
                pad_id=self.pad_id,
                use_cache=use_cache,
                return_attention=return_attention,
            )
            if method == "greedy":
                result = greedy_decode(self.decoder, memory.tokens, **common)
            else:
                result = beam_search(
                    self.decoder,
                    memory.tokens,
                    beam_size=beam_size,
                    length_penalty=length_penalty,
                    **common,
                )
        finally:
            self.train(was_training)
        result.kept_indices = memory.kept_indices
        return result


def reprune(
    model: Captioner,
    ratio: float,
    method: str | None = None,
    prune_at: str | None = None,
    *,
    seed: int | None = 0,
) -> Captioner:
    """A new captioner that prunes like ``model`` at another ratio, method or placement.

    The new captioner shares ``model``'s encoder, projection and decoder (and,
    for ``"learned"``, its trained scorer): parameters are shared, not copied,
    and ``model`` itself is unchanged. Its pruner is in eval mode.

    Args:
        model: A built (usually trained) captioner.
        ratio: Fraction of visual tokens to remove, in ``[0, 1)``; ``0`` means ``"none"``.
        method: Scoring method (default: the model's own).
        prune_at: ``"memory"`` or ``"encoder"`` (default: the model's own).
        seed: Seed of the ``"random"`` method, so a study is reproducible.

    Returns:
        A :class:`Captioner` in ``model``'s training mode, with ``config`` updated
        to the new pruning setting.

    Raises:
        ValueError: For ``"learned"`` on a model not trained with a learned scorer
            (or at another placement), or a setting the encoder cannot run (e.g.
            ``cls_attention`` on a ConvNeXt, ``prune_at="encoder"`` outside a ViT).
    """
    trained = model.pruner
    method = trained.method if method is None else method
    prune_at = trained.prune_at if prune_at is None else prune_at
    if ratio == 0:
        method = "none"
    if method == "learned" and trained.scorer is None:
        raise ValueError(
            "method 'learned' needs the scorer trained with the model, but this model was "
            f"trained with method {trained.method!r}; train it with model.prune_method=learned"
        )
    if method == "learned" and prune_at != trained.prune_at:
        raise ValueError(
            f"the learned scorer was trained at prune_at={trained.prune_at!r} and cannot "
            f"score tokens at prune_at={prune_at!r}"
        )
    pruner = TokenPruner(
        ratio,
        method,
        seed=seed if method == "random" else None,
        fuse_dropped=trained.fuse_dropped and method == "cls_attention" and prune_at == "memory",
        prune_at=prune_at,
        prune_layers=trained.prune_layers if prune_at == "encoder" == trained.prune_at else None,
        gumbel_tau=trained.gumbel_tau,
        ratio_loss_weight=trained.ratio_loss_weight,
        scorer=trained.scorer if method == "learned" else None,
    )
    pruner.training = False  # only this module: the shared scorer's mode is left as it is
    pruned = Captioner(model.encoder, model.projection, pruner, model.decoder,
                       bos_id=model.bos_id, eos_id=model.eos_id, pad_id=model.pad_id)
    pruned.training = model.training  # the flag only: the shared modules keep their modes
    if model.config is not None:
        pruned.config = dataclasses.replace(
            model.config, prune_ratio=pruner.ratio, prune_method=method, prune_at=prune_at,
            prune_layers=None if pruner.prune_layers is None else list(pruner.prune_layers),
            prune_seed=pruner.seed, fuse_dropped=pruner.fuse_dropped,
        )
    return pruned
