"""Projection of visual tokens into the decoder's width, with positions that survive pruning.

:class:`VisualProjection` maps encoder tokens ``(B, N, C)`` to ``(B, N, d_model)``:
``Linear(C, d_model)`` then ``LayerNorm``, then adds a 2-D positional encoding
looked up by each token's *original* grid position. Because the position is
added before any pruning (and looked up by index when the encoder already
pruned), a kept token still knows where it came from. Optional Transformer
encoder layers then mix the projected tokens (the paper's ``n_layers`` counts
these and the decoder layers).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

POSITIONAL_KINDS: tuple[str, ...] = ("sincos", "learned", "none")


def sincos_2d(grid: tuple[int, int], dim: int) -> Tensor:
    """Fixed 2-D sine-cosine positional encoding (MAE / MoCo v3 style).

    Half the channels encode the row, half the column, each with sines and
    cosines at geometrically spaced frequencies.

    Args:
        grid: ``(h, w)``.
        dim: Encoding width; must be divisible by 4.

    Returns:
        ``(h * w, dim)`` in row-major order.
    """
    if dim % 4:
        raise ValueError(f"sincos_2d: dim={dim} must be divisible by 4 (use positional='learned')")
    h, w = grid
    rows, cols = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    parts = []
    for coord in (rows.reshape(-1), cols.reshape(-1)):
        angle = coord[:, None] * omega[None, :]
        parts += [angle.sin(), angle.cos()]
    return torch.cat(parts, dim=1).float()


class VisualProjection(nn.Module):
    """Linear + LayerNorm + positional encoding, then optional Transformer encoder layers.

    Args:
        in_dim: Encoder token width ``C``.
        d_model: Decoder width.
        grid: ``(h, w)`` of the encoder's full token grid.
        positional: ``"sincos"`` (fixed 2-D), ``"learned"`` (one vector per grid
            position) or ``"none"``.
        n_encoder_layers: Transformer encoder layers over the projected tokens.
        n_heads: Attention heads of those layers.
        ff_dim: Feed-forward width of those layers.
        dropout: Dropout after the positional encoding and inside the layers.
    """

    def __init__(
        self,
        in_dim: int,
        d_model: int,
        grid: tuple[int, int],
        *,
        positional: str = "sincos",
        n_encoder_layers: int = 0,
        n_heads: int = 4,
        ff_dim: int = 2048,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if positional not in POSITIONAL_KINDS:
            raise ValueError(f"positional must be one of {POSITIONAL_KINDS}, got {positional!r}")
        if n_encoder_layers < 0:
            raise ValueError(f"n_encoder_layers must be >= 0, got {n_encoder_layers}")
        self.grid = (int(grid[0]), int(grid[1]))
        self.positional = positional
        self.linear = nn.Linear(in_dim, d_model)
        self.norm = nn.LayerNorm(d_model)
        num_positions = self.grid[0] * self.grid[1]
        if positional == "sincos":
            self.register_buffer("position_table", sincos_2d(self.grid, d_model), persistent=False)
        elif positional == "learned":
            self.position_table = nn.Parameter(torch.randn(num_positions, d_model) * 0.02)
        else:
            self.register_buffer("position_table", torch.zeros(num_positions, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model, n_heads, ff_dim, dropout, batch_first=True, norm_first=False
            )
            for _ in range(n_encoder_layers)
        )

    def forward(self, tokens: Tensor, positions: Tensor | None = None) -> Tensor:
        """Project tokens and add their positions.

        Args:
            tokens: ``(B, N, C)``.
            positions: Original grid positions ``(B, N)`` (long) when the tokens
                are a pruned subset; ``None`` means the full grid in order.

        Returns:
            ``(B, N, d_model)``.
        """
        count = tokens.shape[1]
        x = self.norm(self.linear(tokens))
        if positions is None:
            if count != self.position_table.shape[0]:
                raise ValueError(
                    f"got {count} tokens but the grid {self.grid} has "
                    f"{self.position_table.shape[0]}; pass positions= for a pruned subset"
                )
            x = x + self.position_table.to(x.dtype)
        else:
            x = x + self.position_table.to(x.dtype)[positions]
        x = self.dropout(x)
        for layer in self.layers:
            x = layer(x)
        return x
