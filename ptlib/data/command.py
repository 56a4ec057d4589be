"""``ptlib data shapes`` (generate the embedded dataset) and ``ptlib data coco --check``."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any


def _shapes(args: argparse.Namespace) -> int:
    from ptlib import course
    from ptlib.data.shapes import ShapesConfig, ensure_shapes_dataset, generate_shapes_dataset

    profile = course.get_profile(args.profile)
    section = profile.section("data")
    if section.get("dataset", "shapes") != "shapes":
        section = {}  # a profile section without shapes: start from the generator defaults
    config = ShapesConfig.from_section(section)
    overrides = {
        f.name: getattr(args, f.name) for f in fields(ShapesConfig) if getattr(args, f.name, None)
        is not None
    }
    config = ShapesConfig(**{**asdict(config), **overrides})
    if args.out is None:
        if overrides:
            raise ValueError("without --out only the profile's own dataset is made; add --out DIR")
        root = ensure_shapes_dataset(profile)
        print(f"shapes dataset of profile {profile.name}: {root}")
        return 0
    from ptlib.errors import check_output_dir

    check_output_dir(args.out, "--out")
    summary = generate_shapes_dataset(Path(args.out), config, verbose=not args.quiet)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"wrote {summary['images']} images to {summary['root']} in {summary['seconds']:.1f} s "
            f"({summary['images_per_second']:.0f} images/s on one core)"
        )
    return 0


def _coco(args: argparse.Namespace) -> int:
    from ptlib import course
    from ptlib.data.coco import check_coco

    root = Path(args.root) if args.root else course.data_dir(create=False) / "coco"
    if not args.check:
        print("nothing to do: add --check to list which COCO files are present or missing")
        return 2
    checks = check_coco(root, year=args.year, karpathy=not args.no_karpathy,
                        count_karpathy=args.count)
    print(f"COCO {args.year} caption files under {root}:")
    for check in checks:
        print(check.message())
    missing = [c for c in checks if not c.present]
    if missing:
        print(f"{len(missing)} of {len(checks)} missing; ptlib never downloads them for you.")
        return 1
    print("all present")
    return 0


def add_parser(subparsers: Any) -> None:
    """Add ``ptlib data`` with its ``shapes`` and ``coco`` subcommands."""
    parser = subparsers.add_parser(
        "data",
        help="generate the shapes dataset or check a COCO install",
        description="Datasets: generate the embedded shapes dataset, check a COCO install.",
    )
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    sub = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND")

    shapes = sub.add_parser(
        "shapes",
        help="generate the synthetic shapes captioning dataset (COCO layout)",
        description="Generate the shapes dataset into --out (or, without --out, the active "
        "profile's dataset into the data directory). Unset options come from the profile's "
        "data section (PTLIB_PROFILE or --profile).",
    )
    shapes.add_argument("--out", type=Path, help="output folder")
    shapes.add_argument("--profile", help="ci, cpu, gpu or coco (default: PTLIB_PROFILE)")
    shapes.add_argument("--n-train", dest="n_train", type=int, help="training images")
    shapes.add_argument("--n-val", dest="n_val", type=int, help="validation images")
    shapes.add_argument("--n-test", dest="n_test", type=int, help="test images")
    shapes.add_argument("--n-compositional", dest="n_compositional", type=int,
                        help="compositional test images (held-out colour-shape pairs)")
    shapes.add_argument("--img-size", dest="img_size", type=int, help="image side in pixels")
    shapes.add_argument("--max-objects", dest="max_objects", type=int, help="1..4")
    shapes.add_argument("--seed", type=int, help="generation seed")
    shapes.add_argument("--jpeg-quality", dest="jpeg_quality", type=int, help="1..100")
    shapes.add_argument("--json", action="store_true", help="print the summary as JSON")
    shapes.add_argument("--quiet", action="store_true", help="no per-split lines")
    shapes.set_defaults(func=_shapes)

    coco = sub.add_parser(
        "coco",
        help="check which COCO caption files are present (never downloads)",
        description="Check a COCO install: says which file is missing, where it should be and "
        "where the official archive is published. Exit status 1 when something is missing.",
    )
    coco.add_argument("--root", type=Path, help="COCO root (default: DATA_DIR/coco)")
    coco.add_argument("--check", action="store_true", help="list present and missing files")
    coco.add_argument("--year", type=int, default=2014, choices=(2014, 2017))
    coco.add_argument("--no-karpathy", action="store_true", help="do not require dataset_coco.json")
    coco.add_argument("--count", action="store_true",
                      help="also read dataset_coco.json and print its split sizes")
    coco.set_defaults(func=_coco)
