"""Change a trained captioner's pruning at inference time.

The pruning study evaluates one trained model at many prune ratios, methods and
placements. :func:`inference_pruning` swaps the model's
:class:`~ptlib.models.pruning.TokenPruner` for the duration of a ``with`` block and
puts the trained one back afterwards::

    with inference_pruning(model, ratio=0.5, method="merge"):
        captions = model.generate(images).tokens
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ptlib.models.captioner import Captioner
from ptlib.models.pruning import TokenPruner


def make_pruner(
    model: Captioner,
    ratio: float,
    method: str | None = None,
    prune_at: str | None = None,
    *,
    seed: int | None = 0,
) -> TokenPruner:
    """A pruner for ``model`` with another ratio, method or placement.

    Args:
        model: A built (usually trained) captioner.
        ratio: Fraction of visual tokens to remove, in ``[0, 1)``.
        method: Scoring method (default: the model's own). ``0`` ratio means ``"none"``.
        prune_at: ``"memory"`` or ``"encoder"`` (default: the model's own).
        seed: Seed of the ``"random"`` method, so a study is reproducible.

    Returns:
        A :class:`TokenPruner` in eval mode. A ``"learned"`` pruner reuses the
        model's trained scorer.

    Raises:
        ValueError: For ``"learned"`` on a model whose pruner was not trained with
            it (its scorer would be random), or an invalid combination.
    """
    trained = model.pruner
    method = trained.method if method is None else method
    prune_at = trained.prune_at if prune_at is None else prune_at
    if ratio == 0:
        method = "none"
    if method == "learned" and trained.scorer is None:
        raise ValueError(
            "method 'learned' needs the scorer trained with the model, but this model was "
            f"trained with method {trained.method!r}; train it with model.prune_method=learned"
        )
    if method == "learned" and prune_at != trained.prune_at:
        raise ValueError(
            f"the learned scorer was trained at prune_at={trained.prune_at!r} and cannot "
            f"score tokens at prune_at={prune_at!r}"
        )
    pruner = TokenPruner(
        ratio,
        method,
        dim=1 if method == "learned" else None,  # placeholder scorer, replaced below
        seed=seed if method == "random" else None,
        fuse_dropped=trained.fuse_dropped and method == "cls_attention" and prune_at == "memory",
        prune_at=prune_at,
        prune_layers=trained.prune_layers if prune_at == "encoder" == trained.prune_at else None,
    )
    if method == "learned":
        pruner.scorer = trained.scorer
    return pruner.eval()


@contextmanager
def inference_pruning(
    model: Captioner,
    ratio: float,
    method: str | None = None,
    prune_at: str | None = None,
    *,
    seed: int | None = 0,
) -> Iterator[Captioner]:
    """Run ``model`` with another pruner inside a ``with`` block (see :func:`make_pruner`).

    Yields:
        The same model, its pruner replaced; the trained pruner is restored on exit.

    Raises:
        ValueError: If the model cannot prune that way (e.g. ``cls_attention`` on a
            ConvNeXt, or ``prune_at="encoder"`` outside a ViT).
    """
    trained = model.pruner
    pruner = make_pruner(model, ratio, method, prune_at, seed=seed)
    if pruner.needs_cls_attention and not model.encoder.has_cls_attention:
        raise ValueError(
            f"method 'cls_attention' needs a ViT with a class token; {model.encoder.name!r} has none"
        )
    if pruner.prune_at == "encoder" and pruner.ratio > 0:
        if model.encoder.kind != "vit":
            raise ValueError(f"prune_at='encoder' needs a ViT; {model.encoder.name!r} is not one")
        pruner.encoder_schedule(model.encoder.num_tokens, model.encoder.num_blocks)
    model.pruner = pruner
    try:
        yield model
    finally:
        model.pruner = trained
