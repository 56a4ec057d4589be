"""``ptlib bench data``: shapes generation speed and DataLoader throughput.

Measures, side by side in one run:

* generation of the shapes dataset, images per second on one core, per image size;
* a full pass of a ``DataLoader`` over the training split (JPEG decode,
  transform, caption encoding, collate), images per second, with 0 and 2
  worker processes, per image size.

It prints a table and the ratios (2 workers vs 0, each size vs the first);
it never asserts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any


def loader_throughput(
    root: Path, img_size: int, num_workers: int, batch_size: int, passes: int = 1
) -> float:
    """Images per second of full passes over the training split of a shapes dataset."""
    import torch
    from torch.utils.data import DataLoader

    from ptlib.data.datasets import CaptionDataset, collate_captions
    from ptlib.data.shapes import shapes_paths
    from ptlib.data.vocab import Vocabulary

    image_dir, captions_json, _ = shapes_paths(root, "train")
    dataset = CaptionDataset(image_dir, captions_json, img_size=img_size)
    dataset.vocab = Vocabulary.build(dataset.all_captions(), min_freq=1)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=num_workers,
        collate_fn=collate_captions,
        generator=torch.Generator().manual_seed(0),
    )
    seen = 0
    start = time.perf_counter()
    for epoch in range(passes):
        dataset.set_epoch(epoch)
        for batch in loader:
            seen += len(batch)
    return seen / (time.perf_counter() - start)


def run_benchmark(
    sizes: tuple[int, ...] = (64, 128),
    workers: tuple[int, ...] = (0, 2),
    n_images: int = 1024,
    batch_size: int = 64,
    directory: Path | None = None,
) -> dict[str, Any]:
    """Measure generation and loading speed; returns the figures as a dict."""
    import torch

    from ptlib.data.shapes import ShapesConfig, generate_shapes_dataset

    torch.set_num_threads(1)
    results: dict[str, Any] = {"n_images": n_images, "batch_size": batch_size, "sizes": {}}
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        for size in sizes:
            config = ShapesConfig(
                img_size=size, n_train=n_images, n_val=0, n_test=0, n_compositional=0
            )
            summary = generate_shapes_dataset(Path(tmp) / f"s{size}", config)
            entry = {"generate_images_per_s": summary["images_per_second"], "loader": {}}
            for w in workers:
                entry["loader"][str(w)] = round(
                    loader_throughput(Path(tmp) / f"s{size}", size, w, batch_size), 1
                )
            results["sizes"][str(size)] = entry
    return results


def print_report(results: dict[str, Any]) -> None:
    """Print the figures and ratios as a table."""
    sizes = list(results["sizes"])
    workers = list(results["sizes"][sizes[0]]["loader"])
    print(f"shapes data benchmark: {results['n_images']} train images, "
          f"batch {results['batch_size']}, torch threads 1")
    header = f"{'size':>6} {'generate img/s':>15}" + "".join(
        f" {'loader w=' + w + ' img/s':>18}" for w in workers
    )
    print(header)
    for size in sizes:
        entry = results["sizes"][size]
        row = f"{size + 'px':>6} {entry['generate_images_per_s']:>15.0f}"
        row += "".join(f" {entry['loader'][w]:>18.0f}" for w in workers)
        print(row)
    print("ratios:")
    base = results["sizes"][sizes[0]]
    for size in sizes:
        entry = results["sizes"][size]
        loader = entry["loader"]
        if len(workers) > 1:
            print(f"  {size}px: loader {workers[-1]} workers / {workers[0]} workers = "
                  f"{loader[workers[-1]] / loader[workers[0]]:.2f}x")
        if size != sizes[0]:
            print(f"  {size}px / {sizes[0]}px: generation "
                  f"{entry['generate_images_per_s'] / base['generate_images_per_s']:.2f}x, "
                  f"loader (w={workers[0]}) {loader[workers[0]] / base['loader'][workers[0]]:.2f}x")


def _run(args: argparse.Namespace) -> int:
    results = run_benchmark(tuple(args.sizes), tuple(args.workers), args.n, args.batch_size)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_report(results)
    return 0


def add_parser(subparsers: Any) -> None:
    """Add ``ptlib bench data``."""
    parser = subparsers.add_parser(
        "data",
        help="shapes generation images/s and DataLoader images/s (0 vs 2 workers, 64 vs 128 px)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="image sides")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts")
    parser.add_argument("--n", type=int, default=1024, help="training images per size")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.set_defaults(func=_run)
