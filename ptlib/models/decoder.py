"""The caption decoder, written out: masked self-attention, cross-attention, FFN.

:class:`CaptionDecoder` is a stack of :class:`DecoderLayer` s on top of a token
embedding and learned positions, with an output head (optionally tied to the
embedding). Each layer is, in the default post-norm form of
``torch.nn.TransformerDecoderLayer`` (a test checks they agree numerically)::

    x = LayerNorm(x + SelfAttention(x, causal))
    x = LayerNorm(x + CrossAttention(x, visual tokens))
    x = LayerNorm(x + FFN(x))

For generation, :meth:`CaptionDecoder.init_cache` computes every layer's
cross-attention keys and values once per image, and :meth:`CaptionDecoder.step`
processes only the new positions, appending their self-attention keys and
values to a :class:`KVCache`.

Masks: ``token_padding_mask`` and ``memory_padding_mask`` are ``True`` where a
position is padding (the ``torch.nn.Transformer`` convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention with separate q/k/v projections.

    Args:
        d_model: Model width ``D``.
        n_heads: Heads ``H``; ``D`` must be divisible by ``H``.
        dropout: Dropout on the attention weights.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _split(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)

    def project_kv(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values ``(B, H, S, D / H)`` of ``source`` ``(B, S, D)``."""
        return self._split(self.k_proj(source)), self._split(self.v_proj(source))

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        allowed: Tensor | None = None,
        need_weights: bool = False,
        gate: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to already projected ``keys`` / ``values``.

        Args:
            query: ``(B, T, D)`` (projected here).
            keys: ``(B, H, S, D / H)`` from :meth:`project_kv`.
            values: ``(B, H, S, D / H)``.
            allowed: Boolean mask broadcastable to ``(B, H, T, S)``, ``True`` where
                query ``t`` may attend to key ``s``; ``None`` allows everything.
            need_weights: Also return the attention weights ``(B, H, T, S)``.
            gate: ``(B, S)`` keep gate of the keys (DynamicViT's attention masking):
                the weights become ``w_s g_s / sum_j w_j g_j``. With a 0/1 gate this is
                attention over the gated-in keys only, yet it is differentiable in
                ``g``, so a gated-out key still gets a gradient.

        Returns:
            ``(output (B, T, D), weights or None)``.
        """
        q = self._split(self.q_proj(query))
        dropout = self.dropout if self.training else 0.0
        weights = None
        if need_weights or gate is not None:
            logits = (q @ keys.transpose(-2, -1)) / math.sqrt(self.head_dim)
            if allowed is not None:
                logits = logits.masked_fill(~allowed, float("-inf"))
            weights = logits.softmax(dim=-1)
            if gate is not None:
                weights = weights * gate[:, None, None, :].to(weights.dtype)
                weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-12)
            out = F.dropout(weights, dropout, self.training) @ values
            if not need_weights:
                weights = None
        else:
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed, dropout_p=dropout)
        batch, _, length, _ = out.shape
        out = out.transpose(1, 2).reshape(batch, length, self.n_heads * self.head_dim)
        return self.out_proj(out), weights


@dataclass
class LayerCache:
    """One layer's cached keys and values (all ``(B, H, ·, D / H)``).

    Attributes:
        self_keys: Preallocated ``(B, H, L_max, D / H)``; positions ``< length`` are filled.
        self_values: Same shape as ``self_keys``.
        cross_keys: Keys of the visual tokens ``(B, H, M, D / H)``, computed once.
        cross_values: Values of the visual tokens.
    """

    self_keys: Tensor
    self_values: Tensor
    cross_keys: Tensor
    cross_values: Tensor


@dataclass
class KVCache:
    """Key/value cache for incremental decoding.

    Attributes:
        layers: One :class:`LayerCache` per decoder layer.
        length: Positions already decoded.
        memory_allowed: ``(B, 1, 1, M)`` boolean (``True`` = real visual token) or ``None``.
    """

    layers: list[LayerCache]
    length: int = 0
    memory_allowed: Tensor | None = None

    @property
    def capacity(self) -> int:
        """The most positions this cache can hold."""
        return self.layers[0].self_keys.shape[2]

    def reorder(self, index: Tensor, *, cross: bool = False) -> None:
        """Keep rows ``index`` (``(B',)`` long) of every self-attention cache, e.g. beam origins.

        Args:
            index: Source row of each new row.
            cross: Also reorder the cross-attention keys/values and memory mask.
                Beam search leaves them (every beam of an image shares its memory).
        """
        for layer in self.layers:
            layer.self_keys = layer.self_keys.index_select(0, index)
            layer.self_values = layer.self_values.index_select(0, index)
            if cross:
                layer.cross_keys = layer.cross_keys.index_select(0, index)
                layer.cross_values = layer.cross_values.index_select(0, index)
        if cross and self.memory_allowed is not None:
            self.memory_allowed = self.memory_allowed.index_select(0, index)


class DecoderLayer(nn.Module):
    """Self-attention, cross-attention and FFN with residuals and LayerNorm.

    Args:
        d_model: Width ``D``.
        n_heads: Attention heads.
        ff_dim: Hidden width of the FFN.
        dropout: Dropout on attention weights, residual branches and in the FFN.
        activation: ``"relu"`` (torch's default) or ``"gelu"``.
        norm_first: Pre-norm (``x + f(norm(x))``) instead of post-norm (``norm(x + f(x))``).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        ff_dim: int,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
    ) -> None:
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {activation!r}")
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.linear1 = nn.Linear(d_model, ff_dim)
        self.linear2 = nn.Linear(ff_dim, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = F.relu if activation == "relu" else F.gelu
        self.norm_first = norm_first

    def _self_block(
        self, x: Tensor, allowed: Tensor | None, cache: LayerCache | None, start: int
    ) -> Tensor:
        keys, values = self.self_attn.project_kv(x)
        if cache is not None:
            end = start + x.shape[1]
            cache.self_keys[:, :, start:end] = keys
            cache.self_values[:, :, start:end] = values
            keys, values = cache.self_keys[:, :, :end], cache.self_values[:, :, :end]
        out, _ = self.self_attn(x, keys, values, allowed)
        return self.dropout1(out)

    def _cross_block(
        self,
        x: Tensor,
        memory: Tensor | None,
        allowed: Tensor | None,
        cache: LayerCache | None,
        need_weights: bool,
        gate: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        if cache is not None:
            keys, values = cache.cross_keys, cache.cross_values
        else:
            assert memory is not None
            keys, values = self.cross_attn.project_kv(memory)
        out, weights = self.cross_attn(x, keys, values, allowed, need_weights, gate)
        return self.dropout2(out), weights

    def _ff_block(self, x: Tensor) -> Tensor:
        return self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None,
        *,
        self_allowed: Tensor | None = None,
        memory_allowed: Tensor | None = None,
        cache: LayerCache | None = None,
        start: int = 0,
        need_weights: bool = False,
        memory_gate: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Run the layer.

        Args:
            x: Text states ``(B, T, D)``.
            memory: Visual tokens ``(B, M, D)`` (``None`` when ``cache`` holds their keys/values).
            self_allowed: Boolean self-attention mask broadcastable to ``(B, H, T, S)``.
            memory_allowed: Boolean cross-attention mask broadcastable to ``(B, H, T, M)``.
            cache: This layer's cache; the new keys/values are written at ``start``.
            start: Absolute position of ``x[:, 0]`` (with a cache).
            need_weights: Return cross-attention weights ``(B, H, T, M)``.
            memory_gate: ``(B, M)`` keep gate of the visual tokens (the learned
                scorer in training; see :class:`MultiHeadAttention`), or ``None``.

        Returns:
            ``(x (B, T, D), cross-attention weights or None)``.
        """
        if self.norm_first:
            x = x + self._self_block(self.norm1(x), self_allowed, cache, start)
            out, weights = self._cross_block(self.norm2(x), memory, memory_allowed, cache,
                                             need_weights, memory_gate)
            x = x + out
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._self_block(x, self_allowed, cache, start))
            out, weights = self._cross_block(x, memory, memory_allowed, cache, need_weights,
                                             memory_gate)
            x = self.norm2(x + out)
            x = self.norm3(x + self._ff_block(x))
        return x, weights


@dataclass
class DecoderOutput:
    """What :class:`CaptionDecoder` returns.

    Attributes:
        logits: ``(B, T, V)``.
        cross_attention: One ``(B, H, T, M)`` tensor per layer when asked for, else ``None``.
    """

    logits: Tensor
    cross_attention: list[Tensor] | None = None


def causal_allowed(length: int, device: torch.device | None = None, start: int = 0) -> Tensor:
    """Boolean ``(length, start + length)`` mask: query ``i`` may see keys ``<= start + i``."""
    keys = torch.arange(start + length, device=device)
    queries = torch.arange(start, start + length, device=device)
    return keys[None, :] <= queries[:, None]


class CaptionDecoder(nn.Module):
    """Transformer caption decoder with cross-attention over visual tokens.

    Args:
        vocab_size: ``V`` (including special tokens).
        d_model: Width ``D``.
        n_layers: Decoder layers.
        n_heads: Attention heads.
        ff_dim: FFN hidden width.
        dropout: Dropout everywhere (embeddings, attention, residuals, FFN).
        max_len: Longest token sequence (``<bos>`` included) the position table covers.
        tie_weights: Share the output head's weight with the token embedding.
        norm_first: Pre-norm layers (adds a final LayerNorm) instead of post-norm.
        activation: FFN activation, ``"relu"`` or ``"gelu"``.
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 512,
        n_layers: int = 2,
        n_heads: int = 4,
        ff_dim: int = 2048,
        dropout: float = 0.1,
        max_len: int = 32,
        *,
        tie_weights: bool = False,
        norm_first: bool = False,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if vocab_size < 4:
            raise ValueError(f"vocab_size={vocab_size}: need at least the 4 special tokens")
        if max_len < 2:
            raise ValueError(f"max_len={max_len} must be at least 2")
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.max_len = max_len
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(max_len, d_model)
        self.embed_dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, n_heads, ff_dim, dropout, activation, norm_first)
            for _ in range(n_layers)
        )
        self.final_norm = nn.LayerNorm(d_model) if norm_first else nn.Identity()
        self.head = nn.Linear(d_model, vocab_size)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)
        if tie_weights:
            self.head.weight = self.token_embedding.weight

    def _embed(self, tokens: Tensor, start: int) -> Tensor:
        length = tokens.shape[1]
        if start + length > self.max_len:
            raise ValueError(
                f"sequence of {start + length} tokens is longer than the decoder's max_len="
                f"{self.max_len}; truncate captions or build the decoder with a larger max_len"
            )
        positions = torch.arange(start, start + length, device=tokens.device)
        return self.embed_dropout(self.token_embedding(tokens) + self.position_embedding(positions))

    @staticmethod
    def _memory_allowed(memory_padding_mask: Tensor | None) -> Tensor | None:
        if memory_padding_mask is None:
            return None
        return (~memory_padding_mask.bool())[:, None, None, :]

    def forward(
        self,
        tokens: Tensor,
        memory: Tensor,
        *,
        token_padding_mask: Tensor | None = None,
        memory_padding_mask: Tensor | None = None,
        need_attention: bool = False,
        memory_gate: Tensor | None = None,
    ) -> DecoderOutput:
        """Teacher-forced decoding of whole sequences.

        Args:
            tokens: ``(B, T)`` long, starting with ``<bos>``.
            memory: Visual tokens ``(B, M, D)``.
            token_padding_mask: ``(B, T)`` bool, ``True`` at padding.
            memory_padding_mask: ``(B, M)`` bool, ``True`` at padding.
            need_attention: Return each layer's cross-attention weights.
            memory_gate: ``(B, M)`` keep gate of the visual tokens: cross-attention
                is masked by it but stays differentiable in it (the learned scorer's
                training, :class:`~ptlib.models.pruning.PruneResult`); ``None``: no gate.

        Returns:
            A :class:`DecoderOutput` with logits ``(B, T, V)``.
        """
        length = tokens.shape[1]
        x = self._embed(tokens, 0)
        self_allowed = causal_allowed(length, tokens.device)[None, None]  # (1, 1, T, T)
        if token_padding_mask is not None:
            self_allowed = self_allowed & ~token_padding_mask.bool()[:, None, None, :]
        memory_allowed = self._memory_allowed(memory_padding_mask)
        attention: list[Tensor] = []
        for layer in self.layers:
            x, weights = layer(
                x,
                memory,
                self_allowed=self_allowed,
                memory_allowed=memory_allowed,
                need_weights=need_attention,
                memory_gate=memory_gate,
            )
            if weights is not None:
                attention.append(weights)
        logits = self.head(self.final_norm(x))
        return DecoderOutput(logits, attention if need_attention else None)

    def init_cache(
        self, memory: Tensor, memory_padding_mask: Tensor | None = None, max_len: int | None = None
    ) -> KVCache:
        """Compute every layer's cross-attention keys/values once and allocate self-attention slots.

        Args:
            memory: Visual tokens ``(B, M, D)``.
            memory_padding_mask: ``(B, M)`` bool, ``True`` at padding.
            max_len: Positions to allocate (default: the decoder's ``max_len``).
        """
        capacity = self.max_len if max_len is None else min(max_len, self.max_len)
        batch = memory.shape[0]
        layers = []
        for layer in self.layers:
            attn = layer.self_attn
            cross_keys, cross_values = layer.cross_attn.project_kv(memory)
            shape = (batch, attn.n_heads, capacity, attn.head_dim)
            layers.append(
                LayerCache(
                    memory.new_zeros(shape), memory.new_zeros(shape), cross_keys, cross_values
                )
            )
        return KVCache(layers, 0, self._memory_allowed(memory_padding_mask))

    def step(self, tokens: Tensor, cache: KVCache, *, need_attention: bool = False) -> DecoderOutput:
        """Decode new positions given everything before them in ``cache``.

        Costs one position per new token: only the new tokens' queries, keys and
        values are computed; the cache grows by ``T``.

        Args:
            tokens: The new tokens ``(B, T)`` (usually ``T = 1``).
            cache: From :meth:`init_cache`; updated in place.
            need_attention: Return cross-attention weights ``(B, H, T, M)`` per layer.

        Returns:
            A :class:`DecoderOutput` with logits ``(B, T, V)`` for the new positions.
        """
        start, length = cache.length, tokens.shape[1]
        if start + length > cache.capacity:
            raise ValueError(
                f"KV cache holds {cache.capacity} positions; cannot add {length} after {start}"
            )
        x = self._embed(tokens, start)
        self_allowed = None if length == 1 else causal_allowed(length, tokens.device, start)
        attention: list[Tensor] = []
        for layer, layer_cache in zip(self.layers, cache.layers, strict=True):
            x, weights = layer(
                x,
                None,
                self_allowed=self_allowed,
                memory_allowed=cache.memory_allowed,
                cache=layer_cache,
                start=start,
                need_weights=need_attention,
            )
            if weights is not None:
                attention.append(weights)
        cache.length = start + length
        logits = self.head(self.final_norm(x))
        return DecoderOutput(logits, attention if need_attention else None)
