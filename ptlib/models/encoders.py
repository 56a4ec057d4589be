"""Visual encoders from timm, read as a grid of visual tokens.

:func:`build_encoder` turns any timm ViT / DeiT (one token per image patch) or
hierarchical ConvNet such as ConvNeXt (one token per position of a stage's
feature map) into a :class:`VisualEncoder` that returns an
:class:`EncoderOutput`: tokens ``(B, N, C)``, the grid ``(h, w)`` with
``N = h * w``, and, for a ViT with a class token, the CLS token and the
attention the CLS token pays to every patch in the last block.

Token counts at a glance (``N`` is known without running the model, see
:attr:`VisualEncoder.num_tokens`):

==========================  =========  ======  ============  ======
encoder                     img_size   stride  grid          N
==========================  =========  ======  ============  ======
``vit_base_patch16_224``    224        16      14 x 14       196
``convnext_tiny``           224        32      7 x 7         49
``convnext_tiny``           224        16      14 x 14       196
==========================  =========  ======  ============  ======

ConvNeXt's stride-16 tokens are the output of its third stage (384 channels
for ConvNeXt-T instead of 768 at stride 32): ``VisualEncoder.width``
reports the width of the tokens actually returned.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ptlib.models.pruning import select_top_k

WEIGHT_FILE_SUFFIXES: tuple[str, ...] = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
"""File name endings that make ``pretrained`` a local weights file rather than a timm tag."""

# Classifier-head parameters: dropped without complaint when loading a full checkpoint
# into an encoder built without a head (num_classes=0).
_HEAD_PREFIXES: tuple[str, ...] = ("head.", "fc.", "classifier.", "head_dist.", "fc_norm.")


@dataclass
class EncoderOutput:
    """What a visual encoder returns.

    Attributes:
        tokens: Visual tokens ``(B, N, C)`` in row-major grid order (or the kept
            subset, in original order, when the encoder pruned tokens inside its blocks).
        grid: ``(h, w)`` of the full token grid; ``h * w`` is the unpruned token count.
        cls_token: The class token after the final norm ``(B, C)``, or ``None``.
        cls_attention: Attention of the CLS token to each returned patch token in
            the last block, averaged over heads ``(B, N)``; ``None`` unless asked for
            and the encoder has it.
        kept_indices: Original grid positions of the returned tokens ``(B, N)``,
            ascending, when tokens were pruned inside the encoder; ``None`` otherwise
            (the tokens are then the full grid).
        scores: Scores of the first in-encoder pruning stage over all ``h * w``
            tokens ``(B, h * w)``; ``None`` when the encoder did not prune.
    """

    tokens: Tensor
    grid: tuple[int, int]
    cls_token: Tensor | None = None
    cls_attention: Tensor | None = None
    kept_indices: Tensor | None = None
    scores: Tensor | None = None


@dataclass(frozen=True)
class EncoderPruning:
    """How a ViT prunes its patch tokens inside its blocks (EViT-style).

    After block ``schedule[s][0]`` the encoder scores the current patch tokens
    and keeps the ``schedule[s][1]`` best, in original order, so every later
    block runs on fewer tokens.

    Attributes:
        schedule: ``((block_index, tokens_kept_after_it), ...)``, increasing blocks
            (see :meth:`ptlib.models.TokenPruner.encoder_schedule`).
        score: ``score(tokens (B, n, C), cls_attention (B, n) or None) -> (B, n)``;
            higher means keep (e.g. :meth:`ptlib.models.TokenPruner.score`).
        cls_attention: Whether ``score`` reads the CLS attention of the block it
            prunes after (then the encoder computes it; else ``None`` is passed).
            Only for a ViT with a class token, which
            :func:`~ptlib.models.pruning.check_pruner` checks.
    """

    schedule: tuple[tuple[int, int], ...]
    score: Callable[[Tensor, Tensor | None], Tensor]
    cls_attention: bool = False


def _pair(size: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        pair = (size, size)
    elif isinstance(size, tuple | list) and len(size) == 2:
        pair = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"{name} must be an int or a (height, width) pair, got {size!r}")
    if min(pair) <= 0:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return pair


def _check_model_name(name: str) -> None:
    if timm.is_model(name):
        return
    base = name.split(".", 1)[0]
    if base != name and timm.is_model(base):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise ValueError(
        f"build_encoder: unknown encoder name {name!r}.{hint} "
        "List the names with timm.list_models('vit_*') or timm.list_models('convnext*')."
    )


def _is_vit(model: nn.Module) -> bool:
    """timm's ``VisionTransformer`` and its subclasses (DeiT, ...): plain qkv attention blocks.

    Other transformer families (EVA with rotary embeddings, Swin, ...) are read
    through ``forward_intermediates`` like ConvNets, without CLS attention.
    """
    from timm.models.vision_transformer import VisionTransformer

    return isinstance(model, VisionTransformer)


def _cls_attention(block: nn.Module, x: Tensor, num_prefix: int) -> Tensor | None:
    """Attention of token 0 (CLS) to every patch token in ``block``, mean over heads.

    Recomputes only the CLS query and the keys from the block's input, so the
    block itself runs unchanged (with timm's fused attention).

    Args:
        block: A timm ViT block whose ``attn`` has ``qkv``, ``num_heads``, ``scale``.
        x: The block's input ``(B, P + n, C)`` (prefix tokens first).
        num_prefix: Number of prefix tokens (CLS, distillation, registers).

    Returns:
        ``(B, n)`` attention weights over the patch tokens (they sum to less than
        1 because the CLS token also attends to the prefix tokens), or ``None`` if
        the block's attention does not expose ``qkv``.
    """
    attn = getattr(block, "attn", None)
    qkv = getattr(attn, "qkv", None)
    if not isinstance(qkv, nn.Linear):
        return None
    batch, length, _ = x.shape
    heads = attn.num_heads
    head_dim = attn.head_dim
    inner = heads * head_dim
    h = block.norm1(x)
    weight, bias = qkv.weight, qkv.bias
    q = F.linear(h[:, :1], weight[:inner], None if bias is None else bias[:inner])
    k = F.linear(h, weight[inner : 2 * inner], None if bias is None else bias[inner : 2 * inner])
    q = attn.q_norm(q.reshape(batch, 1, heads, head_dim).transpose(1, 2))
    k = attn.k_norm(k.reshape(batch, length, heads, head_dim).transpose(1, 2))
    weights = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, H, 1, P + n)
    return weights.mean(dim=1)[:, 0, num_prefix:]


def _load_state_dict_file(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state_dict (a dict of tensors), got {type(state)}")
    for wrapper in ("state_dict", "model", "state_dict_ema"):
        if wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
            break
    keys = list(state)
    for prefix in ("module.", "model."):
        if keys and all(k.startswith(prefix) for k in keys):
            state = {k[len(prefix) :]: v for k, v in state.items()}
            keys = list(state)
    return state


def load_weights_file(model: nn.Module, path: str | Path) -> None:
    """Load a local weights file into a timm model, adapting it as timm would.

    The model module's ``checkpoint_filter_fn`` (when timm has one) resizes the
    ViT position embedding to the model's image size. Classifier-head weights
    are dropped (the encoder has no head).

    Args:
        model: A timm model built with ``num_classes=0``.
        path: A ``.pth``/``.pt``/``.bin``/``.ckpt`` (``torch.save`` of a
            state_dict) or ``.safetensors`` file.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If keys are missing or unexpected, listing the first few of each.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights file {path} does not exist; pass a timm tag, True, "
            "or the path of a file saved with torch.save(model.state_dict(), path)"
        )
    state = _load_state_dict_file(path)
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    state = {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES)}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith(_HEAD_PREFIXES)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{path} does not fit {type(model).__name__}: {len(missing)} missing keys "
            f"{missing[:5]}, {len(result.unexpected_keys)} unexpected keys "
            f"{result.unexpected_keys[:5]}. Was it saved from the same timm model name?"
        )


class VisualEncoder(nn.Module):
    """A timm backbone that returns visual tokens; build it with :func:`build_encoder`.

    Attributes:
        name: The timm model name.
        kind: ``"vit"`` (patch tokens from timm ``VisionTransformer`` blocks) or
            ``"feature_map"`` (one stage's feature map read through timm's
            ``forward_intermediates``: ConvNeXt and other ConvNets, Swin, EVA, ...).
        model: The timm model (later stages pruned away when not needed).
        img_size: ``(H, W)`` of the input images.
        feature_stride: Pixels per token along each side.
        width: Channels ``C`` of the returned tokens.
        grid: ``(h, w)`` token grid.
        frozen: Whether the weights are frozen (eval mode, no graph).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        kind: str,
        img_size: tuple[int, int],
        feature_stride: int,
        width: int,
        grid: tuple[int, int],
        feature_index: int | None = None,
        frozen: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.name = name
        self.kind = kind
        self.img_size = img_size
        self.feature_stride = feature_stride
        self.width = width
        self.grid = grid
        self.feature_index = feature_index
        self.frozen = False
        if frozen:
            self.freeze()

    # -- static facts --------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        """Number of visual tokens ``h * w`` (computed from the configuration, not a run)."""
        return self.grid[0] * self.grid[1]

    @property
    def has_cls_token(self) -> bool:
        """Whether the encoder has a class token (ViT/DeiT with ``class_token=True``)."""
        return self.kind == "vit" and getattr(self.model, "cls_token", None) is not None

    @property
    def has_cls_attention(self) -> bool:
        """Whether CLS attention can be read (a ViT with a class token and qkv attention)."""
        if not self.has_cls_token:
            return False
        attn = getattr(self.model.blocks[-1], "attn", None)
        return isinstance(getattr(attn, "qkv", None), nn.Linear)

    @property
    def num_blocks(self) -> int:
        """Number of transformer blocks (``kind="vit"``) or 0 (``kind="feature_map"``)."""
        return len(self.model.blocks) if self.kind == "vit" else 0

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, kind={self.kind!r}, img_size={self.img_size}, "
            f"stride={self.feature_stride}, grid={self.grid}, tokens={self.num_tokens}, "
            f"width={self.width}, frozen={self.frozen}"
        )

    # -- freezing --------------------------------------------------------------
    def freeze(self) -> VisualEncoder:
        """Freeze the weights: no gradients, eval mode from now on (``train()`` keeps it eval)."""
        self.frozen = True
        self.model.requires_grad_(False)
        self.model.eval()
        return self

    def train(self, mode: bool = True) -> VisualEncoder:
        """Set training mode; a frozen encoder always stays in eval mode."""
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    # -- forward ---------------------------------------------------------------
    def forward(
        self,
        images: Tensor,
        *,
        need_cls_attention: bool = False,
        pruning: EncoderPruning | None = None,
    ) -> EncoderOutput:
        """Encode images into visual tokens.

        Args:
            images: ``(B, 3, H, W)`` with ``(H, W) == self.img_size``.
            need_cls_attention: Also return the last block's CLS attention (only a
                ViT with a class token has it; ``None`` is returned otherwise).
            pruning: Prune patch tokens inside the ViT blocks (``kind="vit"`` only).

        Returns:
            An :class:`EncoderOutput`.

        Raises:
            ValueError: On a wrong image size, or ``pruning`` for an encoder that
                is not a ViT.
        """
        if images.ndim != 4 or tuple(images.shape[-2:]) != self.img_size:
            raise ValueError(
                f"{self.name}: expected images (B, 3, {self.img_size[0]}, {self.img_size[1]}), "
                f"got {tuple(images.shape)}; build the encoder with the img_size you feed it"
            )
        if pruning is not None and self.kind != "vit":
            raise ValueError(
                f"{self.name}: pruning inside the encoder needs a ViT (kind 'vit'), this "
                f"encoder is of kind {self.kind!r}"
            )
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            if self.kind == "vit":
                return self._forward_vit(images, need_cls_attention, pruning)
            return self._forward_feature_map(images)

    def _forward_feature_map(self, images: Tensor) -> EncoderOutput:
        (feature,) = self.model.forward_intermediates(
            images, indices=[self.feature_index], intermediates_only=True, output_fmt="NCHW"
        )
        if tuple(feature.shape[-2:]) != self.grid:
            raise RuntimeError(
                f"{self.name}: feature map {tuple(feature.shape[-2:])} != expected grid {self.grid}"
            )
        tokens = feature.flatten(2).transpose(1, 2)  # (B, h*w, C)
        return EncoderOutput(tokens=tokens, grid=self.grid)

    def _embed(self, images: Tensor) -> Tensor:
        """Patch embedding, prefix tokens and position embedding, as timm's ViT does.

        Built from the model's public parts (``patch_embed``, ``cls_token``,
        ``dist_token``, ``reg_token``, ``pos_embed``, ``no_embed_class``,
        ``pos_drop``, ``patch_drop``, ``norm_pre``).

        Returns:
            ``(B, P + N, C)``: ``P`` prefix tokens, then the ``N`` patch tokens.
        """
        model = self.model
        x = model.patch_embed(images)
        x = x.reshape(x.shape[0], -1, x.shape[-1])  # (B, N, C), also from NHWC output
        prefix = [  # DeiT's distillation token follows the class token
            token.expand(x.shape[0], -1, -1)
            for token in (model.cls_token, getattr(model, "dist_token", None),
                          getattr(model, "reg_token", None))
            if token is not None
        ]
        if model.pos_embed is None:  # timm applies no position dropout then
            x = torch.cat([*prefix, x], dim=1)
        elif getattr(model, "no_embed_class", False):  # DeiT-3: patches only
            x = model.pos_drop(torch.cat([*prefix, x + model.pos_embed], dim=1))
        else:
            x = model.pos_drop(torch.cat([*prefix, x], dim=1) + model.pos_embed)
        return model.norm_pre(model.patch_drop(x))

    def _forward_vit(
        self, images: Tensor, need_cls_attention: bool, pruning: EncoderPruning | None
    ) -> EncoderOutput:
        model = self.model
        prefix = model.num_prefix_tokens
        x = self._embed(images)
        rows = torch.arange(x.shape[0], device=x.device)[:, None]  # one row index for all stages
        schedule = dict(pruning.schedule) if pruning is not None else {}
        positions: Tensor | None = None  # (B, n) original grid positions of the patch tokens
        first_scores: Tensor | None = None
        cls_attention: Tensor | None = None
        last = len(model.blocks) - 1
        for index, block in enumerate(model.blocks):
            stage_keep = schedule.get(index)
            wants_attention = (stage_keep is not None and pruning.cls_attention) or (
                need_cls_attention and index == last
            )
            attention = _cls_attention(block, x, prefix) if wants_attention else None
            x = block(x)
            if index == last:
                cls_attention = attention
            if stage_keep is None:
                continue
            patches = x[:, prefix:]
            scores = pruning.score(patches, attention)
            keep = select_top_k(scores, stage_keep)  # (B, k) ascending
            # take_tokens' indexing (saves only the index for backward), rows shared
            x = torch.cat([x[:, :prefix], patches[rows, keep]], dim=1)
            positions = keep if positions is None else positions[rows, keep]
            if first_scores is None:
                first_scores = scores
            if cls_attention is not None:
                cls_attention = cls_attention[rows, keep]
        x = model.norm(x)
        return EncoderOutput(
            tokens=x[:, prefix:],
            grid=self.grid,
            cls_token=x[:, 0] if self.has_cls_token else None,
            cls_attention=cls_attention if need_cls_attention else None,
            kept_indices=positions,
            scores=first_scores,
        )


def _create_timm_model(
    name: str,
    pretrained: bool | str,
    img_size: tuple[int, int],
    model_kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    model_name = name
    use_timm_weights = False
    if isinstance(pretrained, str):
        model_name = f"{name.split('.', 1)[0]}.{pretrained}"
        use_timm_weights = True
    elif pretrained:
        use_timm_weights = True
    kwargs: dict[str, Any] = {**(model_kwargs or {}), "pretrained": use_timm_weights}
    kwargs["num_classes"] = 0
    try:
        return timm.create_model(model_name, img_size=img_size, **kwargs)
    except TypeError as err:
        if "img_size" not in str(err):
            raise
    return timm.create_model(model_name, **kwargs)


def build_encoder(
    name: str,
    *,
    pretrained: bool | str | Path = False,
    img_size: int | tuple[int, int],
    feature_stride: int | None = None,
    freeze: bool = False,
    encoder_kwargs: Mapping[str, Any] | None = None,
) -> VisualEncoder:
    """Build a timm backbone that returns visual tokens.

    Args:
        name: Any timm model name, e.g. ``"vit_base_patch16_224"``,
            ``"deit_small_patch16_224"``, ``"convnext_tiny"``.
        pretrained: ``False`` (random init), ``True`` (timm's default weights,
            downloaded), a timm tag such as ``"augreg2_in21k_ft_in1k"``, or the path
            of a local weights file (``.pth``/``.pt``/``.bin``/``.ckpt``/``.safetensors``;
            a ``torch.save`` of the timm model's or this encoder's ``state_dict``).
        img_size: Input size, an int or ``(H, W)``. ViT position embeddings are
            resized to it; other encoders need it divisible by the stride.
        feature_stride: Pixels per token. ViT: ``None`` or its patch size.
            Hierarchical (ConvNeXt): ``None`` for the last stage (32), or the
            reduction of an earlier stage (16 = stage 3, 8, 4).
        freeze: Freeze the weights; the encoder then always runs in eval mode and
            builds no autograd graph.
        encoder_kwargs: Extra keyword arguments for ``timm.create_model`` that change
            the architecture, e.g. ``{"patch_size": 8, "depth": 4}`` for a ViT with
            8-px patches and 4 blocks. Such a model no longer matches timm's
            pretrained weights, so use it with ``pretrained=False``.

    Returns:
        A :class:`VisualEncoder`.

    Raises:
        ValueError: For an unknown name (close matches are suggested), a stride
            the model does not offer, or an image size that does not fit it.
        FileNotFoundError: For a weights path that does not exist.
    """
    _check_model_name(name)
    size = _pair(img_size, "img_size")
    weights_file: Path | None = None
    if isinstance(pretrained, Path) or (
        isinstance(pretrained, str)
        and (pretrained.endswith(WEIGHT_FILE_SUFFIXES) or "/" in pretrained or "\\" in pretrained)
    ):
        weights_file = Path(pretrained)
        pretrained = False
    if encoder_kwargs:
        reserved = sorted(set(encoder_kwargs) & {"pretrained", "num_classes", "img_size"})
        if reserved:
            raise ValueError(
                f"build_encoder: encoder_kwargs may not set {reserved}; "
                "use the pretrained and img_size arguments"
            )
        if pretrained is not False:
            raise ValueError(
                f"build_encoder: encoder_kwargs {dict(encoder_kwargs)} change {name}'s "
                "architecture, so its pretrained weights do not fit; use pretrained=False"
            )
    model = _create_timm_model(name, pretrained, size, encoder_kwargs)
    if weights_file is not None:
        load_weights_file(model, weights_file)

    if _is_vit(model):
        patch = model.patch_embed.patch_size
        patch = patch[0] if isinstance(patch, tuple | list) else patch
        if feature_stride not in (None, patch):
            raise ValueError(
                f"build_encoder: {name} gives one token per {patch}x{patch} patch, so "
                f"feature_stride must be None or {patch}, not {feature_stride}; "
                "choose a model with another patch size for another stride"
            )
        grid = tuple(int(g) for g in model.patch_embed.grid_size)
        return VisualEncoder(
            model,
            name=name,
            kind="vit",
            img_size=size,
            feature_stride=patch,
            width=int(model.num_features),
            grid=(grid[0], grid[1]),
            frozen=freeze,
        )

    feature_info = getattr(model, "feature_info", None)
    if not feature_info or not hasattr(model, "forward_intermediates"):
        raise ValueError(
            f"build_encoder: cannot read {name} ({type(model).__name__}) as a token grid: it is "
            "neither a ViT nor a model with feature_info and forward_intermediates"
        )
    reductions = [int(info["reduction"]) for info in feature_info]
    stride = reductions[-1] if feature_stride is None else int(feature_stride)
    if stride not in reductions:
        raise ValueError(
            f"build_encoder: {name} offers feature_stride {sorted(set(reductions))}, "
            f"not {feature_stride}"
        )
    index = len(reductions) - 1 - reductions[::-1].index(stride)
    if size[0] % stride or size[1] % stride:
        raise ValueError(
            f"build_encoder: img_size {size} must be divisible by feature_stride {stride} for {name}"
        )
    if index < len(reductions) - 1:
        model.prune_intermediate_layers(indices=[index], prune_norm=True, prune_head=True)
    return VisualEncoder(
        model,
        name=name,
        kind="feature_map",
        img_size=size,
        feature_stride=stride,
        width=int(feature_info[index]["num_chs"]),
        grid=(size[0] // stride, size[1] // stride),
        feature_index=index,
        frozen=freeze,
    )
