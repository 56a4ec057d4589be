"""Training that starts every weight from a trained captioner.

``train_run(init_weights=...)`` and ``ptlib train --init-from`` load a trained
captioner (same architecture and vocabulary) before training: a second stage with
another schedule, e.g. a frozen-encoder captioner trained again with its encoder
unfrozen.
"""

from __future__ import annotations

import pytest
import torch

from ptlib.data.vocab import Vocabulary
from ptlib.models import Captioner, CaptionerConfig
from ptlib.train import CheckpointError, save_checkpoint
from ptlib.train.run import load_initial_weights


def _vocab(extra: int) -> Vocabulary:
    return Vocabulary(["<pad>", "<bos>", "<eos>", "<unk>", *[f"w{i}" for i in range(extra)]])


def _captioner(vocab: Vocabulary, d_model: int = 32) -> Captioner:
    config = CaptionerConfig(encoder="vit_tiny_patch16_224", encoder_kwargs={"depth": 1},
                             img_size=32, d_model=d_model, n_heads=2, ff_dim=64,
                             n_decoder_layers=1, n_encoder_layers=0, vocab_size=len(vocab), max_len=8,
                             prune_ratio=0.0, prune_method="none")
    return Captioner.from_config(config)


def test_initial_weights_are_copied_and_cast(tmp_path):
    vocab = _vocab(12)
    torch.manual_seed(0)
    source = _captioner(vocab)
    half = {k: v.half() if v.is_floating_point() else v for k, v in source.state_dict().items()}
    path = save_checkpoint(tmp_path / "first.pt", {"model": half, "vocab": vocab.to_json()})
    torch.manual_seed(1)
    target = _captioner(vocab)
    assert not torch.equal(target.state_dict()["decoder.token_embedding.weight"],
                           source.state_dict()["decoder.token_embedding.weight"])
    load_initial_weights(target, vocab, path)
    for key, value in half.items():
        loaded = target.state_dict()[key]
        assert loaded.dtype == source.state_dict()[key].dtype, key  # float32 kept
        assert torch.equal(loaded, value.to(loaded.dtype)), key


def test_another_vocabulary_or_model_is_refused_by_name(tmp_path):
    vocab = _vocab(12)
    source = _captioner(vocab)
    path = save_checkpoint(tmp_path / "first.pt", {"model": source.state_dict(),
                                                   "vocab": vocab.to_json()})
    other = _vocab(13)
    with pytest.raises(CheckpointError, match="first.pt was trained with another vocabulary"):
        load_initial_weights(_captioner(other), other, path)
    with pytest.raises(CheckpointError, match="first.pt does not fit the model"):
        load_initial_weights(_captioner(vocab, d_model=48), vocab, path)
    bare = save_checkpoint(tmp_path / "bare.pt", {"model": source.state_dict()})
    with pytest.raises(CheckpointError, match="bare.pt has no 'vocab'"):
        load_initial_weights(_captioner(vocab), vocab, bare)


def test_cli_train_init_from(isolated_dirs, capsys):
    """The second run starts where the first ended: its first epoch's loss is lower."""
    from ptlib.cli import main
    from ptlib.train import read_history

    out = isolated_dirs / "run"
    args = ["train", "--config", "shapes_vit_ci", "--set", "train.epochs=1", "--set",
            "train.eval_every=0", "--out"]
    assert main([*args, str(out / "first")]) == 0
    assert main([*args, str(out / "second"), "--init-from", str(out / "first" / "last.pt")]) == 0
    first, second = (read_history(out / name) for name in ("first", "second"))
    assert second[0]["train_loss"] < first[0]["train_loss"]
    capsys.readouterr()
    assert main([*args, str(out / "third"), "--init-from", str(out / "missing.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err
