"""Course plumbing: the profile switch, where files live, seeds, devices, run-or-load.

Every notebook starts with::

    from ptlib import course
    profile = course.get_profile()      # PTLIB_PROFILE = ci | cpu | gpu
    device = course.pick_device()
    course.seed_everything(profile.seed)

Profiles (``ptlib/configs/profiles.yaml``) size every run:

* ``ci``: seconds per notebook; tests, nbval and the CI book build use it.
* ``cpu``: minutes on a laptop CPU; the default when no CUDA device is present.
* ``gpu``: the paper's full setting; the default when CUDA is available.

Directories default to folders inside the repository checkout (git-ignored) and
can be moved with environment variables:

===================  ========================  =======================
what                 environment variable      default
===================  ========================  =======================
datasets             ``PTLIB_DATA_DIR``        ``<repo>/data``
results (run cache)  ``PTLIB_RESULTS_DIR``     ``<repo>/results``
checkpoints          ``PTLIB_CHECKPOINT_DIR``  ``<repo>/checkpoints``
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

PROFILE_NAMES: tuple[str, ...] = ("ci", "cpu", "gpu")
"""The valid values of ``PTLIB_PROFILE``."""

PROFILE_ENV = "PTLIB_PROFILE"
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
        name: ``"ci"``, ``"cpu"`` or ``"gpu"``.
        description: One line saying what the profile is for.
        seed: The default seed for runs under this profile.
        settings: The profile's sections (``data``, ``model``, ``train``, ...) as
            read from ``ptlib/configs/profiles.yaml``.
    """

    name: str
    description: str
    seed: int
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

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
    missing = [n for n in PROFILE_NAMES if n not in table]
    if missing:
        raise ValueError(f"ptlib/configs/profiles.yaml lacks profiles {missing}")
    return table


def default_profile_name() -> str:
    """The profile used when ``PTLIB_PROFILE`` is unset: ``gpu`` with CUDA, else ``cpu``."""
    return "gpu" if torch.cuda.is_available() else "cpu"


def get_profile(name: str | None = None) -> Profile:
    """Return the active profile.

    Args:
        name: ``"ci"``, ``"cpu"`` or ``"gpu"``. ``None`` reads ``PTLIB_PROFILE`` and
            falls back to :func:`default_profile_name`.

    Raises:
        ValueError: If the name (or ``PTLIB_PROFILE``) is not a known profile.
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
    entry = _profiles_table()[name]
    sections = {k: v for k, v in entry.items() if isinstance(v, Mapping)}
    return Profile(
        name=name,
        description=str(entry.get("description", "")),
        seed=int(entry.get("seed", 0)),
        settings=sections,
    )


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


def _directory(env_var: str, default_name: str, create: bool) -> Path:
    value = os.environ.get(env_var, "").strip()
    path = Path(value).expanduser() if value else repo_root() / default_name
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
    """Where run results (the run-or-load cache) live: ``$PTLIB_RESULTS_DIR`` or ``<repo>/results``."""
    return _directory(RESULTS_DIR_ENV, "results", create)


def checkpoint_dir(create: bool = True) -> Path:
    """Where checkpoints live: ``$PTLIB_CHECKPOINT_DIR`` or ``<repo>/checkpoints``."""
    return _directory(CHECKPOINT_DIR_ENV, "checkpoints", create)


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
        "profile": profile.name,
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
                print(f"[run_or_load] loaded {name} (key {path.stem[:8]})")
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
        print(f"[run_or_load] ran {name} in {wall:.1f} s (key {path.stem[:8]})")
    return json.loads(json.dumps(result))
