"""The chapter-8 demo: caption one image with a backbone, a pruning method and a ratio.

:func:`caption_with_attention` does the work for one image (caption, kept
tokens, attention maps, and the pointing game when the image's objects are
known) and returns the caption with its figure; :func:`demo_view` picks the
image (a test image by index, or an uploaded file) and the backbone;
:func:`build_demo` wraps :func:`demo_view` in ipywidgets controls. In a static
page widgets do not run, so a chapter calls :func:`demo_view` with fixed
arguments to show one saved state.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from matplotlib import pyplot as plt
from matplotlib.figure import Figure
from PIL import Image

from ptlib.data.datasets import CaptionDataset
from ptlib.data.grammar import COLOURS, SIZES
from ptlib.data.transforms import build_transform
from ptlib.data.vocab import Vocabulary
from ptlib.metrics.correctness import SceneTruth
from ptlib.metrics.grounding import PointingTrial, point_caption, shape_named_by
from ptlib.models.captioner import Captioner, reprune
from ptlib.models.pruning import pruning_methods
from ptlib.train.captioning import caption_images
from ptlib.viz.attention import draw_word_attention

DEMO_RATIOS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(10))
"""The ratios the demo's slider offers (0 to 0.9)."""


def demo_methods(model: Captioner) -> tuple[str, ...]:
    """The pruning methods this captioner can run at inference on its decoder memory.

    ``cls_attention`` needs a ViT's class token; ``learned`` needs a scorer
    trained with the model.
    """
    fit = pruning_methods(model.encoder)
    methods = [m for m in ("norm", "random", "merge", "cls_attention") if m in fit]
    if model.pruner.scorer is not None:
        methods.append("learned")
    return tuple(methods)


@dataclass
class DemoOutput:
    """What the demo shows for one image.

    Attributes:
        caption: The generated caption.
        words: Its words, one per generated token.
        method: The pruning method used (``"none"`` at ratio 0).
        ratio: The prune ratio.
        kept_tokens: Visual tokens the decoder attended to (``K``).
        total_tokens: Tokens of the full grid (``N``).
        figure: Image, kept tokens, mean attention and one panel per content word.
        trials: Pointing-game trials of the shape words (empty without ground truth).
    """

    caption: str
    words: list[str]
    method: str
    ratio: float
    kept_tokens: int
    total_tokens: int
    figure: Figure
    trials: list[PointingTrial] = field(default_factory=list)

    def summary(self, width: int = 80) -> str:
        """The caption, tokens kept and the pointing result per shape word.

        Args:
            width: Wrap every line to this many characters (the book's column).
        """
        lines = textwrap.wrap(repr(self.caption), width)
        lines.append(f"({self.method}, ratio {self.ratio:.1f}: "
                     f"{self.kept_tokens}/{self.total_tokens} tokens kept)")
        scored = [t for t in self.trials if t.scored]
        if self.trials:
            marks = ", ".join(f"{t.word}: {'hit' if t.hit else 'miss' if t.scored else 'absent'}"
                              for t in self.trials)
            lines += textwrap.wrap(f"pointing game {sum(t.hit for t in scored)}/{len(scored)} "
                                   f"({marks})", width)
        return "\n".join(lines)


def content_positions(words: Sequence[str]) -> list[int]:
    """Positions of the words that name a size, colour or shape (else every position)."""
    named = [i for i, w in enumerate(words) if w in SIZES or w in COLOURS or shape_named_by(w)]
    return named or list(range(len(words)))


def caption_with_attention(
    model: Captioner,
    vocab: Vocabulary,
    image: Image.Image,
    *,
    method: str = "norm",
    ratio: float = 0.0,
    truth: SceneTruth | None = None,
    upsample: str = "bilinear",
    max_words: int = 6,
) -> DemoOutput:
    """Caption one image greedily with a given pruning, and draw where each word looked.

    Args:
        model: A trained captioner (its pruner is swapped only inside this call).
        vocab: Its vocabulary.
        image: Any RGB picture; it is squashed to the model's input size.
        method: Pruning method (:func:`demo_methods`); ignored at ratio 0.
        ratio: Fraction of visual tokens pruned at inference.
        truth: The image's objects, to play the pointing game on its shape words.
        upsample: ``"bilinear"`` or ``"nearest"`` (see :func:`ptlib.viz.attention.upsample_grid`).
        max_words: Most word panels.

    Returns:
        A :class:`DemoOutput`.

    Raises:
        ValueError: If the method does not apply to this model (e.g. ``cls_attention``
            on a ConvNeXt).
    """
    if ratio > 0 and method not in demo_methods(model):
        raise ValueError(f"method {method!r} does not apply to {model.encoder.name!r}; "
                         f"choose one of {demo_methods(model)}")
    height, width = model.encoder.img_size
    picture = image.convert("RGB")
    device = next(model.parameters()).device
    pixels = build_transform(height)(picture.resize((width, height)))[None].to(device)
    pruned = reprune(model, ratio, method if ratio > 0 else None)
    used_method = pruned.pruner.method
    captioned = caption_images(pruned, pixels, vocab, need_attention=True)
    words, attention, kept = captioned.words[0], captioned.attention[0], captioned.kept_indices[0]
    grid = model.encoder.grid
    trials = [] if truth is None else point_caption(truth.image_id, words, attention, kept, grid,
                                                    truth)
    figure = draw_word_attention(
        picture.resize((width, height)), words, attention, kept, grid, max_words=max_words,
        upsample=upsample, positions=content_positions(words), show_kept=True,
        trials=trials, truth=truth,
    )
    return DemoOutput(" ".join(words), words, used_method, float(ratio), int(kept.numel()),
                      grid[0] * grid[1], figure, trials)


def read_upload(upload: Any) -> Image.Image | None:
    """The image of an ``ipywidgets.FileUpload`` value (the first file), or ``None``.

    Accepts ipywidgets 8's tuple of ``{"content": ...}`` dicts, ipywidgets 7's
    ``{name: {"content": ...}}`` dict, or raw bytes.

    Raises:
        ValueError: If the file is not an image PIL can read.
    """
    if not upload:
        return None
    if isinstance(upload, bytes | bytearray | memoryview):
        content = bytes(upload)
    else:
        first = next(iter(upload.values())) if isinstance(upload, Mapping) else upload[0]
        content = bytes(first["content"])
    try:
        picture = Image.open(BytesIO(content))
        picture.load()
    except Exception as err:  # PIL raises several types for bad files
        raise ValueError(f"the uploaded file is not an image PIL can read (PNG or JPEG): {err}") from err
    return picture.convert("RGB")


def demo_view(
    models: Mapping[str, tuple[Captioner, Vocabulary]],
    dataset: CaptionDataset,
    truth: Mapping[int, SceneTruth] | None,
    *,
    index: int = 0,
    backbone: str,
    method: str = "norm",
    ratio: float = 0.0,
    upload: Any = None,
    upsample: str = "bilinear",
) -> DemoOutput:
    """What the demo shows for one choice of its controls.

    Args:
        models: Backbone -> ``(captioner, vocabulary)``.
        dataset: The split the index picks from (eval mode).
        truth: That split's objects (image id ->
            :class:`~ptlib.metrics.correctness.SceneTruth`), or ``None``.
        index: Which image of ``dataset``.
        backbone: A key of ``models``.
        method: Pruning method; a method the backbone cannot run is refused.
        ratio: Prune ratio.
        upload: A ``FileUpload`` value; when it holds an image, that image is
            captioned instead (no ground truth, so no pointing game).
        upsample: ``"bilinear"`` or ``"nearest"``.

    Raises:
        ValueError: For an unknown backbone or an index outside the dataset.
    """
    if backbone not in models:
        raise ValueError(f"backbone must be one of {tuple(models)}, got {backbone!r}")
    model, vocab = models[backbone]
    uploaded = read_upload(upload)
    if uploaded is not None:
        return caption_with_attention(model, vocab, uploaded, method=method, ratio=ratio,
                                      upsample=upsample)
    if not 0 <= index < len(dataset):
        raise ValueError(f"index must be in 0..{len(dataset) - 1}, got {index}")
    image_id = dataset.records[index].image_id
    scene = truth.get(image_id) if truth is not None else None
    return caption_with_attention(model, vocab, dataset.load_image(index), method=method,
                                  ratio=ratio, truth=scene, upsample=upsample)


def show_demo_view(*args: Any, **kwargs: Any) -> DemoOutput:
    """:func:`demo_view`, printed and drawn (what the widget shows on every change)."""
    output = demo_view(*args, **kwargs)
    print(output.summary())
    plt.show()
    return output


def build_demo(
    models: Mapping[str, tuple[Captioner, Vocabulary]],
    dataset: CaptionDataset,
    truth: Mapping[int, SceneTruth] | None = None,
    *,
    index: int = 0,
    ratio: float = 0.3,
):  # -> ipywidgets.VBox
    """The interactive demo: image index or upload, backbone, method and ratio controls.

    The method list follows the backbone (:func:`demo_methods`). Every change
    calls :func:`show_demo_view` into an output area.

    Returns:
        An ``ipywidgets.VBox`` (display it in a notebook).
    """
    import ipywidgets as widgets

    backbones = tuple(models)
    image_index = widgets.BoundedIntText(value=index, min=0, max=len(dataset) - 1,
                                         description="test image")
    upload = widgets.FileUpload(accept="image/*", multiple=False, description="or upload")
    backbone = widgets.Dropdown(options=backbones, value=backbones[0], description="backbone")
    method = widgets.Dropdown(options=demo_methods(models[backbones[0]][0]), value="norm",
                              description="method")
    prune_ratio = widgets.SelectionSlider(options=DEMO_RATIOS, value=min(DEMO_RATIOS,
                                          key=lambda r: abs(r - ratio)), description="ratio")

    def follow_backbone(change: dict) -> None:
        options = demo_methods(models[change["new"]][0])
        method.value = method.value if method.value in options else options[0]
        method.options = options

    backbone.observe(follow_backbone, names="value")

    def update(index: int, upload: Any, backbone: str, method: str, ratio: float) -> None:
        if method not in demo_methods(models[backbone][0]):
            return  # the method list is being switched to the new backbone's
        show_demo_view(models, dataset, truth, index=index, backbone=backbone, method=method,
                       ratio=ratio, upload=upload)

    output = widgets.interactive_output(update, {
        "index": image_index, "upload": upload, "backbone": backbone, "method": method,
        "ratio": prune_ratio,
    })
    controls = widgets.HBox([widgets.VBox([image_index, upload]),
                             widgets.VBox([backbone, method, prune_ratio])])
    return widgets.VBox([controls, output])

