"""Printing the efficiency tables for the command line (``ptlib bench efficiency``).

The tables come from :func:`ptlib.bench.efficiency.run_efficiency`; these functions
only lay them out as text. The chapter (notebook 09) shows the same tables with
``ptlib.viz.table`` and writes its conclusions in Markdown.
"""

from __future__ import annotations

import sys
from typing import Any

from ptlib.bench import efficiency
from ptlib.bench.batch_capacity import GIB


def print_flops_table(flops: dict[str, Any], mode: str = "generate", file: Any = None) -> None:
    """Print the FLOPs table (GFLOPs per caption per category) for one counting ``mode``."""
    out = file or sys.stdout
    categories = [c for c in flops["categories"] if c != "other"]
    how = "greedy with KV cache" if mode == "generate" else "one teacher-forced forward"
    print(
        f"FLOPs per caption (GFLOPs, 1 image, {flops['caption_tokens']} tokens, {how}; "
        "'vs 0' = total / total at ratio 0)",
        file=out,
    )
    header = f"{'setup':<18} {'place':>7} {'ratio':>5} {'tokens':>6} " + " ".join(
        f"{c[:10]:>10}" for c in categories
    )
    print(header + f" {'total':>10} {'vs 0':>6}", file=out)
    rows = [r for r in flops["rows"] if r["mode"] == mode]
    baselines = {r["setup"]: r["total"] for r in rows if r["ratio"] == 0}
    for row in rows:
        cells = " ".join(f"{row[c] / 1e9:>10.4f}" for c in categories)
        print(
            f"{row['setup']:<18} {row['placement']:>7} {row['ratio']:>5.1f} "
            f"{row['memory_tokens']:>6d} {cells} {row['total'] / 1e9:>10.4f} "
            f"{row['total'] / baselines[row['setup']]:>6.3f}",
            file=out,
        )


def print_latency_table(latency: dict[str, Any], file: Any = None) -> None:
    """Print the CPU latency table with each time as a ratio to no pruning."""
    out = file or sys.stdout
    print(
        f"CPU captioning latency (batch {latency['batch_size']}, {latency['caption_tokens']} "
        f"tokens, greedy, {latency['repeats']} interleaved rounds, {latency['threads']} threads; "
        "time vs no pruning for the median and for the fastest round)",
        file=out,
    )
    print(
        f"{'setup':<18} {'place':>7} {'ratio':>5} {'tokens':>6} {'ms/batch':>9} "
        f"{'img/s':>8} {'median vs 0':>11} {'fastest vs 0':>12}",
        file=out,
    )
    for row in latency["rows"]:
        print(
            f"{row['setup']:<18} {row['placement']:>7} {row['ratio']:>5.1f} {row['tokens']:>6d} "
            f"{1000 * row['median_s']:>9.1f} {row['images_per_s']:>8.1f} "
            f"{row['time_ratio']:>11.3f} {row['min_time_ratio']:>12.3f}",
            file=out,
        )


def print_batch_capacity_table(capacity: dict[str, Any], file: Any = None) -> None:
    """Print saved bytes per image, static state and implied max batch per configuration."""
    out = file or sys.stdout
    print(
        f"Batch capacity (saved for backward per image: slope between batches "
        f"{capacity['batch_sizes']}; static = params + grads + AdamW + batch-independent saved "
        f"tensors; max batch on {capacity['card_gib']:g} GiB minus {capacity['workspace_gib']:g} GiB "
        "workspace)",
        file=out,
    )
    print(
        f"{'setup':<18} {'encoder':>10} {'place':>7} {'ratio':>5} {'dtype':>5} "
        f"{'MiB/image':>9} {'static GiB':>10} {'max batch':>9}",
        file=out,
    )
    for row in capacity["rows"]:
        static = (row["static_bytes"] + row["fixed_saved_bytes"]) / GIB
        print(
            f"{row['setup']:<18} {row['encoder_training']:>10} {row['placement']:>7} "
            f"{row['ratio']:>5.1f} {row['dtype']:>5} {row['per_image_bytes'] / 2**20:>9.2f} "
            f"{static:>10.2f} {row['max_batch']:>9d}",
            file=out,
        )


def print_report(results: dict[str, Any], file: Any = None) -> None:
    """Print the three tables and the max-batch gains beside the paper's claim."""
    out = file or sys.stdout
    print_flops_table(results["flops"], "generate", out)
    print(file=out)
    print_latency_table(results["latency"], out)
    print(file=out)
    print_batch_capacity_table(results["batch_capacity"], out)
    verdict = efficiency.batch_capacity_verdict(results["batch_capacity"])
    best, best_any = verdict["best"], verdict["best_any"]
    print(
        f"\nlargest batch at prune ratio {verdict['ratio']:g} vs 0:\n"
        f"  memory placement (the paper's): {best['max_batch_gain']:.2f}x "
        f"({best['setup']}, encoder {best['encoder_training']}, {best['dtype']}: "
        f"{best['max_batch'][0]} -> {best['max_batch'][1]})\n"
        f"  any placement: {best_any['max_batch_gain']:.2f}x ({best_any['setup']}, "
        f"{best_any['placement']}, encoder {best_any['encoder_training']}, {best_any['dtype']})\n"
        f"  paper: {verdict['paper_batch'][0]} -> {verdict['paper_batch'][1]} "
        f"({verdict['paper_gain']:.2f}x); bound 1/(1-{verdict['ratio']:g}) = "
        f"{verdict['bound']:.2f}x",
        file=out,
    )
