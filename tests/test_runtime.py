"""ptlib.runtime: seeds and devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptlib import runtime


def test_seed_everything_reproduces_all_generators():
    def draw():
        import random

        return random.random(), float(np.random.rand()), float(torch.rand(1))

    runtime.seed_everything(123)
    first = draw()
    runtime.seed_everything(123)
    assert draw() == first
    runtime.seed_everything(124)
    assert draw() != first


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(bad)


def test_pick_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert runtime.pick_device().type in ("cpu", "mps")
    assert runtime.pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        runtime.pick_device("cuda")
    with pytest.raises(ValueError, match="not a device"):
        runtime.pick_device("gpu0")
