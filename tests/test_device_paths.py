"""The gpu profile's device code paths, forced on the CPU with tiny sizes.

A GPU is rarely lent here, so what only runs on CUDA by default is switched on
explicitly: mixed precision (bfloat16 autocast; float16 with the gradient scaler),
page-locked batches (``pin_memory``), ``non_blocking`` copies and worker processes,
on the gpu profile's own run configs shrunk by ``PTLIB_SMOKE``. ``torch.compile`` is
not used by ptlib, so there is nothing of it to test.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data._utils.pin_memory import pin_memory as pin_batch

from ptlib import course
from ptlib.data.datasets import CaptionBatch
from ptlib.train import TrainConfig, load_run_config
from ptlib.train import run as run_module
from ptlib.train.step import make_scaler, resolve_amp


def test_amp_modes_resolve_on_the_cpu():
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) is None  # the CPU default stays full precision
    assert resolve_amp("bf16", cpu) is torch.bfloat16
    assert resolve_amp("fp16", cpu) is torch.float16
    assert make_scaler(cpu, torch.float16).is_enabled()
    assert not make_scaler(cpu, torch.bfloat16).is_enabled()
    with pytest.raises(ValueError, match="train.amp='bf16' needs a CUDA device"):
        resolve_amp("bf16", torch.device("meta"))


def test_caption_batches_pin_every_tensor(monkeypatch):
    """What the DataLoader's pin-memory thread does to a batch on a CUDA machine."""
    pinned = []

    def fake_pin(tensor, *args, **kwargs):  # the CPU build cannot page-lock memory
        pinned.append(tensor.data_ptr())
        return tensor

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    batch = CaptionBatch(images=torch.zeros(2, 3, 8, 8), tokens=torch.ones(2, 5, dtype=torch.long),
                         lengths=torch.tensor([5, 3]), image_ids=torch.tensor([1, 2]),
                         references=[("a",), ("b",)])
    out = pin_batch(batch)
    assert isinstance(out, CaptionBatch)
    assert len(pinned) == 4
    moved = out.to(torch.device("cpu"), non_blocking=True)
    assert torch.equal(moved.tokens, batch.tokens)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_gpu_profile_trains_with_its_device_code_paths_on_the_cpu(amp, isolated_dirs,
                                                                  monkeypatch, tmp_path):
    monkeypatch.setenv("PTLIB_SMOKE", "1")
    profile = course.get_profile("gpu")
    name = course.run_config_names(profile)["vit"]
    real = load_run_config(name)
    train = TrainConfig.from_dict(real["train"])  # amp: the default, "auto"
    assert train.amp == "auto" and train.num_workers > 0
    config = load_run_config(name, [*course.run_overrides(profile), f"train.amp={amp}",
                                    f"train.num_workers={real['train']['num_workers']}",
                                    "train.epochs=1", "data.n_train=16", "train.eval_every=0",
                                    "model.encoder_kwargs.depth=2"])  # same code, less time
    dtypes, trainers = [], []
    build = run_module.build_model

    def build_and_watch(section, vocab):
        model = build(section, vocab)
        head = model.decoder.output if hasattr(model.decoder, "output") else None
        layer = head if isinstance(head, torch.nn.Linear) else [
            m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
        layer.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype) if m.training
                                    else None)
        return model

    original_trainer = run_module.Trainer

    def keep_trainer(*args, **kwargs):
        trainer = original_trainer(*args, **kwargs)
        trainers.append(trainer)
        return trainer

    monkeypatch.setattr(run_module, "build_model", build_and_watch)
    monkeypatch.setattr(run_module, "Trainer", keep_trainer)
    with pytest.warns(UserWarning, match="pin_memory"):
        result = run_module.train_run(config, tmp_path / amp, device="cpu", show_progress=False,
                                      pin_memory=True)
    assert result.status == "finished"
    (trainer,) = trainers
    assert trainer.pin_memory and trainer.loader.pin_memory
    assert trainer.loader.num_workers == real["train"]["num_workers"]
    assert trainer.amp_dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    assert dtypes and set(dtypes) == {trainer.amp_dtype}  # the forward ran under autocast
    assert math.isfinite(result.history[-1]["train_loss"])
