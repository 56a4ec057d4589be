"""The training and evaluation engine.

::

    from ptlib.train import load_run_config, train_run, load_captioner
    config = load_run_config("shapes_vit", ["train.epochs=5"])
    result = train_run(config, "checkpoints/shapes_vit")       # FitResult
    model, vocab, config = load_captioner(result.best_checkpoint)
"""

from ptlib.train.captioning import CaptionedBatch, caption_images, caption_split
from ptlib.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from ptlib.train.config import TrainConfig
from ptlib.train.evaluate import caption_dataset, evaluate_captions, floor_model_ceiling
from ptlib.train.features import FeatureCache, FeatureCaptioner, encode_dataset
from ptlib.train.history import read_history, write_history
from ptlib.train.run import build_model, build_run_data, load_captioner, train_run
from ptlib.train.runconfig import apply_overrides, load_run_config, shipped_run_configs
from ptlib.train.trainer import FitResult, Trainer

__all__ = [
    "CaptionedBatch",
    "CheckpointError",
    "FeatureCache",
    "FeatureCaptioner",
    "FitResult",
    "TrainConfig",
    "Trainer",
    "apply_overrides",
    "build_model",
    "build_run_data",
    "caption_dataset",
    "caption_images",
    "caption_split",
    "encode_dataset",
    "evaluate_captions",
    "floor_model_ceiling",
    "load_captioner",
    "load_checkpoint",
    "load_run_config",
    "read_history",
    "save_checkpoint",
    "shipped_run_configs",
    "train_run",
    "write_history",
]
