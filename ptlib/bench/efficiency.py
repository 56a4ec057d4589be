"""``ptlib bench efficiency``: where compute and training bytes go, and what pruning saves.

Three tables, measured side by side in one run for every prune ratio and
placement (``memory``: after the encoder, before cross-attention, the paper's;
``encoder``: inside the ViT blocks, EViT-style, ViT only):

* FLOPs per caption, split into encoder, projection (+ visual Transformer
  layers), pruning, decoder self-attention, cross-attention, FFN and output
  head (:mod:`ptlib.bench.flops`), for greedy KV-cached generation of a fixed
  number of tokens and for one teacher-forced forward pass.
* CPU captioning latency of a batch, as ratios to no pruning
  (:mod:`ptlib.bench.latency`).
* Batch capacity without a GPU: bytes saved for backward per image, plus
  parameters, gradients and AdamW state, with the encoder fine-tuned and
  frozen, at prune 0 and 0.3, and the largest batch this implies on a 24 GiB
  card (:mod:`ptlib.bench.batch_capacity`). :func:`batch_capacity_verdict` returns the gain
  beside the paper's claim (batch 48 -> 128 with 30% pruning on an RTX 4090) and
  with the bound ``1 / (1 - 0.3)`` that pruning could give if every activation
  scaled with the kept tokens.

What is measured depends on the profile (``PTLIB_PROFILE``): ``ci`` uses the
``shapes_*_ci`` captioners and finishes in seconds; ``cpu`` and ``gpu`` add the
paper's setup (ViT-B/16 and ConvNeXt-T at 224 px, Table 1 decoder, run configs
``coco_vit_b16`` / ``coco_convnext_t``, random weights). Weights never matter
here: FLOPs, saved bytes and (with a fixed caption length) time do not depend
on them. Benchmarks measure; they never assert.

This module measures and returns plain data; :mod:`ptlib.bench.efficiency_report`
prints the tables and :mod:`ptlib.bench.efficiency_command` is the command line.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any

import torch

from ptlib import course, runtime
from ptlib.bench.batch_capacity import GIB, implied_max_batch, training_bytes
from ptlib.bench.flops import FLOP_CATEGORIES, caption_flops
from ptlib.bench.latency import caption_latency

PAPER_RUNS: tuple[str, ...] = ("coco_vit_b16", "coco_convnext_t")
"""Run configs of the paper's setup (their model sections, with ``pretrained=false``)."""

def shapes_runs(profile: course.Profile) -> tuple[str, ...]:
    """Run configs of the shapes captioners of a profile (:func:`ptlib.course.run_config_names`)."""
    return tuple(course.run_config_names(profile).values())

PAPER_PRUNE_RATIO: float = 0.3
"""The paper's prune ratio (Table 1), the one its batch-size claim is about."""

PAPER_BATCH_CLAIM: tuple[int, int] = (48, 128)
"""The paper's largest batch on an RTX 4090 without pruning, and with 30% pruning."""

CARD_GIB: float = 24.0
"""Memory of the card the paper used (RTX 4090), GiB."""

WORKSPACE_GIB: float = 1.0
"""Set aside on the card for the CUDA context, library workspaces and allocator slack (assumed)."""

AMP_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}
"""Precisions the batch-capacity table can be measured in."""


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------


def load_setup(run_name: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """One captioner setup from a run config: its model section and sizes, as plain data.

    ``vocab_size`` is the run config's vocabulary cap (``data.vocab_max_size``, 2033
    for the paper): no dataset is read. The shapes vocabulary built from data is
    smaller, so for the shapes captioners the output head's cost is an upper bound.

    Raises:
        KeyError: If the run config lacks ``data.vocab_max_size``.
    """
    from ptlib.train import load_run_config

    config = load_run_config(run_name, [*overrides, "model.pretrained=false"])
    model = dict(config["model"])
    data = config["data"]
    if "vocab_max_size" not in data:
        raise KeyError(
            f"run config {run_name!r}: data.vocab_max_size is missing (the vocabulary cap)"
        )
    return {
        "name": run_name,
        "model": model,
        "vocab_size": int(data["vocab_max_size"]),
        "img_size": int(model.get("img_size", data.get("img_size"))),
        "caption_len": int(model.get("max_len", data.get("max_len"))),
    }


def efficiency_config(profile: course.Profile, *, paper_latency: bool = False) -> dict[str, Any]:
    """Everything :func:`run_efficiency` measures for ``profile``, as plain data.

    The run configs' model sections are read now and included, so a cached
    result (``runcache.run_or_load``) is reused only while they are unchanged.

    Args:
        profile: From :func:`ptlib.course.get_profile`.
        paper_latency: Time the paper's 224-px captioners instead of the shapes
            ones (slow on a CPU: seconds per batch).
    """
    ratios = [float(r) for r in profile.section("inference")["prune_ratios"]]
    small = profile.name == "ci"
    shapes = [load_setup(name, course.run_overrides(profile)) for name in shapes_runs(profile)]
    paper = [] if small else [load_setup(name) for name in PAPER_RUNS]
    return {
        "profile": profile.name,
        "seed": profile.seed,
        "ratios": ratios,
        "flops": {
            "setups": shapes + paper,
            "caption_tokens": 20,
            "device": "cpu" if small else "meta",
        },
        "latency": {
            "setups": paper if paper_latency and paper else shapes,
            "batch_size": 2 if small else 8,
            "caption_tokens": 5 if small else 20,
            "repeats": 3 if small else 7,
        },
        "batch_capacity": {
            "setups": shapes if small else paper,
            "ratios": [0.0, PAPER_PRUNE_RATIO],
            "batch_sizes": [1, 2],
            "dtypes": ["fp32"] if small else ["fp32", "bf16"],
            "card_gib": CARD_GIB,
            "workspace_gib": WORKSPACE_GIB,
        },
    }


# ---------------------------------------------------------------------------
# Building the variants
# ---------------------------------------------------------------------------


def build_variant(
    setup: dict[str, Any], placement: str, ratio: float, *, freeze_encoder: bool | None = None
) -> torch.nn.Module:
    """The setup's captioner pruned at ``placement`` with ``ratio`` (random weights).

    Args:
        setup: An entry of ``efficiency_config(...)[...]["setups"]``.
        placement: ``"memory"`` or ``"encoder"``.
        ratio: Fraction of visual tokens dropped.
        freeze_encoder: Override the setup's ``freeze_encoder``.
    """
    from ptlib.models import Captioner

    values = {
        **setup["model"],
        "vocab_size": setup["vocab_size"],
        "prune_ratio": ratio,
        "prune_at": placement,
        "pretrained": False,
    }
    if ratio == 0:
        values["prune_method"] = "none"
    if freeze_encoder is not None:
        values["freeze_encoder"] = freeze_encoder
    return Captioner.from_config(values)


@cache
def _encoder_is_vit(encoder: str, img_size: int) -> bool:
    from ptlib.models import build_encoder

    return build_encoder(encoder, img_size=img_size).kind == "vit"


def _is_vit(setup: dict[str, Any]) -> bool:
    return _encoder_is_vit(setup["model"]["encoder"], setup["img_size"])


def variants(setup: dict[str, Any], ratios: Sequence[float]) -> Iterator[tuple[str, float]]:
    """``(placement, ratio)`` pairs to measure: memory at every ratio, encoder (ViT only) above 0.

    Ratio 0 is the same model in both placements, so it is measured once (``memory``).
    """
    for ratio in ratios:
        yield "memory", float(ratio)
    if _is_vit(setup):
        for ratio in ratios:
            if ratio > 0:
                yield "encoder", float(ratio)


def _say(progress: bool, message: str) -> None:
    if progress:
        print(f"[efficiency {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# The three measurements
# ---------------------------------------------------------------------------


def flops_table(config: dict[str, Any], *, progress: bool = False) -> dict[str, Any]:
    """FLOPs per caption per category for every setup, placement and ratio (one image).

    ``config["flops"]["device"]`` is where the captioners are built: ``"meta"``
    computes only the shapes of every result, which is all a FLOP formula needs
    (much faster for the paper's models; for tiny models the Python shape
    functions cost more than computing).
    """
    section = config["flops"]
    tokens = int(section["caption_tokens"])
    rows = []
    for setup in section["setups"]:
        for placement, ratio in variants(setup, config["ratios"]):
            _say(progress, f"flops {setup['name']} {placement} {ratio}")
            with torch.device(section.get("device", "cpu")):
                model = build_variant(setup, placement, ratio)
            for mode in ("generate", "teacher_forced"):
                counts = caption_flops(model, setup["img_size"], tokens, mode=mode)
                rows.append(
                    {
                        "setup": setup["name"],
                        "encoder": setup["model"]["encoder"],
                        "img_size": setup["img_size"],
                        "placement": placement,
                        "ratio": ratio,
                        "mode": mode,
                        "encoder_tokens": model.encoder.num_tokens,
                        "memory_tokens": model.num_memory_tokens,
                        **counts,
                        "total": sum(counts.values()),
                    }
                )
    return {"caption_tokens": tokens, "categories": list(FLOP_CATEGORIES), "rows": rows}


def latency_table(config: dict[str, Any], *, progress: bool = False) -> dict[str, Any]:
    """CPU captioning time per batch for every setup, placement and ratio, interleaved."""
    section = config["latency"]
    rows = []
    for setup in section["setups"]:
        _say(progress, f"latency {setup['name']}")
        models = {
            (placement, ratio): build_variant(setup, placement, ratio)
            for placement, ratio in variants(setup, config["ratios"])
        }
        labelled = {f"{p}/{r}": m for (p, r), m in models.items()}
        with torch.no_grad():
            timed = caption_latency(
                labelled,
                setup["img_size"],
                batch_size=int(section["batch_size"]),
                caption_tokens=int(section["caption_tokens"]),
                repeats=int(section["repeats"]),
            )
        baseline = timed.get("memory/0.0")
        for (placement, ratio), label in zip(models, labelled, strict=True):
            row = {"setup": setup["name"], "placement": placement, "ratio": ratio, **timed[label]}
            row["time_ratio"] = row["median_s"] / baseline["median_s"] if baseline else math.nan
            row["min_time_ratio"] = row["min_s"] / baseline["min_s"] if baseline else math.nan
            rows.append(row)
    return {
        "batch_size": int(section["batch_size"]),
        "caption_tokens": int(section["caption_tokens"]),
        "repeats": int(section["repeats"]),
        "threads": torch.get_num_threads(),
        "rows": rows,
    }


def batch_capacity_table(config: dict[str, Any], *, progress: bool = False) -> dict[str, Any]:
    """Training bytes per image and implied max batch, encoder fine-tuned and frozen."""
    section = config["batch_capacity"]
    card = float(section["card_gib"]) * GIB
    workspace = float(section["workspace_gib"]) * GIB
    rows = []
    for setup in section["setups"]:
        for frozen in (False, True):
            for placement, ratio in variants(setup, section["ratios"]):
                model = build_variant(setup, placement, ratio, freeze_encoder=frozen)
                for dtype_name in section["dtypes"]:
                    _say(
                        progress,
                        f"batch capacity {setup['name']} {'frozen' if frozen else 'fine-tuned'} "
                        f"{placement} {ratio} {dtype_name}",
                    )
                    measured = training_bytes(
                        model,
                        setup["img_size"],
                        setup["caption_len"],
                        batch_sizes=section["batch_sizes"],
                        amp_dtype=AMP_DTYPES[dtype_name],
                    )
                    rows.append(
                        {
                            "setup": setup["name"],
                            "encoder": setup["model"]["encoder"],
                            "encoder_training": "frozen" if frozen else "fine-tuned",
                            "placement": placement,
                            "ratio": ratio,
                            "dtype": dtype_name,
                            "memory_tokens": model.num_memory_tokens,
                            "caption_len": setup["caption_len"],
                            **measured,
                            "max_batch": implied_max_batch(measured, card, workspace),
                        }
                    )
    return {
        "card_gib": section["card_gib"],
        "workspace_gib": section["workspace_gib"],
        "batch_sizes": list(section["batch_sizes"]),
        "rows": rows,
    }


def run_efficiency(config: dict[str, Any], *, progress: bool = True) -> dict[str, Any]:
    """Measure all three tables for a config from :func:`efficiency_config` (JSON-ready)."""
    runtime.seed_everything(int(config["seed"]))
    return {
        "flops": flops_table(config, progress=progress),
        "latency": latency_table(config, progress=progress),
        "batch_capacity": batch_capacity_table(config, progress=progress),
    }


def efficiency_tables(
    profile: course.Profile | None = None, *, paper_latency: bool = False, progress: bool = True
) -> dict[str, Any]:
    """All three tables for a profile (default: the active one), computed now.

    Use ``runcache.run_or_load(f"{profile.name}/efficiency", efficiency_config(profile),
    lambda: run_efficiency(config))`` to reuse a stored result.
    """
    profile = profile or course.get_profile()
    return run_efficiency(
        efficiency_config(profile, paper_latency=paper_latency), progress=progress
    )


# ---------------------------------------------------------------------------
# Reading the tables
# ---------------------------------------------------------------------------


def batch_capacity_verdict(
    capacity: dict[str, Any], ratio: float = PAPER_PRUNE_RATIO
) -> dict[str, Any]:
    """Compare the measured max-batch gain from pruning with the paper's claim and the bound.

    For every (setup, encoder training, dtype) with memory-placement rows at
    ratio 0 and ``ratio``: the per-image bytes ratio and the implied max-batch
    ratio. The bound: if *every* saved activation scaled with the kept visual
    tokens, per-image bytes would scale by ``1 - ratio``, so the batch could
    grow at most ``1 / (1 - ratio)``; pruning after the encoder touches only the
    decoder's cross-attention inputs, so it gets far less.

    Args:
        capacity: The ``"batch_capacity"`` table of :func:`run_efficiency`.
        ratio: The prune ratio to compare with no pruning.

    Returns:
        Numbers only (chapter 9 writes the verdict in its Markdown), a dict with
        ``ratio`` (the prune ratio compared with 0); ``comparisons``, one dict
        per (setup, encoder training, dtype, placement) with ``per_image_ratio``
        (pruned / unpruned bytes per image), ``max_batch`` (``[unpruned,
        pruned]``) and ``max_batch_gain`` (pruned / unpruned); ``n_settings`` and
        ``per_image_ratio_range`` (min, max) over the memory-placement
        comparisons (the paper's placement); ``best``, the memory-placement
        comparison with the largest gain, and ``best_any``, the largest over both
        placements; ``paper_batch`` (48, 128) and ``paper_gain`` (128 / 48);
        ``bound`` = ``1 / (1 - ratio)``, the gain if every saved activation shrank
        with the kept tokens; ``supports_claim`` (``best`` reaches
        ``paper_gain``) and ``best_any_above_bound`` (``best_any`` exceeds
        ``bound``).

    Raises:
        ValueError: If the table has no pair of rows to compare.
    """
    rows = capacity["rows"]

    def find(row: dict[str, Any], placement: str, r: float) -> dict[str, Any] | None:
        for other in rows:
            if (
                other["setup"] == row["setup"]
                and other["encoder_training"] == row["encoder_training"]
                and other["dtype"] == row["dtype"]
                and other["placement"] == placement
                and math.isclose(other["ratio"], r)
            ):
                return other
        return None

    comparisons = []
    for base in rows:
        if base["placement"] != "memory" or base["ratio"] != 0:
            continue
        for placement in ("memory", "encoder"):
            pruned = find(base, placement, ratio)
            if pruned is None:
                continue
            comparisons.append(
                {
                    "setup": base["setup"],
                    "encoder_training": base["encoder_training"],
                    "dtype": base["dtype"],
                    "placement": placement,
                    "per_image_ratio": pruned["per_image_bytes"] / base["per_image_bytes"],
                    "max_batch": [base["max_batch"], pruned["max_batch"]],
                    "max_batch_gain": pruned["max_batch"] / max(base["max_batch"], 1),
                }
            )
    paper_style = [c for c in comparisons if c["placement"] == "memory"]
    if not paper_style:
        raise ValueError(
            f"batch-capacity table has no rows at prune ratio 0 and {ratio} to compare "
            "(measure with batch_capacity.ratios including both)"
        )
    paper_gain = PAPER_BATCH_CLAIM[1] / PAPER_BATCH_CLAIM[0]
    bound = 1.0 / (1.0 - ratio)
    best = max(paper_style, key=lambda c: c["max_batch_gain"])
    best_any = max(comparisons, key=lambda c: c["max_batch_gain"])
    per_image = [c["per_image_ratio"] for c in paper_style]
    return {
        "ratio": ratio,
        "comparisons": comparisons,
        "n_settings": len(paper_style),
        "per_image_ratio_range": (min(per_image), max(per_image)),
        "best": best,
        "best_any": best_any,
        "paper_batch": PAPER_BATCH_CLAIM,
        "paper_gain": paper_gain,
        "bound": bound,
        "supports_claim": best["max_batch_gain"] >= paper_gain,
        "best_any_above_bound": best_any["max_batch_gain"] > bound,
    }
