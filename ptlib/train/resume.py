"""Resuming a run exactly: the generators' states and a sampler that starts mid-epoch.

The generator states are stored as plain data (tensors, ints, lists) so that they
travel in a checkpoint loaded with ``weights_only=True``: resuming from a checkpoint
then continues the exact random stream (dropout masks, data order) of the
uninterrupted run.

``torch.utils.data.DistributedSampler`` shards and reshuffles per epoch, but it
cannot start in the middle of an epoch. Resuming an interrupted epoch exactly
needs both, so the engine uses :class:`EpochSampler`: the order of epoch ``e`` is
a permutation drawn from ``seed + e`` (the same on every rank), each rank takes
every ``world_size``-th index of it, and :meth:`EpochSampler.set_start` skips the
samples already seen.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

# ---------------------------------------------------------------------------
# Generator states
# ---------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Return the states of Python's, NumPy's and PyTorch's (CPU and CUDA) generators."""
    kind, keys, pos, has_gauss, cached_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gauss": float(cached_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore generator states captured by :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["kind"],
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gauss"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------
# The epoch sampler
# ---------------------------------------------------------------------------


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
