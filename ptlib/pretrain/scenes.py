"""The pretext data: an endless, seeded stream of shapes scenes drawn by the training rules.

The captioning split has a few thousand images; the generator can make as many
as we like. Pretraining reads image ``i`` of a separate random stream, seeded by
``(seed, PRETEXT_STREAM, i, GENERATOR_VERSION)``: the same rules as the training
split (:func:`ptlib.data.shapes.training_pairs`, so the colour-shape pairs held
out for the compositional split never occur), but a stream that no captioning
split (train, val, test, compositional) uses, so no validation or test image is
ever seen during pretraining. Nothing is stored: an image is drawn when it is
read, so a run over 100,000 images needs no disk, and a resumed run reads
exactly the images it would have read.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

import numpy as np
from PIL import Image

from ptlib.data.shapes import (
    GENERATOR_VERSION,
    SPLITS,
    ShapeObject,
    render_image,
    sample_scene,
    training_pairs,
)

PRETEXT_STREAM = 101
"""Stream code of pretraining images (the captioning splits use 0..3, their index in
:data:`ptlib.data.shapes.SPLITS`)."""

PRETEXT_EVAL_STREAM = 102
"""Stream code of the images that measure pretext accuracy and fit the linear probe."""

assert PRETEXT_STREAM >= len(SPLITS) and PRETEXT_EVAL_STREAM >= len(SPLITS)


@dataclass(frozen=True)
class Scene:
    """One pretext image and what it shows.

    Attributes:
        image: The RGB image, ``img_size`` x ``img_size`` pixels.
        objects: Every drawn object (shape, colour, size, outline polygon).
    """

    image: Image.Image
    objects: list[ShapeObject]


def draw_scene(
    index: int,
    *,
    img_size: int,
    max_objects: int = 4,
    seed: int = 0,
    stream: int = PRETEXT_STREAM,
    jpeg_quality: int | None = 90,
) -> Scene:
    """Draw image ``index`` of a pretext stream by the training split's rules.

    Args:
        index: Position in the stream (any non-negative integer).
        img_size: Image side in pixels (the captioner's ``data.img_size``).
        max_objects: At most this many objects (1..4).
        seed: Stream seed.
        stream: :data:`PRETEXT_STREAM` (training) or :data:`PRETEXT_EVAL_STREAM`.
        jpeg_quality: Round-trip the image through JPEG at this quality, as the
            captioning dataset stores its images (``None``: keep the exact pixels).

    Returns:
        The :class:`Scene`.

    Raises:
        ValueError: If ``stream`` is one of the captioning splits' codes or ``index < 0``.
    """
    if stream < len(SPLITS):
        raise ValueError(f"stream={stream} is a captioning split's stream ({SPLITS[stream]}); "
                         f"use PRETEXT_STREAM or PRETEXT_EVAL_STREAM")
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    rng = np.random.default_rng([seed, stream, index, GENERATOR_VERSION])
    _, per_group, _ = sample_scene(rng, img_size, max_objects, training_pairs())
    objects = [o for objs in per_group for o in objs]
    image = render_image(objects, rng, img_size)
    if jpeg_quality is not None:
        buffer = BytesIO()
        image.save(buffer, format="JPEG", quality=jpeg_quality)
        image = Image.open(BytesIO(buffer.getvalue())).convert("RGB")
    return Scene(image, objects)
