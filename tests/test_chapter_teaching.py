"""From-scratch pieces written in the chapters agree with ptlib.

Each test reads the code cell that defines the piece from the chapter notebook itself
and executes it, so the test checks the code the reader sees.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from _toy_captioning import ToyCaptioner

from ptlib.train.config import TrainConfig
from ptlib.train.step import caption_loss_sum
from ptlib.train.trainer import Trainer

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def notebook_definition(notebook: str, name: str) -> Any:
    """Execute the one code cell of ``notebook`` that defines ``name``; return the object."""
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
               for c in cells if c["cell_type"] == "code"]
    defining = [s for s in sources if f"def {name}(" in s or f"class {name}" in s]
    assert len(defining) == 1, f"{notebook}: expected one cell defining {name}, found {len(defining)}"
    namespace: dict[str, Any] = {}
    exec(compile(defining[0], f"{notebook}:{name}", "exec"), namespace)
    return namespace[name]


@pytest.fixture(scope="module")
def teacher_forcing_step():
    return notebook_definition("05_training.ipynb", "teacher_forcing_step")


def _padded_batch(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Four images and captions of lengths 7, 5, 4, 6 tokens, padded with 0 to 7."""
    images = torch.rand(4, 3, 4, 4, generator=generator)
    tokens = torch.zeros(4, 7, dtype=torch.long)
    for row, length in enumerate((7, 5, 4, 6)):
        words = torch.randint(4, 12, (length - 2,), generator=generator)
        tokens[row, :length] = torch.cat([torch.tensor([1]), words, torch.tensor([2])])
    return images, tokens


def test_loss_is_ptlibs_token_mean_and_ignores_padding(teacher_forcing_step):
    images, tokens = _padded_batch(torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = ToyCaptioner(dropout=0.0)
    reference = copy.deepcopy(model)
    with torch.no_grad():
        logits = reference(images, tokens[:, :-1]).logits
    loss_sum, n_tokens = caption_loss_sum(logits, tokens[:, 1:])
    assert n_tokens == 7 + 5 + 4 + 6 - 4  # every token after <bos>, nothing for padding
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    assert teacher_forcing_step(model, images, tokens, optimizer) == pytest.approx(
        float(loss_sum) / n_tokens, rel=1e-6)
    # more padding columns change nothing: padding is never scored
    padded = torch.cat([tokens, torch.zeros(4, 3, dtype=torch.long)], dim=1)
    again = copy.deepcopy(reference)
    first = teacher_forcing_step(again, images, padded, torch.optim.AdamW(again.parameters()))
    assert first == pytest.approx(float(loss_sum) / n_tokens, rel=1e-6)
    # the step trains: the same batch scores better afterwards
    assert teacher_forcing_step(model, images, tokens, optimizer) < float(loss_sum) / n_tokens


class _OneBatch(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, tokens: torch.Tensor) -> None:
        self.images, self.tokens = images, tokens

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.tokens[index]


def _collate(samples):
    images, tokens = zip(*samples, strict=True)
    return {"images": torch.stack(images), "tokens": torch.stack(tokens)}


def test_first_loss_equals_the_trainers(teacher_forcing_step, tmp_path):
    images, tokens = _padded_batch(torch.Generator().manual_seed(1))
    torch.manual_seed(1)
    model = ToyCaptioner(dropout=0.0)
    trainer_model = copy.deepcopy(model)
    ours = teacher_forcing_step(model, images, tokens, torch.optim.AdamW(model.parameters()))
    cfg = TrainConfig(epochs=1, batch_size=4, eval_every=0)
    trainer = Trainer(trainer_model, _OneBatch(images, tokens), None, cfg, tmp_path,
                      collate_fn=_collate, device=torch.device("cpu"), show_progress=False)
    fit = trainer.fit()
    assert fit.history[0]["step"] == 1
    assert fit.history[0]["train_loss"] == pytest.approx(ours, rel=1e-6)
