"""``ptlib bench``: registers every benchmark module in ``ptlib.bench.BENCH_MODULES``."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from ptlib.bench import BENCH_MODULES


def _no_benchmark(parser: argparse.ArgumentParser) -> Any:
    def run(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return run


def add_parser(subparsers: Any) -> None:
    """Add ``ptlib bench`` and its benchmarks to the ``ptlib`` command line."""
    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark that prints side-by-side ratios",
        description="Benchmarks measure several settings in one run and print their ratios. "
        "They never assert; read the targets off their output.",
    )
    parser.set_defaults(func=_no_benchmark(parser))
    bench_subparsers = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for module_name in BENCH_MODULES:
        importlib.import_module(module_name).add_parser(bench_subparsers)
