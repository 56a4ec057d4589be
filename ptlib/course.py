"""Course plumbing: the profile switch, where files live, seeds, devices, run-or-load.

Every notebook starts with::

    from ptlib import course
    profile = course.get_profile()      # PTLIB_PROFILE = ci | cpu | gpu | coco
    device = course.pick_device()
    course.seed_everything(profile.seed)

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

import hashlib
import json
import os
import platform
import random
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import yaml

import ptlib

PROFILE_NAMES: tuple[str, ...] = ("ci", "cpu", "gpu", "coco")
"""The valid values of ``PTLIB_PROFILE``."""

PROFILE_KEYS: tuple[str, ...] = (
    "description", "seed", "base", "runs", "coco_runs", "inference", "train", "study",
    "grounding", "coco",
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


# ---------------------------------------------------------------------------
# Seeds and devices
# ---------------------------------------------------------------------------


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every CUDA device).

    Args:
        seed: Any non-negative integer.
        deterministic: Also ask PyTorch for deterministic kernels
            (``torch.use_deterministic_algorithms(True, warn_only=True)``) and
            disable cuDNN autotuning. Slower on GPU; CPU runs are deterministic
            for a fixed thread count without it.

    Raises:
        ValueError: If ``seed`` is negative or not an integer.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(preference: str | torch.device | None = "auto") -> torch.device:
    """Choose the device to run on.

    Args:
        preference: ``"auto"`` (CUDA, then Apple MPS, then CPU), or an explicit
            device such as ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``. ``None``
            means ``"auto"``.

    Returns:
        The chosen ``torch.device``.

    Raises:
        ValueError: If the device string is malformed or names an unavailable device.
    """
    if preference is None or (isinstance(preference, str) and preference.lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device {preference!r} is not a device; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from err
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {preference!r} was asked for but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {preference!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif device.type == "mps" and not _mps_available():
        raise ValueError(f"device {preference!r} was asked for but MPS is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {preference!r}: ptlib supports cpu, cuda and mps")
    return device


# ---------------------------------------------------------------------------
# Environment report
# ---------------------------------------------------------------------------


def versions() -> dict[str, str]:
    """Versions of Python and the libraries a result depends on."""
    import timm

    found = {
        "python": platform.python_version(),
        "ptlib": ptlib.__version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
    }
    try:
        import torchvision

        found["torchvision"] = torchvision.__version__
    except ImportError:  # pragma: no cover - torchvision is a dependency
        found["torchvision"] = "missing"
    return found


def machine() -> dict[str, Any]:
    """A short description of the machine a result was produced on."""
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def environment_report() -> dict[str, Any]:
    """Everything the setup chapter shows: profile, device, directories, versions."""
    profile = get_profile()
    return {
        "profile": profile.name + (" (smoke)" if profile.smoke else ""),
        "profile_description": profile.description,
        "device": str(pick_device()),
        "data_dir": str(data_dir(create=False)),
        "results_dir": str(results_dir(create=False)),
        "checkpoint_dir": str(checkpoint_dir(create=False)),
        "versions": versions(),
        "machine": machine(),
    }


# ---------------------------------------------------------------------------
# Run-or-load cache
# ---------------------------------------------------------------------------


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


def _umask_mode(base: int = 0o666) -> int:
    """``base`` with the process umask applied (what ``open()`` would give a new file)."""
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


def atomic_temp_file(path: Path) -> tuple[int, str]:
    """Open a temporary file beside ``path`` with ordinary permissions.

    ``tempfile.mkstemp`` creates files readable by the owner only (0600); a result
    or checkpoint should get the mode a plain ``open()`` would give it.

    Returns:
        ``(file descriptor, temporary path)``; rename it over ``path`` when written.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, _umask_mode())
    return fd, tmp_name


def atomic_write(path: Path, write: Callable[[BinaryIO], Any]) -> None:
    """Write a file through a temporary file beside it, fsync and a rename.

    A reader never sees a half-written file; an interrupted write (an exception,
    Ctrl-C) leaves the old file (or none) in place and no temporary file behind.

    Args:
        path: The file to (re)write; parent folders are created.
        write: Writes the content to the binary handle it is given.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = atomic_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def run_record_path(name: str, config: Mapping[str, Any], directory: Path | None = None) -> Path:
    """Where :func:`run_or_load` stores the result of ``name`` run with ``config``."""
    if not name or any(c in name for c in '\\:*?"<>|') or name.startswith(("/", ".")):
        raise ValueError(f"run name {name!r} must be a relative folder name like 'training/vit'")
    base = Path(directory) if directory is not None else results_dir()
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
        directory: Root of the cache; defaults to :func:`results_dir`.
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
