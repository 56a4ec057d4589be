"""``ptlib bench generate``: captions per second with and without the KV cache.

Measures, side by side in one run, for the paper-size captioner (Table 1:
d_model 512, 2 + 2 layers, 4 heads, ff 2048, vocabulary 2033) at several prune
ratios and both placements (``memory``: before cross-attention, the paper's;
``encoder``: inside the ViT blocks, EViT-style):

* the encoder + projection + pruning time per batch;
* greedy generation of ``max_len`` tokens per caption (no early stop, so every
  setting does the same number of steps) with the KV cache and with full
  recomputation of the prefix at every step;
* captions per second for generation alone and end to end.

Cached and recomputed generation are timed alternately, ``repeats`` times each,
and the fastest run of each counts, so a busy machine slows both alike.

It prints a table and the ratios (cache vs recomputation, each ratio vs ratio 0);
it never asserts. Weights are random: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

PAPER_RATIOS: tuple[float, ...] = (0.0, 0.3, 0.5, 0.7)


def _best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The fastest of ``repeats`` runs of ``fn`` (seconds) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def run_benchmark(
    encoder: str = "vit_base_patch16_224",
    img_size: int = 224,
    batch_size: int = 32,
    max_len: int = 20,
    ratios: Sequence[float] = PAPER_RATIOS,
    placements: Sequence[str] = ("memory", "encoder"),
    method: str = "cls_attention",
    repeats: int = 3,
    encode_repeats: int = 1,
    threads: int | None = None,
) -> dict[str, Any]:
    """Time encoding and generation for every (placement, ratio); returns the figures.

    Generation is timed ``repeats`` times and encoding ``encode_repeats`` times
    (the best run counts); encoding a batch of ViT-B/16 images dominates the
    benchmark's own run time on a CPU.
    """
    import torch

    from ptlib.models import Captioner, config_from_run, greedy_decode, reprune

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    base = config_from_run("paper_table1", pretrained=False).to_dict()
    images = torch.randn(batch_size, 3, img_size, img_size)
    unpruned = Captioner.from_config({
        **base,
        "encoder": encoder,
        "img_size": img_size,
        "max_len": max_len + 1,
        "prune_ratio": 0.0,
        "prune_method": "none",
    }).eval()
    rows = []
    for placement in placements:
        for ratio in ratios:
            model = reprune(unpruned, ratio, method, placement)
            with torch.no_grad():
                model.encode(images[:2])  # warm-up
                encode_s, encoded = _best_time(lambda m=model: m.encode(images), encode_repeats)
                memory = encoded.tokens

                def generate(use_cache: bool, m: Captioner = model, mem: Any = memory) -> None:
                    greedy_decode(m.decoder, mem, max_len=max_len, eos_id=None, use_cache=use_cache)

                generate(True)  # warm-up
                cached_s = recompute_s = float("inf")
                for _ in range(repeats):  # alternate, so both see the same machine load
                    cached_s = min(cached_s, _best_time(lambda: generate(True), 1)[0])
                    recompute_s = min(recompute_s, _best_time(lambda: generate(False), 1)[0])
            rows.append(
                {
                    "placement": placement,
                    "ratio": ratio,
                    "tokens": int(memory.shape[1]),
                    "encode_ms": 1000 * encode_s,
                    "generate_cached_caps_per_s": batch_size / cached_s,
                    "generate_recompute_caps_per_s": batch_size / recompute_s,
                    "end_to_end_cached_caps_per_s": batch_size / (encode_s + cached_s),
                    "end_to_end_recompute_caps_per_s": batch_size / (encode_s + recompute_s),
                }
            )
    return {
        "encoder": encoder,
        "img_size": img_size,
        "batch_size": batch_size,
        "max_len": max_len,
        "method": method,
        "threads": torch.get_num_threads(),
        "rows": rows,
    }


def print_report(results: dict[str, Any]) -> None:
    """Print the table and the ratios."""
    print(
        f"generation benchmark: {results['encoder']} at {results['img_size']} px, "
        f"Table 1 decoder, batch {results['batch_size']}, {results['max_len']} tokens per "
        f"caption (greedy, no early stop), pruning method {results['method']}, "
        f"torch threads {results['threads']}"
    )
    header = (
        f"{'placement':>9} {'ratio':>5} {'tokens':>6} {'encode ms':>9} "
        f"{'gen cap/s cache':>15} {'gen cap/s recompute':>19} {'cache speedup':>13} "
        f"{'e2e cap/s cache':>15} {'e2e cap/s recompute':>19}"
    )
    print(header)
    for row in results["rows"]:
        speedup = row["generate_cached_caps_per_s"] / row["generate_recompute_caps_per_s"]
        print(
            f"{row['placement']:>9} {row['ratio']:>5.1f} {row['tokens']:>6d} "
            f"{row['encode_ms']:>9.0f} {row['generate_cached_caps_per_s']:>15.1f} "
            f"{row['generate_recompute_caps_per_s']:>19.1f} {speedup:>12.2f}x "
            f"{row['end_to_end_cached_caps_per_s']:>15.1f} "
            f"{row['end_to_end_recompute_caps_per_s']:>19.1f}"
        )
    print("ratios against ratio 0 of the same placement (cached generation, encode time):")
    for placement in dict.fromkeys(r["placement"] for r in results["rows"]):
        rows = [r for r in results["rows"] if r["placement"] == placement]
        first = rows[0]
        for row in rows[1:]:
            print(
                f"  {placement} ratio {row['ratio']:.1f} / {first['ratio']:.1f}: "
                f"generation {row['generate_cached_caps_per_s'] / first['generate_cached_caps_per_s']:.2f}x, "
                f"encode time {row['encode_ms'] / first['encode_ms']:.2f}x"
            )
    speedups = [
        r["generate_cached_caps_per_s"] / r["generate_recompute_caps_per_s"] for r in results["rows"]
    ]
    print(f"KV cache speedup over recomputation: min {min(speedups):.2f}x, max {max(speedups):.2f}x")


def _run(args: argparse.Namespace) -> int:
    results = run_benchmark(
        encoder=args.encoder,
        img_size=args.img_size,
        batch_size=args.batch_size,
        max_len=args.max_len,
        ratios=tuple(args.ratios),
        placements=tuple(args.placements),
        method=args.method,
        repeats=args.repeats,
        encode_repeats=args.encode_repeats,
        threads=args.threads,
    )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_report(results)
    return 0


def add_parser(subparsers: Any) -> None:
    """Add ``ptlib bench generate``."""
    parser = subparsers.add_parser(
        "generate",
        help="captions per second with and without the KV cache, per prune ratio and placement",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--encoder", default="vit_base_patch16_224", help="timm ViT name")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=20, help="tokens generated per caption")
    parser.add_argument("--ratios", type=float, nargs="+", default=list(PAPER_RATIOS))
    parser.add_argument(
        "--placements", nargs="+", default=["memory", "encoder"], choices=["memory", "encoder"]
    )
    parser.add_argument(
        "--method", default="cls_attention", help="pruning method (one that works in both places)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed generation runs; the best is kept"
    )
    parser.add_argument(
        "--encode-repeats", type=int, default=1, help="timed encoder runs; the best is kept"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.set_defaults(func=_run)
