"""Re-key stored results after a rename, without measuring or training again.

A stored result (``results/<profile>/<name>/<config_key>.json``, written by
:func:`ptlib.runcache.run_or_load`) is found by the hash of its config, so
renaming a config section changes where it must be stored. :data:`RENAMES` lists
every rename applied so far, per kind of run; :func:`rekey` applies them to one
record (config and result alike) and this script moves each record to the file its
new key names::

    python scripts/rekey_results.py            # results/ of this checkout
    python scripts/rekey_results.py --check    # only list what would move

Renames so far:

* ``efficiency``: the section ``memory`` (saved bytes per image and the largest
  batch on a card) became ``batch_capacity``, so that "memory" names only the
  decoder's visual memory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

try:
    import ptlib  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ptlib import course, files, runcache  # noqa: E402

RENAMES: dict[str, dict[str, str]] = {"efficiency": {"memory": "batch_capacity"}}
"""Per kind of run (the folder under ``results/<profile>/``): old section -> new section."""


def rekey(record: dict[str, Any], kind: str) -> dict[str, Any]:
    """``record`` with the renamed sections of its config and result (a new dict).

    Args:
        record: A stored record (``{"config": ..., "result": ..., ...}``).
        kind: The folder of the run under ``results/<profile>/``, e.g. ``"efficiency"``.

    Raises:
        ValueError: If a record holds both an old and its new section.
    """
    out = dict(record)
    for part in ("config", "result"):
        section = dict(record.get(part) or {})
        for old, new in RENAMES.get(kind, {}).items():
            if old in section:
                if new in section:
                    raise ValueError(f"{kind} record {part} holds both {old!r} and {new!r}")
                section[new] = section.pop(old)
        out[part] = section
    return out


def rekey_folder(results: Path, *, check: bool = False) -> list[tuple[Path, Path]]:
    """Move every record under ``results/<profile>/<kind>/`` that a rename touches.

    Returns:
        ``(old path, new path)`` for each record re-keyed (or, with ``check``, to re-key).
    """
    moved = []
    for kind in RENAMES:
        for path in sorted(results.glob(f"*/{kind}/*.json")):
            record = json.loads(path.read_text(encoding="utf-8"))
            new = rekey(record, kind)
            if new == record:
                continue
            target = path.with_name(f"{runcache.config_key(new['config'])}.json")
            moved.append((path, target))
            if not check:
                text = json.dumps(new, indent=1, sort_keys=True, allow_nan=False)
                files.atomic_write_text(target, text + "\n")
                if target != path:
                    path.unlink()
    return moved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=None,
                        help="results folder (default: ptlib.course.results_dir())")
    parser.add_argument("--check", action="store_true", help="only list what would move")
    args = parser.parse_args(argv)
    results = args.results or course.results_dir(create=False)
    for old, new in rekey_folder(results, check=args.check):
        print(f"{'would move' if args.check else 'moved'} {old} -> {new.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
