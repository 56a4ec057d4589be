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
from collections.abc import Callable, Sequence
from typing import NoReturn

import ptlib

COMMAND_MODULES: tuple[str, ...] = (
    "ptlib.bench.command",
    "ptlib.data.command",
    "ptlib.train.command",
    "ptlib.experiments.command",
)
"""Modules that add a subcommand (each defines ``add_parser(subparsers)``)."""


def _info(args: argparse.Namespace) -> int:
    from ptlib import runtime

    report = runtime.environment_report()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    width = max(len(k) for k in report)
    for key, value in report.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        print(f"{key:<{width}}  {value}")
    return 0


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (no usage block)."""

    def error(self, message: str) -> NoReturn:  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` for integers >= ``minimum`` (the error names the bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not allowed: must be at least {minimum}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The full ``ptlib`` argument parser (all subcommands registered)."""
    parser = OneLineParser(
        prog="ptlib",
        description=(
            "Prune and Tell: train and study image captioners with ViT / ConvNeXt encoders "
            "and visual token pruning. Run 'ptlib COMMAND --help' for a command's options."
        ),
    )
    parser.add_argument("--version", action="version", version=f"ptlib {ptlib.__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error (also: PTLIB_DEBUG=1)")
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
    """Run the ``ptlib`` command line; returns the process exit code.

    A failure caused by the input, a file or the environment (see
    :mod:`ptlib.errors`) is printed as one line, ``ptlib COMMAND: error: ...``, with
    exit status 2; Ctrl-C prints one line and exits with 130. ``--debug`` or
    ``PTLIB_DEBUG=1`` shows the traceback instead. Other exceptions are bugs and raise.
    """
    from ptlib.errors import debug_enabled, is_user_error, one_line

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    debug = args.debug or debug_enabled()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"ptlib {args.command}: interrupted (Ctrl-C) before it finished", file=sys.stderr)
        return 130
    except Exception as err:
        if debug or not _reported_plainly(err, is_user_error):
            raise
        print(f"ptlib {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2


def _reported_plainly(err: Exception, is_user_error) -> bool:  # noqa: ANN001
    """User errors, and the library's own KeyErrors (a sentence, not a bare key)."""
    if isinstance(err, KeyError):
        return bool(err.args) and " " in str(err.args[0])
    return is_user_error(err)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
