"""Captioners that start from a pretrained encoder: model.encoder_init and the run configs."""

from __future__ import annotations

import pytest
import torch

from ptlib.data.vocab import Vocabulary
from ptlib.models import Captioner, CaptionerConfig
from ptlib.pretrain import (
    build_spec_encoder,
    encoder_file,
    encoder_init_value,
    load_encoder_init,
    save_encoder,
    variant_overrides,
)
from ptlib.train.checkpoint import save_checkpoint
from ptlib.train.run import load_captioner
from ptlib.train.runconfig import load_run_config

SPECS = {
    "vit": {"encoder": "vit_tiny_patch16_224", "img_size": 64, "feature_stride": None,
            "encoder_kwargs": {"depth": 2}},
    "convnext": {"encoder": "convnext_atto", "img_size": 64, "feature_stride": 8,
                 "encoder_kwargs": None},
}


def _pretrained_file(tmp_path, spec):
    """A slim checkpoint of an encoder whose weights differ from any fresh initialisation."""
    torch.manual_seed(1)
    encoder = build_spec_encoder(spec)
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(torch.randn_like(parameter))
    path = save_encoder(tmp_path / "encoder.pt", encoder, spec, {"accuracy": {"colour": 1.0}})
    return path, {k: v.half().float() for k, v in encoder.model.state_dict().items()}


def _captioner_config(spec, **extra):
    return CaptionerConfig(encoder=spec["encoder"], img_size=spec["img_size"],
                           feature_stride=spec["feature_stride"],
                           encoder_kwargs=spec["encoder_kwargs"], d_model=32, n_heads=2,
                           ff_dim=64, n_encoder_layers=0, n_decoder_layers=1, vocab_size=20,
                           **extra)


@pytest.mark.parametrize("backbone", sorted(SPECS))
def test_captioner_starts_from_the_pretrained_encoder(tmp_path, backbone):
    spec = SPECS[backbone]
    path, expected = _pretrained_file(tmp_path, spec)
    model = Captioner.from_config(_captioner_config(spec, encoder_init=str(path)))
    weights = model.encoder.model.state_dict()
    assert set(weights) == set(expected)
    for key, value in expected.items():
        assert torch.equal(weights[key], value), key
    fresh = Captioner.from_config(_captioner_config(spec))
    assert any(not torch.equal(fresh.encoder.model.state_dict()[k], v) for k, v in
               expected.items())


def test_frozen_pretrained_encoder_stays_frozen(tmp_path):
    spec = SPECS["vit"]
    path, _ = _pretrained_file(tmp_path, spec)
    model = Captioner.from_config(_captioner_config(spec, encoder_init=str(path),
                                                    freeze_encoder=True))
    assert model.encoder.frozen
    assert not any(p.requires_grad for p in model.encoder.parameters())


def test_missing_file_names_it_and_the_command(isolated_dirs):
    spec = SPECS["vit"]
    value = encoder_init_value("ci", "vit")
    with pytest.raises(FileNotFoundError) as info:
        Captioner.from_config(_captioner_config(spec, encoder_init=value))
    message = str(info.value)
    assert str(encoder_file("ci", "vit")) in message
    assert "ptlib results --profile ci --only pretrain-vit" in message


def test_wrong_encoder_is_refused(tmp_path):
    path, _ = _pretrained_file(tmp_path, SPECS["vit"])
    other = build_spec_encoder({**SPECS["vit"], "img_size": 96})
    with pytest.raises(ValueError, match="pretrained for"):
        load_encoder_init(other, path)


def test_a_trained_captioner_loads_without_the_pretrained_file(tmp_path):
    """The captioner's checkpoint holds every weight: loading it never reads encoder_init."""
    spec = SPECS["vit"]
    path, _ = _pretrained_file(tmp_path, spec)
    config = _captioner_config(spec, encoder_init=str(path))
    model = Captioner.from_config(config)
    vocab = Vocabulary(["<pad>", "<bos>", "<eos>", "<unk>",
                        *[f"w{i}" for i in range(16)]])
    checkpoint = save_checkpoint(tmp_path / "captioner.pt", {
        "model": model.state_dict(), "vocab": vocab.to_json(),
        "run_config": {"name": "t", "model": config.to_dict(), "data": {}, "train": {}}})
    path.unlink()
    loaded, _, run_config = load_captioner(checkpoint)
    assert run_config["model"]["encoder_init"] == str(path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


@pytest.mark.parametrize("name,base", [("vit", "shapes_vit"), ("convnext_s16", "shapes_convnext")])
@pytest.mark.parametrize("variant", ["frozen", "finetuned"])
def test_shipped_configs_equal_the_variant_overrides(name, base, variant):
    """shapes_<name>_pretrained_<variant>.yaml is the cpu run config plus the overrides the
    `ptlib results` job uses, so the file and the job train the same captioner."""
    shipped = load_run_config(f"shapes_{name}_pretrained_{variant}")
    derived = load_run_config(base, variant_overrides(name, variant, "cpu"))
    for section in ("data", "model", "train"):
        assert shipped[section] == derived[section], section
    assert shipped["model"]["encoder_init"] == f"cpu/pretrain/{name}/encoder.pt"
    assert shipped["model"]["freeze_encoder"] is (variant == "frozen")
    assert shipped["train"].get("cache_features", False) is (variant == "frozen")
