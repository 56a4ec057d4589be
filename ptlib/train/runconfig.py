"""Run configs: the one place where data, model and training hyperparameters are written.

A run config has three sections, each validated by its own dataclass::

    name: shapes_vit
    base: _shapes       # optional: a config (or a list of them) this one starts from
    data:  {...}        # dataset: shapes | coco, its parameters, vocabulary caps
    model: {...}        # ptlib.models.CaptionerConfig
    train: {...}        # ptlib.train.TrainConfig

Shipped configs live in ``ptlib/configs/runs/``; ``ptlib train --config NAME``
finds them by name, and a path to any YAML file works too. ``base: NAME`` (or
``base: [NAME, ...]``, merged left to right) starts from other configs and
deep-merges this file's sections over them. Names starting with ``_`` are parts
(e.g. ``_ci``: the ci sizes shared by both backbones): a base, never a run.
``paper_table1`` is the paper's Table 1; the COCO runs start from it.
``--set section.key=value`` overrides single values (the value is read as YAML,
so ``--set train.lr=3e-4`` is a float and ``--set model.prune_layers=[3,6]`` a list).

Derived keys are never written: :func:`load_run_config` sets them once from the
data section (:data:`DERIVED_KEYS`: the model's image size and the caption length
of model and training). ``model.vocab_size`` comes from the vocabulary built from
the data (:func:`ptlib.models.config_from_run`, :func:`ptlib.train.build_model`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

SECTIONS: tuple[str, ...] = ("data", "model", "train")
RUNS_PACKAGE = "ptlib.configs.runs"
PART_PREFIX = "_"
"""Shipped configs whose name starts with this are parts (bases), not runs."""

DERIVED_KEYS: dict[str, str] = {
    "model.img_size": "data.img_size",
    "model.max_len": "data.max_len",
    "train.max_len": "data.max_len",
}
"""Keys set by :func:`load_run_config` from another key; a file or ``--set`` writing
them is an error (``model.vocab_size`` is set from the built vocabulary)."""

NEVER_WRITTEN: tuple[str, ...] = (*DERIVED_KEYS, "model.vocab_size")
"""Keys no run config file or ``--set`` override may give a value."""


def shipped_run_configs(parts: bool = False) -> list[str]:
    """Names of the run configs that ship with ptlib (with ``parts``: the ``_`` bases too)."""
    folder = resources.files(RUNS_PACKAGE)
    names = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
    return [n for n in names if parts or not n.startswith(PART_PREFIX)]


def _read_yaml(name_or_path: str | Path) -> tuple[dict[str, Any], str]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"run config file {path} does not exist")
        text, source = path.read_text(), str(path)
    else:
        ref = resources.files(RUNS_PACKAGE).joinpath(f"{name_or_path}.yaml")
        if not ref.is_file():
            raise FileNotFoundError(
                f"no run config named {name_or_path!r}; shipped configs: "
                f"{', '.join(shipped_run_configs())} (or give a path to a YAML file)"
            )
        text, source = ref.read_text(), f"ptlib/configs/runs/{name_or_path}.yaml"
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        reason = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ValueError(f"run config {source} is not valid YAML{at}: {reason}") from err
    if not isinstance(values, dict):
        raise ValueError(f"run config {source} must be a mapping with data/model/train sections")
    unknown = sorted(set(values) - {"name", "base", "description", *SECTIONS})
    if unknown:
        raise ValueError(
            f"run config {source}: unknown top-level keys {unknown}; "
            f"allowed: name, base, description, {', '.join(SECTIONS)}"
        )
    for section in SECTIONS:
        if not isinstance(values.get(section, {}), dict):
            raise ValueError(f"run config {source}: section {section!r} must be a mapping")
    _check_not_derived(values, source)
    base = values.get("base")
    if base is not None and not (isinstance(base, str) or (
            isinstance(base, list) and all(isinstance(b, str) for b in base))):
        raise ValueError(f"run config {source}: base must be a config name or a list of names, "
                         f"got {base!r}")
    return values, source


def _check_not_derived(values: Mapping[str, Any], source: str) -> None:
    for dotted in NEVER_WRITTEN:
        section, key = dotted.split(".")
        if key in (values.get(section) or {}):
            origin = DERIVED_KEYS.get(dotted)
            how = (f"it is set from {origin}; write that instead" if origin
                   else "it is set from the vocabulary built from the data")
            raise ValueError(f"{source}: do not write {dotted}: {how}")


def base_names(values: Mapping[str, Any]) -> list[str]:
    """The ``base:`` of a config file's values as a list (empty when it has none)."""
    base = values.get("base")
    return [] if not base else [base] if isinstance(base, str) else list(base)


def set_derived(config: dict[str, Any]) -> dict[str, Any]:
    """Set :data:`DERIVED_KEYS` in a resolved config from the keys they derive from.

    Raises:
        ValueError: If a key they derive from is missing or null.
    """
    for dotted, origin in DERIVED_KEYS.items():
        section, key = dotted.split(".")
        origin_section, origin_key = origin.split(".")
        value = config.get(origin_section, {}).get(origin_key)
        if value is None:
            raise ValueError(f"run config {config.get('name')!r}: {origin} is missing or null; "
                             f"{dotted} is set from it, so give it a value")
        config.setdefault(section, {})[key] = value
    return config


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_overrides(config: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML).

    Raises:
        ValueError: If an override is not ``section.key=value`` or names an unknown section.
    """
    config = copy.deepcopy(config)
    for item in overrides:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ValueError(
                f"--set {item!r}: write section.key=value, e.g. train.lr=3e-4 or "
                "model.encoder=convnext_atto"
            )
        dotted, raw = item.split("=", 1)
        path = dotted.strip().split(".")
        if path[0] not in SECTIONS:
            raise ValueError(f"--set {item!r}: section must be one of {', '.join(SECTIONS)}")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            reason = " ".join(str(getattr(err, "problem", None) or err).split())
            raise ValueError(f"--set {item!r}: the value is not valid YAML ({reason}); quote "
                             "text values, e.g. train.amp=bf16 or data.coco_root='/my coco'"
                             ) from err
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if any(not key.strip() for key in path):
            raise ValueError(f"--set {item!r}: empty key in {dotted.strip()!r}; write "
                             "section.key=value")
        node = config.setdefault(path[0], {})
        for depth, key in enumerate(path[1:-1], 1):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {item!r}: {'.'.join(path[:depth + 1])} is a value, "
                                 "not a section")
        if not isinstance(node, dict):
            raise ValueError(f"--set {item!r}: {path[0]} is not a section")
        node[path[-1]] = value
    return config


def load_run_config(
    name_or_path: str | Path, overrides: Sequence[str] = (), _seen: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Read a run config by shipped name or path, resolve ``base:``, apply ``--set`` overrides.

    Returns:
        ``{"name", "description", "data", "model", "train"}`` as plain data, with the
        :data:`DERIVED_KEYS` set from the data section, checked by
        :func:`check_run_config`.

    Raises:
        ValueError: On a bad file, a part loaded as a run, a derived key written in a
            file or ``--set``, or a section :func:`check_run_config` rejects.
    """
    if not _seen and str(name_or_path).startswith(PART_PREFIX):
        raise ValueError(f"run config {name_or_path!r} is a part (a name starting with "
                         f"{PART_PREFIX!r}): use it as another config's base, not as a run")
    values, source = _read_yaml(name_or_path)
    if source in _seen:
        raise ValueError(f"run config {source}: 'base' chain loops: {' -> '.join(_seen)}")
    config: dict[str, Any] = {"data": {}, "model": {}, "train": {}}
    for base in base_names(values):
        config = _deep_merge(config, load_run_config(base, (), (*_seen, source)))
    config = _deep_merge(config, {k: values.get(k, {}) for k in SECTIONS})
    config["name"] = values.get("name") or Path(str(name_or_path)).stem
    config["description"] = values.get("description", config.get("description", ""))
    if _seen:
        return config
    _check_not_derived(apply_overrides({}, overrides), "--set")
    config = set_derived(apply_overrides(config, overrides))
    check_run_config(config)
    return config


DATA_KEYS: dict[str, Any] = {
    "dataset": Literal["shapes", "coco"],
    "img_size": int,
    "max_len": int | None,
    "vocab_min_freq": int,
    "vocab_max_size": int,
    "train_reference": Literal["random", "first"],
    "num_workers": int,
    "coco_root": str | None,
    "year": Literal[2014, 2017],
    "split": str,
    "karpathy_json": str,
}
"""Keys of a run config's ``data`` section besides the shapes generator's
(:class:`ptlib.data.shapes.ShapesConfig`), with their types."""


def check_run_config(config: Mapping[str, Any]) -> None:
    """Check every section of a run config: unknown keys, value types and ranges.

    Called by :func:`load_run_config`, so a bad ``--set`` fails before any work.

    Raises:
        ValueError: Naming the key, e.g. ``train.epochs=2.5: must be an integer`` or
            ``data: unknown key nosuch; known keys: ...``.
    """
    from ptlib.data.shapes import ShapesConfig
    from ptlib.models.config import CaptionerConfig
    from ptlib.train.config import TrainConfig
    from ptlib.typecheck import check_value, field_types

    for section in SECTIONS:
        if not isinstance(config.get(section, {}), Mapping):
            raise ValueError(f"run config: section {section!r} must be a mapping")
    data = dict(config.get("data", {}))
    data_types = {**field_types(ShapesConfig), **DATA_KEYS}
    unknown = sorted(str(k) for k in data if k not in data_types)
    if unknown:
        raise ValueError(
            f"data: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"known keys: {', '.join(sorted(data_types))}"
        )
    for key, value in data.items():
        check_value(value, data_types[key], f"data.{key}")
    for key in ("img_size", "vocab_max_size", "num_workers", "vocab_min_freq"):
        if key in data and data[key] < (0 if key == "num_workers" else 1):
            raise ValueError(f"data.{key}={data[key]!r}: must be at least "
                             f"{0 if key == 'num_workers' else 1}")
    if data.get("dataset", "shapes") == "shapes":
        try:
            ShapesConfig.from_section(data)
        except ValueError as err:
            raise ValueError(f"data: {err}") from None
    for dotted, origin in DERIVED_KEYS.items():
        section, key = dotted.split(".")
        origin_section, origin_key = origin.split(".")
        value = config.get(section, {}).get(key)
        if value is not None and value != config.get(origin_section, {}).get(origin_key):
            raise ValueError(f"{dotted}={value!r} differs from {origin}="
                             f"{config.get(origin_section, {}).get(origin_key)!r}; "
                             f"{dotted} is set from {origin}")
    CaptionerConfig.from_dict({**dict(config.get("model", {})), "vocab_size": 1})
    TrainConfig.from_dict(dict(config.get("train", {})))
