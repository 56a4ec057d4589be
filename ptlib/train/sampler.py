"""A seeded, shardable, resumable sampler.

``torch.utils.data.DistributedSampler`` shards and reshuffles per epoch, but it
cannot start in the middle of an epoch. Resuming an interrupted epoch exactly
needs both, so the engine uses :class:`EpochSampler`: the order of epoch ``e`` is
a permutation drawn from ``seed + e`` (the same on every rank), each rank takes
every ``world_size``-th index of it, and :meth:`EpochSampler.set_start` skips the
samples already seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Indices ``0..n-1`` in a per-epoch seeded order, sharded over ranks.

    Args:
        n: Dataset length.
        shuffle: Permute per epoch (training) or keep order (evaluation).
        seed: Base seed; epoch ``e`` uses ``seed + e``.
        rank: This process's rank in distributed training.
        world_size: Number of processes. Each rank gets ``ceil(n / world_size)``
            indices (the permutation is padded from its start so ranks stay equal).
    """

    def __init__(
        self, n: int, *, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if n <= 0:
            raise ValueError(f"EpochSampler needs a non-empty dataset, got n={n}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch`` and start from its beginning."""
        self.epoch = epoch
        self.start = 0

    def set_start(self, position: int) -> None:
        """Skip the first ``position`` indices of this rank's share of the epoch."""
        if not 0 <= position <= len(self._indices()):
            raise ValueError(f"start position {position} is outside this epoch's {len(self)}")
        self.start = position

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=generator).tolist()
        else:
            order = list(range(self.n))
        per_rank = -(-self.n // self.world_size)
        total = per_rank * self.world_size
        order = (order * (total // self.n + 1))[:total]
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.start :])

    def __len__(self) -> int:
        return -(-self.n // self.world_size) - self.start
