"""A toy captioner and dataset for engine tests (no encoder, no pruning, runs in ms)."""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import torch
from torch import nn
from torch.utils.data import Dataset


class ToyCaptioner(nn.Module):
    """Mean-pools a tiny image, then a GRU-free MLP decoder over token embeddings.

    ``nan_at_call`` makes the ``n``-th training forward return NaN logits;
    ``sigint_at_call`` sends SIGINT to this process at the ``n``-th training forward.
    """

    def __init__(self, vocab_size: int = 12, width: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        self.image = nn.Linear(3, width)
        self.embed = nn.Embedding(vocab_size, width)
        self.mix = nn.Sequential(nn.Linear(2 * width, width), nn.GELU(), nn.Dropout(dropout))
        self.head = nn.Linear(width, vocab_size)
        self.calls = 0
        self.nan_at_call: int | None = None
        self.sigint_at_call: int | None = None

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> SimpleNamespace:
        if self.training:
            self.calls += 1
            if self.sigint_at_call == self.calls:
                os.kill(os.getpid(), signal.SIGINT)
        pooled = self.image(images.mean(dim=(2, 3)))  # (B, W)
        words = self.embed(tokens)  # (B, T, W)
        context = torch.cumsum(words, dim=1) / torch.arange(1, tokens.shape[1] + 1).view(1, -1, 1)
        hidden = self.mix(torch.cat([context, pooled[:, None].expand_as(context)], dim=-1))
        logits = self.head(hidden)
        if self.training and self.nan_at_call == self.calls:
            logits = logits * float("nan")
        return SimpleNamespace(logits=logits, aux_loss=torch.zeros(()))


class ToyCaptions(Dataset):
    """Images whose mean colour decides a fixed-length caption; one of two references per epoch."""

    def __init__(self, n: int = 24, length: int = 5, vocab_size: int = 12, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.rand(n, 3, 4, 4, generator=generator)
        words = torch.randint(4, vocab_size, (n, 2, length), generator=generator)
        bos = torch.ones(n, 2, 1, dtype=torch.long)
        eos = torch.full((n, 2, 1), 2, dtype=torch.long)
        self.captions = torch.cat([bos, words, eos], dim=2)  # (n, 2 refs, length + 2)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        ref = (index + self.epoch) % 2
        return self.images[index], self.captions[index, ref]


def collate(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, torch.Tensor]:
    images, tokens = zip(*samples, strict=True)
    return {"images": torch.stack(images), "tokens": torch.stack(tokens)}
