"""FLOPs per caption, split by where they are spent in the captioner.

:class:`CategoryFlopCounter` is a ``TorchDispatchMode`` that uses the FLOP
formulas of ``torch.utils.flop_counter`` (matrix products, convolutions,
scaled-dot-product attention) and books every operation under the innermost
running submodule of a :class:`~ptlib.models.Captioner` that has a category:

=================  ==============================================================
category           modules (names as in ``Captioner.named_modules()``)
=================  ==============================================================
encoder            ``encoder.*`` (ViT blocks or ConvNeXt stages, in-encoder pruning)
projection         ``projection.*`` (linear map + visual Transformer layers)
pruning            ``pruner.*`` (only the learned scorer costs anything)
self_attention     ``decoder.layers.N.self_attn.*``
cross_attention    ``decoder.layers.N.cross_attn.*``
ffn                ``decoder.layers.N.linear1`` / ``linear2``
output_head        ``decoder.head``
other              anything else (embedding lookups and norms cost no counted FLOPs)
=================  ==============================================================

Innermost-first matters: the decoder computes cross-attention keys and values
with ``cross_attn.k_proj`` called from the layer (not from ``cross_attn``'s own
forward), which per-module totals of ``FlopCounterMode`` would not place under
``cross_attn``. One multiply-add counts as 2 FLOPs; attention scores are counted
dense (a causal mask does not halve them), as ``torch.utils.flop_counter`` does.
While counting, ``nn.MultiheadAttention``'s fused inference path (one kernel
without a FLOP formula, used by the visual Transformer layers) is switched off,
so its projections and attention are counted like everything else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

FLOP_CATEGORIES: tuple[str, ...] = (
    "encoder",
    "projection",
    "pruning",
    "self_attention",
    "cross_attention",
    "ffn",
    "output_head",
    "other",
)
"""The categories :class:`CategoryFlopCounter` books FLOPs under, in model order."""

_DECODER_LAYER_PART = re.compile(r"^decoder\.layers\.\d+\.(self_attn|cross_attn|linear1|linear2)\b")
_LAYER_PART_CATEGORY = {
    "self_attn": "self_attention",
    "cross_attn": "cross_attention",
    "linear1": "ffn",
    "linear2": "ffn",
}
_TOP_LEVEL_CATEGORY = {"encoder": "encoder", "projection": "projection", "pruner": "pruning"}


def flop_category(module_name: str) -> str | None:
    """The category of a :class:`~ptlib.models.Captioner` submodule, or ``None``.

    Args:
        module_name: A name from ``model.named_modules()``, e.g.
            ``"decoder.layers.0.cross_attn.k_proj"``.

    Returns:
        One of :data:`FLOP_CATEGORIES` (never ``"other"``), or ``None`` when the
        module is a container whose own operations belong to no category.
    """
    top = module_name.split(".", 1)[0]
    if top in _TOP_LEVEL_CATEGORY:
        return _TOP_LEVEL_CATEGORY[top]
    match = _DECODER_LAYER_PART.match(module_name)
    if match:
        return _LAYER_PART_CATEGORY[match.group(1)]
    if module_name == "decoder.head" or module_name.startswith("decoder.head."):
        return "output_head"
    return None


def _counting_registry() -> dict[Any, Callable[..., int]]:
    """torch's FLOP formulas, plus the CPU flash-attention kernel (same formula as CUDA's)."""
    registry = dict(flop_registry)
    aten = torch.ops.aten
    cpu_flash = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_flash is not None and aten._scaled_dot_product_flash_attention in registry:
        registry.setdefault(cpu_flash, registry[aten._scaled_dot_product_flash_attention])
    return registry


class _CountingMode(TorchDispatchMode):
    """Runs every operation and hands its FLOPs to the counter (re-entered for decompositions)."""

    def __init__(self, counter: CategoryFlopCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        registry = self.counter.registry
        packet = func._overloadpacket
        if packet not in registry and func is not torch.ops.prim.device.default:
            # A composite operation runs as its parts, so the parts get counted.
            with self:
                decomposed = func.decompose(*args, **kwargs)
            if decomposed is not NotImplemented:
                return decomposed
        out = func(*args, **kwargs)
        if packet in registry:
            self.counter.add(int(registry[packet](*args, **kwargs, out_val=out)))
        return out


class CategoryFlopCounter:
    """Count FLOPs of everything a captioner runs, booked per category.

    Use it as a context manager around any calls on ``model`` (forward,
    ``generate``, ``encode`` ...)::

        with CategoryFlopCounter(model) as counter:
            model.generate(images, max_len=20, stop_at_eos=False)
        counter.counts  # {"encoder": ..., "cross_attention": ..., ...}

    Args:
        model: The module whose submodules are categorised (normally a
            :class:`~ptlib.models.Captioner`).
        categorize: Maps a submodule name to a category or ``None``
            (default :func:`flop_category`).

    Attributes:
        counts: ``{category: FLOPs}`` for every category in :data:`FLOP_CATEGORIES`.
        registry: ``{aten operation packet: FLOP formula}`` used for counting.
    """

    def __init__(
        self, model: nn.Module, categorize: Callable[[str], str | None] = flop_category
    ) -> None:
        self.model = model
        self.categorize = categorize
        self.counts: dict[str, int] = dict.fromkeys(FLOP_CATEGORIES, 0)
        self.registry = _counting_registry()
        self._running: list[str] = []  # names of the submodules whose forward is running
        self._hooks: list[Any] = []
        self._mode: _CountingMode | None = None
        self._fastpath_was = True

    # -- which module is running -------------------------------------------------
    def _push(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            self._running.append(name)

        return hook

    def _pop(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if name in self._running:  # the last entry, unless a child raised
                del self._running[len(self._running) - 1 - self._running[::-1].index(name)]

        return hook

    def current_category(self) -> str:
        """The category of the innermost running submodule that has one, else ``"other"``."""
        for name in reversed(self._running):
            category = self.categorize(name)
            if category is not None:
                return category
        return "other"

    def add(self, flops: int) -> None:
        """Book ``flops`` under :meth:`current_category`."""
        category = self.current_category()
        self.counts[category] = self.counts.get(category, 0) + flops

    @property
    def total(self) -> int:
        """All FLOPs counted."""
        return sum(self.counts.values())

    # -- context -------------------------------------------------------------------
    def __enter__(self) -> CategoryFlopCounter:
        self.counts = dict.fromkeys(FLOP_CATEGORIES, 0)
        self._running = []
        for name, module in self.model.named_modules():
            if name:
                self._hooks.append(module.register_forward_pre_hook(self._push(name)))
                self._hooks.append(module.register_forward_hook(self._pop(name), always_call=True))
        # nn.MultiheadAttention's fused inference kernel has no FLOP formula: run the
        # ordinary path (same result) so its projections and attention are counted.
        self._fastpath_was = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)
        self._mode = _CountingMode(self)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._mode is not None:
                self._mode.__exit__(*exc)
        finally:
            self._mode = None
            torch.backends.mha.set_fastpath_enabled(self._fastpath_was)
            for handle in self._hooks:
                handle.remove()
            self._hooks.clear()


def caption_flops(
    model: nn.Module,
    img_size: int | tuple[int, int],
    caption_tokens: int,
    *,
    mode: str = "generate",
) -> dict[str, int]:
    """FLOPs to caption one image, per category.

    Args:
        model: A :class:`~ptlib.models.Captioner` (its weights do not matter).
        img_size: The encoder's input size (pixels).
        caption_tokens: ``L``, the caption length in tokens.
        mode: ``"generate"``: greedy generation of ``L`` tokens with the KV cache
            (the encoder runs once, cross-attention keys/values are computed once,
            each step attends over the cache), what captioning an image costs.
            ``"teacher_forced"``: one forward pass over ``L`` input tokens, what a
            training step's forward costs per image.

    Returns:
        ``{category: FLOPs}`` over :data:`FLOP_CATEGORIES`.

    Raises:
        ValueError: On an unknown ``mode`` or a caption longer than the decoder allows.
    """
    if mode not in ("generate", "teacher_forced"):
        raise ValueError(f"mode must be 'generate' or 'teacher_forced', got {mode!r}")
    limit = model.decoder.max_len - 1 if mode == "generate" else model.decoder.max_len
    if not 1 <= caption_tokens <= limit:
        raise ValueError(
            f"caption_tokens={caption_tokens}: this decoder (max_len={model.decoder.max_len}) "
            f"takes 1..{limit} tokens in mode {mode!r}"
        )
    height, width = (img_size, img_size) if isinstance(img_size, int) else img_size
    parameter = next(model.parameters())
    images = torch.zeros(1, 3, height, width, device=parameter.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), CategoryFlopCounter(model) as counter:
            if mode == "generate":
                model.generate(images, max_len=caption_tokens, stop_at_eos=False)
            else:
                tokens: Tensor = torch.full(
                    (1, caption_tokens),
                    model.decoder.vocab_size - 1,
                    dtype=torch.long,
                    device=images.device,
                )
                tokens[:, 0] = model.bos_id
                model(images, tokens)
    finally:
        model.train(was_training)
    return dict(counter.counts)
