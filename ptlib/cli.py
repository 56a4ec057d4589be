"""The ``ptlib`` command line.

Each subcommand lives in its own module, which exposes
``add_parser(subparsers) -> None``; the parser it adds sets ``func`` to a
callable taking the parsed ``argparse.Namespace`` and returning an exit code.
Add a module to ``COMMAND_MODULES`` to add a subcommand.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

import ptlib

COMMAND_MODULES: tuple[str, ...] = (
    "ptlib.bench.command",
    "ptlib.data.command",
    "ptlib.train.command",
    "ptlib.experiments.command",
)
"""Modules that add a subcommand (each defines ``add_parser(subparsers)``)."""


def _info(args: argparse.Namespace) -> int:
    from ptlib import course

    report = course.environment_report()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    width = max(len(k) for k in report)
    for key, value in report.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        print(f"{key:<{width}}  {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full ``ptlib`` argument parser (all subcommands registered)."""
    parser = argparse.ArgumentParser(
        prog="ptlib",
        description=(
            "Prune and Tell: train and study image captioners with ViT / ConvNeXt encoders "
            "and visual token pruning. Run 'ptlib COMMAND --help' for a command's options."
        ),
    )
    parser.add_argument("--version", action="version", version=f"ptlib {ptlib.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    info = subparsers.add_parser(
        "info",
        help="show the active profile, device, directories and library versions",
        description="Show the active profile (PTLIB_PROFILE), device, data/results/checkpoint "
        "directories and library versions.",
    )
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    info.set_defaults(func=_info)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ptlib`` command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as err:
        # Library errors already say what is wrong and what to do: print them plainly.
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"ptlib {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
