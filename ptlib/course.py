"""The course's two switches: the profile (how big every run is) and where files live.

Every notebook starts with::

    from ptlib import course, runtime
    profile = course.get_profile()      # PTLIB_PROFILE = ci | cpu | gpu | coco
    device = runtime.pick_device()
    runtime.seed_everything(profile.seed)

Seeds, devices and the environment report are in :mod:`ptlib.runtime`; the
run-or-load cache in :mod:`ptlib.runcache`; atomic file writes in :mod:`ptlib.files`.

Profiles (``ptlib/configs/profiles.yaml``) size every run by naming its run configs
(``ptlib/configs/runs/``, where every hyperparameter is written; see
:mod:`ptlib.train.runconfig`):

* ``ci``: seconds per notebook; tests, nbval and the CI book build use it.
* ``cpu``: minutes on a laptop CPU; the default when no CUDA device is present.
* ``gpu``: the shapes course at GPU scale (larger images, more images, the paper's
  d512 decoder, more epochs); the default when CUDA is available. No download.
* ``coco``: the paper's COCO setting (Table 1), chosen explicitly: chapters 0-9 run
  as under ``gpu``; chapter 10 and ``ptlib results`` train on COCO. Choosing it
  without COCO in place stops at :func:`get_profile` with the
  ``ptlib data coco --check`` advice.

``PTLIB_SMOKE=1`` shrinks any profile (data, epochs, model widths) while keeping its
code paths, e.g. to check ``PTLIB_PROFILE=gpu make book`` on a CPU; its results and
checkpoints go to a ``smoke/`` subfolder.

Directories default to folders inside the repository checkout (git-ignored) and
can be moved with environment variables:

===================  ========================  =======================
what                 environment variable      default
===================  ========================  =======================
datasets             ``PTLIB_DATA_DIR``        ``<repo>/data``
results (run cache)  ``PTLIB_RESULTS_DIR``     ``<repo>/results``
checkpoints          ``PTLIB_CHECKPOINT_DIR``  ``<repo>/checkpoints``
COCO (coco profile)  ``PTLIB_COCO_ROOT``       ``<data>/coco``
===================  ========================  =======================

``<repo>`` is the checkout that holds ``ptlib`` (found from this file); when
``ptlib`` is installed from a wheel it is the current working directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import yaml

import ptlib

PROFILE_NAMES: tuple[str, ...] = ("ci", "cpu", "gpu", "coco")
"""The valid values of ``PTLIB_PROFILE``."""

PROFILE_KEYS: tuple[str, ...] = (
    "description", "seed", "base", "runs", "coco_runs", "inference", "train", "study",
    "grounding", "pretrain", "coco",
)
"""The keys a profile in ``ptlib/configs/profiles.yaml`` may have (each read by someone)."""

PROFILE_ENV = "PTLIB_PROFILE"
SMOKE_ENV = "PTLIB_SMOKE"
COCO_ROOT_ENV = "PTLIB_COCO_ROOT"
DATA_DIR_ENV = "PTLIB_DATA_DIR"
RESULTS_DIR_ENV = "PTLIB_RESULTS_DIR"
CHECKPOINT_DIR_ENV = "PTLIB_CHECKPOINT_DIR"


# ---------------------------------------------------------------------------
# Profiles
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """One size setting for every run in the course.

    Attributes:
        name: ``"ci"``, ``"cpu"``, ``"gpu"`` or ``"coco"``.
        description: One line saying what the profile is for.
        seed: The default seed for runs under this profile.
        settings: The profile's sections as read from ``ptlib/configs/profiles.yaml``
            (``runs``, ``inference``, ``train``, ``study``, ...), plus ``data``: the
            data section of its run configs (the same for both backbones).
        smoke: Sizes shrunk by ``PTLIB_SMOKE=1`` (same code paths, meaningless numbers).
    """

    name: str
    description: str
    seed: int
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    smoke: bool = False

    def section(self, name: str) -> dict[str, Any]:
        """Return a copy of one section of the profile, e.g. ``profile.section("data")``.

        Raises:
            KeyError: If the profile has no such section (the message lists those it has).
        """
        if name not in self.settings:
            raise KeyError(
                f"profile {self.name!r} has no section {name!r}; "
                f"sections: {sorted(self.settings)} (see ptlib/configs/profiles.yaml)"
            )
        return dict(self.settings[name])


@cache
def _profiles_table() -> dict[str, dict[str, Any]]:
    text = resources.files("ptlib.configs").joinpath("profiles.yaml").read_text()
    table = yaml.safe_load(text)
    missing = [n for n in (*PROFILE_NAMES, "smoke") if n not in table]
    if missing:
        raise ValueError(f"ptlib/configs/profiles.yaml lacks {missing}")
    return table


def _profile_entry(name: str) -> dict[str, Any]:
    """A profile's entry with its ``base`` profile's sections filled in."""
    table = _profiles_table()
    entry = dict(table[name])
    base = entry.pop("base", None)
    if base is not None:
        if base not in PROFILE_NAMES or base == name:
            raise ValueError(f"ptlib/configs/profiles.yaml: profile {name!r} has base {base!r}, "
                             f"which is not another profile ({', '.join(PROFILE_NAMES)})")
        entry = {**_profile_entry(base), **entry}
    return entry


def smoke_enabled() -> bool:
    """Whether ``PTLIB_SMOKE`` asks for shrunk sizes (``1``/``true``/``yes``; ``0`` or unset: no).

    Raises:
        ValueError: If the variable holds anything else.
    """
    value = os.environ.get(SMOKE_ENV, "").strip().lower()
    if value in ("", "0", "false", "no"):
        return False
    if value in ("1", "true", "yes"):
        return True
    raise ValueError(f"environment variable {SMOKE_ENV} is {value!r}; use 1 (shrink) or 0")


def default_profile_name() -> str:
    """The profile used when ``PTLIB_PROFILE`` is unset: ``gpu`` with CUDA, else ``cpu``.

    ``coco`` is never a default: it needs COCO on disk and days of GPU time.
    """
    return "gpu" if torch.cuda.is_available() else "cpu"


def get_profile(name: str | None = None, *, check_data: bool = True) -> Profile:
    """Return the active profile.

    Args:
        name: ``"ci"``, ``"cpu"``, ``"gpu"`` or ``"coco"``. ``None`` reads
            ``PTLIB_PROFILE`` and falls back to :func:`default_profile_name`.
        check_data: For ``coco``, check that COCO is in place (:func:`require_coco`)
            so that a missing file stops here, before anything runs. ``False`` only
            reads the settings.

    Raises:
        ValueError: If the name (or ``PTLIB_PROFILE``) is not a known profile, or
            ``PTLIB_SMOKE`` is malformed.
        CocoMissingError: ``coco`` with COCO missing (and ``check_data``).
    """
    source = "argument name"
    if name is None:
        name = os.environ.get(PROFILE_ENV, "").strip() or None
        source = f"environment variable {PROFILE_ENV}"
    if name is None:
        name = default_profile_name()
    name = name.lower()
    if name not in PROFILE_NAMES:
        raise ValueError(
            f"{source} is {name!r}, which is not a profile; use one of {', '.join(PROFILE_NAMES)}"
        )
    entry = _profile_entry(name)
    unknown = sorted(set(entry) - set(PROFILE_KEYS))
    if unknown:
        raise ValueError(f"ptlib/configs/profiles.yaml: profile {name!r} has unknown keys "
                         f"{unknown}; known keys: {', '.join(PROFILE_KEYS)} (hyperparameters "
                         "belong in the run configs, ptlib/configs/runs/)")
    sections = {k: dict(v) for k, v in entry.items() if isinstance(v, Mapping)}
    smoke = smoke_enabled()
    description = str(entry.get("description", ""))
    if smoke:
        for section, update in _profiles_table()["smoke"]["sections"].items():
            if section in sections:
                sections[section] = {**sections[section], **update}
        description += f" ({SMOKE_ENV}=1: shrunk)"
    sections["data"] = _run_data(name, sections.get("runs", {}), smoke)
    profile = Profile(name=name, description=description, seed=int(entry.get("seed", 0)),
                      settings=sections, smoke=smoke)
    if check_data and name == "coco":
        require_coco(profile)
    return profile


def _run_data(name: str, runs: Mapping[str, str], smoke: bool) -> dict[str, Any]:
    """A profile's ``data`` section: its run configs' (one dataset for both backbones)."""
    from ptlib.train.runconfig import load_run_config

    overrides = _profiles_table()["smoke"]["run_overrides"] if smoke else []
    sections = {backbone: load_run_config(run, overrides)["data"] for backbone, run in runs.items()}
    if not sections:
        raise ValueError(f"ptlib/configs/profiles.yaml: profile {name!r} names no runs")
    first, *others = sections.values()
    if any(other != first for other in others):
        raise ValueError(f"ptlib/configs/profiles.yaml: profile {name!r}: the run configs "
                         f"{dict(runs)} do not share one data section")
    return first


def run_config_names(profile: Profile | str | None = None, dataset: str = "shapes"
                     ) -> dict[str, str]:
    """The run configs a profile trains, per backbone: the one place that maps them.

    Args:
        profile: A profile or its name (default: the active one).
        dataset: ``"shapes"``: the captioners of chapters 5 to 9 (every profile;
            always the embedded dataset). ``"coco"``: the paper's COCO captioners
            (only the ``coco`` profile has them).

    Returns:
        ``{"vit": run config name, "convnext": run config name}``.

    Raises:
        ValueError: On an unknown ``dataset``, or ``"coco"`` for a profile without COCO runs.
    """
    if not isinstance(profile, Profile):
        profile = get_profile(profile, check_data=False)
    key = {"shapes": "runs", "coco": "coco_runs"}.get(dataset)
    if key is None:
        raise ValueError(f"dataset must be 'shapes' or 'coco', got {dataset!r}")
    if key not in profile.settings:
        raise ValueError(f"profile {profile.name!r} has no {key!r} in "
                         "ptlib/configs/profiles.yaml (the COCO runs belong to profile 'coco')")
    return dict(profile.settings[key])


@dataclass(frozen=True)
class ModelSpec:
    """One entry of a profile section's ``models:`` table (study, grounding, pretrain).

    Attributes:
        name: The entry's name, e.g. ``convnext_s16``.
        backbone: The profile's ``runs`` key whose run config it starts from.
        overrides: ``--set`` overrides on that run config (the entry's ``set``).
        options: The entry's other keys (those the section allows, e.g. ``seeds``).
    """

    name: str
    backbone: str
    overrides: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)


def model_specs(profile: Profile, section: str, models: Mapping[str, Any] | None = None, *,
                options: tuple[str, ...] = ()) -> list[ModelSpec]:
    """The ``models:`` table of a profile section, checked: the one parser of
    ``{name: {backbone, set, ...}}`` for the study, the pointing game and pretraining.

    Args:
        profile: The profile (its ``runs`` name the backbones).
        section: The section's name, for the error messages (``study``, ``grounding``...).
        models: The table (default: ``profile.settings[section]["models"]``, or none).
        options: Keys an entry may have beside ``backbone`` and ``set``.

    Raises:
        ValueError: If an entry is not a mapping, names no backbone of the profile's
            ``runs``, or has an unknown key; the message names the entry.
    """
    if models is None:
        models = profile.settings.get(section, {}).get("models") or {}
    backbones = sorted(run_config_names(profile))
    specs = []
    for name, entry in models.items():
        where = f"profiles.yaml {profile.name}.{section}.models.{name}"
        backbone = entry.get("backbone") if isinstance(entry, Mapping) else None
        if backbone not in backbones:
            raise ValueError(f"{where}: backbone must be one of {backbones}, got {backbone!r}")
        unknown = sorted(set(entry) - {"backbone", "set", *options})
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}; an entry has a backbone, "
                             f"optional set overrides{''.join(', ' + o for o in options)}")
        specs.append(ModelSpec(str(name), backbone, tuple(str(o) for o in entry.get("set", [])),
                               {k: entry[k] for k in options if k in entry}))
    return specs


def run_overrides(profile: Profile, dataset: str = "shapes") -> list[str]:
    """``--set`` overrides a profile adds to its run configs (``PTLIB_SMOKE``'s shrinking).

    Only the shapes runs are shrunk: COCO runs keep their data (a smoke run of
    chapter 10 uses the COCO fixture under every profile but ``coco``).
    """
    if not profile.smoke or dataset != "shapes":
        return []
    return [str(item) for item in _profiles_table()["smoke"]["run_overrides"]]


class CocoMissingError(ValueError):
    """The ``coco`` profile was chosen but COCO is not in place; one line says what to do.

    In a notebook, IPython shows only that line (no traceback): see
    ``_render_traceback_``.
    """

    def _render_traceback_(self) -> list[str]:
        return [f"CocoMissingError: {self}"]


def coco_root(profile: Profile | None = None) -> Path:
    """Where the ``coco`` profile reads COCO: ``$PTLIB_COCO_ROOT``, the profile's
    ``coco.coco_root``, or ``DATA_DIR/coco``."""
    value = os.environ.get(COCO_ROOT_ENV, "").strip()
    if not value:
        if profile is None:
            profile = get_profile("coco", check_data=False)
        value = str(profile.settings.get("coco", {}).get("coco_root") or "")
    return Path(value).expanduser() if value else data_dir(create=False) / "coco"


def require_coco(profile: Profile) -> Path:
    """The COCO root of ``profile``, checked: every file the paper's runs need is there.

    Raises:
        CocoMissingError: One line naming the root, how many files are missing, the
            ``ptlib data coco --check`` command that lists them, and the ``gpu``
            profile as the no-download alternative.
    """
    from ptlib.data.coco import check_coco
    from ptlib.train.runconfig import load_run_config

    root = coco_root(profile)
    runs = run_config_names(profile, "coco")  # the year their data section reads
    year = int(load_run_config(runs["vit"])["data"].get("year", 2014))
    missing = [c for c in check_coco(root, year=year) if not c.present]
    if missing:
        raise CocoMissingError(
            f"{PROFILE_ENV}=coco needs COCO {year} and the Karpathy split under {root} "
            f"({len(missing)} file(s) missing): run `ptlib data coco --root {root} --check` "
            f"for what to get (set {COCO_ROOT_ENV} to use another folder), or use "
            f"{PROFILE_ENV}=gpu, which needs no download"
        )
    return root


# ---------------------------------------------------------------------------
# Directories
# ---------------------------------------------------------------------------


def repo_root() -> Path:
    """The repository checkout that holds ``ptlib`` (or the working directory).

    When ``ptlib`` is imported from a source checkout (``pip install -e .`` or
    ``sys.path``), this is the folder with ``pyproject.toml`` above the package;
    otherwise the current working directory.
    """
    package_parent = Path(ptlib.__file__).resolve().parent.parent
    if (package_parent / "pyproject.toml").is_file():
        return package_parent
    return Path.cwd()


def _directory(env_var: str, default_name: str, create: bool, smoke: bool = False) -> Path:
    value = os.environ.get(env_var, "").strip()
    path = Path(value).expanduser() if value else repo_root() / default_name
    if smoke and smoke_enabled():
        path = path / "smoke"
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise OSError(
                f"cannot create {path} (set {env_var} to a writable folder): {err}"
            ) from err
    return path


def data_dir(create: bool = True) -> Path:
    """Where datasets live: ``$PTLIB_DATA_DIR`` or ``<repo>/data``."""
    return _directory(DATA_DIR_ENV, "data", create)


def results_dir(create: bool = True) -> Path:
    """Where run results (the run-or-load cache) live: ``$PTLIB_RESULTS_DIR`` or ``<repo>/results``.

    Under ``PTLIB_SMOKE=1`` its ``smoke/`` subfolder, so smoke runs never mix with real ones.
    """
    return _directory(RESULTS_DIR_ENV, "results", create, smoke=True)


def checkpoint_dir(create: bool = True) -> Path:
    """Where checkpoints live: ``$PTLIB_CHECKPOINT_DIR`` or ``<repo>/checkpoints`` (``smoke/``
    under ``PTLIB_SMOKE=1``)."""
    return _directory(CHECKPOINT_DIR_ENV, "checkpoints", create, smoke=True)
