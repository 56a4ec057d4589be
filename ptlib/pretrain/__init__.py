"""Pretraining the course's encoders on the generated shapes data (the "ImageNet" of the course).

One idea per module:

- :mod:`~ptlib.pretrain.scenes`: an endless seeded stream of images by the training rules;
- :mod:`~ptlib.pretrain.targets`: per-token and per-image pretext targets;
- :mod:`~ptlib.pretrain.dataset`: the stream as a dataset of tensors and targets;
- :mod:`~ptlib.pretrain.heads`: the pretext heads and loss (why this task: see there);
- :mod:`~ptlib.pretrain.encoder`: the exact encoder a run config's captioner builds;
- :mod:`~ptlib.pretrain.config`: :class:`~ptlib.pretrain.config.PretrainConfig`, a profile's ``pretrain`` section;
- :mod:`~ptlib.pretrain.train`: the resumable, time-boxed training loop;
- :mod:`~ptlib.pretrain.checkpoint`: slim encoder checkpoints and ``model.encoder_init``;
- :mod:`~ptlib.pretrain.probe`: the per-token linear probe;
- :mod:`~ptlib.pretrain.job`: the ``ptlib results`` jobs ``pretrain-<name>``;
- :mod:`~ptlib.pretrain.variants`: captioners from a pretrained encoder, frozen or fine-tuned.
"""

from ptlib.pretrain.checkpoint import load_encoder_init, resolve_encoder_init, save_encoder
from ptlib.pretrain.config import PretrainConfig
from ptlib.pretrain.dataset import PretextDataset, image_tensor
from ptlib.pretrain.encoder import build_spec_encoder, encoder_spec
from ptlib.pretrain.heads import PretextHeads, pretext_hits, pretext_loss
from ptlib.pretrain.job import (
    encoder_file,
    encoder_init_value,
    pretrain_config,
    pretrain_models,
    pretrained_encoder,
)
from ptlib.pretrain.probe import linear_probe, token_features
from ptlib.pretrain.scenes import PRETEXT_EVAL_STREAM, PRETEXT_STREAM, Scene, draw_scene
from ptlib.pretrain.targets import (
    ATTRIBUTES,
    KINDS,
    owners_from_cover,
    patch_cover,
    scene_targets,
    token_owners,
)
from ptlib.pretrain.train import PretrainResult, pretext_accuracy, pretrain_encoder
from ptlib.pretrain.variants import VARIANTS, pretrained_captioner, variant_overrides

__all__ = [
    "ATTRIBUTES", "KINDS", "PRETEXT_EVAL_STREAM", "PRETEXT_STREAM", "VARIANTS",
    "PretextDataset", "PretextHeads", "PretrainConfig", "PretrainResult", "Scene",
    "build_spec_encoder", "draw_scene", "encoder_file", "encoder_init_value", "encoder_spec",
    "image_tensor", "linear_probe", "owners_from_cover", "patch_cover", "load_encoder_init", "pretext_accuracy", "pretext_hits",
    "pretext_loss", "pretrain_config", "pretrain_encoder", "pretrain_models",
    "pretrained_captioner", "pretrained_encoder", "resolve_encoder_init", "save_encoder",
    "scene_targets", "token_features", "token_owners", "variant_overrides",
]
