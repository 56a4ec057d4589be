"""Checkpoints are atomic and safe; RNG capture restores the random stream; LR schedule."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from ptlib.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ptlib.train.resume import capture_rng_state, restore_rng_state
from ptlib.train.step import warmup_cosine_factor, warmup_cosine_scheduler


class _Evil:
    """Unpickling this would run code: the loader must refuse it."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_round_trip_with_model_optimizer_and_rng(tmp_path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": capture_rng_state(),
        "epoch": 3,
        "vocab": ["<pad>", "<bos>", "<eos>", "<unk>", "red"],
        "config": {"lr": 1e-3, "layers": [2, 2]},
    }
    path = save_checkpoint(tmp_path / "ckpt" / "last.pt", state)
    loaded = load_checkpoint(path)
    assert loaded["epoch"] == 3 and loaded["vocab"][-1] == "red"
    assert loaded["ptlib_version"] and loaded["format"] == 1
    for key, value in model.state_dict().items():
        assert torch.equal(loaded["model"][key], value)
    opt2 = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    opt2.load_state_dict(loaded["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left


def test_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "payload": _Evil()}, path)
    with pytest.raises(CheckpointError, match="refused.*weights_only"):
        load_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"not a checkpoint at all", "cannot be read"), (None, "does not exist")],
)
def test_unreadable_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_non_ptlib_torch_file_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(CheckpointError, match="not a ptlib checkpoint"):
        load_checkpoint(path)


def test_interrupted_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", {"epoch": 1})

    def failing_replace(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr("ptlib.files.os.replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_rng_state_survives_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    save_checkpoint(tmp_path / "rng.pt", {"rng": capture_rng_state()})
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected


def test_warmup_cosine_shape():
    total, warmup = 100, 10
    factors = [warmup_cosine_factor(s, total, warmup, 0.1) for s in range(total + 1)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(factors[:9], factors[1:10], strict=True))
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False))
    assert factors[-1] == pytest.approx(0.1)
    mid = warmup + (total - warmup) // 2
    assert factors[mid] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    with pytest.raises(ValueError, match="min_lr_ratio"):
        warmup_cosine_factor(0, 10, 0, 1.5)


def test_scheduler_state_round_trips(tmp_path):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine_scheduler(opt, total_steps=20, warmup_steps=5)
    for _ in range(7):
        opt.step()
        sched.step()
    save_checkpoint(tmp_path / "s.pt", {"scheduler": sched.state_dict()})
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched2 = warmup_cosine_scheduler(opt2, total_steps=20, warmup_steps=5)
    sched2.load_state_dict(load_checkpoint(tmp_path / "s.pt")["scheduler"])
    assert sched2.get_last_lr() == sched.get_last_lr()
