"""Frozen-encoder feature caching: encode every image once, then train from the cache.

With ``model.freeze_encoder: true`` the encoder's output for an image never
changes, so running it at every step of every epoch repeats the same work. The
cache stores the encoder tokens of each image (float16 by default, half the
memory of float32) together with what the rest of the model needs: the CLS
attention (for ``cls_attention`` pruning) and the kept positions (for pruning
inside the encoder). Training then calls :meth:`ptlib.models.Captioner.forward_features`
through :class:`FeatureCaptioner`, which computes exactly what
:meth:`~ptlib.models.Captioner.forward` computes from the images (a test checks
the losses agree: exactly with a float32 cache, to float16 rounding otherwise).

Image augmentation is incompatible with caching (an image would need a new
encoding every epoch); ``ptlib`` trains shapes and COCO without augmentation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ptlib.data.datasets import CaptionDataset, collate_captions
from ptlib.tokens import PAD_ID
from ptlib.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


@dataclass
class FeatureCache:
    """Encoder outputs of every image of one dataset, in dataset order.

    Attributes:
        tokens: ``(n_images, N, C)`` encoder tokens.
        cls_attention: ``(n_images, N)`` or ``None``.
        positions: ``(n_images, N)`` kept grid positions when the encoder pruned, or ``None``.
        image_ids: ``(n_images,)`` to check the cache belongs to the dataset.
        config: What produced the cache (encoder, input size, dtype, source); a
            cache is reused only when this matches exactly.
    """

    tokens: Tensor
    cls_attention: Tensor | None
    positions: Tensor | None
    image_ids: Tensor
    config: dict[str, Any]

    @property
    def nbytes(self) -> int:
        """Memory held by the cached tensors."""
        tensors = [self.tokens, self.cls_attention, self.positions, self.image_ids]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    def save(self, path: str | Path) -> Path:
        """Write the cache atomically (a ptlib checkpoint file, safe to load)."""
        return save_checkpoint(path, {"feature_cache": {
            "tokens": self.tokens, "cls_attention": self.cls_attention,
            "positions": self.positions, "image_ids": self.image_ids, "config": self.config,
        }})

    @classmethod
    def load(cls, path: str | Path) -> FeatureCache:
        """Read a cache written by :meth:`save` (``weights_only``)."""
        state = load_checkpoint(path)
        if "feature_cache" not in state:
            raise CheckpointError(f"{path} is a ptlib checkpoint but not a feature cache")
        return cls(**state["feature_cache"])


def weights_digest(module: nn.Module) -> str:
    """The first 16 hex digits of the SHA-256 of a module's parameters and buffers, so a
    cache made with other weights (another ``encoder_init``, say) is never reused."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def cache_config(model: nn.Module, dataset: CaptionDataset, dtype: torch.dtype) -> dict[str, Any]:
    """The settings a cache depends on (recorded in it and compared on reuse)."""
    config = getattr(model, "config", None)
    encoder = model.encoder
    return {
        "encoder": encoder.name,
        "grid": list(encoder.grid),
        "feature_stride": getattr(encoder, "feature_stride", None),
        "pretrained": None if config is None else str(config.pretrained),
        "weights": weights_digest(encoder),
        "img_size": None if config is None else config.img_size,
        "prune_at": model.pruner.prune_at,
        "encoder_prune": None if model.pruner.prunes_memory else [model.pruner.method,
                                                                  model.pruner.ratio],
        "cls_attention": bool(model.pruner.uses_cls_attention),
        "dtype": str(dtype).replace("torch.", ""),
        "source": dataset.source,
        "n_images": len(dataset),
    }


@torch.no_grad()
def encode_dataset(
    model: nn.Module,
    dataset: CaptionDataset,
    *,
    device: torch.device,
    dtype: torch.dtype = torch.float16,
    batch_size: int = 64,
    show_progress: bool = False,
) -> FeatureCache:
    """Run the frozen encoder over every image of ``dataset`` once.

    Args:
        model: A :class:`ptlib.models.Captioner` with a frozen encoder.
        dataset: The images to encode (any mode; captions are not used).
        device: Where the encoder runs.
        dtype: Storage dtype of the tokens (``torch.float16`` or ``torch.float32``).
        batch_size: Images per encoder batch.
        show_progress: Show a progress bar.

    Raises:
        ValueError: If the encoder is not frozen: its output would change during training.
    """
    if any(p.requires_grad for p in model.encoder.parameters()):
        raise ValueError(
            "feature caching needs a frozen encoder (model.freeze_encoder: true): a trained "
            "encoder's features change every step"
        )
    # A private generator: encoding draws nothing from the global RNG, so a cached run
    # keeps the random stream (dropout) of an uncached one.
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_captions,
                        generator=torch.Generator())
    tokens, cls_attention, positions, ids = [], [], [], []
    for batch in tqdm(loader, desc="encoding", disable=not show_progress):
        if len(batch) == 0 or batch.skipped:
            raise ValueError(f"cannot cache features: bad images {batch.skipped}")
        out = model.encode_images(batch.images.to(device))
        tokens.append(out.tokens.to("cpu", dtype))
        if out.cls_attention is not None:
            cls_attention.append(out.cls_attention.to("cpu", torch.float32))
        if out.kept_indices is not None:
            positions.append(out.kept_indices.cpu())
        ids.append(batch.image_ids)
    return FeatureCache(
        tokens=torch.cat(tokens),
        cls_attention=torch.cat(cls_attention) if cls_attention else None,
        positions=torch.cat(positions) if positions else None,
        image_ids=torch.cat(ids),
        config=cache_config(model, dataset, dtype),
    )


def cached_or_encode(
    model: nn.Module, dataset: CaptionDataset, path: str | Path, *, device: torch.device,
    dtype: torch.dtype = torch.float16, show_progress: bool = False,
) -> FeatureCache:
    """Load the cache at ``path`` if it was made with the same settings, else encode and save."""
    path = Path(path)
    wanted = cache_config(model, dataset, dtype)
    if path.is_file():
        cache = FeatureCache.load(path)
        if cache.config == wanted:
            return cache
    cache = encode_dataset(model, dataset, device=device, dtype=dtype, show_progress=show_progress)
    cache.save(path)
    return cache


class CachedFeatureDataset(Dataset):
    """A caption dataset whose images are replaced by their cached encoder features.

    Items are ``(features, tokens, image_id)``; the caption reference is chosen
    exactly as the wrapped dataset chooses it (``set_epoch`` is forwarded), so a
    cached run sees the same captions as an uncached one.
    """

    def __init__(self, dataset: CaptionDataset, cache: FeatureCache) -> None:
        ids = torch.tensor([r.image_id for r in dataset.records])
        if len(ids) != len(cache.image_ids) or not torch.equal(ids, cache.image_ids):
            raise ValueError(
                f"the feature cache ({len(cache.image_ids)} images) does not belong to dataset "
                f"{dataset.source} ({len(ids)} images); encode it again"
            )
        if dataset.vocab is None:
            raise ValueError("CachedFeatureDataset needs a dataset with a vocabulary")
        self.dataset, self.cache = dataset, cache

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.dataset.records[index]
        caption = record.captions[self.dataset.reference_index(index)]
        ids = self.dataset.vocab.encode(caption, max_len=self.dataset.max_len)
        item = {"features": self.cache.tokens[index], "tokens": torch.tensor(ids),
                "image_id": record.image_id}
        if self.cache.cls_attention is not None:
            item["cls_attention"] = self.cache.cls_attention[index]
        if self.cache.positions is not None:
            item["positions"] = self.cache.positions[index]
        return item


def collate_features(items: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack cached features and pad token ids like :func:`ptlib.data.collate_captions`."""
    lengths = [len(i["tokens"]) for i in items]
    tokens = torch.full((len(items), max(lengths)), PAD_ID, dtype=torch.long)
    for row, item in enumerate(items):
        tokens[row, : lengths[row]] = item["tokens"]
    images = {key: torch.stack([i[key] for i in items])
              for key in ("features", "cls_attention", "positions") if key in items[0]}
    return {"images": images, "tokens": tokens,
            "image_ids": torch.tensor([i["image_id"] for i in items])}


class FeatureCaptioner(nn.Module):
    """Runs a captioner from cached encoder features; checkpoints stay the captioner's.

    ``forward(images, tokens)`` takes the ``images`` dict of :func:`collate_features`,
    or a plain image tensor ``(B, 3, H, W)`` (validation batches), which runs the
    whole captioner.
    ``state_dict``/``load_state_dict`` are the wrapped captioner's, so a checkpoint
    trained from a cache loads into a plain :class:`~ptlib.models.Captioner`.
    """

    def __init__(self, captioner: nn.Module) -> None:
        super().__init__()
        self.captioner = captioner

    def forward(self, images: Mapping[str, Tensor] | Tensor, tokens: Tensor):
        if isinstance(images, Tensor):
            return self.captioner(images, tokens)
        features = images["features"]
        dtype = next(self.captioner.projection.parameters()).dtype
        return self.captioner.forward_features(
            features.to(dtype), tokens,
            cls_attention=images.get("cls_attention"), positions=images.get("positions"),
        )

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.captioner.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        return self.captioner.load_state_dict(state_dict, strict=strict, assign=assign)

    def generate(self, *args: Any, **kwargs: Any):
        return self.captioner.generate(*args, **kwargs)
