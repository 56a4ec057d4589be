"""``ptlib bench efficiency``: the command line of :mod:`ptlib.bench.efficiency`.

Measures (or, with ``--store``, loads from the run-or-load cache) the three tables
for a profile, prints them (:mod:`ptlib.bench.efficiency_report`) and can write
them with their config, versions and machine to a JSON file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from ptlib import course, files, runcache, runtime
from ptlib.bench import efficiency
from ptlib.bench.efficiency_report import print_report


def _run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    profile = course.get_profile(args.profile)
    config = efficiency.efficiency_config(profile, paper_latency=args.paper)
    if args.store:
        results = runcache.run_or_load(
            f"{profile.name}/efficiency", config, lambda: efficiency.run_efficiency(config)
        )
    else:
        results = efficiency.run_efficiency(config)
    print_report(results)
    if args.json:
        files.atomic_write_text(
            args.json,
            json.dumps(
                {
                    "config": config,
                    "result": results,
                    "versions": runtime.versions(),
                    "machine": runtime.machine(),
                },
                indent=1,
            )
            + "\n",
        )
        print(f"\nwrote {args.json}")
    return 0


def add_parser(subparsers: Any) -> None:
    """Add ``ptlib bench efficiency``."""
    parser = subparsers.add_parser(
        "efficiency",
        help="FLOPs per caption by component, CPU latency ratios, batch capacity vs pruning",
        description=efficiency.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--profile",
        choices=course.PROFILE_NAMES,
        default=None,
        help="size of the run (default: $PTLIB_PROFILE, else cpu without CUDA)",
    )
    parser.add_argument(
        "--paper",
        action="store_true",
        help="time the paper's 224-px captioners instead of the shapes ones (slow on a CPU)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="OUT",
        help="also write the config and figures to this JSON file",
    )
    parser.add_argument(
        "--store",
        action="store_true",
        help="reuse / store the result in the run-or-load cache (results/PROFILE/efficiency)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.set_defaults(func=_run)
