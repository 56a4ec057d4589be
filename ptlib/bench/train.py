"""``ptlib bench train``: training throughput with and without the frozen-feature cache.

For each run config (the shapes ViT and ConvNeXt by default) with a frozen
encoder, it measures, side by side in one run:

* images per second of training steps that run the frozen encoder every step;
* images per second of training steps that read the encoder tokens from the cache;
* the one-off cost of encoding the images into the cache.

It prints the table and the speed-up (cache / no cache); it never asserts.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from typing import Any

import torch
from torch.utils.data import DataLoader

from ptlib import runtime
from ptlib.data.datasets import collate_captions
from ptlib.train.config import TrainConfig
from ptlib.train.features import (
    CachedFeatureDataset,
    FeatureCaptioner,
    collate_features,
    encode_dataset,
)
from ptlib.train.run import build_model, build_run_data
from ptlib.train.runconfig import load_run_config
from ptlib.train.step import caption_loss_sum
from ptlib.train.trainer import build_optimizer


def _images_per_second(model, loader, optimizer, steps: int, warmup: int = 2) -> float:
    """Time ``steps`` optimizer steps (after ``warmup`` untimed ones)."""
    batches = itertools.cycle(loader)
    seen, start = 0, 0.0
    for step in range(warmup + steps):
        if step == warmup:
            seen, start = 0, time.perf_counter()
        batch = next(batches)
        images = batch["images"] if isinstance(batch, dict) else batch.images
        tokens = batch["tokens"] if isinstance(batch, dict) else batch.tokens
        out = model(images, tokens[:, :-1])
        loss_sum, n_tokens = caption_loss_sum(out.logits, tokens[:, 1:])
        (loss_sum / n_tokens).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seen += tokens.shape[0]
    return seen / (time.perf_counter() - start)


def bench_config(
    name: str, n_images: int, steps: int, batch_size: int, overrides: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Measure one run config with its encoder frozen (``overrides`` as ``--set``)."""
    config = load_run_config(name, [*overrides, "model.freeze_encoder=true"])
    runtime.seed_everything(0)
    data = build_run_data(config["data"], splits=("train",))
    dataset = data.datasets["train"]
    model = build_model(config["model"], data.vocab)
    model.train()
    cfg = TrainConfig.from_dict({**config["train"], "batch_size": batch_size})
    dataset.records = dataset.records[:n_images]  # the same images for both settings

    plain_loader = DataLoader(dataset, batch_size=batch_size, shuffle=True,
                              collate_fn=collate_captions)
    plain = _images_per_second(model, plain_loader, build_optimizer(model, cfg), steps)

    start = time.perf_counter()
    cache = encode_dataset(model, dataset, device=torch.device("cpu"))
    encode_seconds = time.perf_counter() - start
    cached_loader = DataLoader(CachedFeatureDataset(dataset, cache), batch_size=batch_size,
                               shuffle=True, collate_fn=collate_features)
    wrapped = FeatureCaptioner(model)
    cached = _images_per_second(wrapped, cached_loader, build_optimizer(model, cfg), steps)
    return {
        "config": name,
        "encoder": config["model"]["encoder"] + (
            f"/s{config['model']['feature_stride']}" if config["model"].get("feature_stride") else ""),
        "img_size": config["model"]["img_size"],
        "images": len(dataset),
        "no_cache_images_per_s": round(plain, 1),
        "cache_images_per_s": round(cached, 1),
        "speedup": round(cached / plain, 2),
        "encode_seconds": round(encode_seconds, 2),
        "cache_mb": round(cache.nbytes / 2**20, 2),
    }


def run(args: argparse.Namespace) -> int:
    rows = [bench_config(name, args.images, args.steps, args.batch_size, tuple(args.set or ()))
            for name in args.configs]
    width = max(len("config"), *(len(r["config"]) for r in rows)) + 2
    header = (f"{'config':<{width}}{'encoder':<24}{'no cache img/s':>16}{'cache img/s':>14}"
              f"{'speed-up':>10}{'encode s':>10}{'cache MB':>10}")
    print(header)
    for r in rows:
        print(f"{r['config']:<{width}}{r['encoder']:<24}{r['no_cache_images_per_s']:>16.1f}"
              f"{r['cache_images_per_s']:>14.1f}{r['speedup']:>9.1f}x{r['encode_seconds']:>10.1f}"
              f"{r['cache_mb']:>10.1f}")
    print(f"(frozen encoders, batch {args.batch_size}, {args.steps} timed steps each, "
          f"torch threads {torch.get_num_threads()}, device cpu)")
    if args.json:
        print(json.dumps(rows))
    return 0


def add_parser(subparsers: Any) -> None:
    """Add ``ptlib bench train``."""
    parser = subparsers.add_parser(
        "train",
        help="training images/s with and without the frozen-feature cache",
        description="Train steps with a frozen encoder, run every step vs read from the feature "
        "cache, side by side; prints images/s and the speed-up.",
    )
    parser.add_argument("--configs", nargs="+", default=["shapes_vit", "shapes_convnext"],
                        help="run configs to measure (default: shapes_vit shapes_convnext)")
    parser.add_argument("--images", type=int, default=512, help="images used (default 512)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per setting (10)")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size (64)")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override a config value for every config, e.g. "
                        "--set model.encoder=vit_base_patch16_224 (repeatable)")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    parser.set_defaults(func=run)
