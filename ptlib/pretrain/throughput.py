"""How fast pretext training runs here: images per second per encoder, to size a budget.

``python -m ptlib.pretrain.throughput --profile cpu`` times a few pretext steps of
every encoder the profile pretrains (one batch drawn once, so drawing is timed
apart) and prints how many images fit in the profile's ``max_minutes``. Run it
on an otherwise idle machine: under load the numbers mean little.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import torch
from torch.utils.data import default_collate

from ptlib import course
from ptlib.pretrain.dataset import PretextDataset
from ptlib.pretrain.encoder import build_spec_encoder, encoder_spec
from ptlib.pretrain.heads import PretextHeads, pretext_loss


def pretext_throughput(spec: dict[str, Any], *, batch_size: int = 64, steps: int = 3,
                       max_objects: int = 4) -> dict[str, float]:
    """Time pretext training steps and image drawing for one encoder.

    Args:
        spec: From :func:`ptlib.pretrain.encoder.encoder_spec`.
        batch_size: Images per step.
        steps: Timed steps (after one untimed warm-up step).
        max_objects: At most this many objects per image.

    Returns:
        ``train_images_per_s`` (best step, wall clock), ``draw_images_per_s`` (one
        process), and ``combined_images_per_s``: both done in turn by one process,
        a lower bound for training with ``num_workers=0``.
    """
    encoder = build_spec_encoder(spec)
    heads = PretextHeads(encoder.width)
    data = PretextDataset(batch_size, img_size=spec["img_size"], grid=encoder.grid,
                          max_objects=max_objects)
    start = time.perf_counter()
    batch = default_collate([data[i] for i in range(batch_size)])
    draw = (time.perf_counter() - start) / batch_size
    optimizer = torch.optim.AdamW([*encoder.parameters(), *heads.parameters()], lr=1e-3)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss, _ = pretext_loss(heads(encoder(batch["images"]).tokens), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    train = min(times[1:]) / batch_size
    return {"train_images_per_s": round(1 / train, 1), "draw_images_per_s": round(1 / draw, 1),
            "combined_images_per_s": round(1 / (train + draw), 1)}


def main(argv: list[str] | None = None) -> int:
    """Print the throughput of every encoder a profile pretrains, and the images that fit."""
    from ptlib.pretrain.job import pretrain_config, pretrain_models, run_sections

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    profile = course.get_profile(args.profile)
    report: dict[str, Any] = {"load_average": os.getloadavg()}
    for model in pretrain_models(profile):
        cfg = pretrain_config(profile)
        model_section, _ = run_sections(profile, model)
        speed = pretext_throughput(encoder_spec(model_section), batch_size=cfg.batch_size,
                                   steps=args.steps)
        minutes = cfg.max_minutes or 60.0
        speed["images_in_budget"] = int(speed["combined_images_per_s"] * 60 * minutes)
        speed["planned_images"] = cfg.images * cfg.epochs
        report[model.name] = speed
        print(model.name, speed, flush=True)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
