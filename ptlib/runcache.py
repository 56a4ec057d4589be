"""The run-or-load cache: a result stored once per exact config, keyed by its hash.

:func:`run_or_load` runs a function once for a JSON config and stores the result
(with the versions, the machine and the wall time) under
``course.results_dir()/NAME/CONFIG_KEY.json``; a later call with an equal config loads it.
:func:`config_key` is that key: stored results (``results/cpu``) are found by it.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ptlib import course
from ptlib.files import atomic_write_text
from ptlib.runtime import machine, versions


def _canonical_json(config: Mapping[str, Any]) -> str:
    try:
        return json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(
            "run_or_load: config must be JSON-serialisable (str, int, float, bool, None, "
            f"lists and dicts with string keys): {err}"
        ) from err


def config_key(config: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable config (16 hex digits)."""
    return hashlib.sha256(_canonical_json(config).encode()).hexdigest()[:16]


def run_record_path(name: str, config: Mapping[str, Any], directory: Path | None = None) -> Path:
    """Where :func:`run_or_load` stores the result of ``name`` run with ``config``."""
    if not name or any(c in name for c in '\\:*?"<>|') or name.startswith(("/", ".")):
        raise ValueError(f"run name {name!r} must be a relative folder name like 'training/vit'")
    base = Path(directory) if directory is not None else course.results_dir()
    return base / name / f"{config_key(config)}.json"


def run_or_load(
    name: str,
    config: Mapping[str, Any],
    fn: Callable[[], Any],
    *,
    directory: Path | None = None,
    force: bool = False,
    verbose: bool = True,
) -> Any:
    """Return the stored result of ``fn`` for this exact ``config``, or run it and store it.

    A stored result is reused only when its recorded config equals ``config``
    exactly (not only its hash). Each record holds the config, the result, the
    ptlib/torch versions, the machine and the wall time, so a number shown in the
    book can be traced to the run that produced it.

    Args:
        name: A folder name for this kind of run, e.g. ``"training/shapes_vit"``.
        config: Everything that determines the result (JSON-serialisable).
            Include the profile and seed.
        fn: Computes the result (JSON-serialisable) when nothing matches.
        directory: Root of the cache; defaults to :func:`ptlib.course.results_dir`.
        force: Run ``fn`` even when a matching record exists, and overwrite it.
        verbose: Print whether the result was loaded or computed.

    Returns:
        The result (as loaded back from JSON, so a fresh run and a cached run
        return equal values).

    Raises:
        TypeError: If ``config`` or the result is not JSON-serialisable.
    """
    canonical = _canonical_json(config)
    path = run_record_path(name, config, directory)
    if path.is_file() and not force:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            record = None
            if verbose:
                print(f"[run_or_load] {path} is not valid JSON; running again")
        if record is not None and _canonical_json(record.get("config", {})) == canonical:
            if verbose:
                print(f"[run_or_load] loaded {name} ({path.stem[:8]})")
            return record["result"]
    start = time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    record = {
        "name": name,
        "config": json.loads(canonical),
        "result": result,
        "wall_time_s": round(wall, 3),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": versions(),
        "machine": machine(),
        "command": " ".join(sys.argv),
    }
    try:
        text = json.dumps(record, indent=1, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"run_or_load({name!r}): the result is not JSON-serialisable: {err}") from err
    atomic_write_text(path, text + "\n")
    if verbose:
        print(f"[run_or_load] ran {name} in {wall:.0f} s ({path.stem[:8]})")
    return json.loads(json.dumps(result))
