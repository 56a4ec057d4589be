"""Image transforms: timm's ``create_transform`` with an explicit input size.

Without pretrained weights timm has no data config to read the input size
from and would fall back to 224 px, so the size is always given here.

No horizontal flip by default: a caption that says "a red circle to the left
of a blue square" becomes a lie on the mirrored image. No random crop or
colour jitter by default either: a crop can cut an object out of the picture
(and change the count), a hue shift changes "red". Opt in with ``hflip`` /
``crop_scale`` only for data whose captions survive them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform

MEAN: tuple[float, float, float] = tuple(IMAGENET_DEFAULT_MEAN)  # type: ignore[assignment]
STD: tuple[float, float, float] = tuple(IMAGENET_DEFAULT_STD)  # type: ignore[assignment]


def build_transform(
    img_size: int,
    *,
    train: bool = False,
    hflip: float = 0.0,
    crop_scale: tuple[float, float] | None = None,
    interpolation: str = "bicubic",
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
) -> Callable:
    """Build the PIL image -> tensor transform.

    The image is resized to ``img_size`` x ``img_size`` (squashed, not
    cropped: an object at the edge of a COCO photo stays in the picture),
    converted to a float tensor and normalised.

    Args:
        img_size: The model's input side in pixels.
        train: Build the training transform. It equals the evaluation
            transform unless ``hflip`` or ``crop_scale`` asks for augmentation.
        hflip: Probability of a horizontal flip (training only). Keep 0 for
            captions with left/right relations.
        crop_scale: Random-resized-crop area range, e.g. ``(0.8, 1.0)``
            (training only); ``None`` for no crop.
        interpolation: Resize interpolation (``"bicubic"``, ``"bilinear"``, ...).
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation standard deviation.

    Returns:
        A callable mapping an RGB ``PIL.Image`` to a ``(3, img_size, img_size)`` float tensor.

    Raises:
        ValueError: If ``img_size`` is not a positive integer or ``hflip`` is not in [0, 1].
    """
    if isinstance(img_size, bool) or not isinstance(img_size, int) or img_size < 8:
        raise ValueError(f"img_size must be an integer >= 8 pixels, got {img_size!r}")
    if not 0.0 <= hflip <= 1.0:
        raise ValueError(f"hflip is a probability in [0, 1], got {hflip!r}")
    input_size = (3, img_size, img_size)
    if train and (hflip > 0 or crop_scale is not None):
        return create_transform(
            input_size=input_size,
            is_training=True,
            scale=tuple(crop_scale) if crop_scale is not None else (1.0, 1.0),
            ratio=(1.0, 1.0),
            hflip=hflip,
            color_jitter=None,
            interpolation=interpolation,
            mean=tuple(mean),
            std=tuple(std),
        )
    return create_transform(
        input_size=input_size,
        is_training=False,
        crop_pct=1.0,
        crop_mode="squash",
        interpolation=interpolation,
        mean=tuple(mean),
        std=tuple(std),
    )


def denormalize(
    images: torch.Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD
) -> torch.Tensor:
    """Undo the normalisation for display.

    Args:
        images: ``(B, 3, H, W)`` or ``(3, H, W)`` normalised images.

    Returns:
        The same shape, values in ``[0, 1]``.
    """
    shape = (3, 1, 1)
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(shape)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(shape)
    return (images * s + m).clamp(0.0, 1.0)
