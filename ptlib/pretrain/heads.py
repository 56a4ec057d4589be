"""The pretext heads and loss: small linear read-outs of the encoder's tokens.

Why this pretext task. A prototype that predicted only which of the 60 kinds are
present (one multi-label head on pooled tokens) reached about 20% exact presence
after 7 CPU-minutes and did not help captioning: one bit per kind per image is a
weak, global signal, and nothing asks a token to describe its own patch. Here
every token gets its own supervision: a linear head reads the colour, shape and
size of the object under the token's patch (or background) from that token
alone. That is dense (36 or 144 labelled tokens per image instead of one label
set), cheap (the labels come free from the generator), and it teaches exactly
what the caption decoder later needs from cross-attention: each token says what
is at its place. The heads are linear on purpose: the encoder, not the head,
must make the attributes linearly readable, which is also what the per-token
linear probe (:mod:`ptlib.pretrain.probe`) measures. Two global heads on the
mean token add what a single token cannot see: the multi-hot presence of the
60 kinds and the number of objects (1..4), both needed by captions such as
"two small red circles".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ptlib.pretrain.targets import ATTRIBUTES, KINDS, MAX_COUNT

DENSE_HEADS: tuple[str, ...] = tuple(ATTRIBUTES)
"""The per-token heads (``colour``, ``shape``, ``size``)."""

GLOBAL_HEADS: tuple[str, ...] = ("presence", "count")
"""Per-image heads on the mean token."""


class PretextHeads(nn.Module):
    """Linear heads over encoder tokens.

    Args:
        width: Channels ``C`` of the encoder tokens.

    Call with tokens ``(B, N, C)``; returns logits ``colour (B, N, 7)``,
    ``shape (B, N, 6)``, ``size (B, N, 3)``, ``presence (B, 60)``, ``count (B, 4)``.
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.dense = nn.ModuleDict({name: nn.Linear(width, len(classes))
                                    for name, classes in ATTRIBUTES.items()})
        self.presence = nn.Linear(width, len(KINDS))
        self.count = nn.Linear(width, MAX_COUNT)

    def forward(self, tokens: Tensor) -> dict[str, Tensor]:
        x = self.norm(tokens)
        logits = {name: head(x) for name, head in self.dense.items()}
        pooled = x.mean(dim=1)
        logits["presence"] = self.presence(pooled)
        logits["count"] = self.count(pooled)
        return logits


def pretext_loss(logits: dict[str, Tensor], targets: dict[str, Tensor]
                 ) -> tuple[Tensor, dict[str, float]]:
    """The sum of every head's loss, and each part.

    Dense heads: cross-entropy averaged over all tokens. Presence: binary
    cross-entropy summed over the 60 kinds, averaged over images (so it weighs like
    one classification, not 1/60 of one). Count: cross-entropy.

    Args:
        logits: From :class:`PretextHeads`.
        targets: ``colour``/``shape``/``size`` ``(B, N)``, ``presence`` ``(B, 60)``,
            ``count`` ``(B,)``.

    Returns:
        ``(total loss (scalar), {head: its loss as a float})``.
    """
    parts: dict[str, Tensor] = {}
    for name in DENSE_HEADS:
        parts[name] = F.cross_entropy(logits[name].flatten(0, 1), targets[name].flatten())
    parts["presence"] = F.binary_cross_entropy_with_logits(
        logits["presence"], targets["presence"], reduction="sum") / len(targets["presence"])
    parts["count"] = F.cross_entropy(logits["count"], targets["count"])
    total = torch.stack(list(parts.values())).sum()
    return total, {name: float(value.detach()) for name, value in parts.items()}


@torch.no_grad()
def pretext_hits(logits: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
    """Per-item correctness of every head, for accuracies over many batches.

    Returns:
        ``{name}_object``: ``(M,)`` bool over the object tokens (target not
        background) of the batch; ``{name}_token``: ``(B * N,)`` bool over all tokens;
        ``presence``: ``(B,)`` bool, every one of the 60 kinds right (logit > 0);
        ``count``: ``(B,)`` bool.
    """
    hits: dict[str, Tensor] = {}
    for name in DENSE_HEADS:
        truth = targets[name].flatten()
        right = logits[name].flatten(0, 1).argmax(dim=-1) == truth
        hits[f"{name}_token"] = right
        hits[f"{name}_object"] = right[truth != 0]
    hits["presence"] = ((logits["presence"] > 0) == (targets["presence"] > 0.5)).all(dim=1)
    hits["count"] = logits["count"].argmax(dim=-1) == targets["count"]
    return hits
