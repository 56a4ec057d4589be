"""Benchmarks that print ratios measured side by side in one run (``ptlib bench ...``).

Each benchmark lives in its own module listed in ``BENCH_MODULES``; the
module exposes ``add_parser(subparsers) -> None`` and the parser it adds sets
``func``. Benchmarks measure; they never assert. Targets are read off their
output, not checked by timed tests.
"""

BENCH_MODULES: tuple[str, ...] = (
    "ptlib.bench.data",
    "ptlib.bench.efficiency_command",
    "ptlib.bench.generate",
    "ptlib.bench.train",
)
"""Modules that add a ``ptlib bench`` subcommand."""
