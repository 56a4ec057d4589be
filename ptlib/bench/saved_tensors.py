"""Saved-tensor accounting: which tensors does autograd keep alive for backward?

The activations a training step holds are mostly the tensors autograd saves for
the backward pass. :func:`saved_tensor_bytes` runs a function under
``torch.autograd.graph.saved_tensors_hooks`` and adds up the storages saved,
each storage once (a view of a saved tensor costs nothing extra). Chapter 3 uses
it to show that ``take_tokens`` keeps no reference to the unpruned visual memory;
:mod:`ptlib.bench.batch_capacity` builds the training-bytes estimate on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor


@dataclass
class SavedTensors:
    """What autograd saved while a function ran.

    Attributes:
        bytes: Total bytes of the distinct storages saved.
        count: Number of tensors saved (views of one storage count separately).
        storages: ``{storage data pointer: bytes}`` of each distinct storage.
        result: The function's return value.
    """

    bytes: int
    count: int
    storages: dict[int, int] = field(default_factory=dict)
    result: Any = None

    def holds(self, tensor: Tensor) -> bool:
        """Whether ``tensor``'s storage is among the saved ones."""
        return _storage_key(tensor) in self.storages


def _storage_key(tensor: Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def saved_tensor_bytes(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> SavedTensors:
    """Run ``fn(*args, **kwargs)`` and account for the tensors autograd saves.

    Args:
        fn: Any function; only operations on tensors that require grad save anything.
        *args: Positional arguments for ``fn``.
        **kwargs: Keyword arguments for ``fn``.

    Returns:
        A :class:`SavedTensors` (its ``result`` is ``fn``'s return value, so the
        saved tensors stay alive until you drop it).
    """
    storages: dict[int, int] = {}
    count = 0

    def pack(tensor: Tensor) -> Tensor:
        nonlocal count
        count += 1
        storages[_storage_key(tensor)] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = fn(*args, **kwargs)
    return SavedTensors(sum(storages.values()), count, storages, result)
