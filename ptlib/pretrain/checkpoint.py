"""Slim encoder checkpoints: the pretrained encoder's weights, and loading them into a captioner.

A slim checkpoint is a ptlib checkpoint (:func:`ptlib.train.save_checkpoint`,
loadable with ``torch.load(..., weights_only=True)``) holding::

    model         the timm model's state_dict (float16): VisualEncoder.model
    encoder_spec  encoder name, img_size, feature_stride, encoder_kwargs
    pretext       pretext accuracy per head, minutes, images seen (plain data)

No heads and no optimizer state. A captioner starts from it with the run-config
field ``model.encoder_init``; the weights go through
:func:`ptlib.models.encoders.load_weights_file`, the same local loading as
``model.pretrained: path/to/weights.pt``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ptlib import course
from ptlib.models.encoders import VisualEncoder, load_weights_file
from ptlib.pretrain.encoder import ENCODER_KEYS
from ptlib.train.checkpoint import load_checkpoint, save_checkpoint


def save_encoder(path: str | Path, encoder: VisualEncoder, spec: Mapping[str, Any],
                 pretext: Mapping[str, Any]) -> Path:
    """Write the encoder's weights (float16) with its spec and pretext record, atomically.

    Args:
        path: Target ``.pt`` file.
        encoder: The pretrained encoder.
        spec: From :func:`ptlib.pretrain.encoder.encoder_spec`.
        pretext: Plain data about the pretraining (accuracies, minutes, ...).

    Returns:
        The path written.
    """
    weights = {k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()
               for k, v in encoder.model.state_dict().items()}
    return save_checkpoint(path, {"model": weights, "encoder_spec": dict(spec),
                                  "pretext": dict(pretext)})


def resolve_encoder_init(path: str | Path) -> Path:
    """Where an ``encoder_init`` value points: absolute paths as they are, relative ones
    under :func:`ptlib.course.results_dir` (``cpu/pretrain/vit/encoder.pt``)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else course.results_dir(create=False) / path


def _make_command(path: Path) -> str:
    """The command that makes a slim checkpoint at ``.../<profile>/pretrain/<name>/encoder.pt``."""
    parts = path.parts
    if len(parts) >= 4 and parts[-3] == "pretrain":
        return f"ptlib results --profile {parts[-4]} --only pretrain-{parts[-2]}"
    return "ptlib results --only pretrain-<backbone> (see `ptlib results --list`)"


def load_encoder_init(encoder: VisualEncoder, path: str | Path) -> dict[str, Any]:
    """Load a slim checkpoint's weights into a captioner's encoder.

    Args:
        encoder: Built from the same encoder spec (name, image size, stride, kwargs).
        path: The slim checkpoint; relative paths are under the results folder
            (:func:`resolve_encoder_init`).

    Returns:
        The checkpoint's ``pretext`` record.

    Raises:
        FileNotFoundError: If the file is missing (the message names the command
            that makes it).
        ValueError: If the checkpoint was pretrained for another encoder.
    """
    file = resolve_encoder_init(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"model.encoder_init: pretrained encoder {file} does not exist; make it with "
            f"`{_make_command(file)}`"
        )
    state = load_checkpoint(file)
    spec = state.get("encoder_spec")
    if not isinstance(spec, Mapping):
        raise ValueError(f"model.encoder_init: {file} is not a slim encoder checkpoint "
                         "(no encoder_spec); write one with ptlib.pretrain.save_encoder")
    mine = {"encoder": encoder.name, "img_size": encoder.img_size[0],
            "feature_stride": encoder.feature_stride}
    theirs = {key: spec.get(key) for key in mine}
    if theirs["feature_stride"] is None:  # the encoder's natural stride
        theirs["feature_stride"] = mine["feature_stride"]
    if theirs != mine:
        raise ValueError(f"model.encoder_init: {file} was pretrained for {theirs}, but the "
                         f"captioner's encoder is {mine}")
    load_weights_file(encoder.model, file)
    return dict(state.get("pretext", {}))


__all__ = ["ENCODER_KEYS", "load_encoder_init", "resolve_encoder_init", "save_encoder"]
